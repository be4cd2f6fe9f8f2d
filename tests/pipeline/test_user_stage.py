"""A user's own stage joins a run through the config alone: the README's example, run exactly as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from pipeline import store
from pipeline.testdata import write_frames


def _grey_copy(src: Path, dst: Path, start: int = 76, end: int = 137) -> None:
    """bikes.mp4's shot [76, 137) without colour (same motion and detail, chroma removed), at 24 fps: 2.5 s."""
    out = []
    with av.open(str(src)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if start <= i < end:
                luma = f.to_ndarray(format="gray")
                out.append(np.repeat(luma[..., None], 3, axis=2))
    write_frames(np.stack(out), dst, fps=24)


def test_readme_user_stage_runs_as_written(tmp_path, bikes, monkeypatch, readme_block):
    section = "## Your own stage"
    (tmp_path / "colourfulness.py").write_text(readme_block("`colourfulness.py`", "python", section))
    (tmp_path / "my.toml").write_text(readme_block("`my.toml`", "toml", section))
    commands = [
        line.split("#")[0].strip() for line in readme_block("`my.toml`", "bash", section).splitlines() if line.strip()
    ]
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "bikes.mp4").symlink_to(bikes)
    _grey_copy(bikes, videos / "grey.mp4")

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)  # the commands set their own, as a user would

    said: list[str] = []  # each command's stdout and stderr

    def sh(cmd: str) -> str:
        res = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        said.append(res.stdout + res.stderr)
        return res.stdout

    run, query, refilter, report = commands
    assert run.startswith("PYTHONPATH=. clipforge run") and "--config my.toml" in run
    sh(run + " --ray.progress false --ray.num_cpus 2")  # progress bars and CPUs: this machine's, not the example's
    assert "Progress bars disabled" not in said[-1]  # Ray Data's hint to turn them on in Python: our setting is ours
    out = tmp_path / "out"

    # its columns are in the clips view, next to the built-in scores; its rule decided drop reasons
    shown = sh(query)
    assert "colourfulness" in shown
    con = store.open(out)
    rows = con.execute(
        "SELECT v.path, c.colourfulness, c.error_colourfulness, c.drop_reason, c.sharpness "
        "FROM clips c JOIN videos v USING (video_id) WHERE c.clip_path IS NOT NULL"
    ).fetchall()
    grey = [r for r in rows if r[0].endswith("grey.mp4")]
    colour = [r for r in rows if r[0].endswith("bikes.mp4")]
    assert grey and colour
    assert all(r[1] is not None and r[2] is None for r in rows)  # every cut clip scored, no errors
    assert all(r[1] < 1.0 for r in grey), grey  # no chroma: colourfulness ~0
    assert all(r[3] == "colour_dull" for r in grey), grey
    for path, value, _, reason, _ in colour:  # real footage: some shots are dull (measured 9.4), most are not
        assert (reason is not None) if value < 15.0 else (reason != "colour_dull"), (path, value, reason)
    kept = [r[1] for r in colour if r[3] is None]
    assert kept, colour
    # the graph ran it before the per-clip filters: the grey clip was dropped before captioning
    caps = con.execute("SELECT count(*) FROM clips WHERE drop_reason = 'colour_dull' AND caption_status IS NOT NULL")
    assert caps.fetchone()[0] == 0

    # refilter: its rule with a new threshold, from the stored scores (no decoding): every kept clip now falls
    threshold = max(kept) + 0.01
    sh(refilter.replace("30", f"{threshold:.3f}"))
    con = store.open(out)
    assert con.execute("SELECT count(*) FROM kept").fetchone()[0] == 0
    n_dull = con.execute("SELECT count(*) FROM clips WHERE drop_reason = 'colour_dull'").fetchone()[0]
    assert n_dull == len(grey) + sum(1 for r in colour if r[3] in (None, "colour_dull"))
    saved = json.loads((out / "config.json").read_text())
    assert saved["stages"] == ["colourfulness:STAGE"]

    # the report draws its histogram with the configured threshold
    sh(report)
    html = (out / "report.html").read_text()
    assert "colourfulness" in html and "min_colourfulness" in html

    # a rerun owes nothing: every stored clip has its colourfulness row; without that row, a clip is owed again
    from pipeline import config
    from pipeline.stream import plan
    from stages.ingest import expand_inputs

    monkeypatch.chdir(tmp_path)  # the saved inputs are relative, as the README's command gave them
    sys.path.insert(0, str(tmp_path))
    try:
        cfg = config.load(out / "config.json")
        inputs = expand_inputs(cfg.inputs, cfg.ingest)
        assert plan(out, cfg, inputs, {}, clip_stage=False).clips_file is None
        assert store.delete_where(out, "colourfulness", "TRUE") == len(rows)  # the user stage's rows gone
        owed = plan(out, cfg, inputs, {}, clip_stage=False)
        assert owed.clips_todo == len(rows) and owed.videos.num_rows == 0
    finally:
        sys.path.remove(str(tmp_path))


BROKEN = """
from dataclasses import dataclass

import pyarrow as pa

from stages.catalogue import Rule, Stage

SCHEMA = pa.schema([("clip_id", pa.string()), ("x", pa.float32()), ("error_boom", pa.string())])


@dataclass
class Cfg:
    max_x: float | None = 1.0
    num_cpus: float = 1.0


class Boom:
    def __init__(self, cfg, root):
        pass

    def __call__(self, batch):
        raise RuntimeError("boom")


STAGE = Stage(name="boom", stage="broken:Boom", config="broken:Cfg", schema="broken:SCHEMA",
              rules=(Rule("error_boom", "error_boom", "notnull"), Rule("x_big", "x", ">", "boom.max_x")))
TYPO = Stage(name="typo", stage="broken:Boom", config="broken:Cfg", schema="broken:SCHEMA",
             rules=(Rule("x_big", "x", ">", "typo.max_y"),))
TYPO_ALSO = Stage(name="typo2", stage="broken:Boom", config="broken:Cfg", schema="broken:SCHEMA",
                  rules=(Rule("x_big", "x", ">", "typo2.max_x", also=("x", "<", "typo2.min_z")),))
NO_COLUMN = Stage(name="nocol", stage="broken:Boom", config="broken:Cfg", schema="broken:SCHEMA",
                  rules=(Rule("x_big", "x", ">", "nocol.max_x", also=("y", "<", "nocol.max_x")),))
"""


def test_user_stage_mistakes_are_one_line_errors_or_data(tmp_path, monkeypatch):
    """A rule naming a missing setting fails the config before any run; a stage that raises has its exception
    recorded in its error column (and its rule drops the clips), not a crashed run."""
    import pyarrow as pa
    import pytest

    from pipeline import config, stream

    (tmp_path / "broken.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(config.ConfigError, match="typo.max_y"):
        config.load(None, {"stages": ["broken:TYPO"]})
    with pytest.raises(config.ConfigError, match="typo2.min_z"):  # a rule's second condition is checked alike
        config.load(None, {"stages": ["broken:TYPO_ALSO"]})
    with pytest.raises(config.ConfigError, match="'y', which its schema lacks"):
        config.load(None, {"stages": ["broken:NO_COLUMN"]})
    with pytest.raises(config.ConfigError, match="PYTHONPATH"):
        config.load(None, {"stages": ["not_a_module_here:STAGE"]})

    cfg = config.load(None, {"stages": ["broken:STAGE"], "boom.max_x": "2"})
    assert cfg.sections["boom"].max_x == 2.0
    stream.use_stages(cfg.stages)
    from stages.catalogue import load

    st = load("broken:STAGE")
    actor = stream.ClipStage(st.resolve("stage"), "boom", 1.0, st.reads, extra=cfg.stages, cfg=None, root=None)
    clips = [{"clip_id": f"c{i}", "clip_path": f"clips/c{i}.mp4", "num_frames": 10, "fps": 24.0} for i in range(3)]
    batch = actor(stream.from_rows([{"clips": c} for c in clips]))
    rows = batch.column("boom").to_pylist()
    assert [r["clip_id"] for r in rows] == ["c0", "c1", "c2"]
    assert all(r["x"] is None and r["error_boom"].startswith("error_boom:RuntimeError: boom") for r in rows)
    filtered = stream.filter_rows(batch, cfg, cfg.stages)
    assert filtered.column("drop_reason").to_pylist() == ["error_boom"] * 3
    assert isinstance(batch, pa.Table)
