"""The catalogue of per-clip stages: the declarations a run, the store's views, the config, the filters
(``clipforge refilter``) and the report are wired from.

A per-clip stage is a Ray-callable class in a module of its own that declares itself with a :class:`Stage`
(``STAGE = Stage(...)`` next to its code): its table (also its config section and its column in the run's graph),
its config dataclass (thresholds and resources), its output schema, the columns it reads, and its filter rules
(:class:`Rule`: a drop reason, the column, the comparison and the config setting holding the threshold). From these:

- ``pipeline.schema`` stores its table; ``pipeline.store.open`` joins it into the ``clips`` view;
- ``pipeline.config`` adds its section (typed, from the dataclass);
- ``pipeline.run`` puts it in the graph after the CPU scores and CLIP, before the per-clip filters, as an actor pool
  with the resources of its section (``num_cpus``, ``num_gpus``, ``batch_size``, ``min_actors``, ``max_actors``);
  a stored clip without its row enters the graph at it on resume;
- ``stages.filters`` applies its rules after the built-in ones (first failing reason wins), in the run and in
  ``clipforge refilter``; the report draws its score columns with their thresholds.

:data:`BUILTIN` lists clipforge's own; a user's own stage joins a run through the config's ``stages`` list
(``stages = ["my_module:STAGE"]``), with no change to clipforge. The stage class is built as
``cls(cfg=<its section>, root=<OUT>)`` (``clip_path`` values are relative to OUT) and called with a dict of its
input columns (``reads``), one list per column; it returns a ``pyarrow.Table`` of its schema, one row per clip,
``clip_id`` first. Errors are data: a clip that fails should get null scores and an error column, never raise.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any

OPS = ("<", ">", "notnull")
# the columns a per-clip stage reads unless it says otherwise: the cut clip's file and its frame count and rate
CLIP_INPUT: dict[str, str] = {
    "clip_id": "clips.clip_id",
    "clip_path": "clips.clip_path",
    "num_frames": "clips.num_frames",
    "fps": "clips.fps",
}
# tables that are not per-clip stages: a stage may not take their names
CORE_TABLES = ("videos", "shots", "clips", "filters")


@dataclass(frozen=True)
class Rule:
    """One filter rule: a clip whose ``column`` is ``op`` the threshold is dropped with ``reason``.

    ``op``: ``"<"`` (below a minimum), ``">"`` (above a maximum) or ``"notnull"`` (an error column is set; no
    threshold). ``setting``: ``"section.key"`` of the threshold in the config; a threshold set to None disables the
    rule. A null value never rejects.

    ``also``: a second condition ``(column, op, setting)`` (op ``"<"`` or ``">"``) that must hold too, for a score
    that means a defect only together with another (isotropy says one direction lost its finest detail; streak,
    that what is left along it is spread, as a smear spreads it: motion blur, not grass), or a tuple of such
    conditions, all of which must hold (stored as that tuple). A condition whose threshold is None is left out (the
    rule stands on the others); one whose value is null never rejects. Two rules with the same reason are an OR.

    ``unless``: an exemption, a condition (or a tuple of them) under which the rule does not reject though its others
    hold (a dark clip whose highlights stay bright is a night look, not underexposed). A null value never exempts: a
    row scored before the exempting column existed is judged as it was; a threshold of None leaves it out.
    """

    reason: str
    column: str
    op: str
    setting: str | None = None
    also: tuple[tuple[str, str, str], ...] | tuple[str, str, str] | None = None
    unless: tuple[tuple[str, str, str], ...] | tuple[str, str, str] | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"rule {self.reason}: op {self.op!r} is not one of {OPS}")
        if (self.op == "notnull") != (self.setting is None):
            raise ValueError(f"rule {self.reason}: a threshold rule needs a setting, a notnull rule none")
        for name in ("also", "unless"):
            given = getattr(self, name)
            if given is None:
                continue
            conditions = (given,) if given and isinstance(given[0], str) else tuple(given)
            if (
                self.op == "notnull"
                or not conditions
                or any(not isinstance(c, tuple) or len(c) != 3 or c[1] not in OPS[:2] for c in conditions)
            ):
                raise ValueError(
                    f"rule {self.reason}: {name} must be (column, '<' or '>', setting), or a tuple of those, on a "
                    "threshold rule"
                )
            object.__setattr__(self, name, conditions)

    @property
    def conditions(self) -> tuple[tuple[str, str, str | None], ...]:
        """Its conditions, (column, op, setting) each: the first, then those of ``also`` (not ``unless``)."""
        return ((self.column, self.op, self.setting),) + (self.also or ())

    @property
    def settings(self) -> tuple[str, ...]:
        """The thresholds it reads, ``"section.key"`` each (``unless``'s included)."""
        return tuple(s for _, _, s in self.conditions + (self.unless or ()) if s is not None)

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the rule reads (``unless``'s included)."""
        return tuple(column for column, _, _ in self.conditions + (self.unless or ()))


@dataclass(frozen=True)
class Stage:
    """A per-clip stage's declaration (see the module docstring). ``stage``, ``config`` and ``schema`` are
    ``"module:name"`` references, resolved in each worker (:meth:`resolve`)."""

    name: str  # its table, its config section, its struct column in the graph
    stage: str  # "module:Class": the Ray callable
    config: str  # "module:Dataclass": its settings (thresholds) and resources
    schema: str  # "module:NAME": a pyarrow.Schema, clip_id first
    reads: dict[str, str] = field(default_factory=lambda: dict(CLIP_INPUT))  # {input column: "table.field"}
    rules: tuple[Rule, ...] = ()

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.reason for r in self.rules))

    def resolve(self, ref: str) -> Any:
        return resolve(getattr(self, ref))


def resolve(ref: str) -> Any:
    """``"module:name"`` -> the object (raises ImportError / AttributeError naming the reference)."""
    module, _, name = ref.partition(":")
    if not module or not name:
        raise ValueError(f"{ref!r} is not a 'module:name' reference")
    try:
        return getattr(importlib.import_module(module), name)
    except AttributeError:
        raise AttributeError(f"{ref!r}: module {module!r} has no {name!r}") from None


# clipforge's own per-clip stages, in graph order (their rules come first, in this order)
BUILTIN: tuple[str, ...] = (
    "stages.cpu_scores:STAGE",
    "stages.clip_scores:STAGE",
    "stages.caption:STAGE",
    "stages.clip_scores:TEXT_STAGE",
)


def load(ref: str) -> Stage:
    """The :class:`Stage` a ``"module:NAME"`` reference names, checked: a Stage, a free name, a schema with
    ``clip_id`` first, rules on columns of its schema."""
    import pyarrow as pa

    stage = resolve(ref)
    if not isinstance(stage, Stage):
        raise TypeError(f"{ref!r} is a {type(stage).__name__}, not a stages.catalogue.Stage")
    if stage.name in CORE_TABLES or not stage.name.isidentifier():
        raise ValueError(f"{ref!r}: stage name {stage.name!r} is taken or not an identifier")
    schema = stage.resolve("schema")
    if not isinstance(schema, pa.Schema) or not schema.names or schema.names[0] != "clip_id":
        raise ValueError(f"{ref!r}: its schema must be a pyarrow.Schema whose first column is clip_id")
    for rule in stage.rules:
        for column in rule.columns:
            if column not in schema.names:
                raise ValueError(f"{ref!r}: rule {rule.reason} reads {column!r}, which its schema lacks")
    if not dataclasses.is_dataclass(stage.resolve("config")):
        raise TypeError(f"{ref!r}: config {stage.config!r} is not a dataclass")
    return stage


def stages(extra: list[str] | tuple[str, ...] = ()) -> list[Stage]:
    """The built-in per-clip stages, then the user's (``extra``: the config's ``stages`` list), names unique."""
    out: list[Stage] = []
    for ref in dict.fromkeys((*BUILTIN, *extra)):  # a reference listed twice is one stage
        stage = load(ref)
        if any(s.name == stage.name for s in out):
            raise ValueError(f"{ref!r}: a stage named {stage.name!r} is already in the run")
        out.append(stage)
    return out


def rules(extra: list[str] | tuple[str, ...] = ()) -> tuple[Rule, ...]:
    """Every filter rule in order: the clip rules (``stages.clips.RULES``), then each stage's."""
    from stages.clips import RULES

    return (*RULES, *(r for s in stages(extra) for r in s.rules))
