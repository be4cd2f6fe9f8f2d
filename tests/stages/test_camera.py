"""Camera-motion tags: the same definition in Python and in the clips view's SQL, right on real footage and on a
still picture moved by a known camera move."""

from __future__ import annotations

import duckdb
import pytest

from pipeline.footage import BIKES_CUTS
from pipeline.testdata import decode_frames, ken_burns, write_frames
from stages.camera import MOVE, camera_sentence, camera_tags, camera_tags_sql
from stages.cpu_scores import CpuScorer, CpuScoresConfig


def test_python_and_sql_tags_agree():
    values = [None, float("nan"), -0.2, -MOVE, -0.0149, 0.0, 0.0149, MOVE, 0.2]
    rows = [{"camera_pan": p, "camera_tilt": t, "camera_zoom": z} for p in values for t in values[2:] for z in values]
    con = duckdb.connect()
    con.execute("CREATE TABLE r (i INT, camera_pan DOUBLE, camera_tilt DOUBLE, camera_zoom DOUBLE)")
    con.executemany("INSERT INTO r VALUES (?, ?, ?, ?)", [(i, *r.values()) for i, r in enumerate(rows)])
    got = [t for _, t in con.execute(f"SELECT i, {camera_tags_sql()} FROM r ORDER BY i").fetchall()]
    assert got == [camera_tags(r) for r in rows]
    assert camera_tags({"camera_pan": -0.2, "camera_tilt": 0.0, "camera_zoom": 0.02}) == ["pan left", "zoom in"]
    assert camera_tags({"camera_pan": None, "camera_tilt": 0.0, "camera_zoom": 0.0}) is None
    assert camera_sentence(["pan left", "tilt up", "zoom in"]) == "The camera pans left, tilts up and zooms in."
    assert camera_sentence(["static"]) == "The camera is static." and camera_sentence(None) is None


@pytest.mark.parametrize(
    ("move", "tags"),
    [({"pan": -0.03}, ["pan left"]), ({"pan": 0.03}, ["pan right"]), ({"zoom": -0.04}, ["zoom out"])],
)
def test_a_known_camera_move_over_a_still_is_tagged(bikes, tmp_path, move, tags):
    still = decode_frames(bikes, 100, 101)[0]
    clip = write_frames(ken_burns(still, 50, 25, **move), tmp_path / "moved.mp4", fps=25)
    assert camera_tags(CpuScorer(CpuScoresConfig()).score_clip(clip)) == tags


def test_real_shots_locked_off_and_panning(bikes, tmp_path):
    scorer = CpuScorer(CpuScoresConfig())
    locked = write_frames(decode_frames(bikes, 0, BIKES_CUTS[0]), tmp_path / "locked.mp4", fps=25)
    assert camera_tags(scorer.score_clip(locked)) == ["static"]  # riders move; the camera does not
    panning = write_frames(decode_frames(bikes, BIKES_CUTS[4], BIKES_CUTS[4] + 50), tmp_path / "pan.mp4", fps=25)
    assert camera_tags(scorer.score_clip(panning)) == ["pan left"]  # the camera follows a rider leftwards
