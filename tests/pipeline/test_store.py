"""The Parquet store and its DuckDB views, on real shards."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import store
from pipeline.schema import CLIPS, METADATA_KEY, SCHEMA_VERSION, VIDEOS


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
    assert store.schema_version(files[0]) == SCHEMA_VERSION
    assert pq.read_schema(files[0]).metadata[METADATA_KEY] == SCHEMA_VERSION.encode()
    assert pq.read_schema(files[0]).remove_metadata().equals(CLIPS)


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
    # a leftover temporary file from a killed writer is ignored by readers and views
    d = store.table_dir(tmp_path, "clips")
    d.mkdir(parents=True)
    (d / ".part-dead.parquet.tmp").write_bytes(b"PAR1 half a shard")
    w.close()
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
    # a derived table replaces itself whole; a reason set at cut time is never overridden
    filt = pa.table({"clip_id": ["c0001", "c0002"], "drop_reason": ["motion_static", "aesthetic_low"]})
    store.replace_table(tmp_path, "filters", filt)
    con = store.open(tmp_path)
    got = dict(con.execute("SELECT clip_id, drop_reason FROM clips").fetchall())
    assert got == {"c0000": None, "c0001": "motion_static", "c0002": "duration_short"}
    # re-tuning: the new generation is the only one visible, the old one is gone
    store.replace_table(tmp_path, "filters", pa.table({"clip_id": ["c0000"], "drop_reason": ["quality_dark"]}))
    con = store.open(tmp_path)
    got = dict(con.execute("SELECT clip_id, drop_reason FROM clips").fetchall())
    assert got == {"c0000": "quality_dark", "c0001": None, "c0002": "duration_short"}
    assert len([p for p in store.table_dir(tmp_path, "filters").iterdir() if p.is_dir()]) == 1


def test_read_table_and_ids(tmp_path):
    assert store.read_table(tmp_path, "videos").schema.equals(VIDEOS)
    with store.ShardWriter(tmp_path, "clips", cfg=store.StoreConfig(shard_rows=2)) as w:
        w.add_rows([_clip(i) for i in range(5)])
    assert store.ids(tmp_path, "clips", "clip_id") == {f"c{i:04d}" for i in range(5)}
    assert store.query(tmp_path, "SELECT sum(duration_s) AS s FROM clips").column("s")[0].as_py() == 10.0


def test_clips_view_has_the_columns_of_every_shard_old_and_new(tmp_path):
    """Shards of one stage table written before and after a schema change: the view shows the new columns (null for
    the old rows), whichever shard sorts first."""
    import pyarrow as pa

    from pipeline import store
    from pipeline.schema import CLIPS

    with store.ShardWriter(tmp_path, "clips", CLIPS) as w:
        w.add_rows([{"clip_id": "old"}, {"clip_id": "new"}])
    import pyarrow.parquet as pq

    d = store.table_dir(tmp_path, "scores")
    d.mkdir(parents=True)
    # the old shard sorts first, so a view built from the first shard's columns alone would miss phash_mirror
    pq.write_table(pa.Table.from_pylist([{"clip_id": "old", "motion": 0.1}]), d / "part-0000.parquet")
    new = pa.Table.from_pylist([{"clip_id": "new", "motion": 0.2, "phash_mirror": [1, 2]}])
    pq.write_table(new, d / "part-ffff.parquet")
    got = store.open(tmp_path).execute("SELECT clip_id, motion, phash_mirror FROM clips ORDER BY clip_id").fetchall()
    assert got == [("new", 0.2, [1, 2]), ("old", 0.1, None)]
