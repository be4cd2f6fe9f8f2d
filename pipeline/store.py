"""The store: one Delta Lake table per stored table under OUT/tables/<name>/, and DuckDB views over them.

Each table is a Delta Lake table (the ``deltalake`` package, delta-rs): Parquet data files plus a transaction log
(``_delta_log/``) whose numbered commits say which files make up each version. docs/STORE.md says why Delta Lake
(against Apache Iceberg and Lance) and how to read the tables with other engines.

Two ways a table grows:
- append (``ShardWriter``): stage tables keyed by id (videos, shots, clips, scores, captions). Each flush is one
  Delta commit: a reader, or a resumed run, sees all of a commit's rows or none of them. Many writers (Ray write
  tasks on many workers) commit to the same table at once: appends never conflict (Delta's optimistic
  concurrency retries the commit number).
- replace (``replace_table``): derived tables recomputed whole (filters): an overwrite commit. The files it
  replaces stay on disk, so earlier versions remain readable.

Versions: every writing command that ends (``run``, ``refilter``, ``caption``) records an OUT version
(:func:`record_version`), a commit to the Delta table ``OUT/versions`` whose commit metadata maps every table to its
Delta version at that moment. ``open(out, version=N)`` reads every table as of OUT version N; :func:`versions`
lists them.

``open(out)`` gives a DuckDB connection with the views ``videos``, ``shots``, ``clips`` (the clip rows joined
with every stage table present) and ``kept`` (clips with no drop reason). DuckDB reads the data files a Delta
version lists (``read_parquet``), so nothing here needs DuckDB's ``delta`` extension (a download).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.schema import METADATA_KEY, SCHEMA_VERSION, TABLES, with_version
from stages import camera, storage
from stages.errors import EnvironmentFault
from stages.settings import Settings

CURRENT = "CURRENT"  # the layout before Delta Lake (uuid shards, generation directories): read, then upgraded
VERSIONS = "versions"  # OUT/versions: the Delta table whose commits are OUT's versions
VERSION_KEY = "clipforge.version"  # commit metadata of OUT/versions: {"command", "argv", "tables": {name: v}}
SCHEMA_KEY = METADATA_KEY.decode()  # commit metadata of every table commit: the schema version that wrote it
# Delta table properties set when a table is created. Expired-log cleanup is off so that every OUT version stays
# readable (Delta's default drops log entries older than 30 days at checkpoints; delta.io PROTOCOL.md,
# "delta.logRetentionDuration"); data files go only when a user vacuums.
# Old log entries are never cleaned up on their own (every version stays readable); when `clipforge remove` erases
# history it cleans up to its checkpoint at once (retention 0), which needs no property change on tables made so.
# A write task's commits carry a Delta transaction identifier (``txn``: app id + version; delta.io PROTOCOL.md,
# "Transaction Identifiers") so that a retried write commits nothing twice (:func:`_commit`); the identifiers expire
# after delta.setTransactionRetentionDuration (they matter only while a run may retry a write), so the log does not
# carry every write's identifier for ever.
TABLE_PROPERTIES = {
    "delta.enableExpiredLogCleanup": "false",
    "delta.logRetentionDuration": "interval 0 seconds",
    "delta.setTransactionRetentionDuration": "interval 7 days",
}
# a video's lineage and rights columns, which the clips and kept views show for each of its clips
LINEAGE_COLUMNS = ("source_url", "license", "license_id", "creator", "consent", "tags")
COMMIT_ATTEMPTS = 12  # a commit that a concurrent metadata change refused is written again, with backoff


@dataclass
class StoreConfig(Settings):
    shard_rows: int = 10_000  # rows per data file at most
    shard_bytes: int = 128 * 2**20  # in-memory Arrow bytes per data file at most (embeddings make rows heavy)
    compression: str = "zstd"
    # rows (videos and clips) the run's graph bundles into one write task: fewer, larger commits; a kill loses at
    # most the rows in flight and those waiting for a write (Ray Data's Datasink.min_rows_per_write)
    stream_rows: int = 256
    # a table with more data files than this, most of them small, is compacted at the end of a writing command
    # (Delta OPTIMIZE: files rewritten into ones of up to shard_bytes; a commit that changes no row)
    compact_files: int = 64


class VersionNotFound(LookupError):
    """``open(out, version=N)`` with an N that OUT never recorded."""


def table_dir(out: str | Path, name: str) -> str | Path:
    """Where table ``name`` lives: ``OUT/tables/<name>`` (a ``Path``, or a URI string for an OUT in a bucket)."""
    return storage.under(out, f"tables/{name}")


def _is_delta(d: str | Path) -> bool:
    if not storage.is_uri(d):
        return (Path(d) / "_delta_log").is_dir()
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(str(d), storage_options=storage.delta_options(d))


def delta_table(out: str | Path, name: str, version: int | None = None):
    """The ``deltalake.DeltaTable`` of table ``name`` (as of Delta version ``version``), or None when OUT has no
    such Delta table. Raises ``deltalake.exceptions.DeltaError`` for a version the log does not have."""
    d = table_dir(out, name)
    if not _is_delta(d):
        return None
    from deltalake import DeltaTable

    return DeltaTable(str(d), version=version, storage_options=storage.delta_options(d))


def _legacy_files(out: str | Path, name: str) -> list[Path]:
    """Data files of a table in the layout before Delta Lake (the CURRENT generation for replaced tables)."""
    if storage.is_uri(out):
        return []  # the layout before Delta Lake was local only
    d = table_dir(out, name)
    current = d / CURRENT
    if current.is_file():
        d = d / current.read_text().strip()
    return sorted(d.glob("part-*.parquet")) if d.is_dir() else []


def shard_files(out: str | Path, name: str, version: int | None = None) -> list[str]:
    """The Parquet data files that make up table ``name`` now (or as of its Delta version ``version``), sorted."""
    dt = delta_table(out, name, version)
    if dt is not None:
        # delta-rs gives URIs percent-encoded ("out%20dir/..."); readers (DuckDB, pyarrow, fsspec) want the path
        return sorted(unquote(u) for u in dt.file_uris())
    if version is not None:
        raise VersionNotFound(f"table {name!r} under {out} has no version {version}")
    return [str(p) for p in _legacy_files(out, name)]


def _commit(
    out: str | Path, name: str, table: pa.Table, mode: str, compression: str = "zstd", txn: str | None = None
) -> bool:
    """One Delta commit of ``table`` to table ``name``: ``append`` (new columns merged into the table's schema)
    or ``overwrite`` (the table's rows and schema replaced; old files kept for earlier versions).

    ``txn``: the write's identity (a Delta transaction identifier, delta.io PROTOCOL.md "Transaction Identifiers";
    the same identifier for the same rows in every attempt of a write). When the table already holds a commit with
    it, nothing is written and the result is False: Ray retries a write task whose node died after its commit and
    before its result reached the driver, and the retry must not add the rows again. Two attempts committing at
    once: Delta refuses the second (a concurrent transaction with the same app id), which then finds the first's.
    Returns True when the rows were committed."""
    import random
    import time

    from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
    from deltalake.exceptions import CommitFailedError

    d = table_dir(out, name)
    if not storage.is_uri(d):
        Path(d).parent.mkdir(parents=True, exist_ok=True)
    options = storage.delta_options(d)
    for attempt in range(COMMIT_ATTEMPTS):
        target: Any = str(d)
        props: dict[str, Any] = {"custom_metadata": {SCHEMA_KEY: SCHEMA_VERSION}}
        if txn is not None:
            if _is_delta(d):
                target = DeltaTable(str(d), storage_options=options)
                if target.transaction_version(txn) is not None:
                    return False
            props["app_transactions"] = [Transaction(txn, 1, int(time.time() * 1000))]
        try:
            write_deltalake(
                target,
                table,
                storage_options=options,
                mode=mode,
                schema_mode="merge" if mode == "append" else "overwrite",
                configuration=TABLE_PROPERTIES,
                description=f"clipforge table {name}",
                writer_properties=WriterProperties(compression=compression.upper()),
                commit_properties=CommitProperties(**props),
            )
            return True
        except CommitFailedError:
            # a concurrent commit changed the table's metadata (two writers creating the table at once, a column
            # added) or committed the same write: delta-rs does not rebase such a commit, so write it again against
            # the new state (the files of the failed attempt are never listed by any version)
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            time.sleep(min(2.0, 0.02 * 2**attempt) * random.uniform(0.5, 1.5))
    return False  # unreachable: the last attempt returns or raises


def write_id(prefix: str, table: pa.Table) -> str:
    """The transaction identifier of writing ``table``'s rows under ``prefix`` (a run's id): the prefix and a
    SHA-256 of the rows' keys (``clip_id``, else ``video_id``: the same rows give the same id whatever their order or
    ``written_at``), or of all the rows (Arrow IPC) in a table with neither key."""
    import hashlib

    h = hashlib.sha256(f"{table.num_rows}\n".encode())
    key = next((k for k in ("clip_id", "video_id") if k in table.column_names), None)
    if key is not None:
        h.update("\n".join(sorted(str(v) for v in table.column(key).to_pylist())).encode())
    else:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        h.update(sink.getvalue().to_pybytes())
    return f"clipforge:{prefix}:{h.hexdigest()[:32]}"


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
    """Appends rows to one table: each flush commits them as size-bounded Parquet data files (one Delta commit per
    file; a commit is atomic).

    ``txn``: set by a writer that may be retried (a Ray write task): each commit then carries the identifier
    :func:`write_id` gives its rows under this prefix, and a commit of rows that one with the same identifier
    already stored is skipped (:func:`_commit`). A retried writer must pass the same prefix and the same rows."""

    def __init__(
        self,
        out: str | Path,
        name: str,
        schema: pa.Schema | None = None,
        cfg: StoreConfig | None = None,
        txn: str | None = None,
    ):
        self.out, self.name, self.txn = out, name, txn
        self.schema = with_version(schema if schema is not None else TABLES[name])
        self.cfg = cfg or StoreConfig()
        self._pending: list[pa.Table] = []
        self._rows = 0
        self._bytes = 0

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
        key = next((k for k in ("clip_id", "video_id") if k in table.column_names), None)
        if self.txn is not None and key is not None:  # the same rows in another order slice into the same commits
            table = table.sort_by(key)
        # split so that each shard respects both bounds
        per_row = max(1, table.nbytes // max(1, table.num_rows))
        step = max(1, min(self.cfg.shard_rows, self.cfg.shard_bytes // per_row))
        for start in range(0, table.num_rows, step):
            part = table.slice(start, step)
            txn = None if self.txn is None else write_id(f"{self.txn}:{self.name}", part)
            _commit(self.out, self.name, part, "append", self.cfg.compression, txn)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def replace_table(out: str | Path, name: str, table: pa.Table, cfg: StoreConfig | None = None) -> None:
    """Replace table ``name``'s rows by ``table``: one Delta overwrite commit (readers see the old rows or the new,
    never a mix; the old files stay for earlier versions)."""
    cfg = cfg or StoreConfig()
    if name in TABLES:
        table = conform(table, TABLES[name])
    _commit(out, name, table, "overwrite", cfg.compression)


def read_table(out: str | Path, name: str, columns: list[str] | None = None, version: int | None = None) -> pa.Table:
    """The whole table (as of Delta version ``version``) as one Arrow table; an empty table of the schema when the
    table does not exist. Data files written before a column was added read it as nulls."""
    files = shard_files(out, name, version)
    schema = TABLES.get(name)
    if not files:
        if schema is None:
            raise FileNotFoundError(f"no table {name!r} under {out}")
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    tables = []
    for f in files:
        with storage.open_read(f) as fh:
            pf = pq.ParquetFile(fh)
            names = pf.schema_arrow.names
            tables.append(pf.read(columns=[c for c in columns if c in names] if columns else None))
    table = pa.concat_tables(tables, promote_options="permissive")
    if columns:
        types = {f.name: f.type for f in schema} if schema is not None else {}
        for c in columns:
            if c not in table.column_names:
                table = table.append_column(c, pa.nulls(table.num_rows, types.get(c, pa.null())))
        table = table.select(columns)
    return table


def ids(out: str | Path, name: str, key: str) -> set[str]:
    """The ids already stored in a table: what resume skips."""
    return set(read_table(out, name, columns=[key]).column(key).to_pylist())


def schema_version(out: str | Path, name: str) -> str | None:
    """The schema version that made table ``name``'s latest commit (None: no such table)."""
    dt = delta_table(out, name)
    if dt is None:
        files = _legacy_files(out, name)
        v = (pq.read_schema(files[-1]).metadata or {}).get(METADATA_KEY) if files else None
        return v.decode() if v is not None else None
    for entry in dt.history(1):
        return entry.get(SCHEMA_KEY)
    return None


def delete_where(out: str | Path, name: str, predicate: str) -> int:
    """Delete the rows of table ``name`` matching SQL ``predicate`` (a Delta DELETE commit: the data files holding
    them are rewritten without them). Returns the number of rows deleted (0 when the table does not exist)."""
    dt = delta_table(out, name)
    if dt is None:
        return 0
    return int(dt.delete(predicate).get("num_deleted_rows", 0))


# ---------------------------------------------------------------------------------------------- DuckDB views


# Stage tables keyed by clip_id, joined onto the clip rows in this order when present. A stage table's
# drop_reason (filters) never overrides one set at cut time: the earliest reason wins.
def _clip_stage_tables() -> tuple[str, ...]:
    from stages.catalogue import stages

    names = [s.name for s in stages()]
    names.insert(names.index("captions"), "filters")  # the per-clip filters run before captioning
    return tuple(names)


CLIP_STAGE_TABLES = _clip_stage_tables()  # from the stage catalogue: scores, clip_scores, filters, captions, ...


def _columns(out: str | Path, name: str, version: int | None = None) -> list[str]:
    """Table ``name``'s column names (as of Delta version ``version``): the Delta schema, which holds every column
    any commit added; for the layout before Delta Lake, the union of the data files' columns."""
    dt = delta_table(out, name, version)
    if dt is not None:
        return [f.name for f in dt.schema().fields]
    return list(dict.fromkeys(f.name for shard in shard_files(out, name) for f in pq.read_schema(shard)))


def _arrow_schema(out: str | Path, name: str, version: int | None = None) -> pa.Schema | None:
    dt = delta_table(out, name, version)
    return pa.schema(dt.schema().to_arrow()) if dt is not None else None


def _table_names(out: str | Path) -> list[str]:
    return [d for d in storage.list_dirs(storage.under(out, "tables")) if not d.startswith(".")]


def user_tables(out: str | Path, at: dict[str, int] | None = None) -> list[str]:
    """Tables of the user's own stages (``stages.catalogue``) under OUT: every other table keyed by ``clip_id``, by
    name (``at``: only those in an OUT version's table map). The views join them without importing the stage: the
    store describes itself."""
    known = {"videos", "shots", "clips", *CLIP_STAGE_TABLES}
    names = []
    for name in _table_names(out) if at is None else sorted(at):
        if name not in known and "clip_id" in _columns(out, name, None if at is None else at[name]):
            names.append(name)
    return names


def stamp(table: pa.Table) -> pa.Table:
    """Add ``written_at`` (now) to a stage table: the views keep the latest row per clip_id."""
    import time

    return table.append_column("written_at", pa.array([time.time()] * table.num_rows, pa.float64()))


def _source(out: Path, name: str, version: int | None = None) -> str | None:
    """A DuckDB table expression over table ``name``'s data files (as of its Delta version ``version``); None when
    it has none."""
    files = shard_files(out, name, version)
    # in a bucket every table is Delta Lake (the layout before it was local only), whose data files never change:
    # the filesystem DuckDB reads them through looks their facts up once, not on every query (a HEAD request each)
    storage.immutable(out, files)
    if not files:
        return None
    listing = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"read_parquet([{listing}], union_by_name = true)"


def _empty_relation(con, name: str, schema: pa.Schema | None = None) -> str:
    view = f"_empty_{name}"
    con.register(view, (schema if schema is not None else TABLES[name]).empty_table())
    return view


def _duck_type(column: str) -> str:
    return "VARCHAR[]" if column == "tags" else "VARCHAR"


def open(out: str | Path, *, con=None, skip: tuple[str, ...] = (), version: int | None = None):  # noqa: A001 - `clipforge.open`-style entry point, shadowing is intended
    """A DuckDB connection with views ``videos``, ``shots``, ``clips`` and ``kept`` over OUT's tables, as they are
    now or as of OUT version ``version`` (:func:`versions`; raises :class:`VersionNotFound` for one OUT never
    recorded).

    The connection is in-memory; the Parquet files are only read. Call again to see commits made since.
    """
    import duckdb

    out = storage.location(out)
    if not storage.exists(storage.under(out, "tables")):
        raise FileNotFoundError(f"{out} is not a clipforge dataset (no tables/ directory)")
    at = version_tables(out, version) if version is not None else None

    def source(name: str) -> str | None:
        if at is None:
            return _source(out, name)
        if name not in at:
            return None
        from deltalake.exceptions import DeltaError

        try:
            return _source(out, name, at[name])
        except (DeltaError, OSError) as e:  # its log or files are gone: a removal erased them (one cut off, too)
            raise VersionNotFound(
                f"{out} version {version} cannot be read: table {name} no longer has its Delta version {at[name]} "
                f"(erased by `clipforge remove`; `clipforge versions {out}` lists what can be read)"
            ) from e

    def columns(name: str) -> list[str]:
        return _columns(out, name, None if at is None else at.get(name))

    con = storage.register_duckdb(con or duckdb.connect(":memory:"), out)
    for name in ("videos", "shots"):
        src = source(name) or _empty_relation(con, name)
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {src}")
    base = source("clips") or _empty_relation(con, "clips")
    select = ["c.* EXCLUDE (drop_reason)"]
    joins = []
    reason = "c.drop_reason"
    for name in (*CLIP_STAGE_TABLES, *user_tables(out, at)):
        if name in skip or (at is not None and name not in at):
            continue
        src = source(name)
        if src is None:  # a table whose rows were all replaced by none: its columns, no rows
            schema = _arrow_schema(out, name, None if at is None else at.get(name))
            if schema is None:
                continue
            src = _empty_relation(con, name, schema)
        alias = f"t_{name}"
        cols = columns(name)  # files written before a column was added lack it (union_by_name fills nulls)
        extra = [c for c in cols if c not in ("clip_id", "drop_reason", "written_at")]
        select += [f'{alias}."{c}"' for c in extra]
        if "written_at" in cols:  # appended again on recaption/rescore: the latest row wins
            latest = "QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY written_at DESC) = 1"
            src = f"(SELECT * FROM {src} {latest})"
        joins.append(f"LEFT JOIN {src} AS {alias} USING (clip_id)")
        if "drop_reason" in cols:
            reason = f"COALESCE({reason}, {alias}.drop_reason)"
    select.append(f"{reason} AS drop_reason")
    # each clip shows its video's lineage and rights (stored once, in videos: a corrected licence is one row)
    have = set(columns("videos")) if source("videos") else set()
    taken = {s.rsplit(".", 1)[-1].strip('"') for s in select}
    lineage = [c for c in LINEAGE_COLUMNS if c not in taken]
    # and the input file's path, as source_path: which file a clip came from, without a join
    path = "path" in have and "source_path" not in taken
    if lineage or path:
        cols = [f"v_lineage.{c}" if c in have else f"NULL::{_duck_type(c)} AS {c}" for c in lineage]
        select += cols + (["v_lineage.source_path"] if path else [])
        picked = [c for c in lineage if c in have] + (["path AS source_path"] if path else [])
        if picked:
            joins.append(f"LEFT JOIN (SELECT video_id, {', '.join(picked)} FROM videos) AS v_lineage USING (video_id)")
    clips = f"SELECT {', '.join(select)} FROM {base} AS c {' '.join(joins)}"
    names = {r[0] for r in con.execute(f"DESCRIBE {clips}").fetchall()}
    if set(camera.COLUMNS) <= names and "camera_tags" not in names:  # derived from the camera scores (stages/camera)
        clips = f"SELECT *, {camera.camera_tags_sql()} AS camera_tags FROM ({clips})"
    con.execute(f"CREATE OR REPLACE VIEW clips AS {clips}")
    con.execute("CREATE OR REPLACE VIEW kept AS SELECT * FROM clips WHERE drop_reason IS NULL")
    if at is None:  # what `clipforge remove` took out (pipeline/remove.py): a few rows, read whole
        from pipeline.remove import tombstones

        stones = tombstones(out)
        if stones.num_rows:
            con.register("tombstones", stones)
    return con


def query(out: str | Path, sql: str, version: int | None = None) -> pa.Table:
    """Run ``sql`` over OUT's views (as of OUT version ``version``) and return the result."""
    con = open(out, version=version)
    try:
        rel = con.sql(sql)
        return rel.to_arrow_table() if rel is not None else pa.table({})
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------ versions


def record_version(
    out: str | Path, command: str, extra: dict[str, Any] | None = None, redact: Iterable[str] = ()
) -> int:
    """Record OUT's state as a new OUT version: one commit to ``OUT/versions`` whose commit metadata holds the
    command, its argv, the time and every table's Delta version. Returns the version number (the commit's number in
    ``OUT/versions``; 1 for a new OUT's first command). Concurrent recorders get distinct numbers (Delta commits).
    ``extra``: more JSON-ready metadata for this version (``clipforge remove`` records what it removed)."""
    import socket
    import time
    import uuid

    from deltalake import CommitProperties, write_deltalake

    tables = table_versions(out)
    tag = uuid.uuid4().hex
    meta = {
        "command": command,
        "argv": command_line(redact),  # pastes back into a shell
        "host": socket.gethostname(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "schema_version": SCHEMA_VERSION,
        "tables": tables,
        "tag": tag,
        **(extra or {}),
    }
    path = str(storage.under(out, VERSIONS))
    options = storage.delta_options(path)
    row = pa.table({"command": [command], "at": [time.time()]})
    if not _is_delta(path):  # version 0: the empty OUT
        write_deltalake(path, row.slice(0, 0), mode="append", configuration=TABLE_PROPERTIES, storage_options=options)
    write_deltalake(
        path,
        row,
        mode="append",
        storage_options=options,
        commit_properties=CommitProperties(custom_metadata={VERSION_KEY: json.dumps(meta)}),
    )
    return next(v["version"] for v in reversed(versions(out)) if v["tag"] == tag)


def command_line(redact: Iterable[str] = ()) -> str:
    """This process's command line, shell-quoted so it pastes back; ``clipforge`` for the CLI however it was
    started (the script, or ``python -m pipeline.cli``). Arguments in ``redact`` (a removal's sources) are written
    ``<removed>``."""
    import shlex
    import sys

    hidden = set(redact)
    argv = ["<removed>" if a in hidden else a for a in sys.argv]
    if argv and (Path(argv[0]).name == "clipforge" or Path(argv[0]).parts[-2:] == ("pipeline", "cli.py")):
        argv[0] = "clipforge"
    return shlex.join(argv)


def table_versions(out: str | Path) -> dict[str, int]:
    """Every Delta table of OUT -> its current Delta version."""
    found = {}
    for name in _table_names(out):
        dt = delta_table(out, name)
        if dt is not None:
            found[name] = dt.version()
    return found


def versions(out: str | Path) -> list[dict[str, Any]]:
    """OUT's recorded versions, oldest first: dicts with ``version``, ``command``, ``argv``, ``host``, ``at``,
    ``schema_version`` and ``tables`` (table name -> Delta version). Empty for an OUT with none recorded."""
    path = storage.under(out, VERSIONS)
    if not _is_delta(path):
        return []
    from deltalake import DeltaTable

    found = []
    for entry in DeltaTable(str(path), storage_options=storage.delta_options(path)).history():
        if VERSION_KEY in entry:
            found.append({"version": int(entry["version"]), **json.loads(entry[VERSION_KEY])})
    found.sort(key=lambda v: v["version"])
    # a removal erased the versions before it (pipeline/remove.py); the log may still show the last of them
    erased = {e for v in found for e in v.get("erased_versions") or ()}
    return [v for v in found if v["version"] not in erased]


def version_tables(out: str | Path, version: int) -> dict[str, int]:
    """Table name -> Delta version, as of OUT version ``version``. Raises :class:`VersionNotFound`."""
    known = versions(out)
    for v in known:
        if v["version"] == version:
            return dict(v["tables"])
    listed = ", ".join(str(v["version"]) for v in known) or "none (no writing command has finished on it)"
    erased = next((v for v in known if v.get("removed")), None)
    if erased is not None and version < erased["version"]:
        raise VersionNotFound(
            f"{out} version {version} was erased by `clipforge remove` (version {erased['version']} removed sources "
            f"and the history that held them); its versions: {listed}"
        )
    raise VersionNotFound(f"{out} has no version {version}; its versions: {listed}")


def compact(out: str | Path, cfg: StoreConfig | None = None) -> dict[str, int]:
    """Compact every table with more than ``cfg.compact_files`` data files: Delta OPTIMIZE (bin-packing small files
    into files of up to ``cfg.shard_bytes``; a commit that changes no row, so every version reads the same rows).
    The files it replaces stay for earlier versions. Returns table -> files removed."""
    cfg = cfg or StoreConfig()
    done = {}
    for name in _table_names(out):
        dt = delta_table(out, name)
        if dt is not None and len(dt.file_uris()) > cfg.compact_files:
            metrics = dt.optimize.compact(target_size=cfg.shard_bytes)
            done[name] = int(metrics.get("numFilesRemoved", 0))
    return done


def upgrade(out: str | Path) -> list[str]:
    """Turn tables in the layout before Delta Lake (uuid shards, CURRENT generations) into Delta tables, in place;
    returns the tables upgraded. Safe to interrupt: the Delta table is built beside the old directory and swapped in
    by two renames; a rerun finishes or undoes a half-done swap."""
    if storage.is_uri(out):
        return []  # the layout before Delta Lake was local only
    root = Path(out) / "tables"
    done = []
    if not root.is_dir():
        return done
    for old in sorted(root.glob(".legacy-*")):  # an interrupted swap
        name = old.name[len(".legacy-") :]
        if (root / name).exists():
            shutil.rmtree(old)  # the Delta table is in place: the old files were all copied
        else:
            os.rename(old, root / name)  # the new one never got in: back to the old layout, upgraded below
    for name in _table_names(out):
        d = root / name
        if _is_delta(d):
            continue
        files = _legacy_files(out, name)
        tmp = root / f".upgrade-{name}"
        shutil.rmtree(tmp, ignore_errors=True)
        for f in files:
            _commit(out, tmp.name, pq.read_table(f), "append")
        if not files:
            shutil.rmtree(d)
            continue
        os.rename(d, root / f".legacy-{name}")
        os.rename(tmp, d)
        shutil.rmtree(root / f".legacy-{name}")
        done.append(name)
    return done


class OutInUse(EnvironmentFault):
    """Another clipforge command is writing this OUT: this one stops before touching it (exit 75, retry later)."""

    def __init__(self, message: str):
        RuntimeError.__init__(self, message)
        self.where = "OUT"


LOCK = ".lock"


@contextlib.contextmanager
def writer_lock(out: str | Path, command: str, cfg: StoreConfig | None = None, redact: Iterable[str] = ()):
    """Hold OUT's writer lock for the block: one writing command (``run``, ``refilter``, ``caption``) per OUT at a
    time, so two of them never interleave their rows (two runs would each cut the same new videos and store their
    clips twice). On entry, tables in the layout before Delta Lake are upgraded (:func:`upgrade`); when the block
    ends without an exception, small files are compacted (:func:`compact`) and OUT's state is recorded as a new
    version (:func:`record_version`). A block that raises (or a killed process) records no version: its commits
    are in the tables (a rerun resumes from them) but no version names them until a command ends.

    An exclusive ``flock(2)`` on ``OUT/.lock``, taken without waiting: when another process holds it, raises
    :class:`OutInUse` naming the holder (command, pid, host, start time, written into the file). The kernel drops the
    lock when its process ends, however it ends, so a ``kill -9`` leaves no stale lock and the rerun resumes. The
    holder's record stays in the file after it ends (the last writer). ``flock`` is per host: a cluster run's only
    writer is its driver, so one host is what matters. An OUT in a bucket has no lock (object stores have no
    flock): run one writing command on it at a time yourself; concurrent ones still never corrupt a table.

    Yields a dict the block may fill with JSON-ready metadata for the version it ends with. ``redact``: arguments
    written ``<removed>`` in the recorded command lines (``clipforge remove``'s sources).
    """

    with contextlib.nullcontext() if storage.is_uri(out) else _flock(out, command, redact):
        # (no flock on a bucket: Delta's atomic commits are what keeps its tables whole)
        upgrade(out)
        extra: dict[str, Any] = {}
        yield extra
        compact(out, cfg)
        record_version(out, command, extra, redact)


def lock_held(out: str | Path) -> bool:
    """True when a writing command holds OUT's writer lock now (a local OUT; a bucket has no lock: False)."""
    import fcntl

    if storage.is_uri(out) or not (Path(out) / LOCK).is_file():
        return False
    with (Path(out) / LOCK).open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


@contextlib.contextmanager
def _flock(out: str | Path, command: str, redact: Iterable[str] = ()):
    """Hold the exclusive ``flock`` on ``OUT/.lock`` (see :func:`writer_lock`), recording the holder in it."""
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
            raw = f.read().strip()
            try:
                h = json.loads(raw)
                holder = f"{h['command']}, pid {h['pid']} on {h['host']} since {h['since']}: {h['argv']}"
            except (ValueError, KeyError, TypeError):
                holder = raw or "holder unknown"
            raise OutInUse(
                f"{out} is being written by another clipforge command ({holder}); wait for it to end (or stop it), "
                "then run this one again"
            ) from None
        f.seek(0)
        f.truncate()
        since = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        holder = {"command": command, "argv": command_line(redact), "pid": os.getpid(), "host": socket.gethostname()}
        f.write(json.dumps({**holder, "since": since}))
        f.flush()
        yield
    finally:
        f.close()  # closing the descriptor releases the flock


def write_json(path: str | Path, obj: Any) -> None:
    """Atomic small JSON file (config.json, run records): a local file or an object."""
    storage.write_text(path, json.dumps(obj, indent=2, default=str))


def iter_batches(table: pa.Table, size: int) -> Iterable[pa.Table]:
    for start in range(0, table.num_rows, size):
        yield table.slice(start, size)
