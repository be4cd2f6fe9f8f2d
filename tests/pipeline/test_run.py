"""The whole run on real Ray, real videos (good and broken), real Parquet and real DuckDB."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline import config, store
from pipeline.run import run
from pipeline.testdata import expected_pipeline_status, make_mixed_corpus, make_video


def _cfg(inputs, out, **overrides):
    # no CLIP or caption stage: no test here looks at them (without weights both are skipped, after a model check
    # that costs every run seconds)
    flags = {"clips.min_s": "0.5", "clips.max_s": "4", "clip.enabled": "false", "captioner.model": "none", **overrides}
    cfg = config.load(None, flags)
    cfg.inputs = [str(i) for i in inputs]
    cfg.output = str(out)
    return cfg


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, ray_local):
    root = tmp_path_factory.mktemp("mixed")
    expected = make_mixed_corpus(root / "corpus")
    out = root / "out"
    summary = run(_cfg([root / "corpus"], out))
    return root, expected, out, summary


def test_every_input_file_is_accounted_for(mixed_run):
    root, expected, out, _ = mixed_run
    con = store.open(out)
    rows = con.execute("SELECT path, status, error_type, error, duplicate_of, video_id FROM videos").fetchall()
    by_path = {os.path.relpath(r[0], root / "corpus"): r for r in rows}
    assert set(by_path) == set(expected), "every file has exactly one row, none missing, none extra"
    assert len(rows) == len(expected)
    want = expected_pipeline_status(expected)
    assert {p: r[1] for p, r in by_path.items()} == want
    for p, r in by_path.items():
        if r[1] == "error":
            assert r[2] and r[3], f"{p}: an error row says why"
        if r[1] == "duplicate":
            original = [o for o in by_path.values() if o[5] == r[4]]
            assert original and original[0][1] == "ok"


def test_every_good_video_yields_playable_clips(mixed_run):
    root, expected, out, _ = mixed_run
    con = store.open(out)
    ok = con.execute("SELECT video_id, path, num_frames FROM videos WHERE status = 'ok'").fetchall()
    for video_id, path, num_frames in ok:
        # cut clips (the quality filters may reject synthetic test patterns; that is issue 3's business)
        kept = con.execute(
            "SELECT clip_path, num_frames FROM clips WHERE video_id = ? AND clip_path IS NOT NULL", [video_id]
        ).fetchall()
        if num_frames < 12:  # the 1-frame video: too short for any clip at min_s 0.5
            assert not kept, path
            continue
        assert kept, f"{path} yields no clip"
        for clip_path, n in kept:
            with av.open(str(out / clip_path)) as c:
                assert c.streams.video[0].codec_context.name == "h264"
                assert sum(1 for _ in c.decode(video=0)) == n
    # error and duplicate files yield no clips
    bad = con.execute(
        "SELECT count(*) FROM clips JOIN videos USING (video_id) WHERE videos.status <> 'ok'"
    ).fetchone()[0]
    assert bad == 0


def test_shots_are_recorded_for_each_ok_video(mixed_run):
    _, _, out, _ = mixed_run
    con = store.open(out)
    n_ok = con.execute("SELECT count(*) FROM videos WHERE status = 'ok'").fetchone()[0]
    assert con.execute("SELECT count(DISTINCT video_id) FROM shots").fetchone()[0] == n_ok
    bikes = con.execute(
        "SELECT s.scenes FROM shots s JOIN videos v USING (video_id) WHERE v.path LIKE '%bikes.mp4'"
    ).fetchone()[0]
    assert [s["start_frame"] for s in bikes][1:] == [30, 76, 137, 187, 242]


def test_rerun_is_idempotent(mixed_run):
    root, _, out, _ = mixed_run
    before = store.read_table(out, "clips").sort_by("clip_id")
    n_shards = len(store.shard_files(out, "clips")) + len(store.shard_files(out, "videos"))
    run(_cfg([root / "corpus"], out))
    after = store.read_table(out, "clips").sort_by("clip_id")
    assert after.column("clip_id").to_pylist() == before.column("clip_id").to_pylist()
    assert len(store.shard_files(out, "clips")) + len(store.shard_files(out, "videos")) == n_shards


def test_query_cli_formats(mixed_run):
    _, _, out, _ = mixed_run
    sql = "SELECT count(*) AS n, sum(duration_s) AS s FROM clips WHERE drop_reason IS NULL"
    cmd = [sys.executable, "-m", "pipeline.cli", "query", str(out), sql]
    as_json = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True).stdout)
    n = store.query(out, sql).column("n")[0].as_py()
    assert as_json[0]["n"] == n > 0
    as_csv = subprocess.run([*cmd, "--csv"], capture_output=True, text=True, check=True).stdout
    assert list(csv.DictReader(as_csv.splitlines()))[0]["n"] == str(n)
    # a list column (a newcomer's `SELECT * ... --csv` failed on it): each cell its JSON text
    nested = "SELECT clip_id, phash FROM clips WHERE phash IS NOT NULL ORDER BY clip_id LIMIT 2"
    want = store.query(out, nested).to_pylist()
    got = subprocess.run([*cmd[:-1], nested, "--csv"], capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(got.splitlines()))
    assert [(r["clip_id"], json.loads(r["phash"])) for r in rows] == [(w["clip_id"], w["phash"]) for w in want]
    assert len(rows) == 2
    table = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert str(n) in table
    bad = subprocess.run([*cmd[:-1], "SELECT * FROM nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "nope" in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stderr.startswith("clipforge query: CatalogException")


def test_list_input_with_given_spans_and_captions(tmp_path, bikes, ray_local):
    listing = tmp_path / "list.csv"
    with listing.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "start_s", "end_s", "caption"])
        w.writerow([str(bikes), 1.2, 3.04, "cars queue on a busy road"])
        w.writerow([str(bikes), 5.48, 7.48, "a cyclist rides past parked cars"])
    out = tmp_path / "out"
    run(_cfg([listing], out))
    con = store.open(out)
    rows = con.execute(
        "SELECT start_frame, end_frame, original_caption FROM clips WHERE clip_path IS NOT NULL ORDER BY start_frame"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(30, 76), (137, 187)]
    assert [r[2] for r in rows] == ["cars queue on a busy road", "a cyclist rides past parked cars"]
    assert con.execute("SELECT detector FROM shots").fetchone()[0] == "given"


def _clip_ids(out: Path) -> list[str]:
    return sorted(store.read_table(out, "clips", columns=["clip_id"]).column("clip_id").to_pylist())


# the kill -9 test's settings: no CLIP or caption stage (the test looks at neither; with no weights here both are
# skipped after a model check that costs each run seconds)
KILL_RUN = {
    "store.stream_rows": "4",
    "clips.max_s": "3",
    "ray.progress": "false",
    "clip.enabled": "false",
    "captioner.model": "none",
}


def _cli_run(inputs: list[Path], out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--output", str(out), "--ray.num_cpus", "2"]
    for key, value in KILL_RUN.items():
        cmd += [f"--{key}", value]
    for i in inputs:
        cmd += ["--input", str(i)]
    return cmd


def test_kill_dash_9_then_resume_loses_nothing_and_duplicates_nothing(tmp_path, bikes, transnet_test_head, ray_local):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # real footage: bikes and the head of the transnet test video (~25 clips from one video, so the kill lands
    # inside a video whose clips are part stored), plus noise
    for src in (bikes, transnet_test_head):
        (corpus / src.name).symlink_to(src)
    # more videos than CPUs: each is its own task and commits on its own, so a kill lands mid-run
    for i in range(6):
        make_video(corpus / f"synthetic_{i}.mp4", frames=120, size=(160, 96), pattern="noise", seed=i)
    # the reference: one uninterrupted run of the same settings, in this process on the session's Ray (the CLI
    # is `run(cfg)` and a print; the killed and the resumed runs below are the CLI, each with its own Ray)
    ref = tmp_path / "ref"
    cfg = config.load(None, KILL_RUN)
    cfg.inputs, cfg.output = [str(corpus)], str(ref)
    run(cfg)
    want = _clip_ids(ref)
    assert len(want) > 20

    out = tmp_path / "out"
    proc = subprocess.Popen(
        _cli_run([corpus], out), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and not store.shard_files(out, "clips"):
        time.sleep(0.05)
    assert store.shard_files(out, "clips"), "the run never committed a clip shard"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()
    partial = _clip_ids(out)
    assert len(partial) < len(want), "killed too late to test resume"

    # a clip being written when the kill came leaves its temp file (whether this kill did is timing): plant one
    planted = out / "clips" / "ab" / f".ab{'0' * 22}.4242.deadbeef.tmp.mp4"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_bytes(b"\x00" * 48)
    rerun = subprocess.run(_cli_run([corpus], out), check=True, capture_output=True, text=True)
    assert not list(out.glob("clips/*/.*.tmp.mp4")), "a killed run's temp files outlived the rerun"
    assert "temporary clip file(s) a killed run left" in rerun.stdout + rerun.stderr
    got = store.read_table(out, "clips", columns=["clip_id"]).column("clip_id").to_pylist()
    assert len(got) == len(set(got)), "a clip was written twice"
    assert sorted(got) == want
    con = store.open(out)
    assert con.execute("SELECT count(*) FROM videos").fetchone()[0] == 8
    assert con.execute("SELECT count(*), count(DISTINCT video_id) FROM shots").fetchone() == (8, 8)
    # every kept clip file exists
    for (p,) in con.execute("SELECT clip_path FROM kept").fetchall():
        assert (out / p).is_file()


def test_work_still_to_do_is_an_anti_join_against_the_store(mixed_run, tmp_path):
    """Resume plans by anti-joins against the stored tables in DuckDB: a finished run owes nothing; a copy of it
    missing some scores rows and a shots row owes exactly those (the clips file is written by DuckDB, typed; no
    Python set of every id)."""
    import shutil

    import pyarrow.parquet as pq

    from pipeline.stream import STREAM, plan, stored_clip_rows
    from stages.ingest import expand_inputs

    root, _, out, _ = mixed_run
    cfg = _cfg([root / "corpus"], out)
    inputs = expand_inputs(cfg.inputs, cfg.ingest)
    done = plan(out, cfg, inputs, {}, clip_stage=False)
    assert done.videos.num_rows == 0 and done.clips_file is None  # nothing left to do

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    scores = store.read_table(copy, "scores", columns=["clip_id"]).column("clip_id").to_pylist()
    lost = scores[: max(1, len(scores) // 3)]
    listing = ", ".join(f"'{c}'" for c in lost)
    assert store.delete_where(copy, "scores", f"clip_id IN ({listing})") == len(lost)
    shots = store.read_table(copy, "shots")
    victim = shots.filter(pc.greater(shots["n_clips"], 0)).slice(0, 1)
    vid = victim["video_id"][0].as_py()
    assert store.delete_where(copy, "shots", f"video_id = '{vid}'") == 1
    todo = plan(copy, cfg, inputs, {}, clip_stage=False)
    assert todo.new_files == 0 and todo.unfinished == 1
    row = todo.videos.to_pylist()[0]
    assert row["videos"]["video_id"] == vid and row["shots"] is None and row["stored"] == ["videos"]
    stored = store.read_table(copy, "clips").filter(pc.equal(store.read_table(copy, "clips")["video_id"], vid))
    assert sorted(row["skip_ids"]) == sorted(stored["clip_id"].to_pylist())  # cut again: only what is missing
    owed = stored_clip_rows(pq.read_table(todo.clips_file))
    assert owed.schema == STREAM
    assert sorted(owed.column("clips").combine_chunks().field("clip_id").to_pylist()) == sorted(lost)


def test_rows_whose_overlays_were_looked_for_in_coded_chroma_are_owed_a_rescore(mixed_run, tmp_path):
    """Schema 20 weighs the overlay test's colour differences in RGB levels; a row scored by schemas 11-19 holds
    overlay_planes 'YCrCb' (``cpu_scores.SUPERSEDED_VALUES``): `clipforge refilter` says how many, the run owes those
    clips a new scores row (no video probed, detected or cut again), and rows scored with the colour look off
    ('luma') are not owed one."""
    import shutil

    import pyarrow.parquet as pq
    from deltalake import write_deltalake

    from pipeline.stream import plan, stored_clip_rows
    from stages.ingest import expand_inputs

    root, _, out, _ = mixed_run
    copy = tmp_path / "coded"
    shutil.copytree(out, copy)
    scores = store.read_table(copy, "scores")
    scored = scores.filter(pc.is_valid(scores["overlay_planes"]))["clip_id"].to_pylist()
    assert len(scored) >= 2 and set(scores["overlay_planes"].drop_null().to_pylist()) == {"Y,R-Y,B-Y"}
    luma = scored[0]  # one row as the overlay_colour-off scorer writes it
    planes = ["luma" if c == luma else ("YCrCb" if p else p) for c, p in zip(
        scores["clip_id"].to_pylist(), scores["overlay_planes"].to_pylist(), strict=True)]  # fmt: skip
    i = scores.schema.get_field_index("overlay_planes")
    old = scores.set_column(i, "overlay_planes", pa.array(planes, pa.string()))
    write_deltalake(str(store.table_dir(copy, "scores")), old, mode="overwrite")
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "refilter", str(copy)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    n = len(scored) - 1
    assert f"{n} clip(s) were scored before schema 20 ({n} with overlay_planes 'YCrCb' (schema 20))" in r.stderr
    cfg = _cfg([root / "corpus"], copy)
    todo = plan(copy, cfg, expand_inputs(cfg.inputs, cfg.ingest), {}, clip_stage=False)
    assert todo.videos.num_rows == 0
    owed = stored_clip_rows(pq.read_table(todo.clips_file))
    assert sorted(owed.column("clips").combine_chunks().field("clip_id").to_pylist()) == sorted(scored[1:])


def test_an_out_scored_before_a_new_score_is_rescored_once_and_not_cut_again(mixed_run, tmp_path):
    """An OUT whose scores were written before schema 8 (no ``isotropy``, ``streak``, ``noise_floor`` or
    ``overlay_planes`` or ``overlay_layers`` column: its focus and detail on the scale before schema 10's noise floor,
    its overlays looked for on luma alone) resumes without error: `clipforge refilter` first
    says how many clips' scores predate the running schema, the run scores those clips again (the motion-blur rule
    would skip them silently otherwise, the blur rules judge them on the wrong scale), nothing is cut again, and a
    rerun after that owes nothing."""
    import shutil

    import pyarrow.parquet as pq

    from pipeline.stream import plan, stored_clip_rows
    from stages.ingest import expand_inputs

    root, _, out, _ = mixed_run
    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    from deltalake import write_deltalake

    scores = store.read_table(copy, "scores")
    added = ["isotropy", "streak", "cepstrum_dip", "noise_floor", "overlay_planes", "overlay_layers", "residual_flow"]
    added += ["luma_highlight", "pair_change"]
    old = scores.drop_columns(added)  # schema 7
    old = old.replace_schema_metadata(None)
    write_deltalake(str(store.table_dir(copy, "scores")), old, mode="overwrite", schema_mode="overwrite")
    assert "isotropy" not in store._columns(copy, "scores")
    scored = scores.filter(pc.is_valid(scores["focus"]))["clip_id"].to_pylist()
    assert scored
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", "refilter", str(copy)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    moved = scores.filter(pc.is_valid(scores["still_residual"]))["clip_id"].to_pylist()  # a camera that moves
    assert moved
    paired = scores.filter(pc.is_valid(scores["frozen_frac"]))["clip_id"].to_pylist()  # clips with a flow pair
    assert paired
    said = f"{len(scored)} clip(s) were scored before schema 19 ({len(scored)} without `overlay_layers` (schema 12), "
    said += f"{len(moved)} without `residual_flow` (schema 15), {len(scored)} without `luma_highlight` (schema 18), "
    said += f"{len(paired)} without `pair_change` (schema 19))"
    assert said in r.stderr
    cfg = _cfg([root / "corpus"], copy)
    inputs = expand_inputs(cfg.inputs, cfg.ingest)
    todo = plan(copy, cfg, inputs, {}, clip_stage=False)
    assert todo.videos.num_rows == 0  # no video is probed, detected or cut again
    owed = stored_clip_rows(pq.read_table(todo.clips_file))
    assert sorted(owed.column("clips").combine_chunks().field("clip_id").to_pylist()) == sorted(scored)
    clips_before = store.shard_files(copy, "clips")
    summary = run(cfg)
    resumed = [n for n in summary.notes if n.startswith("resumed: ")]  # the run says what it took up
    assert resumed == [
        f"resumed: {len(inputs)} of {len(inputs)} input file(s) were stored by an earlier run; 0 unfinished "
        f"video(s) cut for the clips they lack, {len(scored)} stored clip(s) given the stage rows they lacked"
    ]
    con = store.open(copy)
    sql = "SELECT clip_id, isotropy, streak, noise_floor, overlay_planes, overlay_layers, luma_highlight FROM clips"
    assert con.execute("SELECT count(*) FROM clips WHERE pair_change IS NOT NULL").fetchone() == (len(paired),)
    sql += " WHERE focus IS NOT NULL"
    got = {c: v for c, *v in con.execute(sql).fetchall()}
    assert sorted(got) == sorted(scored) and all(None not in v for v in got.values())
    sql = "SELECT count(*) FILTER (residual_flow IS NOT NULL), count(*) FILTER (still_residual IS NOT NULL) FROM clips"
    assert con.execute(sql).fetchone() == (len(moved), len(moved))
    assert store.shard_files(copy, "clips") == clips_before
    again = plan(copy, cfg, inputs, {}, clip_stage=False)
    assert again.videos.num_rows == 0 and again.clips_file is None


def test_a_clip_stored_without_its_scores_gets_the_scores_of_an_uninterrupted_run(mixed_run, tmp_path):
    """A kill between a write task's clips commit and its scores commit leaves cut clips without scores. The rerun
    scores them from the frames their encoder received, re-made from the source (nothing cut or written again):
    every score equals the uninterrupted run's. A source that changed since (its content hash), or a clip cut with
    other clip settings than this run's, is not re-made: those clips are scored from their files."""
    import shutil

    from deltalake import write_deltalake

    root, _, out, _ = mixed_run
    copy = tmp_path / "killed"
    shutil.copytree(out, copy)
    scores = store.read_table(copy, "scores")
    clips = store.read_table(copy, "clips", columns=["clip_id", "video_id", "clip_path"])
    video_of = dict(zip(clips["clip_id"].to_pylist(), clips["video_id"].to_pylist(), strict=True))
    scored = scores.filter(pc.is_valid(scores["focus"]))
    assert set(scored["decoder"].to_pylist()) == {"encoder input"}
    per_video: dict[str, int] = {}
    for c in scored["clip_id"].to_pylist():
        per_video[video_of[c]] = per_video.get(video_of[c], 0) + 1
    vids = sorted(per_video, key=lambda v: (-per_video[v], v))  # the video with the most scored clips first
    assert len(vids) >= 2 and per_video[vids[0]] >= 2
    intact, changed = vids[0], vids[1]
    lost = [c for c in scored["clip_id"].to_pylist() if video_of[c] in (intact, changed)]
    kept = scores.filter(pc.invert(pc.is_in(scores["clip_id"], pa.array(lost))))
    write_deltalake(str(store.table_dir(copy, "scores")), kept, mode="overwrite")
    videos = store.read_table(copy, "videos")
    pairs = zip(videos["video_id"].to_pylist(), videos["content_hash"].to_pylist(), strict=True)
    hashes = ["0" * 32 if v == changed else h for v, h in pairs]
    videos = videos.set_column(videos.schema.get_field_index("content_hash"), "content_hash", pa.array(hashes))
    write_deltalake(str(store.table_dir(copy, "videos")), videos, mode="overwrite")
    # one clip of the intact video was cut with other settings (a run with another clips.short_side killed there)
    other = next(c for c in lost if video_of[c] == intact)
    table = store.read_table(copy, "clips")
    settings = [
        json.dumps({**json.loads(v), "short_side": 360}) if c == other else v
        for c, v in zip(table["clip_id"].to_pylist(), table["settings"].to_pylist(), strict=True)
    ]
    table = table.set_column(table.schema.get_field_index("settings"), "settings", pa.array(settings))
    write_deltalake(str(store.table_dir(copy, "clips")), table, mode="overwrite")
    clips_before = store.shard_files(copy, "clips")
    run(_cfg([root / "corpus"], copy))
    assert store.shard_files(copy, "clips") == clips_before  # nothing cut again
    after = {r["clip_id"]: r for r in store.read_table(copy, "scores").to_pylist()}
    before = {r["clip_id"]: r for r in scored.to_pylist()}
    skip = {"written_at", "scores_s"}
    assert sum(1 for c in lost if video_of[c] == intact) >= 2
    for c in lost:
        if video_of[c] == intact and c != other:
            assert {k: v for k, v in after[c].items() if k not in skip} == {
                k: v for k, v in before[c].items() if k not in skip
            }, c
        else:
            assert after[c]["decoder"].split()[0] in ("decord", "pyav") and after[c]["focus"] is not None


def test_transnetv2_runs_as_an_actor_stage_of_the_graph(tmp_path, bikes, ray_local):
    """The model detector runs in its own actor pool inside the graph: bikes.mp4's real cuts, real clips."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "bikes.mp4").symlink_to(bikes)
    out = tmp_path / "out"
    run(_cfg([corpus], out, **{"shots.detector": "transnetv2", "ray.progress": "false"}))
    con = store.open(out)
    detector, n_shots = con.execute("SELECT detector, n_shots FROM shots").fetchone()
    assert detector == "transnetv2" and n_shots >= 5
    starts = [r[0] for r in con.execute("SELECT start_frame FROM clips ORDER BY 1").fetchall()]
    assert {30, 76, 137, 187, 242} & set(starts)
    assert con.execute("SELECT count(*) FROM clips WHERE clip_path IS NOT NULL").fetchone()[0] > 0


def test_one_writer_at_a_time_per_out(mixed_run):
    """A second writing command on an OUT in use stops before touching it (exit 75, naming the holder); the lock is
    the kernel's, so it ends with its process (the kill -9 test above reruns through it)."""
    root, _expected, out, _summary = mixed_run
    holder = json.loads((out / ".lock").read_text())
    assert holder["command"] == "run" and holder["pid"] == os.getpid()  # the fixture's run took it
    before = _clip_ids(out)
    config_bytes = (out / "config.json").read_bytes()
    cli = [sys.executable, "-m", "pipeline.cli"]
    with store.writer_lock(out, "run"):  # as if a run were in progress
        refilter = subprocess.run([*cli, "refilter", str(out)], capture_output=True, text=True)
        run_cmd = [*cli, "run", "--input", str(root / "corpus"), "--output", str(out)]
        again = subprocess.run(run_cmd, capture_output=True, text=True)
    for r in (refilter, again):
        assert r.returncode == 75, r.stderr[-2000:]
        assert "is being written by another clipforge command (run, pid " in r.stderr  # the holder, readable
    assert (out / "config.json").read_bytes() == config_bytes  # the refused run wrote nothing
    ok = subprocess.run([*cli, "refilter", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads((out / ".lock").read_text())["command"] == "refilter"
    assert _clip_ids(out) == before
