"""clipforge export: every format read back by the library its users read it with (webdataset, datasets, pandas),
from a real store of real H.264 clips cut from the shipped footage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import store
from pipeline.captions import CAPTION_SOURCES
from pipeline.export import export
from pipeline.schema import CLIPS, VIDEOS


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """A store of 4 real clips with dense and short captions and scores; one clip has no short caption, one was
    dropped (so it must never be exported)."""
    from training.demo import make_demo_clips

    root = tmp_path_factory.mktemp("export")
    rows = make_demo_clips(root, names=["bikes_s0", "bikes_s1", "bikes_s2", "carphone"])
    clips = []
    for r in rows:
        clip = {k: v for k, v in r.items() if k in CLIPS.names}
        clips.append({**clip, "video_id": "v_" + r["clip_id"].split("_")[0], "start_s": 0.0, "end_s": r["duration_s"]})
    clips[-1]["drop_reason"] = "quality_dark"  # carphone: rejected
    with store.ShardWriter(root, "clips", CLIPS) as w:
        w.add_rows(clips)
    with store.ShardWriter(root, "videos", VIDEOS) as w:
        w.add_rows([{"video_id": "v_bikes", "path": "/footage/bikes.mp4", "status": "ok"}])
    caps = [{"clip_id": r["clip_id"], "caption_dense": r["caption_dense"], "caption_short": r["caption_short"]}
            for r in rows]  # fmt: skip
    caps[1]["caption_short"] = None  # bikes_s1: no short caption
    with store.ShardWriter(root, "captions") as w:
        w.add_rows([{**c, "written_at": 1.0} for c in caps])
    with store.ShardWriter(root, "scores") as w:
        w.add_rows([{"clip_id": r["clip_id"], "motion": 0.1 * (i + 1), "written_at": 1.0} for i, r in enumerate(rows)])
    store.record_version(root, "run")
    return root, {r["clip_id"]: r for r in rows}


KEPT = ["bikes_s0", "bikes_s1", "bikes_s2"]


def test_webdataset_shards_read_back_with_webdataset(out, tmp_path):
    import webdataset as wds

    root, rows = out
    manifest = export(root, "webdataset", tmp_path / "wds", caption="dense", shard_clips=2)
    assert manifest["files"] == ["shard-000000.tar", "shard-000001.tar"]
    samples = list(wds.WebDataset(str(tmp_path / "wds" / "shard-{000000..000001}.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == KEPT
    for s in samples:
        cid = s["__key__"]
        assert s["mp4"] == (root / rows[cid]["clip_path"]).read_bytes()  # the clip file, whole
        assert s["txt"].decode() == rows[cid]["caption_dense"]
        meta = json.loads(s["json"])
        assert meta["width"] == rows[cid]["width"] and meta["num_frames"] == rows[cid]["num_frames"]
        assert meta["caption"] == rows[cid]["caption_dense"] and "phash" not in meta
        assert meta["caption_source"] == "dense"
    assert manifest["counts"] == {"selected": 3, "written": 3, "left_out": {}}
    assert manifest["out_version"] == 1 and manifest["tables"]["clips"] == 0


def test_hf_dataset_opens_with_load_dataset(out, tmp_path):
    import datasets

    root, rows = out
    export(root, "hf", tmp_path / "hf", caption="dense")
    ds = datasets.load_dataset(str(tmp_path / "hf"), split="train")
    assert ds.num_rows == 3 and ds["clip_id"] == KEPT
    first = ds[0]
    assert first["video"] == (root / rows["bikes_s0"]["clip_path"]).read_bytes()
    assert first["caption"] == rows["bikes_s0"]["caption_dense"] and first["motion"] == pytest.approx(0.1)
    mixed = export(root, "hf", tmp_path / "mix", caption="mix", seed=3)
    assert mixed["counts"]["written"] == 3
    for r in datasets.load_dataset(str(tmp_path / "mix"), split="train"):
        assert r["caption"] == rows[r["clip_id"]][CAPTION_SOURCES[r["caption_source"]]]  # the source says which


def test_open_sora_csv_reads_with_pandas(out, tmp_path):
    import pandas as pd

    root, rows = out
    export(root, "csv", tmp_path / "csv", caption="short")
    df = pd.read_csv(tmp_path / "csv" / "meta.csv")
    assert list(df.columns[:10]) == [
        "path", "text", "num_frames", "height", "width", "aspect_ratio", "resolution", "fps", "aes", "flow"
    ]  # fmt: skip
    assert list(df["clip_id"]) == ["bikes_s0", "bikes_s2"]  # bikes_s1 has no short caption: left out
    for _, r in df.iterrows():
        assert Path(r["path"]).is_file() and r["num_frames"] == rows[r["clip_id"]]["num_frames"]
        assert r["text"] == rows[r["clip_id"]]["caption_short"] and r["source"] == "/footage/bikes.mp4"
        assert r["caption_source"] == "short"
    manifest = json.loads((tmp_path / "csv" / "manifest.json").read_text())
    assert manifest["counts"]["left_out"] == {"no_short_caption": 1}


def test_folder_layout_and_the_cli(out, tmp_path):
    root, rows = out
    cmd = [sys.executable, "-m", "pipeline.cli", "export", str(root), "--format", "folder", "--dest"]
    r = subprocess.run([*cmd, str(tmp_path / "f"), "--where", "clip_id <> 'bikes_s2'", "--caption", "mix"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "exported 2 of 2 selected clips" in r.stdout
    assert sorted(p.name for p in (tmp_path / "f").glob("*.mp4")) == ["bikes_s0.mp4", "bikes_s1.mp4"]
    for cid in ("bikes_s0", "bikes_s1"):
        text = (tmp_path / "f" / f"{cid}.txt").read_text().strip()
        assert text in (rows[cid]["caption_dense"], rows[cid]["caption_short"])
    again = subprocess.run([*cmd, str(tmp_path / "g"), "--caption", "mix"], capture_output=True, text=True)
    assert again.returncode == 0  # the mix draw is per clip and seeded: the same caption every time
    assert (tmp_path / "g" / "bikes_s0.txt").read_text() == (tmp_path / "f" / "bikes_s0.txt").read_text()
    bad = subprocess.run([*cmd, str(tmp_path / "h"), "--where", "no_such_column > 1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "no_such_column" in bad.stderr


def test_where_existing_dest_nothing_to_export_and_bad_sizes(out, tmp_path):
    """--where sees the kept view's columns (duration_s, width ... are not ambiguous with the source's); a dest that
    holds files is refused unless --overwrite (which empties it: no stale shard is read back); an export with nothing
    to write says why and writes no data file; --shard-clips below 1 is refused."""
    import webdataset as wds

    root, rows = out
    m = export(root, "webdataset", tmp_path / "w", where="duration_s > 0 AND width > 0", shard_clips=1)
    assert m["counts"]["written"] == 3 and len(m["files"]) == 3
    with pytest.raises(ValueError, match="not an empty directory"):
        export(root, "webdataset", tmp_path / "w", where="clip_id = 'bikes_s0'")
    m = export(root, "webdataset", tmp_path / "w", where="clip_id = 'bikes_s0'", overwrite=True)
    assert m["files"] == ["shard-000000.tar"]
    assert [s["__key__"] for s in wds.WebDataset(str(tmp_path / "w" / "shard-000000.tar"), shardshuffle=False)] == [
        "bikes_s0"
    ]
    none = export(root, "hf", tmp_path / "none", caption="original")  # no clip has an original caption
    assert none["counts"] == {"selected": 3, "written": 0, "left_out": {"no_original_caption": 3}}
    assert sorted(p.name for p in (tmp_path / "none").iterdir()) == ["manifest.json"]
    with pytest.raises(ValueError, match="at least 1"):
        export(root, "hf", tmp_path / "zero", shard_clips=0)
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "export", str(root), "--format", "csv", "--dest", str(tmp_path / "c"),
         "--caption", "original"], capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 1 and "nothing to export" in r.stderr
