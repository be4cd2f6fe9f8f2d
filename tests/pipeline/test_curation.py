"""Scores, filters, dedup and captions through the whole run, on real footage with synthetic defects."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline import config, store
from pipeline.run import run


def _reencode(src: Path, dst: Path, *, scale: float = 1.0, gain: float = 1.0, frames: int | None = None) -> Path:
    """A copy of ``src`` resized and/or with its brightness scaled, re-encoded with H.264."""
    with av.open(str(src)) as inp:
        s = inp.streams.video[0]
        w, h = int(s.width * scale) // 2 * 2, int(s.height * scale) // 2 * 2
        with av.open(str(dst), "w") as out:
            o = out.add_stream("libx264", rate=s.average_rate)
            o.width, o.height, o.pix_fmt = w, h, "yuv420p"
            o.options = {"crf": "26", "preset": "veryfast"}
            for i, f in enumerate(inp.decode(video=0)):
                if frames is not None and i >= frames:
                    break
                rgb = f.to_ndarray(format="rgb24", width=w, height=h).astype(np.float32) * gain
                out.mux(o.encode(av.VideoFrame.from_ndarray(rgb.clip(0, 255).astype(np.uint8), format="rgb24")))
            out.mux(o.encode(None))
    return dst


BUNNY_LINEAGE = {
    "license": "CC-BY-3.0",
    "source_url": "https://peach.blender.org/",
    "creator": "Blender Foundation",
    "tags": ["animation", "open movie"],
}


@pytest.fixture(scope="module")
def curated(tmp_path_factory, bigbuckbunny, carphone, ray_local):
    root = tmp_path_factory.mktemp("curation")
    corpus = root / "corpus"
    corpus.mkdir()
    shutil.copyfile(bigbuckbunny, corpus / "bunny.mp4")
    shutil.copyfile(carphone, corpus / "carphone.mp4")
    _reencode(bigbuckbunny, corpus / "bunny_small_copy.mp4", scale=0.5)  # near duplicate of bunny.mp4
    _reencode(carphone, corpus / "carphone_dark.mp4", gain=0.2)  # darkened
    # lineage and rights from a JSON sidecar (Big Buck Bunny: (c) Blender Foundation, CC BY 3.0), a caption sidecar
    (corpus / "bunny.json").write_text(json.dumps(BUNNY_LINEAGE | {"title": "Big Buck Bunny"}))
    (corpus / "carphone.txt").write_text("a man talks on a car phone")
    out = root / "out"
    cfg = config.load(None, {"clips.min_s": "1.0", "filters.min_duration_s": "1.0", "clip.enabled": "false"})
    cfg.inputs, cfg.output = [str(corpus)], str(out)
    summary = run(cfg)
    return out, summary


def _by_file(out: Path) -> dict[str, tuple]:
    con = store.open(out)
    rows = con.execute(
        "SELECT v.path, c.clip_id, c.drop_reason, c.duplicate_of, c.luma_mean, c.motion "
        "FROM clips c JOIN videos v USING (video_id)"
    ).fetchall()
    return {Path(r[0]).name: r[1:] for r in rows}


def test_funnel_reasons_and_cross_video_duplicate(curated):
    out, summary = curated
    got = _by_file(out)
    assert got["bunny.mp4"][1] is None and got["carphone.mp4"][1] is None  # clean originals kept
    assert got["carphone_dark.mp4"][1] == "quality_dark"
    # the smaller re-encode duplicates the original across videos; the bigger copy is the one kept
    assert got["bunny_small_copy.mp4"][1] == "duplicate"
    assert got["bunny_small_copy.mp4"][2] == got["bunny.mp4"][0]
    # scores are written for every clip, kept or not
    assert all(v[3] is not None and v[4] is not None for v in got.values())
    funnel = store.query(out, "SELECT drop_reason, count(*) AS n FROM clips GROUP BY ALL").to_pylist()
    assert {r["drop_reason"]: r["n"] for r in funnel} == {None: 2, "quality_dark": 1, "duplicate": 1}
    assert any("CLIP" in n for n in summary.notes)


def test_refilter_retunes_without_decoding(curated, tmp_path):
    out, _ = curated
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "clips")  # no clip file left to decode: refilter must work from stored scores alone
    relaxed = tmp_path / "relaxed.toml"
    relaxed.write_text(
        "[filters]\nmin_luma_mean = 0.01\nmax_under_frac = 1.0\nmin_sharpness = 0.0\n"
        "min_motion = 0.0\nmax_frozen_frac = 1.0\n"
        # a darkened copy is another look of the footage (dedup.max_luma_shift, 0.08) unless any look is a copy
        "[dedup]\nmax_luma_shift = 1.0\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "refilter", str(copy), "--config", str(relaxed)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert f"clipforge diff {copy} 1  (this is v2)" in r.stdout  # where to see what changed
    changed = next(line for line in r.stdout.splitlines() if "settings changed:" in line)  # and what it changed
    assert "filters.min_luma_mean " in changed and "-> 0.01" in changed and "filters.min_motion " in changed, changed
    assert "filters.max_text_area" not in changed  # as stored: not listed
    assert "dedup.max_luma_shift 0.08 -> 1.0" in changed, changed
    got = _by_file(copy)
    # the dark copy passes the relaxed quality thresholds, so dedup now sees it: it is a copy of carphone.mp4
    assert got["carphone_dark.mp4"][1] == "duplicate"
    assert got["carphone_dark.mp4"][2] == got["carphone.mp4"][0] and got["carphone.mp4"][1] is None
    assert got["bunny_small_copy.mp4"][1] == "duplicate"  # dedup re-ran among the survivors
    assert json.loads((copy / "config.json").read_text())["filters"]["min_luma_mean"] == 0.01

    # the run and the refilter are versions 1 and 2; version 1 still reads as the run left it
    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    listed = json.loads(cli("versions", str(copy), "--json"))
    assert [(v["version"], v["command"]) for v in listed] == [(1, "run"), (2, "refilter")]
    assert "refilter" in listed[1]["argv"] and set(listed[1]["tables"]) >= {"videos", "clips", "scores", "filters"}
    sql = "SELECT drop_reason FROM clips JOIN videos USING (video_id) WHERE path LIKE '%carphone_dark.mp4'"
    assert json.loads(cli("query", str(copy), sql, "--json", "--version", "1")) == [{"drop_reason": "quality_dark"}]
    assert json.loads(cli("query", str(copy), sql, "--json")) == [{"drop_reason": "duplicate"}]
    diff = {r["reason"]: r for r in json.loads(cli("diff", str(copy), "1", "2", "--json"))}
    assert diff["quality_dark"] == {"reason": "quality_dark", "at_a": 1, "at_b": 0, "gained": 0, "lost": 1}
    assert diff["duplicate"] == {"reason": "duplicate", "at_a": 1, "at_b": 2, "gained": 1, "lost": 0}
    assert diff["(kept)"] == {"reason": "(kept)", "at_a": 2, "at_b": 2, "gained": 0, "lost": 0}
    assert "quality_dark" in cli("diff", str(copy), "1") and "-1" in cli("diff", str(copy), "1")
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "query", str(copy), "SELECT 1", "--version", "9"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no version 9; its versions: 1, 2" in r.stderr


def test_dedup_can_be_turned_off_and_on_again_by_refilter(curated, tmp_path):
    """dedup.enabled = false keeps every copy and says so; the signatures stay, so turning it on needs no decoding."""
    out, _ = curated
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "clips")

    def refilter(*flags):
        r = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "refilter", str(copy), *flags], capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        return r

    r = refilter("--dedup.enabled", "false")
    assert "dedup disabled (dedup.enabled = false)" in r.stderr
    got = _by_file(copy)
    assert got["bunny_small_copy.mp4"][1] is None and got["bunny_small_copy.mp4"][2] is None  # both copies kept
    assert json.loads((copy / "config.json").read_text())["dedup"]["enabled"] is False
    from pipeline import card

    assert "Dedup: disabled" in card.markdown(card.collect(copy))
    r = refilter("--dedup.enabled", "true")
    assert "dedup disabled" not in r.stderr
    assert _by_file(copy)["bunny_small_copy.mp4"][1] == "duplicate"


def test_a_resumed_run_keeps_the_thresholds_a_refilter_saved_unless_told_otherwise(curated, tmp_path, capsys):
    """The README: the thresholds a refilter applies are saved in OUT/config.json and a resumed run keeps them. A
    `clipforge run` into the same OUT without the flag (nothing new to cut) used to judge with the defaults again."""
    from pipeline.cli import main

    out, _ = curated
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    assert main(["refilter", str(copy), "--dedup.enabled", "false"]) == 0
    args = ["run", "--input", str(out.parent / "corpus"), "--output", str(copy)]
    args += ["--clips.min_s", "1.0", "--filters.min_duration_s", "1.0", "--clip.enabled", "false"]
    capsys.readouterr()
    assert main(args) == 0
    said = capsys.readouterr()
    assert "resumed with the thresholds saved in OUT's config.json: dedup.enabled" in said.err, said.err
    assert "dedup disabled" in said.out, said.out  # the run's summary
    assert _by_file(copy)["bunny_small_copy.mp4"][1] is None  # both copies kept
    assert json.loads((copy / "config.json").read_text())["dedup"]["enabled"] is False
    assert main([*args, "--dedup.enabled", "true"]) == 0  # a flag of the run's own wins
    assert "resumed with the thresholds" not in capsys.readouterr().err
    assert _by_file(copy)["bunny_small_copy.mp4"][1] == "duplicate"


@pytest.mark.parametrize("family", ["smolvlm"])
def test_caption_command_tiny_random_model(curated, tmp_path, family):
    from captioner.tiny_random import build_tiny_random_smolvlm

    out, _ = curated
    con = store.open(out)
    assert {r[0] for r in con.execute("SELECT caption_status FROM kept").fetchall()} == {"skipped_no_model"}
    model = build_tiny_random_smolvlm(tmp_path / "tiny_random_smolvlm")
    cmd = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "caption",
        str(out),
        "--model",
        str(model),
        "--captioner.max_new_tokens",
        "8",
        "--captioner.max_new_tokens_short",
        "4",
        "--captioner.frames_per_clip",
        "2",
        "--ray.num_cpus",
        "2",
    ]
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Started a local Ray instance" in r.stderr  # work: the actor pool's Ray
    con = store.open(out)
    rows = con.execute(
        "SELECT caption_status, caption_model, caption_prompt_version, caption_tokens_dense FROM kept"
    ).fetchall()
    assert len(rows) == 2
    assert all(
        s in ("ok", "flagged") and m == str(model) and v == "dense_v1+short_v1" and t > 0 for s, m, v, t in rows
    )
    n_rows = store.read_table(out, "captions").num_rows
    # a rerun skips what this model and prompt version already captioned
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "nothing to caption" in r.stdout
    assert "Started a local Ray instance" not in r.stderr  # no work found in DuckDB: no Ray started for it
    assert store.read_table(out, "captions").num_rows == n_rows
    # captioning turned off says where the setting came from, and records no version
    n_versions = len(store.versions(out))
    off = [sys.executable, "-m", "pipeline.cli", "caption", str(out), "--model", "none"]
    r = subprocess.run(off, capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "captioner.model = 'none' from this command's --model" in r.stdout, r.stdout
    assert len(store.versions(out)) == n_versions
    # --where selects rejected clips too; --recaption forces; the view shows the latest caption per clip
    r = subprocess.run([*cmd, "--where", "drop_reason = 'quality_dark'"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    con = store.open(out)
    assert con.execute("SELECT caption_status FROM clips WHERE drop_reason = 'quality_dark'").fetchone()[0] in (
        "ok",
        "flagged",
    )
    r = subprocess.run([*cmd, "--recaption"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert store.read_table(out, "captions").num_rows == n_rows + 3
    assert con.execute("SELECT count(*), count(DISTINCT clip_id) FROM clips").fetchone()[0] == 4


def test_data_card_is_recomputed_from_the_tables(curated, tmp_path):
    """clipforge card: every figure equals the same question asked of the tables with DuckDB."""
    out, _ = curated
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "card", str(out), "--dest", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "card.json").read_text())
    con = store.open(out)
    kept, clips = con.execute("SELECT count(*) FILTER (drop_reason IS NULL), count(*) FROM clips").fetchone()
    assert (card["funnel"]["kept"], card["funnel"]["clips"]) == (kept, clips)
    sql = "SELECT drop_reason, count(*) FROM clips WHERE drop_reason IS NOT NULL GROUP BY ALL"
    per_reason = dict(con.execute(sql).fetchall())
    assert {k: v["clips"] for k, v in card["funnel"]["dropped"].items()} == per_reason
    hours = con.execute("SELECT sum(duration_s) / 3600 FROM clips WHERE drop_reason = 'quality_dark'").fetchone()[0]
    assert card["funnel"]["dropped"]["quality_dark"]["hours"] == pytest.approx(hours, abs=1e-4)
    median = con.execute("SELECT quantile_cont(focus, 0.5) FROM clips WHERE drop_reason IS NULL").fetchone()[0]
    assert card["scores"]["focus"]["kept"]["p50"] == pytest.approx(median, rel=1e-5)
    assert card["inputs"]["files"] == 4 and card["dedup"]["duplicates_dropped"] == per_reason.get("duplicate", 0)
    assert card["version"] == store.versions(out)[-1]["version"]
    md = (tmp_path / "card.md").read_text()
    assert "## Preprocessing: why clips were dropped" in md and "| quality_dark | 1 |" in md


def _every_row_naming(out: Path, ids: set[str]) -> list[tuple]:
    """(table, row) of every stored row, in any table, whose video_id or clip_id is in ``ids``."""
    import duckdb

    found = []
    for name in store._table_names(out):
        src = store._source(out, name)
        if src is None:
            continue
        cols = [c for c in ("video_id", "clip_id", "duplicate_of") if c in store._columns(out, name)]
        for c in cols:
            rows = duckdb.sql(f"SELECT {c} FROM {src}").fetchall()
            found += [(name, c, v) for (v,) in rows if v in ids]
    return found


def test_remove_takes_a_source_and_everything_made_from_it(curated, tmp_path):
    """clipforge remove: the source's rows in every table, its clip files, its clips in every export, the history
    that held them are gone; the copy dedup had dropped is judged again; a tombstone keeps the source (at its path
    or under another name) out of later runs; lineage columns reached every clip and export before."""
    import pandas as pd
    import webdataset as wds

    from pipeline.export import export
    from pipeline.report import write_report

    out = tmp_path / "out"
    shutil.copytree(curated[0], out)
    bunny = store.query(out, "SELECT * FROM videos WHERE path LIKE '%/bunny.mp4'").to_pylist()[0]
    vid = bunny["video_id"]
    clips = store.query(out, f"SELECT clip_id, clip_path FROM clips WHERE video_id = '{vid}'").to_pylist()
    cids = {c["clip_id"] for c in clips}
    assert cids and all((out / c["clip_path"]).is_file() for c in clips)
    # lineage: the sidecar's fields on the videos row, on each of its clips, in the exports
    assert {k: bunny[k] for k in BUNNY_LINEAGE} == BUNNY_LINEAGE and bunny["license_id"] == "CC-BY-3.0"
    kept = store.query(out, f"SELECT license, creator, tags FROM kept WHERE video_id = '{vid}'").to_pylist()
    assert kept == [{"license": "CC-BY-3.0", "creator": "Blender Foundation", "tags": ["animation", "open movie"]}]
    for fmt in ("webdataset", "csv", "folder", "hf"):
        export(out, fmt, tmp_path / fmt, caption="original")
    csv_before = pd.read_csv(tmp_path / "csv" / "meta.csv")
    assert set(csv_before["clip_id"]) >= cids and len(csv_before) == 2  # bunny's and carphone's (captioned) clips
    assert csv_before.set_index("clip_id").loc[next(iter(cids)), "license"] == "CC-BY-3.0"
    folder_meta = [json.loads(line) for line in (tmp_path / "folder" / "metadata.jsonl").open()]
    assert {m["clip_id"]: m["license"] for m in folder_meta if m["clip_id"] in cids} == dict.fromkeys(
        cids, "CC-BY-3.0"
    )
    # the Hub card's licence field: carphone's clip carries none, so the set as a whole is "other"
    assert 'license: other\nlicense_name: "CC-BY-3.0; not given"' in (tmp_path / "hf" / "README.md").read_text()
    write_report(out)
    subprocess.run([sys.executable, "-m", "pipeline.cli", "card", str(out)], check=True, capture_output=True)
    copy_clip = store.query(out, "SELECT clip_id FROM clips WHERE drop_reason = 'duplicate'").to_pylist()[0]["clip_id"]
    before_versions = store.versions(out)

    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "remove", str(out), "--source", bunny["path"], "--note", "ticket 42",
         "--json"], capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert [v["video_id"] for v in result["videos"]] == [vid] and result["clips"] == len(cids)
    assert [d["clip_id"] for d in result["near_duplicates"]] == [copy_clip]
    assert result["rows"]["videos"] == 1 and result["rows"]["clips"] == len(cids)
    assert result["exports"] == {str(tmp_path / f): len(cids) for f in ("webdataset", "csv", "folder", "hf")}

    # nothing derived remains under OUT: no row in any table, no clip file, no file naming it, no history holding it
    assert _every_row_naming(out, {vid, *cids}) == []
    assert not any((out / c["clip_path"]).exists() for c in clips)
    needles = [vid.encode(), *(c.encode() for c in cids), bunny["path"].encode()]
    for f in out.rglob("*"):
        if f.is_file() and "tombstones" not in f.parts:
            assert not any(n in f.name.encode() for n in needles), f
            data = f.read_bytes()
            assert not any(n in data for n in needles), f  # Delta logs (stats), checkpoints, report.html, JSON
    with pytest.raises(store.VersionNotFound, match="erased"):
        store.query(out, "SELECT count(*) FROM clips", version=before_versions[-1]["version"])
    first = store.versions(out)[0]
    assert first["removed"] == {"videos": 1, "clips": len(cids), "note": "ticket 42"}
    assert first["erased_versions"] == [v["version"] for v in before_versions]
    assert first["version"] == before_versions[-1]["version"] + 1  # numbering goes on, no gap
    assert json.loads((out / "card.json").read_text())["removals"]["videos"] == 1  # the card in OUT was rewritten
    assert store.query(out, "SELECT video_id FROM tombstones").to_pylist() == [{"video_id": vid}]
    # again: already removed, nothing to do, no new version
    again_r = subprocess.run([sys.executable, "-m", "pipeline.cli", "remove", str(out), "--source", vid],
                             capture_output=True, text=True)  # fmt: skip
    assert again_r.returncode == 0 and "already removed" in again_r.stdout, again_r.stderr
    assert store.versions(out)[-1]["version"] == first["version"]
    # the copy dedup had dropped for the removed clip is judged again among what is left: nothing duplicates it now
    assert store.query(out, f"SELECT drop_reason FROM clips WHERE clip_id = '{copy_clip}'").to_pylist() == [
        {"drop_reason": None}
    ]
    # every export, read back with its readers, lacks the removed clips and says so in its manifest
    keys = [
        s["__key__"] for s in wds.WebDataset(str(tmp_path / "webdataset" / "shard-000000.tar"), shardshuffle=False)
    ]
    assert keys and not cids & set(keys)
    assert not cids & set(pd.read_csv(tmp_path / "csv" / "meta.csv")["clip_id"])
    assert not any(p.name.split(".")[0] in cids for p in (tmp_path / "folder").iterdir())
    import datasets

    # (a fresh cache: datasets' own cache of an export is outside OUT, which remove cannot reach; README says so)
    hf = datasets.load_dataset(str(tmp_path / "hf"), split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert "\nlicense:" not in (tmp_path / "hf" / "README.md").read_text()  # the clip left carries none
    assert hf.num_rows == 1 and not cids & set(hf["clip_id"])
    manifest = json.loads((tmp_path / "folder" / "manifest.json").read_text())
    assert manifest["removed"][0]["clips"] == len(cids) and manifest["counts"]["written"] == 1
    assert manifest["counts"]["selected"] == 1

    # the tombstone keeps it out: the same corpus again, plus the same bytes under another name
    again = tmp_path / "more"
    again.mkdir()
    shutil.copyfile(bunny["path"], again / "bunny_reupload.mp4")
    cfg = config.load(None, {"clips.min_s": "1.0", "filters.min_duration_s": "1.0", "clip.enabled": "false"})
    cfg.inputs, cfg.output = [str(Path(bunny["path"]).parent), str(again)], str(out)
    summary = run(cfg)
    assert any("left out 2 input(s)" in n for n in summary.notes), summary.notes
    paths = {r["path"] for r in store.query(out, "SELECT path FROM videos").to_pylist()}
    assert bunny["path"] not in paths and str(again / "bunny_reupload.mp4") not in paths and len(paths) == 3
    stones = store.query(out, "SELECT 1").num_rows and __import__("pipeline.remove").remove.tombstones(out).to_pylist()
    assert [(t["video_id"], t["note"], t["clips"]) for t in stones] == [(vid, "ticket 42", len(cids))]
    # the data card counts the removal (and never names what was removed)
    from pipeline.card import collect

    card = collect(out)
    assert card["removals"]["videos"] == 1 and card["removals"]["requests"][0]["note"] == "ticket 42"


def test_a_removal_cut_off_is_finished_by_running_it_again(curated, tmp_path, monkeypatch):
    """A removal that dies after deleting rows but before erasing the history leaves OUT/.removing; `versions`
    still works and says so; the same command again does the whole removal (history erased, config.json's direct
    mention redacted, the card rewritten at the new version) instead of answering "already removed"."""
    from pipeline import remove as remove_mod

    out = tmp_path / "out"
    shutil.copytree(curated[0], out)
    carphone = store.query(out, "SELECT video_id, path FROM videos WHERE path LIKE '%/carphone.mp4'").to_pylist()[0]
    cfg = json.loads((out / "config.json").read_text())
    cfg["inputs"].append(carphone["path"])  # as if named with --input
    (out / "config.json").write_text(json.dumps(cfg))
    subprocess.run([sys.executable, "-m", "pipeline.cli", "card", str(out)], check=True, capture_output=True)
    old = store.versions(out)[-1]["version"]

    def die(*a, **k):
        raise KeyboardInterrupt("cut off")

    monkeypatch.setattr(remove_mod, "erase_history", die)
    with pytest.raises(KeyboardInterrupt):
        remove_mod.remove(out, [carphone["path"]])
    monkeypatch.undo()
    assert (out / remove_mod.PENDING).is_file()
    assert (
        store.query(out, f"SELECT count(*) AS n FROM videos WHERE video_id = '{carphone['video_id']}'").to_pylist()[0][
            "n"
        ]
        == 0
    )  # rows gone, history not: the old version still has them
    assert store.query(out, "SELECT count(*) AS n FROM videos", version=old).to_pylist()[0]["n"] == 4
    listed = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "versions", str(out)], capture_output=True, text=True
    )
    assert listed.returncode == 0 and "cut off before it ended" in listed.stdout, listed.stderr

    # another removal (of another source) finishes the one cut off too
    dark = store.query(out, "SELECT path FROM videos WHERE path LIKE '%/carphone_dark.mp4'").to_pylist()[0]["path"]
    again = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "remove", str(out), "--source", dark, "--json"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout)
    assert done["already_removed"] is False and {v["path"] for v in done["videos"]} == {dark, carphone["path"]}
    assert not (out / remove_mod.PENDING).exists()
    with pytest.raises(store.VersionNotFound, match="erased"):
        store.query(out, "SELECT count(*) FROM videos", version=old)
    assert json.loads((out / "config.json").read_text())["inputs"][-1] == "<removed>"
    assert store.query(out, "SELECT count(*) AS n FROM tombstones").to_pylist() == [{"n": 2}]
    card = json.loads((out / "card.json").read_text())
    assert card["version"] == store.versions(out)[-1]["version"] and card["removals"]["videos"] == 2
    for f in out.rglob("*"):
        if f.is_file() and "tombstones" not in f.parts:
            assert carphone["path"].encode() not in f.read_bytes(), f
