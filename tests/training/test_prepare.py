"""prepare(): the Ray Data job from a SQL selection of a real store to training shards + manifest."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from training.data import ShardDataset
from training.demo import make_demo_clips
from training.prepare import prepare, select_clips


def _store(out, rows):
    """Write demo clip rows as the clips table of a real store (pipeline.store), so the SQL path is exercised."""
    from pipeline import store
    from pipeline.schema import CLIPS, VIDEOS

    keep = [{k: v for k, v in r.items() if k in CLIPS.names} for r in rows]
    with store.ShardWriter(out, "clips", CLIPS) as w:
        w.add_rows(keep)
    videos = sorted({r["video_id"] for r in keep})  # lineage lives on the videos row; the kept view joins it
    with store.ShardWriter(out, "videos", VIDEOS) as w:
        w.add_rows([{"video_id": v, "status": "ok", "license": "CC0-1.0" if v == "bikes" else None} for v in videos])


def test_prepare_on_ray_from_sql_selection(tmp_path, ray_local):
    rows = make_demo_clips(tmp_path, names=["bikes_s0", "bikes_s2", "carphone"])
    for r in rows:
        r["original_caption"] = r.pop("caption_dense")  # the store has original captions before the caption stage
    _store(tmp_path, rows)
    assert [r["clip_id"] for r in select_clips(tmp_path, "video_id = 'bikes'")] == ["bikes_s0", "bikes_s2"]
    buckets = {"buckets": [{"frames": 8, "height": 32, "width": 32}, {"frames": 1, "height": 32, "width": 32}]}
    manifest = prepare(tmp_path, "duration_s > 1", buckets, "pixel", "minilm", {"dense": 0.7, "original": 0.3},
                       tmp_path / "prep", num_cpus=0.5, batch_size=2)  # fmt: skip
    assert manifest["query"] == "duration_s > 1"
    assert manifest["counts"]["clips_in"] == 3 and manifest["counts"]["written"] == 3
    assert manifest["counts"]["per_bucket"] == {"8x32x32": 3}
    assert manifest["counts"]["caption_source"] == {"original": 3}  # no dense captions: falls back to original
    assert manifest["counts"]["license"] == {"CC0-1.0": 2, "not given": 1}
    assert manifest["codec"]["spec"] == "pixel" and manifest["text_encoder"]["dim"] == 384
    assert {"ray", "torch", "diffusers"} <= set(manifest["versions"])
    assert json.loads((tmp_path / "prep" / "manifest.json").read_text())["counts"] == manifest["counts"]
    ds = ShardDataset(tmp_path / "prep")
    assert ds.clip_ids == ["bikes_s0", "bikes_s2", "carphone"]
    assert ds[0].latent.shape == (3, 8, 32, 32) and ds[0].text.shape[1] == 384
    files = list((tmp_path / "prep" / "shards").glob("*.parquet"))
    schema = pq.read_schema(files[0])
    assert schema.field("latent").type == pa.binary() and schema.field("latent_shape").type == pa.list_(pa.int32())
    shards = pa.concat_tables(
        pq.read_table(f, columns=["clip_id", "video_id", "license", "source_url"]) for f in files
    )
    assert set(shards["source_url"].to_pylist()) == {None}  # a null column stays null (Ray hands it over as NaN)
    lineage = {r["clip_id"]: (r["video_id"], r["license"]) for r in shards.to_pylist()}
    assert lineage == {
        "bikes_s0": ("bikes", "CC0-1.0"),
        "bikes_s2": ("bikes", "CC0-1.0"),
        "carphone": ("carphone", None),
    }


def test_dry_run_says_each_clips_bucket_or_why_it_is_left_out(tmp_path):
    """prepare --dry-run: the bucket each selected clip lands in, or the reason it is left out, with counts; nothing is
    decoded or written; the same reasons the encoder records."""
    import subprocess
    import sys

    rows = make_demo_clips(tmp_path, names=["bikes_s0", "bikes_s1", "carphone"])
    rows.append({**rows[0], "clip_id": "tiny", "width": 16, "height": 16})
    rows.append({**rows[1], "clip_id": "brief", "num_frames": 3})
    rows.append(
        {**rows[2], "clip_id": "nocap", "caption_dense": None, "caption_short": None, "original_caption": None}
    )
    for r in rows:
        r["original_caption"] = r.pop("caption_dense") if r["clip_id"] != "nocap" else None
    _store(tmp_path, rows)
    buckets = tmp_path / "buckets.yaml"
    buckets.write_text("buckets:\n  - {frames: 8, height: 32, width: 32}\n  - {frames: 16, height: 64, width: 64}\n")
    cmd = [sys.executable, "-m", "pipeline.cli", "prepare", str(tmp_path), "--dest", str(tmp_path / "prep")]
    r = subprocess.run([*cmd, "--buckets", str(buckets), "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split("  ", 1) for line in r.stdout.splitlines()[:-1])
    assert lines["tiny"] == "left out: too_small" and lines["brief"] == "left out: too_short"
    assert lines["nocap"] == "left out: no_caption" and lines["bikes_s0"] == "16x64x64"
    counts = json.loads(r.stdout.splitlines()[-1])
    assert counts["clips_in"] == 6 and counts["would_write"] == 3
    assert counts["skipped"] == {"too_small": 1, "too_short": 1, "no_caption": 1}
    assert not (tmp_path / "prep").exists()  # nothing written


def test_prepare_says_what_is_wrong_with_its_flags_in_one_line(tmp_path, capsys):
    import subprocess
    import sys

    from pipeline.cli import main

    rows = make_demo_clips(tmp_path, names=["bikes_s0"])
    _store(tmp_path, rows)
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "nowidth.yaml").write_text("buckets:\n  - {frames: 8, height: 32}\n")
    args = ["prepare", str(tmp_path), "--dest", str(tmp_path / "p"), "--dry-run"]
    (extra, said), *others = (
        (["--where", "no_such_column > 1"], "no_such_column"),
        (["--buckets", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["--buckets", str(tmp_path / "empty.yaml")], "malformed"),
        (["--buckets", str(tmp_path / "nowidth.yaml")], "malformed"),
        (["--caption-mix", '{"long": 1}'], "caption-mix"),
        (["--caption-mix", "{dense: 1}"], "JSONDecodeError"),
    )
    # the first as a user meets it: a process of its own, exit status 2, the reason on stderr, no traceback
    r = subprocess.run([sys.executable, "-m", "pipeline.cli", *args, *extra], capture_output=True, text=True)
    assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr[-2000:])
    # the others through the same entry point in this process (`python -m pipeline.cli` exits with main()'s value;
    # an exception escaping main(), which a process prints as a traceback, fails the test here)
    for extra, said in others:
        code = main([*args, *extra])
        err = capsys.readouterr().err
        assert code == 2 and said in err and "Traceback" not in err, (extra, err[-2000:])
