"""Config: typed defaults, a file overrides them, flags override the file; bad settings are clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline import config


def test_file_then_flags_override_defaults(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[clips]\nmin_s = 1.5\nmax_s = 6\n[shots]\ndetector = "content"\n')
    cfg = config.load(f, {"clips.max_s": "4", "ray.num_cpus": "2", "store.shard_rows": "7"})
    assert cfg.clips.min_s == 1.5 and cfg.clips.max_s == 4.0
    assert cfg.shots.detector == "content"
    assert cfg.ray.num_cpus == 2 and cfg.store.shard_rows == 7
    assert isinstance(cfg.clips.max_s, float)


def test_yaml_file_and_optional_values(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("clips:\n  short_side: 256\nray:\n  address: auto\n")
    cfg = config.load(f, {"clips.short_side": "none"})
    assert cfg.clips.short_side is None
    assert cfg.ray.address == "auto"


def test_unknown_and_malformed_settings_are_clear_errors():
    with pytest.raises(config.ConfigError, match="unknown setting 'nope'"):
        config.load(None, {"clips.nope": "1"})
    with pytest.raises(config.ConfigError, match="unknown section 'bogus'"):
        config.load(None, {"bogus.x": "1"})
    with pytest.raises(config.ConfigError, match="max_s"):
        config.load(None, {"clips.max_s": "ten"})


def test_settings_set_from_python_must_have_their_declared_type(tmp_path):
    """From Python nothing parses a value: ``FiltersConfig(min_focus="0.4")`` was accepted and the run compared the
    clips' focus with a string. Every section now checks each assignment against its field's annotation."""
    from stages.clips import ClipsConfig
    from stages.filters import FiltersConfig
    from stages.settings import Settings

    with pytest.raises(TypeError, match=r"FiltersConfig\.min_focus must be float \| None, got str '0\.4'"):
        FiltersConfig(min_focus="0.4")
    f = FiltersConfig(min_focus=1, min_short_side=None)  # an int is a float (PEP 484's numeric tower); None disables
    assert f.min_focus == 1 and f.min_short_side is None
    with pytest.raises(TypeError, match="min_short_side must be int"):
        f.min_short_side = 128.0  # after construction too
    with pytest.raises(TypeError, match="must be bool"):
        FiltersConfig(shared_overlay="false")  # a non-empty string would have been true
    with pytest.raises(TypeError, match="must be int"):
        FiltersConfig(min_short_side=True)
    cfg = config.Config()
    for name, section in cfg.sections.items():  # every built-in section checks its settings; its defaults pass
        assert isinstance(section, Settings), name
    with pytest.raises(TypeError, match="detector must be str"):
        cfg.shots.detector = 3
    assert isinstance(ClipsConfig(max_s=8).max_s, int)  # never converted: checked only
    with pytest.raises(AttributeError, match="no setting 'min_focuss'"):
        f.min_focuss = 0.4  # a misspelled key set after construction (the constructor's TypeError says so before)
    # numpy's scalars pass and are kept as Python's, a list as a tuple, so that config.json saves and reloads them
    import numpy as np

    from stages.shots import ShotsConfig

    c = config.Config()
    c.sections["clips"] = ClipsConfig(crop_bars=np.bool_(True), max_s=np.float32(6.5))
    c.sections["shots"] = ShotsConfig(hybrid_gradual_lags=[np.int64(4), 8])
    assert type(c.clips.crop_bars) is bool and type(c.clips.max_s) is float and c.shots.hybrid_gradual_lags == (4, 8)
    assert config.apply(config.Config(), json.loads(json.dumps(c.to_dict()))).to_dict() == c.to_dict()
    # the CLI and the files still read text as the field's type, and a bad one is still a one-line ConfigError
    assert config.load(None, {"filters.min_focus": "0.4"}).filters.min_focus == 0.4
    with pytest.raises(config.ConfigError, match="shared_overlay"):
        config.load(None, {"filters.shared_overlay": "maybe"})
    toml = tmp_path / "c.toml"  # a file's true is a boolean, not 1.0 (float(True)): a threshold nobody meant
    toml.write_text("[filters]\nmin_focus = true\n")
    with pytest.raises(config.ConfigError, match="min_focus = True: cannot read True as float"):
        config.load(toml)


def test_dotted_flags():
    assert config.parse_dotted_flags(["--clips.max_s", "8", "--shots.detector=content"]) == {
        "clips.max_s": "8",
        "shots.detector": "content",
    }
    with pytest.raises(SystemExit):
        config.parse_dotted_flags(["--clips.max_s"])


def test_cli_config_prints_resolved_defaults():
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "config", "--clips.max_s", "3"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import yaml

    d = yaml.safe_load(out)
    assert d["clips"]["max_s"] == 3.0 and "detector" in d["shots"] and "address" in d["ray"]
    json.dumps(d)  # the resolved config is JSON-serialisable (saved as config.json)
    # each setting carries what its declaration's comment says (a comment on its line, else the lines above it)
    lines = out.splitlines()
    at_cut = next(line for line in lines if line.strip().startswith("at_cut:"))
    assert at_cut.startswith("  at_cut: true  # score each clip the run cuts in the cut task")
    assert (
        next(line for line in lines if line.strip().startswith("headroom_cpus:"))
        .split("  # ")[1]
        .startswith("CPUs kept free of actor pools")
    )
    assert d == yaml.safe_load("\n".join(line.split("  # ")[0] for line in lines))  # comments change no value


def test_cli_reports_a_bad_setting_in_one_line():
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "config", "--clips.nope", "3"], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert "unknown setting 'nope'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["run", "caption", "config"])
def test_help_of_every_command_that_takes_settings_names_the_overrides(command):
    """`clipforge run --help` (and refilter, caption, config) says settings are --section.key flags and names every
    section, so a newcomer finds them without the README."""
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", command, "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "--section.key VALUE" in text and all(f" {s}," in text or f" {s};" in text for s in config.SECTIONS)


def test_refilter_names_its_sections_and_refuses_settings_it_cannot_apply(tmp_path):
    """refilter re-applies filters and dedup to stored scores: its --help says so, and a --clips.* flag (a cut
    setting) is refused in one line with exit 2 before OUT is touched, instead of being a no-op recorded as a
    version."""
    cli = [sys.executable, "-m", "pipeline.cli", "refilter"]
    r = subprocess.run([*cli, "--help"], capture_output=True, text=True)
    text = " ".join(r.stdout.split())
    assert r.returncode == 0 and "--filters.KEY VALUE and --dedup.KEY VALUE" in text
    r = subprocess.run([*cli, str(tmp_path), "--clips.max_s", "3"], capture_output=True, text=True)
    assert r.returncode == 2 and "--clips.* settings do not apply to stored scores" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not any(tmp_path.iterdir())


def test_config_notes_never_change_a_long_or_quoted_value():
    """dump_yaml's notes go after a key's own line: a long value with spaces and ': ' (YAML would fold and quote it)
    loads back exactly."""
    import yaml

    value = "/a long/path with spaces/and: a colon/captioner/prompts/a long form video project, version 2, dense.txt"
    cfg = config.load(None, {"captioner.prompt_dense": value})
    assert yaml.safe_load(config.dump_yaml(cfg))["captioner"]["prompt_dense"] == value
