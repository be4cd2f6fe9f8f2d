"""Inputs in object storage: a real S3-compatible server (moto's standalone server, started here on 127.0.0.1),
reached the way a user reaches AWS or MinIO: AWS_ENDPOINT_URL and the standard credential variables."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline import store
from pipeline.testdata import make_video


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env():
    """A moto S3 server on a free port; yields the environment a user would set for an S3-compatible store."""
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:  # wait until it answers, not for a fixed time
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            assert server.poll() is None and time.time() < deadline, "moto server did not start"
            time.sleep(0.1)
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.terminate()
        server.wait()


@pytest.fixture(scope="module")
def bucket(s3_env, tmp_path_factory, bikes):
    """s3://corpus with two real videos, a sidecar caption, a hidden object, a list file and its local twin."""
    import fsspec

    local = tmp_path_factory.mktemp("local")
    make_video(local / "shapes.mp4", frames=96, size=(192, 108), pattern="shapes")
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("corpus")
    fs.put(str(bikes), "corpus/videos/bikes.mp4")
    fs.put(str(local / "shapes.mp4"), "corpus/videos/sub/shapes.mp4")
    fs.pipe("corpus/videos/sub/shapes.txt", b"a square and a disc move")
    fs.pipe("corpus/videos/.hidden/skip.mp4", b"not listed")
    fs.pipe(
        "corpus/lists/spans.csv",
        b"path,start_s,end_s,caption\n../videos/bikes.mp4,1.0,2.5,two riders\n"
        b"s3://corpus/videos/sub/shapes.mp4,,,\nmissing.mp4,,,\n",
    )
    (local / "bikes.mp4").symlink_to(bikes)
    return local


def test_prefixes_globs_and_list_files_in_a_bucket(bucket):
    from stages.ingest import expand_inputs

    rows = expand_inputs(["s3://corpus/videos/"])
    assert [r["path"] for r in rows] == ["s3://corpus/videos/bikes.mp4", "s3://corpus/videos/sub/shapes.mp4"]
    assert rows[1]["original_caption"] == "a square and a disc move"  # the sidecar, found from one listing
    assert [r["path"] for r in expand_inputs(["s3://corpus/videos/*.mp4"])] == ["s3://corpus/videos/bikes.mp4"]
    listed = {r["path"]: r for r in expand_inputs(["s3://corpus/lists/spans.csv"])}
    assert listed["s3://corpus/videos/bikes.mp4"]["spans"] == [{"start_s": 1.0, "end_s": 2.5, "caption": "two riders"}]
    assert "s3://corpus/videos/sub/shapes.mp4" in listed
    assert "s3://corpus/lists/missing.mp4" in listed  # a listed object that is not there: the probe will say so
    missing = expand_inputs(["s3://corpus/nothing/here.mp4", "s3://corpus/videos/*.webm"])
    assert [r["input_error"].split(":")[0] for r in missing] == ["FileNotFoundError", "FileNotFoundError"]


# the runs' settings: no CLIP or caption stage in the run (no test here reads CLIP scores; the caption command below
# captions with a model of its own; without weights here both stages were skipped after a model check that costs
# each run seconds)
RUN = {"clips.max_s": "3", "ray.progress": "false", "clip.enabled": "false", "captioner.model": "none"}


def _run(inputs: list[str], out: Path | str, env: dict) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--output", str(out), "--ray.num_cpus", "2"]
    for key, value in RUN.items():
        cmd += [f"--{key}", value]
    for i in inputs:
        cmd += ["--input", i]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=600)


def _cli(*args: str, env: dict) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def bucket_run(bucket, s3_env, tmp_path_factory, ray_local):
    """One run from the bucket into the bucket (OUT = s3://out/remote), the CLI as a user runs it, and the same
    videos from local files into a local OUT: the same settings, run(cfg) in this process on the session's Ray (the
    CLI is run(cfg) and a print)."""
    import fsspec

    from pipeline import config
    from pipeline.run import run

    fsspec.filesystem("s3", skip_instance_cache=True).mkdir("out")
    root = tmp_path_factory.mktemp("runs")
    remote = _run(["s3://corpus/videos/", "s3://corpus/lists/spans.csv"], "s3://out/remote", s3_env)
    assert remote.returncode == 0, remote.stderr[-3000:]
    cfg = config.load(None, RUN)
    cfg.inputs, cfg.output = [str(bucket / "bikes.mp4"), str(bucket / "shapes.mp4")], str(root / "local")
    run(cfg)
    return "s3://out/remote", root / "local"


def test_a_run_from_a_bucket_into_a_bucket_equals_a_local_run(bucket_run):
    """Videos decoded from the bucket, clips, tables, config and run record written to the bucket: the same
    videos, shots and clips as from local files into a local OUT; nothing of the bucket OUT is written locally."""
    import fsspec

    remote, local = bucket_run

    def videos(out) -> dict:
        con = store.open(out)
        q = "SELECT path, status, error_type, content_hash, num_frames, fps, width, height, size_bytes FROM videos"
        return {Path(r[0]).name: r[1:] for r in con.execute(q).fetchall()}

    rv, lv = videos(remote), videos(local)
    assert rv["missing.mp4"][:2] == ("error", "FileNotFoundError")  # the listed object that is not there
    assert rv["bikes.mp4"] == lv["bikes.mp4"] and rv["shapes.mp4"] == lv["shapes.mp4"]

    def clips(out, name: str) -> list:
        con = store.open(out)
        return con.execute(
            "SELECT c.start_frame, c.end_frame, c.num_frames, c.width, c.drop_reason, c.motion IS NOT NULL "
            "FROM clips c JOIN videos v USING (video_id) WHERE v.path LIKE '%' || ? ORDER BY 1, 2",
            [name],
        ).fetchall()

    # shapes: the same shots, clips and scores as from the local file; bikes: only its listed span (1.0-2.5 s)
    assert clips(remote, "shapes.mp4") == clips(local, "shapes.mp4") and clips(remote, "shapes.mp4")
    # frames shown in [1.0, 2.5) s at 25 fps: 25..62, end exclusive
    assert [(a, b) for a, b, *_ in clips(remote, "bikes.mp4")] == [(25, 63)]
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    con = store.open(remote)
    for path, size in con.execute("SELECT clip_path, clip_bytes FROM clips WHERE clip_path IS NOT NULL").fetchall():
        assert fs.size(f"out/remote/{path}") == size  # the clip object, whole
    assert fs.isfile("out/remote/config.json") and fs.glob("out/remote/runs/*.json")
    assert fs.glob("out/remote/tables/clips/_delta_log/*.json") and not Path("s3:").exists()
    assert [v["command"] for v in store.versions(remote)] == ["run"]


def test_the_commands_work_on_an_out_in_a_bucket(bucket_run, s3_env, tmp_path):
    """query, versions, report, view, refilter, diff and prepare on s3://out/remote, each as a user runs it."""
    import json

    import fsspec

    remote, _ = bucket_run
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    n = json.loads(_cli("query", remote, "SELECT count(*) AS n FROM clips", "--json", env=s3_env))[0]["n"]
    assert n >= 2
    _cli("report", remote, env=s3_env)
    assert b"clipforge" in fs.cat("out/remote/report.html")
    assert fs.info("out/remote/report.html")["ContentType"] == "text/html"  # opens in a browser from the bucket
    # the run keeps nothing (a 1.5 s listed span, a 192x108 video); refilter relaxes both rules: a new version,
    # and diff says where the clips went
    assert json.loads(_cli("query", remote, "SELECT count(*) AS k FROM kept", "--json", env=s3_env))[0]["k"] == 0
    _cli("refilter", remote, "--filters.min_duration_s", "1", "--filters.min_short_side", "64", env=s3_env)
    kept = json.loads(_cli("query", remote, "SELECT count(*) AS k FROM kept", "--json", env=s3_env))[0]["k"]
    assert kept >= 2
    assert [v["command"] for v in json.loads(_cli("versions", remote, "--json", env=s3_env))] == ["run", "refilter"]
    diff = {r["reason"]: r for r in json.loads(_cli("diff", remote, "1", "2", "--json", env=s3_env))}
    assert diff["(kept)"] == {"reason": "(kept)", "at_a": 0, "at_b": kept, "gained": kept, "lost": 0}
    assert diff["resolution_low"]["at_b"] == 0 and diff["resolution_low"]["lost"] >= 1

    # caption: a tiny random-weight VLM, built here, reads the kept clips from the bucket
    from captioner.tiny_random import build_tiny_random_smolvlm

    model = build_tiny_random_smolvlm(tmp_path / "tiny_random_smolvlm")
    args = ["--model", str(model), "--captioner.max_new_tokens", "8", "--captioner.max_new_tokens_short", "4"]
    _cli(
        "caption",
        remote,
        *args,
        "--captioner.frames_per_clip",
        "2",
        "--ray.num_cpus",
        "2",
        env={**s3_env, "HF_HUB_OFFLINE": "1"},
    )
    statuses = store.query(remote, "SELECT caption_status FROM kept").column("caption_status").to_pylist()
    assert statuses and set(statuses) <= {"ok", "flagged"}

    # view: a clip served from the bucket, whole, with HTTP range support
    from werkzeug.test import Client

    from pipeline.viewer import make_app

    con = store.open(remote)
    clip_path, size = con.execute("SELECT clip_path, clip_bytes FROM kept WHERE clip_path IS NOT NULL").fetchone()
    app = make_app(remote)
    try:  # close() removes the viewer's temporary directory (its database and the files fetched from the bucket)
        client = Client(app)
        r = client.get(f"/files/{clip_path}")
        assert r.status_code == 200 and r.get_data() == fs.cat(f"out/remote/{clip_path}") and len(r.get_data()) == size
        assert client.get(f"/files/{clip_path}", headers={"Range": "bytes=0-99"}).status_code == 206
        assert client.get("/files/../../etc/passwd").status_code in (403, 404)
        assert client.get("/").status_code == 200
    finally:
        app.close()

    # prepare: the kept clips, now captioned, encoded from the bucket OUT
    out = _cli(
        "prepare", remote, "--dest", str(tmp_path / "prep"), "--num-cpus", "0.5", "--batch-size", "2", env=s3_env
    )
    manifest = json.loads((tmp_path / "prep" / "manifest.json").read_text())
    assert manifest["counts"]["written"] >= 1, out

    # remove: a source taken out of the bucket OUT (rows, clip objects, Delta history) and out of the prepared set
    import pyarrow.parquet as pq

    con = store.open(remote)
    vid, path = con.execute(
        "SELECT video_id, v.path FROM kept JOIN videos v USING (video_id) GROUP BY ALL ORDER BY count(*) DESC LIMIT 1"
    ).fetchone()
    gone = con.execute(f"SELECT clip_id, clip_path FROM clips WHERE video_id = '{vid}'").fetchall()
    prepared = lambda: {c for f in (tmp_path / "prep" / "shards").glob("*.parquet")  # noqa: E731
                        for c in pq.read_table(f, columns=["clip_id"])["clip_id"].to_pylist()}  # fmt: skip
    assert {c for c, _ in gone} & prepared()
    result = json.loads(_cli("remove", remote, "--source", path, "--json", env=s3_env))
    assert result["clips"] == len(gone) and result["exports"][str(tmp_path / "prep")] >= 1
    assert not {c for c, _ in gone} & prepared()
    assert store.query(remote, f"SELECT count(*) AS n FROM clips WHERE video_id = '{vid}'").to_pylist() == [{"n": 0}]
    assert not any(fs.exists(f"out/remote/{p}") for _, p in gone if p)
    for key in fs.find("out/remote/tables") + fs.find("out/remote/versions"):
        assert vid.encode() not in fs.cat(key), key  # no Delta log or checkpoint still holds it
    assert fs.find("out/remote/tombstones")


def test_an_unreachable_store_stops_the_run_instead_of_failing_every_video(tmp_path, s3_env):
    dead = {**s3_env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}", "AWS_MAX_ATTEMPTS": "1"}
    r = _run(["s3://corpus/videos/"], tmp_path / "out", dead)
    assert r.returncode == 75, r.stderr[-3000:]
    assert "STOPPED by an error of the environment" in r.stderr and "127.0.0.1" in r.stderr


def test_training_shards_stream_from_the_bucket(s3_env, tmp_path):
    """Training reads its shards from a bucket as from a directory: the same clips, the same tensors."""
    import fsspec
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.data import SHARD_SCHEMA, ShardDataset, pack

    rng = np.random.default_rng(0)
    (tmp_path / "prep" / "shards").mkdir(parents=True)
    for s in range(2):
        recs = []
        for r in range(5):
            lat, txt = (
                pack(rng.standard_normal((3, 2, 8, 8), np.float32), "float16"),
                pack(rng.standard_normal((4, 16), np.float32), "float16"),
            )
            recs.append(
                {"clip_id": f"c{s}{r}", "bucket": "2x8x8", "caption": "x", "caption_source": "dense", "error": None}
                | dict(zip(("latent", "latent_shape", "latent_dtype"), lat, strict=True))
                | dict(zip(("text", "text_shape", "text_dtype"), txt, strict=True))
            )
        pq.write_table(pa.Table.from_pylist(recs, schema=SHARD_SCHEMA), tmp_path / "prep" / "shards" / f"p{s}.parquet")
    (tmp_path / "prep" / "manifest.json").write_text('{"codec": {"spec": "pixel"}}')
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("training")
    fs.put(str(tmp_path / "prep"), "training/prep", recursive=True)

    local, remote = ShardDataset(tmp_path / "prep"), ShardDataset("s3://training/prep")
    assert remote.clip_ids == local.clip_ids and len(remote) == 10
    assert remote.manifest == {"codec": {"spec": "pixel"}}
    for a, b in zip(local.samples(list(range(10))), remote.samples(list(range(10))), strict=True):
        np.testing.assert_array_equal(a.latent, b.latent)
        np.testing.assert_array_equal(a.text, b.text)


def test_prepare_writes_training_shards_into_the_bucket(s3_env, tmp_path):
    """`clipforge prepare OUT --dest s3://...` (its own Ray, as a user runs it) writes shards and manifest to the
    bucket, and `train` reads them from there."""
    import json

    import fsspec

    from pipeline.schema import CLIPS
    from training.data import ShardDataset
    from training.demo import make_demo_clips

    rows = make_demo_clips(tmp_path, names=["bikes_s0", "carphone"])
    for r in rows:
        r["original_caption"] = r.pop("caption_dense")
    with store.ShardWriter(tmp_path, "clips", CLIPS) as w:
        w.add_rows([{k: v for k, v in r.items() if k in CLIPS.names} for r in rows])
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("prepared")
    cmd = [sys.executable, "-m", "pipeline.cli", "prepare", str(tmp_path), "--dest", "s3://prepared/prep"]
    cmd += ["--num-cpus", "0.5", "--batch-size", "2"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **s3_env}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = json.loads(fs.cat("prepared/prep/manifest.json"))
    assert manifest["counts"]["written"] == 2
    assert fs.glob("prepared/prep/shards/*.parquet")
    ds = ShardDataset("s3://prepared/prep")
    assert ds.clip_ids == ["bikes_s0", "carphone"] and ds[0].latent.shape[0] == 3


def test_queries_on_a_bucket_out_look_each_data_file_up_once(bucket_run, s3_env, monkeypatch):
    """DuckDB asks for a Parquet file's facts (exists, size, modified: a HEAD request each on S3) every time a query
    reads it; a Delta data file never changes, so the store's filesystem asks S3 once per file and process (a report
    over this OUT made ~2,500 HEADs of its 5 data files before, ~130 requests in all after)."""
    import s3fs

    from stages import storage

    remote, _ = bucket_run
    storage._fixed_filesystem(storage.filesystem(remote)[0]).fixed_info.clear()  # earlier tests here looked them up
    looked: list[str] = []
    real = s3fs.S3FileSystem._info

    async def counting(self, path, *args, **kwargs):
        looked.append(self._strip_protocol(path))
        return await real(self, path, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_info", counting)
    files = {f.split("://", 1)[1] for name in ("clips", "scores", "filters") for f in store.shard_files(remote, name)}
    con = store.open(remote)
    for _ in range(3):
        assert con.execute("SELECT count(*), count(motion) FROM clips").fetchone()[0] >= 1
    again = store.open(remote)  # a new connection in the same process: the facts are still known
    assert again.execute("SELECT count(*) FROM kept").fetchone()[0] >= 0
    data_lookups = [p for p in looked if p in files]
    assert data_lookups and len(data_lookups) <= len(files), data_lookups
