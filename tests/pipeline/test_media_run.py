"""The team's media cases through the whole run (real Ray, Parquet, DuckDB) and the `clipforge scenes` CLI: the
tables show presentation times, display geometry and colour facts, and the length rules run on true times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import config, store
from pipeline.run import run


@pytest.fixture(scope="module")
def media_run(tmp_path_factory, media_cases, ray_local):
    root, expect, mod = media_cases
    out = tmp_path_factory.mktemp("media_run") / "out"
    cfg = config.load(None, {"clip.enabled": "false", "captioner.model": "none"})
    cfg.inputs, cfg.output = [str(root)], str(out)
    summary = run(cfg)
    return root, expect, mod, out, summary


def test_every_case_is_an_ok_video_with_its_true_facts(media_run):
    root, expect, _, out, _ = media_run
    con = store.open(out)
    rows = con.execute(
        "SELECT path, status, num_frames, duration_s, display_width, display_height, sar, color_range, video_stream, "
        "start_time_s, fps_variable FROM videos"
    ).fetchall()
    by_case = {str(Path(r[0]).relative_to(root)): r for r in rows}
    assert set(by_case) == set(expect)
    for case, e in expect.items():
        _, status, n, dur, dw, dh, sar, rng, vs, t0, vfr = by_case[case]
        step = 1 / 15 if e.get("fps_mean") else 1 / e["fps_nominal"]
        assert status == "ok" and n == e["frames"] and abs(dur - e["duration_s"]) <= step, case
        assert (dw, dh) == (e.get("display_width", e.get("width")), e.get("display_height", e.get("height"))), case
        assert sar == e.get("sar") and vs == e.get("video_stream_index", 0), case
        assert (rng == "pc") == (e.get("color_range") == "pc"), case
        assert t0 == pytest.approx(e.get("start_time_s", 0.0)) and vfr is bool(e.get("fps_mean")), case


def test_shots_and_clips_carry_presentation_times(media_run):
    root, expect, _, out, _ = media_run
    con = store.open(out)
    path = str(root / "vfr/vfr_phone.mp4")
    (scenes,) = con.execute(
        "SELECT s.scenes FROM shots s JOIN videos v USING (video_id) WHERE v.path = ?", [path]
    ).fetchone()
    assert [(sc["start_frame"], sc["end_frame"]) for sc in scenes] == [(0, 90), (90, 135)]
    assert [round(sc["start_s"], 3) for sc in scenes] == [0.0, 4.0] and abs(scenes[-1]["end_s"] - 7.0) < 1 / 15
    clips = con.execute(
        "SELECT c.start_frame, c.duration_s, c.drop_reason FROM clips c JOIN videos v USING (video_id) "
        "WHERE v.path = ? ORDER BY c.start_frame",
        [path],
    ).fetchall()
    assert [(a, round(d, 2)) for a, d, _ in clips] == [(0, 4.0), (90, 3.0)]
    # the min_s = 2 rule on true times: the 1.5 s shots are dropped, the 2.2 s shot kept
    short = con.execute(
        "SELECT round(c.duration_s, 2), c.drop_reason FROM clips c JOIN videos v USING (video_id) "
        "WHERE v.path = ? ORDER BY c.start_frame",
        [str(root / "vfr/vfr_short_shots.mp4")],
    ).fetchall()
    assert [r[0] for r in short] == expect["vfr/vfr_short_shots.mp4"]["true_shot_s"]
    assert [r[1] for r in short[:2]] == ["duration_short", "duration_short"] and short[3][1] != "duration_short"


def test_hard_cases_yield_their_clips_each_scored_from_its_encoder_input(media_run):
    root, expect, mod, out, _ = media_run
    con = store.open(out)
    for case in ("editlist/editlist_preroll.mp4", "cover_art/cover_art_first.mp4", "sar/anamorphic_sar43.mp4"):
        rows = con.execute(
            "SELECT c.start_frame, c.end_frame, c.clip_path, c.width, c.height, c.error FROM clips c JOIN videos v "
            "USING (video_id) WHERE v.path = ? ORDER BY c.start_frame",
            [str(root / case)],
        ).fetchall()
        e = expect[case]
        assert [(a, b) for a, b, *_ in rows] == list(zip([0, *e["cuts"]], [*e["cuts"], e["frames"]], strict=True))
        for _, _, rel, w, h, err in rows:
            assert rel and err is None and (w, h) == (e.get("display_width", 320), 180), (case, err)
    # every clip is scored in the cut task from the frames its encoder received: the cutter's guess of each clip's
    # frame count and fps held on every kind of file (variable frame rate, edit lists, 23.976, rotation, 10-bit ...)
    decoders = con.execute("SELECT v.path, decoder, error_scores FROM clips JOIN videos v USING (video_id) "
                           "WHERE clip_path IS NOT NULL").fetchall()  # fmt: skip
    assert decoders and [r for r in decoders if r[1] != "encoder input" or r[2] is not None] == []


def test_scenes_cli_prints_true_times_for_variable_frame_rate(media_cases):
    root, _, _ = media_cases
    res = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "scenes", str(root / "vfr/vfr_phone.mp4"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(res.stdout)
    assert [(s["start_frame"], s["start_s"]) for s in result["scenes"]] == [(0, 0.0), (90, 4.0)]
    assert result["frames"] == 135 and abs(result["duration_s"] - 7.0) < 1 / 15
