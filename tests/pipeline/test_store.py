"""The store (Delta Lake tables of Parquet files) and its DuckDB views, on real tables."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import store
from pipeline.schema import CLIPS, SCHEMA_VERSION, VIDEOS


def _clip(i: int, reason: str | None = None) -> dict:
    return {
        "clip_id": f"c{i:04d}",
        "video_id": f"v{i % 3}",
        "clip_path": f"clips/c{i:04d}.mp4",
        "start_frame": 10 * i,
        "end_frame": 10 * i + 50,
        "start_s": 0.4 * i,
        "end_s": 0.4 * i + 2.0,
        "duration_s": 2.0,
        "drop_reason": reason,
    }


def test_shards_are_bounded_by_rows_and_carry_the_schema_version(tmp_path):
    with store.ShardWriter(tmp_path, "clips", cfg=store.StoreConfig(shard_rows=4)) as w:
        w.add_rows([_clip(i) for i in range(10)])
    files = store.shard_files(tmp_path, "clips")
    assert [pq.read_metadata(f).num_rows for f in files] and max(pq.read_metadata(f).num_rows for f in files) <= 4
    assert sum(pq.read_metadata(f).num_rows for f in files) == 10
    assert store.schema_version(tmp_path, "clips") == SCHEMA_VERSION  # in every commit's metadata
    assert pq.read_schema(files[0]).names == CLIPS.names
    assert store.read_table(tmp_path, "clips").schema.remove_metadata().equals(CLIPS)
    # a Delta Lake table: any Delta reader sees the same rows
    from deltalake import DeltaTable

    assert DeltaTable(str(store.table_dir(tmp_path, "clips"))).to_pyarrow_table().num_rows == 10


def test_shards_are_bounded_by_bytes(tmp_path):
    rows = [{**_clip(i), "original_caption": "x" * 10_000} for i in range(20)]
    with store.ShardWriter(tmp_path, "clips", cfg=store.StoreConfig(shard_rows=1000, shard_bytes=50_000)) as w:
        w.add_rows(rows)
    files = store.shard_files(tmp_path, "clips")
    assert len(files) >= 4  # 200 KB of captions in <= 50 KB shards
    assert sum(pq.read_metadata(f).num_rows for f in files) == 20


def test_no_partial_shard_is_ever_visible(tmp_path):
    w = store.ShardWriter(tmp_path, "clips", cfg=store.StoreConfig(shard_rows=100))
    w.add_rows([_clip(i) for i in range(5)])
    assert store.shard_files(tmp_path, "clips") == []  # buffered, nothing on disk yet
    w.close()
    # a data file a killed writer wrote but never committed is ignored by readers and views
    d = store.table_dir(tmp_path, "clips")
    pq.write_table(store.to_table([_clip(i) for i in range(5, 9)], CLIPS), d / "part-00000-dead.parquet")
    (d / ".part-dead.parquet.tmp").write_bytes(b"PAR1 half a file")
    con = store.open(tmp_path)
    assert con.execute("SELECT count(*) FROM clips").fetchone()[0] == 5


def test_unknown_columns_are_refused(tmp_path):
    with pytest.raises(KeyError, match="not in the schema"):
        store.to_table([{"clip_id": "a", "bogus": 1}], CLIPS)


def test_views_exist_on_an_empty_dataset_with_the_contract_columns(tmp_path):
    (tmp_path / "tables").mkdir()
    con = store.open(tmp_path)
    assert con.execute("SELECT count(*) FROM videos").fetchone()[0] == 0
    cols = {r[0] for r in con.execute("DESCRIBE clips").fetchall()}
    assert {
        "clip_id",
        "video_id",
        "clip_path",
        "start_frame",
        "end_frame",
        "start_s",
        "end_s",
        "duration_s",
        "drop_reason",
    } <= cols
    vcols = {r[0] for r in con.execute("DESCRIBE videos").fetchall()}
    assert {"video_id", "path", "status", "error"} <= vcols
    assert con.execute("SELECT count(*) FROM kept").fetchone()[0] == 0


def test_open_refuses_a_directory_that_is_not_a_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a clipforge dataset"):
        store.open(tmp_path)


def test_kept_view_and_stage_tables_join_by_clip_id(tmp_path):
    with store.ShardWriter(tmp_path, "clips") as w:
        w.add_rows([_clip(0), _clip(1), _clip(2, "duration_short")])
    with store.ShardWriter(tmp_path, "videos") as w:
        w.add_rows([{"video_id": "v0", "path": "/a.mp4", "status": "ok"}])
    con = store.open(tmp_path)
    assert sorted(r[0] for r in con.execute("SELECT clip_id FROM kept").fetchall()) == ["c0000", "c0001"]
    # each clip names its input file (the videos row's path)
    assert dict(con.execute("SELECT clip_id, source_path FROM clips").fetchall())["c0000"] == "/a.mp4"
    # a derived table replaces itself whole; a reason set at cut time is never overridden
    filt = pa.table({"clip_id": ["c0001", "c0002"], "drop_reason": ["motion_static", "aesthetic_low"]})
    store.replace_table(tmp_path, "filters", filt)
    con = store.open(tmp_path)
    got = dict(con.execute("SELECT clip_id, drop_reason FROM clips").fetchall())
    assert got == {"c0000": None, "c0001": "motion_static", "c0002": "duration_short"}
    before = store.delta_table(tmp_path, "filters").version()
    # re-tuning: the new rows are the only ones visible; the old ones stay readable as the earlier version
    store.replace_table(tmp_path, "filters", pa.table({"clip_id": ["c0000"], "drop_reason": ["quality_dark"]}))
    con = store.open(tmp_path)
    got = dict(con.execute("SELECT clip_id, drop_reason FROM clips").fetchall())
    assert got == {"c0000": "quality_dark", "c0001": None, "c0002": "duration_short"}
    old = store.read_table(tmp_path, "filters", version=before).sort_by("clip_id")
    assert old.column("drop_reason").to_pylist() == ["motion_static", "aesthetic_low"]


def test_read_table_and_ids(tmp_path):
    assert store.read_table(tmp_path, "videos").schema.equals(VIDEOS)
    with store.ShardWriter(tmp_path, "clips", cfg=store.StoreConfig(shard_rows=2)) as w:
        w.add_rows([_clip(i) for i in range(5)])
    assert store.ids(tmp_path, "clips", "clip_id") == {f"c{i:04d}" for i in range(5)}
    assert store.query(tmp_path, "SELECT sum(duration_s) AS s FROM clips").column("s")[0].as_py() == 10.0


def test_clips_view_has_the_columns_of_every_commit_old_and_new(tmp_path):
    """Commits to one stage table made before and after a schema change (schema evolution: the Delta schema merges
    the new column): the view shows the new columns, null for the old rows."""
    with store.ShardWriter(tmp_path, "clips", CLIPS) as w:
        w.add_rows([{"clip_id": "old"}, {"clip_id": "new"}])
    store._commit(tmp_path, "scores", pa.Table.from_pylist([{"clip_id": "old", "motion": 0.1}]), "append")
    new = pa.Table.from_pylist([{"clip_id": "new", "motion": 0.2, "phash_mirror": [1, 2]}])
    store._commit(tmp_path, "scores", new, "append")
    got = store.open(tmp_path).execute("SELECT clip_id, motion, phash_mirror FROM clips ORDER BY clip_id").fetchall()
    assert got == [("new", 0.2, [1, 2]), ("old", 0.1, None)]


def test_every_writing_command_is_a_version_and_old_versions_stay_readable(tmp_path):
    """OUT versions: each recorded version reads every table as it was then (new rows, replaced filters, a
    compaction in between change nothing an old version shows); an unknown version is a clear error."""
    with store.ShardWriter(tmp_path, "clips", cfg=store.StoreConfig(shard_rows=1)) as w:
        w.add_rows([_clip(i) for i in range(3)])
    store.replace_table(tmp_path, "filters", pa.table({"clip_id": ["c0001"], "drop_reason": ["motion_static"]}))
    v1 = store.record_version(tmp_path, "run")
    with store.ShardWriter(tmp_path, "clips", cfg=store.StoreConfig(shard_rows=1)) as w:
        w.add_rows([_clip(i) for i in range(3, 6)])
    store.replace_table(tmp_path, "filters", pa.table({"clip_id": ["c0004"], "drop_reason": ["quality_dark"]}))
    removed = store.compact(tmp_path, store.StoreConfig(compact_files=2))
    assert removed["clips"] == 6 and len(store.shard_files(tmp_path, "clips")) == 1
    v2 = store.record_version(tmp_path, "refilter")
    assert (v1, v2) == (1, 2)
    assert [(v["version"], v["command"]) for v in store.versions(tmp_path)] == [(1, "run"), (2, "refilter")]

    def kept(version):
        rows = store.query(tmp_path, "SELECT clip_id FROM kept ORDER BY clip_id", version=version)
        return rows.column("clip_id").to_pylist()

    assert kept(v1) == ["c0000", "c0002"]
    assert kept(v2) == kept(None) == ["c0000", "c0001", "c0002", "c0003", "c0005"]
    with pytest.raises(store.VersionNotFound, match="no version 7; its versions: 1, 2"):
        store.open(tmp_path, version=7)


def test_a_store_in_the_layout_before_delta_lake_is_read_then_upgraded(tmp_path):
    """An OUT written before Delta Lake (uuid shards, a CURRENT generation): read as it is; a writing command
    upgrades it in place (rows and views unchanged), and an upgrade interrupted mid-swap is finished by the next."""
    d = tmp_path / "tables" / "clips"
    d.mkdir(parents=True)
    pq.write_table(store.to_table([_clip(0), _clip(1)], CLIPS), d / "part-aaaa.parquet")
    pq.write_table(store.to_table([_clip(2, "duration_short")], CLIPS), d / "part-bbbb.parquet")
    f = tmp_path / "tables" / "filters"
    (f / "gen-1").mkdir(parents=True)
    pq.write_table(pa.table({"clip_id": ["c0000"], "drop_reason": ["motion_static"]}), f / "gen-1" / "part-c.parquet")
    (f / "CURRENT").write_text("gen-1")

    def reasons():
        return dict(store.open(tmp_path).execute("SELECT clip_id, drop_reason FROM clips").fetchall())

    want = {"c0000": "motion_static", "c0001": None, "c0002": "duration_short"}
    assert reasons() == want
    # an upgrade that stopped after renaming the old clips table away, before the new one got in
    (tmp_path / "tables" / "clips").rename(tmp_path / "tables" / ".legacy-clips")
    with store.writer_lock(tmp_path, "refilter"):
        pass
    assert store.delta_table(tmp_path, "clips") is not None and store.delta_table(tmp_path, "filters") is not None
    assert reasons() == want
    assert not list((tmp_path / "tables").glob(".*"))
    assert store.versions(tmp_path)[-1]["command"] == "refilter"


def _append_many(out: str, tag: int, n: int) -> None:
    for i in range(n):
        with store.ShardWriter(out, "clips") as w:
            w.add_rows([_clip(1000 * tag + i)])


def _refilter_many(out: str, n: int) -> None:
    for i in range(n):
        store.replace_table(out, "filters", pa.table({"clip_id": [f"c{i:04d}"], "drop_reason": ["motion_static"]}))


def test_concurrent_writers_never_corrupt_a_table(tmp_path):
    """Writers that the per-host lock cannot see (two hosts on one OUT): three processes append to the clips table
    while a fourth replaces the filters table again and again. Every committed row is there exactly once, every
    table version reads, and the views work throughout."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # delta-rs' runtime does not survive fork
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), t, 15)) for t in range(3)]
    procs.append(ctx.Process(target=_refilter_many, args=(str(tmp_path), 15)))
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    ids = store.read_table(tmp_path, "clips", columns=["clip_id"]).column("clip_id").to_pylist()
    assert sorted(ids) == sorted(f"c{1000 * t + i:04d}" for t in range(3) for i in range(15))
    dt = store.delta_table(tmp_path, "clips")
    assert dt.version() == 44  # one commit per append (versions 0..44), none lost to a race
    for v in range(dt.version() + 1):
        assert store.read_table(tmp_path, "clips", version=v).num_rows == v + 1
    assert store.read_table(tmp_path, "filters").column("clip_id").to_pylist() == ["c0014"]
    assert store.query(tmp_path, "SELECT count(*) AS n FROM kept").column("n")[0].as_py() == 44  # c0014 dropped


def test_an_out_whose_path_has_spaces_and_accents(tmp_path):
    """delta-rs lists files as percent-encoded URIs ("out%20odd%20%C3%BC/..."): the store reads them by their path."""
    out = tmp_path / "out odd ü"
    with store.ShardWriter(out, "clips") as w:
        w.add_rows([_clip(0), _clip(1, "duration_short")])
    store.replace_table(out, "filters", pa.table({"clip_id": ["c0000"], "drop_reason": ["motion_static"]}))
    assert store.record_version(out, "run") == 1
    assert store.read_table(out, "clips").num_rows == 2
    got = dict(store.open(out).execute("SELECT clip_id, drop_reason FROM clips").fetchall())
    assert got == {"c0000": "motion_static", "c0001": "duration_short"}
    assert store.query(out, "SELECT count(*) AS n FROM clips", version=1).column("n")[0].as_py() == 2


def test_versions_of_a_directory_that_is_not_a_dataset_is_an_error(tmp_path):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "versions", str(tmp_path)], capture_output=True, text=True
    )
    assert r.returncode == 2 and "is not a clipforge dataset" in r.stderr


def test_a_retried_write_stores_its_rows_once_and_a_new_write_stores_them_again(tmp_path):
    """ShardWriter(txn=...): the same rows under the same prefix commit once, whatever their order (a Ray write task
    retried after its commit); under another prefix (the next run rescoring them) they commit
    again. A table in the retention window carries each commit's identifier."""
    rows = [_clip(i) for i in range(6)]
    for attempt in (rows, rows[::-1], rows):  # the first attempt and two retries
        with store.ShardWriter(tmp_path, "clips", cfg=store.StoreConfig(shard_rows=4), txn="run-a") as w:
            w.add_rows(attempt)
    ids = store.read_table(tmp_path, "clips", columns=["clip_id"]).column("clip_id").to_pylist()
    assert sorted(ids) == [r["clip_id"] for r in rows]
    dt = store.delta_table(tmp_path, "clips")
    assert dt.version() == 1  # two commits of at most 4 rows (c0000-c0003, c0004-c0005; a retry sorts by key first)
    assert dt.metadata().configuration["delta.setTransactionRetentionDuration"] == "interval 7 days"
    first = store.write_id("run-a:clips", store.to_table(rows[:4], CLIPS))
    assert dt.transaction_version(first) == 1
    with store.ShardWriter(tmp_path, "clips", cfg=store.StoreConfig(shard_rows=4), txn="run-b") as w:
        w.add_rows(rows)
    assert store.read_table(tmp_path, "clips").num_rows == 12
    with store.ShardWriter(tmp_path, "clips") as w:  # no txn: every write commits
        w.add_rows(rows[:1])
        w.flush()
        w.add_rows(rows[:1])
    assert store.read_table(tmp_path, "clips").num_rows == 14
