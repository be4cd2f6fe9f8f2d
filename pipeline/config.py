"""Configuration: typed defaults (dataclasses, one per stage, defined next to the stage) are the source of
truth; one TOML or YAML file overrides them; ``--section.key value`` CLI flags override the file. The resolved
config is saved next to the output as config.json.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.settings import Settings

if TYPE_CHECKING:
    from pipeline.store import StoreConfig
    from stages.caption import CaptionConfig
    from stages.clip_scores import ClipScoresConfig
    from stages.clips import ClipsConfig
    from stages.cpu_scores import CpuScoresConfig
    from stages.dedup import DedupConfig
    from stages.filters import FiltersConfig
    from stages.ingest import IngestConfig
    from stages.shots import ShotsConfig


class ConfigError(ValueError):
    """A setting that does not exist or does not parse: reported in one line, no traceback."""


@dataclass
class RayConfig(Settings):
    address: str | None = None  # None: a local Ray on this machine; "auto" or "ray://host:10001" for a cluster
    num_cpus: int | None = None  # local Ray only; None = all cores
    # CPUs kept free of actor pools: Ray Data stalls when an actor pool holds every CPU of a small machine
    headroom_cpus: float = 1.0
    progress: bool = True


# section name -> "module:Class". Stage configs live with their stage (stages/ never imports pipeline/).
SECTIONS: dict[str, str] = {
    "ray": "pipeline.config:RayConfig",
    "store": "pipeline.store:StoreConfig",
    "ingest": "stages.ingest:IngestConfig",
    "shots": "stages.shots:ShotsConfig",
    "clips": "stages.clips:ClipsConfig",
    "scores": "stages.cpu_scores:CpuScoresConfig",
    "clip": "stages.clip_scores:ClipScoresConfig",
    "filters": "stages.filters:FiltersConfig",
    "dedup": "stages.dedup:DedupConfig",
    "captioner": "stages.caption:CaptionConfig",
}


def _section_class(spec: str) -> type:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass
class Config:
    """The run's settings: inputs, output, the user's own stages (``stages``: ``"module:STAGE"`` references, see
    ``stages.catalogue``) and one typed section per stage. The built-in sections are typed attributes
    (``cfg.shots``, ...); a user stage's section is ``cfg.sections[name]``."""

    inputs: list[str] = field(default_factory=list)
    output: str = ""
    stages: list[str] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, spec in SECTIONS.items():
            self.sections.setdefault(name, _section_class(spec)())
        for ref in self.stages:
            self._add_stage(ref)

    def _add_stage(self, ref: str) -> None:
        """A user stage joins: its section, typed by its config dataclass (``stages.catalogue.load`` checks it)."""
        from stages.catalogue import load

        try:
            stage = load(ref)
        except ImportError as e:
            raise ConfigError(f"stages: {ref}: {e} (is its module on PYTHONPATH, as when the run used it?)") from None
        except (AttributeError, TypeError, ValueError) as e:
            raise ConfigError(f"stages: {ref}: {e}") from None
        if stage.name in SECTIONS:
            raise ConfigError(f"stages: {ref}: its name {stage.name!r} is a built-in config section")
        self.sections.setdefault(stage.name, stage.resolve("config")())
        for rule in stage.rules:  # every threshold a rule names must exist before the run starts
            for setting in rule.settings:
                section, _, key = setting.partition(".")
                known = self.sections.get(section)
                if known is None or key not in {f.name for f in dataclasses.fields(known)}:
                    raise ConfigError(
                        f"stages: {ref}: rule {rule.reason} reads setting {setting!r}, which no config section has"
                    )
        if ref not in self.stages:
            self.stages.append(ref)

    @property
    def ray(self) -> RayConfig:
        return self.sections["ray"]

    @property
    def store(self) -> StoreConfig:
        return self.sections["store"]

    @property
    def ingest(self) -> IngestConfig:
        return self.sections["ingest"]

    @property
    def shots(self) -> ShotsConfig:
        return self.sections["shots"]

    @property
    def clips(self) -> ClipsConfig:
        return self.sections["clips"]

    @property
    def scores(self) -> CpuScoresConfig:
        return self.sections["scores"]

    @property
    def clip(self) -> ClipScoresConfig:
        return self.sections["clip"]

    @property
    def filters(self) -> FiltersConfig:
        return self.sections["filters"]

    @property
    def dedup(self) -> DedupConfig:
        return self.sections["dedup"]

    @property
    def captioner(self) -> CaptionConfig:
        return self.sections["captioner"]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"inputs": list(self.inputs), "output": self.output, "stages": list(self.stages)}
        for name, section in self.sections.items():
            d[name] = dataclasses.asdict(section)
        return d


def _coerce(value: Any, tp: Any) -> Any:
    """Coerce a CLI string / file value to a dataclass field's annotated type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"cannot read {value!r} as {tp}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if tp in (int, float, str):
        if isinstance(value, bool):  # TOML / YAML true: float(True) is 1.0, a threshold nobody meant
            raise ValueError(f"a boolean where a {tp.__name__} is wanted: {value!r}")
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"not an integer: {value!r}")
        return tp(value)
    if origin in (tuple, list):
        items = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(",") if v != ""]
        inner = args[0] if args else str
        return origin(_coerce(v, inner) for v in items)
    if origin is dict or tp is dict:
        return value if isinstance(value, dict) else json.loads(value)
    return value


def _set(section: Any, key: str, value: Any, where: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(section)}
    if key not in fields:
        raise ConfigError(f"{where}: unknown setting {key!r}; known: {', '.join(sorted(fields))}")
    # the declared types, resolved by typing (annotations are strings under `from __future__ import annotations`)
    hints = typing.get_type_hints(type(section))
    try:
        setattr(section, key, _coerce(value, hints[key]))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {key} = {value!r}: {e}") from None


def flat_settings(cfg: Config, overrides: dict[str, Any]) -> dict[str, Any]:
    """{"section.key": value} or nested {"section": {"key": value}} settings -> {"section.key": value} (``stages``
    left out: :func:`apply` reads it first)."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "stages":
            continue
        if isinstance(value, dict) and key in cfg.sections:
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def apply(cfg: Config, overrides: dict[str, Any], where: str = "config") -> Config:
    """Apply {"section.key": value} or nested {"section": {"key": value}} overrides."""
    stages = overrides.get("stages")
    if stages is not None:  # first: the user's stages bring the sections the other keys may set
        for ref in [stages] if isinstance(stages, str) else list(stages):
            cfg._add_stage(str(ref))
    for key, value in flat_settings(cfg, overrides).items():
        if key == "inputs":
            cfg.inputs = [value] if isinstance(value, str) else list(value)
        elif key == "output":
            cfg.output = str(value)
        elif "." in key:
            section, name = key.split(".", 1)
            if section not in cfg.sections:
                raise ConfigError(f"{where}: unknown section {section!r}; known: {', '.join(cfg.sections)}")
            _set(cfg.sections[section], name, value, f"{where} [{section}]")
        else:
            raise ConfigError(f"{where}: unknown setting {key!r}")
    return cfg


def read_file(path: str | Path) -> dict[str, Any]:
    from stages import storage

    text = storage.read_text(path)  # a local file, or the config.json of an OUT in a bucket
    path = Path(str(path))
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10: tomli is the same parser (tomllib is tomli, upstreamed in 3.11)
            import tomli as tomllib

        return tomllib.loads(text)
    if path.suffix.lower() == ".json":
        return json.loads(text)
    import yaml

    return yaml.safe_load(text) or {}


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    cfg = Config()
    if path:
        apply(cfg, read_file(path), where=str(path))
    if overrides:
        apply(cfg, overrides, where="command line")
    return cfg


def parse_dotted_flags(argv: list[str]) -> dict[str, str]:
    """``--shots.detector content --clips.max_s=8`` -> {"shots.detector": "content", "clips.max_s": "8"}."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise SystemExit(f"unrecognized argument: {arg} (settings look like --section.key VALUE)")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            if i + 1 >= len(argv):
                raise SystemExit(f"{arg} needs a value")
            i += 1
            value = argv[i]
        out[key.replace("-", "_")] = value
        i += 1
    return out


def field_notes(cls: type) -> dict[str, str]:
    """What the source says of each field of dataclass ``cls``: the comment on its line, else the comment lines right
    above it (the settings are documented where they are declared). {field: one line}; fields without a comment are
    left out, and a class whose source cannot be read gives {}."""
    import inspect
    import io
    import tokenize

    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    notes: dict[str, str] = {}
    above: list[str] = []
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            line = tok.line.strip()
            if line.startswith("#"):
                above.append(text)
                continue
            name = line.split(":", 1)[0].strip()
            if name in names:
                notes[name] = text  # an inline comment wins over the lines above
            above = []
        elif tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in names and ":" in tok.line:
            if above and tok.string not in notes:
                notes[tok.string] = " ".join(above)
            above = []
        elif tok.type == tokenize.NL and not tok.line.strip():
            above = []
    return notes


def dump_yaml(cfg: Config) -> str:
    """The resolved configuration as YAML, each setting with what its declaration's comment says of it."""
    import yaml

    d = cfg.to_dict()
    d.pop("inputs")
    d.pop("output")
    lines = []
    for name, value in d.items():
        # one line per scalar (no folding of long strings): a note goes after a key's own line only, never inside a
        # value that goes on below it (a note there would end the value or become part of it)
        block = yaml.safe_dump({name: value}, sort_keys=False, width=float("inf")).splitlines()
        section = cfg.sections.get(name)
        notes = field_notes(type(section)) if dataclasses.is_dataclass(section) else {}
        for i, line in enumerate(block):
            key = line[2:].split(":", 1)[0] if line.startswith("  ") and not line.startswith("   ") else None
            note = notes.get(key) if key else None
            goes_on = i + 1 < len(block) and block[i + 1].startswith("    ")
            lines.append(f"{line}  # {note}" if note and ":" in line and not goes_on else line)
    return "\n".join(lines) + "\n"
