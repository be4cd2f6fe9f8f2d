"""The store: Parquet shards per table under OUT/tables/<name>/, and DuckDB views over them.

Two ways a table grows:
- append (``ShardWriter``): stage tables keyed by id (videos, shots, clips, scores, captions). A shard is
  written to a temporary name in the same directory and renamed into place, so a reader (or a resumed run)
  never sees half a shard. Shards are bounded by rows and by bytes.
- replace (``replace_table``): derived tables recomputed whole (filters). Each version is a generation
  directory; the ``CURRENT`` file (replaced atomically) names the live one.

``open(out)`` gives a DuckDB connection with the views ``videos``, ``shots``, ``clips`` (the clip rows joined
with every stage table present) and ``kept`` (clips with no drop reason).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import METADATA_KEY, TABLES, with_version
from stages.errors import EnvironmentFault

CURRENT = "CURRENT"


@dataclass
class StoreConfig:
    shard_rows: int = 10_000  # rows per shard at most
    shard_bytes: int = 128 * 2**20  # in-memory Arrow bytes per shard at most (embeddings make rows heavy)
    compression: str = "zstd"
    # rows (videos and clips) the run's graph bundles into one write task: fewer, larger shards; a kill loses at
    # most the rows in flight and those waiting for a write (Ray Data's Datasink.min_rows_per_write)
    stream_rows: int = 256


def table_dir(out: str | Path, name: str) -> Path:
    return Path(out) / "tables" / name


def _live_dir(out: str | Path, name: str) -> Path:
    """The directory holding a table's live shards (the CURRENT generation for replaced tables)."""
    d = table_dir(out, name)
    current = d / CURRENT
    if current.is_file():
        return d / current.read_text().strip()
    return d


def shard_files(out: str | Path, name: str) -> list[Path]:
    d = _live_dir(out, name)
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("part-*.parquet"))


def _write_shard(directory: Path, table: pa.Table, compression: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{uuid.uuid4().hex}.parquet"
    tmp = directory / f".{name}.tmp"
    try:
        with tmp.open("wb") as f:
            pq.write_table(table, f, compression=compression)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    except BaseException:  # a full disk (ENOSPC) or a kill: no half-written shard stays behind
        tmp.unlink(missing_ok=True)
        raise
    return directory / name


def to_table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) -> a table of exactly ``schema``: missing keys become nulls, unknown keys are an error."""
    unknown = set().union(*(r.keys() for r in rows)) - set(schema.names) if rows else set()
    if unknown:
        raise KeyError(f"columns not in the schema: {sorted(unknown)}")
    columns = {name: [r.get(name) for r in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=with_version(schema))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in order: missing ones are nulls, extra ones an error."""
    extra = set(table.column_names) - set(schema.names)
    if extra:
        raise KeyError(f"columns not in the schema: {sorted(extra)}")
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=with_version(schema))


class ShardWriter:
    """Appends rows to one table as atomically written, size-bounded Parquet shards."""

    def __init__(self, out: str | Path, name: str, schema: pa.Schema | None = None, cfg: StoreConfig | None = None):
        self.dir = table_dir(out, name)
        self.schema = with_version(schema if schema is not None else TABLES[name])
        self.cfg = cfg or StoreConfig()
        self._pending: list[pa.Table] = []
        self._rows = 0
        self._bytes = 0
        self.written: list[Path] = []

    def add_rows(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.add_table(to_table(rows, self.schema))

    def add_table(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = conform(table, self.schema)
        self._pending.append(table)
        self._rows += table.num_rows
        self._bytes += table.nbytes
        if self._rows >= self.cfg.shard_rows or self._bytes >= self.cfg.shard_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._rows, self._bytes = [], 0, 0
        # split so that each shard respects both bounds
        per_row = max(1, table.nbytes // max(1, table.num_rows))
        step = max(1, min(self.cfg.shard_rows, self.cfg.shard_bytes // per_row))
        for start in range(0, table.num_rows, step):
            self.written.append(_write_shard(self.dir, table.slice(start, step), self.cfg.compression))

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def replace_table(out: str | Path, name: str, table: pa.Table, cfg: StoreConfig | None = None) -> Path:
    """Write ``table`` as a new generation of ``name`` and make it the live one (atomic switch of CURRENT)."""
    cfg = cfg or StoreConfig()
    d = table_dir(out, name)
    d.mkdir(parents=True, exist_ok=True)
    gen = f"gen-{uuid.uuid4().hex[:12]}"
    if name in TABLES:
        table = conform(table, TABLES[name])
    step = max(1, cfg.shard_rows)
    for start in range(0, max(1, table.num_rows), step):
        _write_shard(d / gen, table.slice(start, step), cfg.compression)
    previous = (d / CURRENT).read_text().strip() if (d / CURRENT).is_file() else None
    tmp = d / f".{CURRENT}.tmp"
    tmp.write_text(gen)
    os.replace(tmp, d / CURRENT)
    if previous and previous != gen:
        import shutil

        shutil.rmtree(d / previous, ignore_errors=True)
    return d / gen


def read_table(out: str | Path, name: str, columns: list[str] | None = None) -> pa.Table:
    """The whole table (all live shards) as one Arrow table; an empty table of the schema when none exist."""
    files = shard_files(out, name)
    schema = TABLES.get(name)
    if not files:
        if schema is None:
            raise FileNotFoundError(f"no table {name!r} under {out}")
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    tables = [pq.read_table(f, columns=columns) for f in files]
    return pa.concat_tables(tables, promote_options="permissive")


def ids(out: str | Path, name: str, key: str) -> set[str]:
    """The ids already stored in a table: what resume skips."""
    return set(read_table(out, name, columns=[key]).column(key).to_pylist())


def schema_version(path: str | Path) -> str | None:
    meta = pq.read_schema(path).metadata or {}
    v = meta.get(METADATA_KEY)
    return v.decode() if v is not None else None


# ---------------------------------------------------------------------------------------------- DuckDB views


# Stage tables keyed by clip_id, joined onto the clip rows in this order when present. A stage table's
# drop_reason (filters) never overrides one set at cut time: the earliest reason wins.
def _clip_stage_tables() -> tuple[str, ...]:
    from stages.catalogue import stages

    names = [s.name for s in stages()]
    names.insert(names.index("captions"), "filters")  # the per-clip filters run before captioning
    return tuple(names)


CLIP_STAGE_TABLES = _clip_stage_tables()  # from the stage catalogue: scores, clip_scores, filters, captions, ...


def user_tables(out: str | Path) -> list[str]:
    """Tables of the user's own stages (``stages.catalogue``) under OUT: every other table directory whose shards
    are keyed by ``clip_id``, by name. The views join them without importing the stage: the store describes
    itself."""
    root = Path(out) / "tables"
    known = {"videos", "shots", "clips", *CLIP_STAGE_TABLES}
    names = []
    for d in sorted(root.iterdir()) if root.is_dir() else ():
        if d.is_dir() and d.name not in known and shard_files(out, d.name):
            if "clip_id" in pq.read_schema(shard_files(out, d.name)[0]).names:
                names.append(d.name)
    return names


def stamp(table: pa.Table) -> pa.Table:
    """Add ``written_at`` (now) to a stage table: the views keep the latest row per clip_id."""
    import time

    return table.append_column("written_at", pa.array([time.time()] * table.num_rows, pa.float64()))


def _source(out: Path, name: str) -> str | None:
    files = shard_files(out, name)
    if not files:
        return None
    listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_parquet([{listing}], union_by_name = true)"


def _empty_relation(con, name: str) -> str:
    view = f"_empty_{name}"
    con.register(view, TABLES[name].empty_table())
    return view


def open(out: str | Path, *, con=None, skip: tuple[str, ...] = ()):  # noqa: A001 - `clipforge.open`-style entry point, shadowing is intended
    """A DuckDB connection with views ``videos``, ``shots``, ``clips`` and ``kept`` over OUT's shards.

    The connection is in-memory; the Parquet shards are only read. Call again to see shards written since.
    """
    import duckdb

    out = Path(out)
    if not (out / "tables").is_dir():
        raise FileNotFoundError(f"{out} is not a clipforge dataset (no tables/ directory)")
    con = con or duckdb.connect(":memory:")
    for name in ("videos", "shots"):
        src = _source(out, name) or _empty_relation(con, name)
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {src}")
    base = _source(out, "clips") or _empty_relation(con, "clips")
    select = ["c.* EXCLUDE (drop_reason)"]
    joins = []
    reason = "c.drop_reason"
    for name in (*CLIP_STAGE_TABLES, *user_tables(out)):
        src = None if name in skip else _source(out, name)
        if src is None:
            continue
        alias = f"t_{name}"
        # every shard's columns: shards written before a schema change lack the new ones (union_by_name fills nulls)
        cols = list(dict.fromkeys(f.name for shard in shard_files(out, name) for f in pq.read_schema(shard)))
        extra = [c for c in cols if c not in ("clip_id", "drop_reason", "written_at")]
        select += [f'{alias}."{c}"' for c in extra]
        if "written_at" in cols:  # appended again on recaption/rescore: the latest row wins
            latest = "QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY written_at DESC) = 1"
            src = f"(SELECT * FROM {src} {latest})"
        joins.append(f"LEFT JOIN {src} AS {alias} USING (clip_id)")
        if "drop_reason" in cols:
            reason = f"COALESCE({reason}, {alias}.drop_reason)"
    select.append(f"{reason} AS drop_reason")
    con.execute(f"CREATE OR REPLACE VIEW clips AS SELECT {', '.join(select)} FROM {base} AS c {' '.join(joins)}")
    con.execute("CREATE OR REPLACE VIEW kept AS SELECT * FROM clips WHERE drop_reason IS NULL")
    return con


def query(out: str | Path, sql: str) -> pa.Table:
    con = open(out)
    try:
        rel = con.sql(sql)
        return rel.to_arrow_table() if rel is not None else pa.table({})
    finally:
        con.close()


class OutInUse(EnvironmentFault):
    """Another clipforge command is writing this OUT: this one stops before touching it (exit 75, retry later)."""

    def __init__(self, message: str):
        RuntimeError.__init__(self, message)
        self.where = "OUT"


LOCK = ".lock"


@contextlib.contextmanager
def writer_lock(out: str | Path, command: str):
    """Hold OUT's writer lock for the block: one writing command (``run``, ``refilter``, ``caption``) per OUT at a
    time, so two of them never interleave their rows (two runs would each cut the same new videos and store their
    clips twice).

    An exclusive ``flock(2)`` on ``OUT/.lock``, taken without waiting: when another process holds it, raises
    :class:`OutInUse` naming the holder (command, pid, host, start time, written into the file). The kernel drops the
    lock when its process ends, however it ends, so a ``kill -9`` leaves no stale lock and the rerun resumes. The
    holder's record stays in the file after it ends (the last writer). ``flock`` is per host: a cluster run's only
    writer is its driver, so one host is what matters.
    """
    import fcntl
    import socket
    import time

    path = Path(out) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    f = path.open("a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "holder unknown"
            raise OutInUse(
                f"{out} is being written by another clipforge command ({holder}); wait for it to end (or stop it), "
                "then run this one again"
            ) from None
        f.seek(0)
        f.truncate()
        since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        import sys

        holder = {"command": command, "argv": " ".join(sys.argv), "pid": os.getpid(), "host": socket.gethostname()}
        f.write(json.dumps({**holder, "since": since}))
        f.flush()
        yield
    finally:
        f.close()  # closing the descriptor releases the flock


def write_json(path: Path, obj: Any) -> None:
    """Atomic small JSON file (config.json, run records)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def iter_batches(table: pa.Table, size: int) -> Iterable[pa.Table]:
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size)
