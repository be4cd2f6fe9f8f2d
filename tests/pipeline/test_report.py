"""The run report on a real curated dataset: content checked against DuckDB, rendered in headless Chromium.

The dataset is a real ``pipeline.run.run`` over real footage (bikes, bigbuckbunny, carphone with their demo
captions) plus the mixed good/broken corpus. Scores and filters are the run's own; captions are
``skipped_no_model`` (no VLM weights here).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline import store
from pipeline.report import (
    add_arguments,
    collect,
    column_types,
    duration_bounds,
    main,
    poster_jpeg,
    score_columns,
    summary_text,
    thresholds,
    write_report,
)

# --------------------------------------------------------------------------------------------- the dataset


@pytest.fixture(scope="module")
def dataset(curated_dataset) -> Path:
    return curated_dataset


@pytest.fixture(scope="module")
def report(dataset) -> tuple[Path, str]:
    path = write_report(dataset)
    return path, path.read_text()


def _sql(out: Path, sql: str, params=None):
    con = store.open(out)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _section(page: str, anchor: str) -> str:
    start = page.index(f'id="{anchor}"')
    end = page.find("<h2 ", start + 1)
    return page[start : end if end > 0 else len(page)]


def _data_image(uri: str) -> Image.Image:
    header, data = uri.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


# ------------------------------------------------------------------------------------------------ content


def test_report_is_one_offline_file(report):
    path, page = report
    assert path.name == "report.html" and path.parent.joinpath("tables").is_dir()
    # no external URL anywhere: every src is a data URI, every href an in-page anchor
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    assert all(h.startswith("#") for h in re.findall(r'\bhref="([^"]*)"', page))
    assert "http://" not in page and "https://" not in page
    for uri in srcs:
        assert _data_image(uri).size[0] > 0


def test_funnel_counts_and_hours_match_the_tables(report, dataset):
    _, page = report
    funnel = _section(page, "funnel")
    files, files_ok = _sql(dataset, "SELECT count(*), count(*) FILTER (status = 'ok') FROM videos")[0]
    clips, clip_h = _sql(dataset, "SELECT count(*), sum(duration_s) / 3600 FROM clips")[0]
    kept, kept_h = _sql(dataset, "SELECT count(*), sum(duration_s) / 3600 FROM kept")[0]
    shots = _sql(dataset, "SELECT sum(n_shots) FROM shots")[0][0]
    assert 0 < kept < clips and shots >= files_ok
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"n\">([\d,]+)</td><td class=\"n\">([\d.,]*)</td>", funnel)
    got = {step: (int(n.replace(",", "")), float(h.replace(",", "") or "nan")) for step, n, h in rows}
    assert list(got) == ["input files", "readable videos", "shots", "clips", "kept"]
    assert got["input files"][0] == files and got["readable videos"][0] == files_ok
    assert got["shots"][0] == shots and got["clips"][0] == clips and got["kept"][0] == kept
    assert got["clips"][1] == pytest.approx(clip_h, abs=1e-3) and got["kept"][1] == pytest.approx(kept_h, abs=1e-3)
    assert 'alt="funnel"' in funnel


def test_drop_reasons_and_failed_files_are_listed(report, dataset):
    _, page = report
    drops = _section(page, "drops")
    for reason, n in _sql(dataset, "SELECT drop_reason, count(*) FROM clips WHERE drop_reason NOTNULL GROUP BY 1"):
        assert f'<td>{html.escape(reason)}</td><td class="n">{n:,}</td>' in drops
    failed = _section(page, "failed")
    errors = _sql(dataset, "SELECT path, error_type FROM videos WHERE status = 'error'")
    assert len(errors) >= 5, "the mixed corpus has broken files"
    assert f"Failed input files ({len(errors)})" in failed
    for path, etype in errors:
        assert f"<td>{html.escape(path)}</td><td>{html.escape(etype)}</td>" in failed


def test_every_score_column_has_a_histogram_with_its_thresholds(report, dataset):
    _, page = report
    cfg = json.loads((dataset / "config.json").read_text())
    cols = score_columns(column_types(store.open(dataset), "clips"))
    assert "sharpness" in cols and "focus" in cols
    scores = _section(page, "scores")
    for c in cols:
        assert f'alt="histogram of {c}"' in scores
        for setting, value in thresholds(cfg, c).values():
            assert f"{setting} = {value:g}" in scores
    assert thresholds(cfg, "focus")["min"] == ("min_focus", cfg["filters"]["min_focus"])
    assert thresholds(cfg, "sharpness") == {}  # min_sharpness is off (None): no line drawn
    # a threshold named by a suffix of the column still applies; unrelated settings do not
    assert thresholds({"filters": {"max_under_frac": 0.6}}, "luma_under_frac") == {"max": ("max_under_frac", 0.6)}
    assert thresholds({"filters": {"max_under_frac": 0.6}}, "sharpness") == {}
    d = collect(dataset)
    focus = d["scores"]["focus"]["series"]
    assert len(focus["kept"]) + len(focus["rejected"]) == _sql(dataset, "SELECT count(focus) FROM clips")[0][0]
    assert min(focus["kept"]) >= cfg["filters"]["min_focus"]  # every kept clip passed the threshold drawn
    blurry = _sql(dataset, "SELECT max(focus) FROM clips WHERE drop_reason = 'quality_blurry'")[0][0]
    assert blurry is None or blurry < cfg["filters"]["min_focus"]


def test_distributions_captions_and_wall_time(report, dataset):
    _, page = report
    dist = _section(page, "distributions")
    for alt in ("clip durations", "aspect ratios", "resolutions", "fps"):
        assert f'alt="{alt}"' in dist
    # durations are bounded by the filters' duration settings when present, else by the cut settings
    cfg = json.loads((dataset / "config.json").read_text())
    bounds = duration_bounds(cfg)
    assert bounds["min"] == ("min_duration_s", cfg["filters"]["min_duration_s"])  # the filter wins over clips.min_s
    assert bounds["max"] == ("clips.max_s", 4.0)
    for name, value in bounds.values():
        assert f"{name} = {value:g}" in dist
    caps = _section(page, "captions")
    # a length histogram for every caption column that has text (the VLM's are empty when its weights are missing)
    for col in ("original_caption", "caption_short", "caption_dense"):
        n = _sql(dataset, f"SELECT count(*) FROM clips WHERE trim({col}) <> ''")[0][0]
        assert (f'alt="{col} length"' in caps) == (n > 0), col
    assert 'alt="original_caption length"' in caps
    status = _sql(dataset, "SELECT caption_status, count(*) FROM clips WHERE caption_status NOTNULL GROUP BY 1")
    for s, n in status:
        assert f'<td>{s}</td><td class="n">{n:,}</td>' in caps
    runs = _section(page, "runs")
    record = json.loads(sorted((dataset / "runs").glob("*.json"))[-1].read_text())
    assert record["run_id"] in runs
    for phase, seconds in record["phases"].items():
        assert f'<td>{phase}</td><td class="n">{seconds:,.3f}</td>' in runs
    assert "files/s" in runs and "clips/s" in runs


def test_gallery_shows_real_poster_frames_per_group(report, dataset):
    _, page = report
    gallery = _section(page, "gallery")
    groups = re.findall(r"<h3>([^<]+)</h3>", gallery)
    reasons = [r[0] for r in _sql(dataset, "SELECT DISTINCT drop_reason FROM clips WHERE drop_reason NOTNULL")]
    assert groups[0] == "kept" and sorted(groups[1:]) == sorted(f"rejected: {html.escape(r)}" for r in reasons)
    posters = re.findall(r'class="poster" alt="poster ([0-9a-f]+)" src="([^"]+)"', gallery)
    assert len(posters) >= 6
    # the kept group's first poster is the middle frame of that clip, decoded again here
    clip_id, uri = posters[0]
    rel, start, end = _sql(dataset, "SELECT clip_path, start_s, end_s FROM clips WHERE clip_id = ?", [clip_id])[0]
    got = np.asarray(_data_image(uri).convert("RGB"), dtype=np.float32)
    with av.open(str(dataset / rel)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert got.std() > 5, "a real picture, not a flat placeholder"
    best = min(
        np.abs(
            cv2.resize(f, (got.shape[1], got.shape[0]), interpolation=cv2.INTER_AREA).astype(np.float32) - got
        ).mean()
        for f in frames
    )
    assert best < 12, "the poster is one of the clip's own frames"


def test_poster_jpeg_takes_the_frame_at_the_time_asked(bikes):
    # bikes.mp4 has a cut at frame 137 (25 fps): frames either side of it differ a lot
    before = np.asarray(Image.open(io.BytesIO(poster_jpeg(bikes, 5.0, max_side=160))), np.float32)
    after = np.asarray(Image.open(io.BytesIO(poster_jpeg(bikes, 5.8, max_side=160))), np.float32)
    again = np.asarray(Image.open(io.BytesIO(poster_jpeg(bikes, 5.0, max_side=160))), np.float32)
    assert before.shape == (68, 160, 3)
    assert np.abs(before - again).mean() < 1 and np.abs(before - after).mean() > 10


def test_summary_text_and_cli(dataset, tmp_path, capsys):
    text = summary_text(dataset)
    files = _sql(dataset, "SELECT count(*) FROM videos")[0][0]
    assert re.search(rf"input files\s+{files}\b", text)
    assert "dropped quality_blurry" in text or "quality_blurry" not in str(
        _sql(dataset, "SELECT drop_reason FROM clips")
    )
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    dest = tmp_path / "elsewhere" / "r.html"
    assert main(parser.parse_args([str(dataset), "--html", str(dest)])) == 0
    assert dest.read_text().startswith("<!doctype html>")
    assert str(dest) in capsys.readouterr().out


def test_report_of_an_empty_dataset(tmp_path):
    (tmp_path / "tables").mkdir()
    page = write_report(tmp_path).read_text()
    assert "No clips." in page and "No run record" in page and "Every input file was readable." in page


# ------------------------------------------------------------------------------------------------ browser


def test_report_renders_in_chromium(report, start_chromium, screenshot_path):
    path, _ = report
    driver = start_chromium(1280, 1500)
    try:
        driver.get(path.as_uri())
        state = driver.execute_script(
            "const imgs = [...document.images];"
            "return {funnel: document.querySelectorAll('table.funnel tr').length,"
            " hist: [...document.querySelectorAll('img.hist')].filter(i => i.complete && i.naturalWidth > 0).length,"
            " broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,"
            " resources: performance.getEntriesByType('resource').map(e => e.name)}"
        )
        assert state["funnel"] == 6, "header + five funnel steps"
        assert state["hist"] >= 1 and state["broken"] == 0
        assert state["resources"] == [], "the page loads nothing from anywhere"
        dest = screenshot_path("report.png")
        dest.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(dest))
        assert Image.open(dest).size[0] == 1280
    finally:
        driver.quit()
