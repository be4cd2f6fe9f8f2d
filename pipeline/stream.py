"""The run's one streaming Ray Data graph: input rows in, stored rows out, every stage running at once.

    plan (driver) -> probe -> shots -> cut -> CPU scores -> CLIP -> per-clip filters -> captions -> text match
                  -> StoreSink (workers write Parquet shards; the driver only adds up what was written)

(With ``clips.one_pass`` and the hybrid detector, the default, there is no shot task: the cut task detects the shots
from the frames it decodes to cut, ``stages.onepass``; with ``scores.at_cut``, also the default, it scores them too.)

**Rows.** One typed Arrow schema (:func:`stream_schema`) crosses Ray: a struct column per stored table
(``videos``, ``shots``, ``clips``, ``scores``, ...; each struct's fields are exactly that table's columns from
``pipeline.schema``), plus ``input`` (the ingest row), ``skip_ids`` (clip ids of the video stored already),
``stored`` (the tables this row's structs were read from: not written again) and ``drop_reason`` (the per-clip
filters' verdict, which decides who is captioned). A video is one row from the plan through the cut; the cut
adds one row per clip. Each stage fills its own struct on the rows it applies to and passes every other row on.

**Who writes.** :class:`StoreSink` write tasks (workers) append each struct column's rows to its table as atomic
shards (``pipeline.store.ShardWriter``), ``store.stream_rows`` rows per write. The driver plans (anti-joins in
DuckDB and Arrow against what is stored), starts the graph, and receives per-table row counts.

**Resume.** Nothing is bookkept beyond the stored rows. What a rerun does (:func:`plan`):

- an input path without a ``videos`` row is probed (its content hash and video id are computed while planning, so
  duplicate files are decided before the graph starts, by path order: a global step over the file listing);
- an ok video is finished when its ``shots`` row is stored and its stored clip rows number its ``n_clips``;
  an unfinished video is detected again only if it has no ``shots`` row, and is cut again for exactly the clips
  not stored (``skip_ids``): clip ids are a function of the content and the settings, so they equal an
  uninterrupted run's and none is written twice;
- a stored clip without its ``scores`` row (or ``clip_scores`` row, when CLIP runs) enters the graph at that
  stage, with the stage rows it has; so does one whose ``scores`` row predates a score every row now has
  (:func:`_stale`: an OUT scored before schema 8's ``isotropy`` is rescored once, its clips not cut again). With
  ``scores.at_cut`` its CPU scores come from the frames its encoder received, re-made from the source
  (:func:`score_rows`), so they equal an uninterrupted run's.

Captions and text-match scores of clips a kill interrupted are caught up after the graph by the same functions as
``clipforge caption`` (pipeline/run.py), on the clips that survive every filter, dedup included.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from ray.data import Datasink

from pipeline import store
from pipeline.schema import TABLES, VIDEOS
from stages import storage
from stages.errors import raise_if_environment

# stored tables carried as struct columns, in the order a write task stores them (the user's stages, registered by
# use_stages, go after clip_scores: they run before the per-clip filters)
_BASE_TABLES = ("videos", "shots", "clips", "scores", "clip_scores", "captions", "text_scores")
STREAM_TABLES: list[str] = list(_BASE_TABLES)

INPUT = pa.struct(
    [
        ("path", pa.string()),
        ("original_caption", pa.string()),
        ("spans", VIDEOS.field("spans").type),
        ("input_error", pa.string()),
        ("content_hash", pa.string()),  # planned_hash: known before probing, so duplicates are decided first
        ("video_id", pa.string()),
        ("duplicate_of", pa.string()),
        ("size_bytes", pa.int64()),
        *(VIDEOS.field(k) for k in ("source_url", "license", "creator", "consent", "tags")),
    ]
)


def table_fields(name: str) -> list[pa.Field]:
    """The stored columns of table ``name`` that a stage fills (``written_at`` is added by the sink)."""
    return [f for f in TABLES[name] if f.name != "written_at"]


def stream_schema() -> pa.Schema:
    """The one schema of every block in the graph (see the module docstring)."""
    fields = [
        pa.field("input", INPUT),
        pa.field("skip_ids", pa.list_(pa.string())),
        pa.field("stored", pa.list_(pa.string())),
        pa.field("drop_reason", pa.string()),
    ]
    fields += [pa.field(name, pa.struct(table_fields(name))) for name in STREAM_TABLES]
    return pa.schema(fields)


STREAM = stream_schema()


def use_stages(extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Make this process's stream schema the built-in tables plus exactly the user's stages ``extra`` (the config's
    ``stages`` list; their tables go before ``captions``: they run before the per-clip filters). Every graph task,
    actor and write task calls it first (workers import this module afresh, and a worker or a notebook may serve
    runs with different stages). Idempotent. Returns the user stages' table names."""
    global STREAM
    from pipeline.schema import register

    names = register(extra)
    wanted = list(_BASE_TABLES)
    for name in names:
        wanted.insert(wanted.index("captions"), name)
    if wanted != STREAM_TABLES:
        STREAM_TABLES[:] = wanted
        STREAM = stream_schema()
    return names


# ------------------------------------------------------------------------------------------- struct helpers


def empty_rows(n: int) -> pa.Table:
    return pa.Table.from_arrays([pa.nulls(n, f.type) for f in STREAM], schema=STREAM)


def from_rows(rows: list[dict[str, Any]]) -> pa.Table:
    """Stream rows from dicts {column: value or struct dict}; missing columns are null."""
    return pa.Table.from_pylist(rows, schema=STREAM) if rows else empty_rows(0)


def struct_rows(batch: pa.Table, name: str, mask: pa.Array) -> list[dict[str, Any]]:
    """The ``name`` struct of the rows ``mask`` selects, as dicts."""
    return batch.column(name).filter(mask).to_pylist()


def valid(batch: pa.Table, name: str) -> pa.Array:
    return pc.is_valid(batch.column(name))


def field_of(batch: pa.Table, name: str, field: str) -> pa.ChunkedArray:
    return pc.struct_field(batch.column(name), field)


def put(batch: pa.Table, name: str, mask: pa.Array, values: pa.Table | list[dict[str, Any]]) -> pa.Table:
    """``batch`` with struct column ``name`` set to ``values`` (one row per selected row, in order) where
    ``mask`` is true; other rows keep theirs."""
    typ = STREAM.field(name).type
    if isinstance(values, list):
        values = pa.Table.from_pylist(values, schema=pa.schema(list(typ)))
    values = store.conform(values, pa.schema(list(typ))).replace_schema_metadata(None)
    arrays = [c.combine_chunks() for c in values.columns]
    new = pa.StructArray.from_arrays(arrays, fields=list(typ)) if values.num_rows else pa.array([], typ)
    selected = mask.to_pylist()
    idx, k = [], 0
    for hit in selected:
        idx.append(k if hit else None)
        k += bool(hit)
    placed = new.take(pa.array(idx, pa.int64()))
    old = batch.column(name).combine_chunks()
    merged = pc.if_else(pa.array(selected, pa.bool_()), placed, old)
    return batch.set_column(STREAM.get_field_index(name), STREAM.field(name), merged)


def _mask(*conditions) -> pa.Array:
    m = conditions[0]
    for c in conditions[1:]:
        m = pc.and_(m, c)
    m = pc.fill_null(m, False)
    return m.combine_chunks() if isinstance(m, pa.ChunkedArray) else m


def clip_todo(batch: pa.Table, name: str) -> pa.Array:
    """Rows that are cut clips without a ``name`` row yet."""
    return _mask(
        valid(batch, "clips"), pc.is_valid(field_of(batch, "clips", "clip_path")), pc.invert(valid(batch, name))
    )


# -------------------------------------------------------------------------------------------- video stages


def probe_rows(batch: pa.Table, drop_hdr: bool) -> pa.Table:
    """Probe stage (Ray task): a ``videos`` row for every input row that has none; duplicate files planned as
    such get status ``duplicate``; ``drop_hdr`` excludes HDR sources (``stages.probe.exclude_hdr``)."""
    from stages.probe import exclude_hdr, probe

    mask = _mask(valid(batch, "input"), pc.invert(valid(batch, "videos")))
    out = []
    for row in struct_rows(batch, "input", mask):
        v = probe(row)
        if drop_hdr:
            v = exclude_hdr(v)
        if v["status"] == "ok" and row.get("duplicate_of"):
            v.update(status="duplicate", duplicate_of=row["duplicate_of"])
        out.append(v)
    return put(batch, "videos", mask, out)


def _needs_shots(batch: pa.Table) -> pa.Array:
    return _mask(pc.equal(field_of(batch, "videos", "status"), "ok"), pc.invert(valid(batch, "shots")))


def shots_rows(batch: pa.Table, cfg) -> pa.Table:
    """Shot stage (Ray task, detectors without a model): a ``shots`` row for every ok video without one."""
    from stages.shots import shots_row

    mask = _needs_shots(batch)
    return put(batch, "shots", mask, [shots_row(v, cfg) for v in struct_rows(batch, "videos", mask)])


def cut_rows(batch: pa.Table, out: str, cfg, scores=None, shots=None) -> pa.Table:
    """Cut stage (Ray task): every video with a shots row and no shot error is planned and cut (except the clips
    in ``skip_ids``); its row gets the shots row's times, n_clips and cut_s, and one row per clip follows it.

    ``shots``: the shot config when this task also detects the shots (``clips.one_pass`` with the hybrid detector:
    the graph has no shot stage then): an ok video without a shots row gets one here, from the same decode as its
    clips (``stages.onepass.detect_and_cut``), or from ``stages.shots.shots_row`` when one pass does not apply to it
    (given spans).

    ``scores``: the CPU scorer's config when it runs here (``scores.at_cut``): each clip's ``scores`` row is computed
    from the frames the cutter hands its encoder (``CpuScorer.score_encoded``; from the file when the cutter's guess
    of the clip's length was off), by a scorer built once per worker process (:func:`stages.cpu_scores.shared`)."""
    from stages.clips import cut_video

    todo = _mask(
        valid(batch, "shots"),
        pc.is_null(field_of(batch, "shots", "error")),
        pc.equal(field_of(batch, "videos", "status"), "ok"),
        pc.invert(valid(batch, "clips")),
    ).to_pylist()
    detect = _needs_shots(batch).to_pylist() if shots is not None else [False] * batch.num_rows
    todo = [a or b for a, b in zip(todo, detect, strict=True)]
    scorer, scored = None, {}
    if scores is not None and any(todo):
        from stages.cpu_scores import shared

        scorer = shared(scores)

    def on_clip(row: dict[str, Any], frames: dict) -> None:
        scored[row["clip_id"]] = scorer.score_cut(row, frames)

    pieces = []
    for i, hit in enumerate(todo):
        row = batch.slice(i, 1)
        if not hit:
            pieces.append(row)
            continue
        video, found = row.column("videos")[0].as_py(), row.column("shots")[0].as_py()
        skip = row.column("skip_ids")[0].as_py() or ()
        hooks = {"sample": scorer.wanted, "on_clip": on_clip} if scorer is not None else {}
        cut, clips = not detect[i], []
        if detect[i]:
            from stages import onepass
            from stages.shots import shots_row

            if onepass.applies(video, shots, cfg):
                found, clips = onepass.detect_and_cut(video, shots, out, cfg, skip_ids=skip, **hooks)
            else:  # given spans: their shots row, then the cut
                found = shots_row(video, shots)
                cut = not found["error_type"]
        if cut:
            found, clips = cut_video(video, found, out, cfg, skip_ids=skip, **hooks)
        pieces.append(put(row, "shots", pa.array([True]), [found]))
        pieces.append(from_rows([{"clips": c, "scores": scored.pop(c["clip_id"], None)} for c in clips]))
    return pa.concat_tables(pieces) if pieces else batch


def score_rows(batch: pa.Table, cfg, reads: dict[str, str], out: str | None = None, clips_cfg=None) -> pa.Table:
    """CPU scores stage as a Ray task (``scores.at_cut``: only clips the cut did not score come here, those stored
    by an earlier run and owed a ``scores`` row), by the process's shared scorer: from the frames their encoder
    received, re-made from the source (:func:`_tapped_scores`), so a resumed clip gets the scores an uninterrupted
    run gives it; from the clip file where that cannot be done."""
    mask = clip_todo(batch, "scores")
    if not pc.any(mask).as_py():
        return batch
    from stages.cpu_scores import shared

    scorer = shared(cfg)
    rows = struct_rows(batch, "clips", mask)
    scored = _tapped_scores(rows, out, clips_cfg, scorer) if out is not None and clips_cfg is not None else {}
    ids = field_of(batch, "clips", "clip_id")
    filed = _mask(mask, pc.invert(pc.is_in(ids, pa.array(list(scored), pa.string()))))
    if pc.any(filed).as_py():
        scored.update((r["clip_id"], r) for r in scorer(_clip_inputs(batch, filed, reads)).to_pylist())
    return put(batch, "scores", mask, [scored[r["clip_id"]] for r in rows])


def _tapped_scores(rows: list[dict[str, Any]], out: str, clips_cfg, scorer) -> dict[str, dict[str, Any]]:
    """Scores rows of stored clips from the frames their encoder received, re-made from each source up to the
    encoder's input (``stages.clips.cut_clips`` with ``tap``; nothing encoded or written). Only for a source still at
    its path with the content hash its ``videos`` row records (a changed file would give other frames), and only for
    clips cut with this run's clip settings (their ``settings`` column: another size, rate or cut version makes other
    frames) and without ``clips.crop_bars`` (its crop box is measured over the clips cut together); a clip whose
    re-made frame count differs from its row's is left out too. What is left out, or what this fails on, is scored
    from its file by the caller."""
    try:
        return _tap(rows, out, clips_cfg, scorer)
    except Exception as e:  # noqa: BLE001 - the file is the fallback; the environment's errors stop the run
        raise_if_environment(e, "re-making stored clips' frames from their sources")
        return {}


def _tap(rows, out, clips_cfg, scorer) -> dict[str, dict[str, Any]]:
    import json

    from pipeline import store
    from stages.clips import cut_clips, settings_of
    from stages.probe import planned_hash

    if clips_cfg.crop_bars or not rows:
        return {}
    con = store.open(out)
    try:
        ids = sorted({r["video_id"] for r in rows})
        found = con.execute(
            "SELECT video_id, path, content_hash, fps FROM videos WHERE video_id IN (SELECT unnest(?))", [ids]
        ).fetchall()
    finally:
        con.close()

    def same_settings(r: dict[str, Any]) -> bool:
        try:
            had = json.loads(r.get("settings") or "{}")
        except ValueError:
            return False
        return had == settings_of(clips_cfg, had.get("detector", ""))

    videos = {vid: {"path": p, "content_hash": h, "fps": fps} for vid, p, h, fps in found}
    scored: dict[str, dict[str, Any]] = {}

    def on_clip(row: dict[str, Any], frames: dict) -> None:
        scored[row["clip_id"]] = scorer.score_cut(row, frames)

    for vid in ids:
        video = videos.get(vid)
        if video is None or not video["content_hash"] or planned_hash(video["path"]) != video["content_hash"]:
            continue
        mine = [dict(r, drop_reason=None) for r in rows if r["video_id"] == vid and r.get("num_frames")]
        mine = [r for r in mine if same_settings(r)]
        if not mine:
            continue
        tap = {r["clip_id"]: frozenset(scorer.wanted(int(r["num_frames"]), float(r["fps"]))) for r in mine}
        cut_clips(video["path"], video, mine, out, clips_cfg, tap=tap, on_clip=on_clip)
    return scored


# ----------------------------------------------------------------------------------------- per-clip stages


def _clip_inputs(batch: pa.Table, mask: pa.Array, reads: dict[str, str]) -> dict[str, list]:
    """Stage input columns from struct fields: {input name: "table.field"}."""
    cols = {}
    for name, source in reads.items():
        table, field = source.split(".")
        cols[name] = field_of(batch, table, field).filter(mask).to_pylist()
    return cols


class ClipStage:
    """A per-clip stage as a Ray actor: limits the worker's threads to the stage's CPUs
    (``stages.resources.limit_threads``), builds the stage once, then fills the stage's struct column ``table`` on
    the rows that need it (cut clips without that row; with ``only_kept``, only those the per-clip filters keep).
    The stage itself sees a dict of its input columns (``reads``: {name: "table.field"}) and returns its table's
    rows as Arrow, exactly as when it runs alone (``clipforge caption``, tests)."""

    def __init__(
        self, stage_cls, table: str, cpus: float, reads: dict[str, str], only_kept=False, busy=None, extra=(), **kwargs
    ):
        from stages.resources import limit_threads

        use_stages(extra)
        limit_threads(cpus)
        self.stage = stage_cls(**kwargs)
        limit_threads(cpus)  # again: the stage may have imported torch
        self.table, self.reads, self.only_kept, self.busy = table, reads, only_kept, busy

    def todo(self, batch: pa.Table) -> pa.Array:
        mask = clip_todo(batch, self.table)
        return _mask(mask, pc.is_null(batch.column("drop_reason"))) if self.only_kept else mask

    def inputs(self, batch: pa.Table, mask: pa.Array) -> dict[str, list] | list[dict]:
        return _clip_inputs(batch, mask, self.reads)

    def __call__(self, batch: pa.Table) -> pa.Table:
        t0 = time.time()
        mask = self.todo(batch)
        if pc.any(mask).as_py():
            batch = put(batch, self.table, mask, self.run(batch, mask))
        record_busy(self.busy, self.table, t0, time.time(), batch.num_rows)
        return batch

    def run(self, batch: pa.Table, mask: pa.Array) -> pa.Table | list[dict[str, Any]]:
        """The stage on the selected rows. A stage should return errors as data; one that raises anyway has its
        exception recorded in its ``error_<table>`` column (null scores: no score-based rule then reads them, and a
        rule on that column drops the clips) when its schema has one, else the run stops with the error."""
        inputs = self.inputs(batch, mask)
        try:
            return self.stage(inputs)
        except Exception as e:
            raise_if_environment(e, f"stage {self.table}")
            column = f"error_{self.table}"
            if column not in STREAM.field(self.table).type.names:
                raise RuntimeError(
                    f"stage {self.table!r} raised {type(e).__name__}: {e}; a stage returns errors as data (a schema "
                    f"column {column!r} would have recorded this one)"
                ) from e
            msg = f"{column}:{type(e).__name__}: {str(e).replace(chr(10), ' ')[:500]}"
            ids = field_of(batch, "clips", "clip_id").filter(mask).to_pylist()
            return [{"clip_id": c, column: msg} for c in ids]


class ShotsActor(ClipStage):
    """The shot stage with a model (``stages.shots.TransNetShots``): the network loads once per actor."""

    def todo(self, batch: pa.Table) -> pa.Array:
        return _needs_shots(batch)

    def run(self, batch: pa.Table, mask: pa.Array) -> list[dict[str, Any]]:
        return [self.stage(v) for v in struct_rows(batch, "videos", mask)]  # shots_row never raises


class TextStage(ClipStage):
    """CLIP text-video match of the clips captioned in this graph (dense caption against the clip embedding)."""

    def todo(self, batch: pa.Table) -> pa.Array:
        return _mask(
            clip_todo(batch, "text_scores"),
            pc.is_valid(field_of(batch, "captions", "caption_dense")),
            pc.is_valid(field_of(batch, "clip_scores", "clip_embedding")),
        )

    def inputs(self, batch: pa.Table, mask: pa.Array) -> dict[str, list]:
        cols = _clip_inputs(batch, mask, self.reads)
        cols["text_column"] = ["caption_dense"] * len(cols["clip_id"])
        return cols


def record_busy(directory: str | None, stage: str, t0: float, t1: float, rows: int) -> None:
    """Append one busy interval (stage, start, end in epoch seconds, rows) to ``directory``/<pid>.jsonl: how the
    bench shows that stages overlap. One line per batch; a failure to record never fails the stage."""
    if not directory:
        return
    import json
    import os

    try:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"{os.getpid()}.jsonl"), "a") as f:
            f.write(json.dumps({"stage": stage, "t0": t0, "t1": t1, "rows": rows}) + "\n")
    except OSError:
        pass


def filter_rows(batch: pa.Table, cfg, extra=()) -> pa.Table:
    """Per-clip filters (Ray task): ``drop_reason`` of every clip row from its clip and score columns
    (``stages.filters.apply_filters``, the rules ``clipforge refilter`` applies; a reason set at cut time wins).
    Decides who is captioned; the stored drop reasons are the filters table written after the graph."""
    from stages.filters import apply_filters, columns

    mask = valid(batch, "clips").combine_chunks() if batch.num_rows else pa.array([], pa.bool_())
    if not pc.any(mask).as_py():
        return batch
    wanted = set(columns(extra))
    cols: dict[str, Any] = {}
    for table in STREAM_TABLES[STREAM_TABLES.index("clips") : STREAM_TABLES.index("captions")]:
        for f in STREAM.field(table).type:
            if f.name in wanted and f.name not in cols:
                cols[f.name] = pc.struct_field(batch.column(table), f.name)
    reasons = apply_filters(pa.table(cols), cfg, extra)
    at_cut = field_of(batch, "clips", "drop_reason")
    final = pc.if_else(mask, pc.coalesce(at_cut, reasons), pa.nulls(batch.num_rows, pa.string()))
    return batch.set_column(STREAM.get_field_index("drop_reason"), "drop_reason", final)


def skip_caption_rows(batch: pa.Table, model: str, why: str) -> pa.Table:
    """Without the caption model's weights: the clips the filters keep are marked ``skipped_no_model`` (a later
    ``clipforge caption`` fills them)."""
    mask = _mask(clip_todo(batch, "captions"), pc.is_null(batch.column("drop_reason")))
    ids = field_of(batch, "clips", "clip_id").filter(mask).to_pylist()
    rows = [
        {"clip_id": c, "caption_model": model, "caption_status": "skipped_no_model", "error_caption": why} for c in ids
    ]
    return put(batch, "captions", mask, rows)


class StoreSink(Datasink):
    """Ray Data datasink: each write task (a worker) appends every struct column's new rows to its table, as atomic
    shards, in ``STREAM_TABLES`` order; per-clip stage rows get ``written_at``. Returns per-table row counts, which
    the driver adds up (:attr:`written`). Rows whose table is in their ``stored`` list were read from the store
    and are not written again. ``rows_per_write``: Ray Data bundles at least this many rows into one write (the
    last write of a run takes what is left), so shards are not one per block; a kill loses at most the rows in
    flight and the ones waiting for a write.

    Exactly once: Ray retries a write task whose node died, even one that had committed before it died (its
    result never reached the driver). Each commit carries a transaction identifier made of this sink's
    :attr:`write_id` (one per graph, new on every run) and its rows' keys (``pipeline.store.write_id``), so the retry
    skips what the first attempt stored (a counted row is then counted again in :attr:`written`, never stored
    twice)."""

    def __init__(self, out: str, store_cfg, rows_per_write: int, extra=()):
        import uuid

        self.out, self.store_cfg, self.rows_per_write, self.extra = out, store_cfg, rows_per_write, tuple(extra)
        self.write_id = uuid.uuid4().hex
        use_stages(self.extra)
        self.written: dict[str, int] = dict.fromkeys(STREAM_TABLES, 0)

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_write

    def get_name(self) -> str:
        return "Store"

    def write(self, blocks: Iterable[pa.Table], ctx) -> dict[str, int]:
        use_stages(self.extra)
        tables = [b for b in blocks if b.num_rows]
        if not tables:
            return {}
        batch = pa.concat_tables(tables)
        stored = batch.column("stored").to_pylist()
        counts = {}
        for name in STREAM_TABLES:
            fresh = [s is None or name not in s for s in stored]
            mask = _mask(valid(batch, name), pa.array(fresh, pa.bool_()))
            if not pc.any(mask).as_py():
                continue
            rows = pa.Table.from_struct_array(batch.column(name).filter(mask))
            if "written_at" in TABLES[name].names:
                rows = store.stamp(rows)
            with store.ShardWriter(self.out, name, cfg=self.store_cfg, txn=self.write_id) as w:
                w.add_table(rows)
            counts[name] = rows.num_rows
        return counts

    def on_write_complete(self, write_result) -> None:
        for counts in write_result.write_returns:
            for name, n in (counts or {}).items():
                self.written[name] += n


class TableSink(Datasink):
    """Ray Data datasink for one stage table (``clipforge caption``, the catch-up after a graph): write tasks append
    the blocks, stamped with ``written_at``, as atomic shards of table ``name``; :attr:`written` counts rows. A
    retried write task stores nothing twice (as :class:`StoreSink`)."""

    def __init__(self, out: str, name: str, store_cfg):
        import uuid

        self.out, self.name, self.store_cfg = out, name, store_cfg
        self.write_id = uuid.uuid4().hex
        self.written = 0

    def get_name(self) -> str:
        return f"Store_{self.name}"

    def write(self, blocks: Iterable[pa.Table], ctx) -> int:
        n = 0
        with store.ShardWriter(self.out, self.name, cfg=self.store_cfg, txn=self.write_id) as w:
            for block in blocks:
                if block.num_rows:
                    w.add_table(store.stamp(block))
                    n += block.num_rows
        return n

    def on_write_complete(self, write_result) -> None:
        self.written += sum(write_result.write_returns)


# ------------------------------------------------------------------------------------------------- planning


@dataclasses.dataclass
class Plan:
    """What the graph does on this run: the video rows to start it (typed Arrow, one per video) and the file of
    stored clip rows it still owes a stage row (None when none do)."""

    videos: pa.Table
    clips_file: Path | None
    new_files: int = 0
    unfinished: int = 0
    clips_todo: int = 0


def plan(out: Path, cfg, inputs: list[dict[str, Any]], hashes: dict[str, str | None], clip_stage: bool) -> Plan:
    """The driver's plan, from anti-joins against the stored tables (DuckDB over the shards; nothing per clip is
    held in Python): new input paths, unfinished ok videos with their stored clip ids, stored clips lacking a
    stage row (written by DuckDB to ``OUT/.plan/clips.parquet``). ``hashes``: path -> planned content hash.
    Holds one small row per input file (path, hash, ids), never one per clip."""
    import duckdb

    from stages.probe import video_id_for

    known = store.read_table(out, "videos", columns=["path", "video_id", "status", "content_hash"]).to_pylist()
    known_paths = {v["path"] for v in known}
    new = [dict(r) for r in inputs if r["path"] not in known_paths]
    for r in new:
        r["content_hash"] = hashes.get(r["path"])
        r["video_id"] = video_id_for(r["content_hash"], r["path"])
        r["size_bytes"] = _size(r["path"])
    _mark_duplicates(known, new)

    wanted = [r["video_id"] for r in new] + [v["video_id"] for v in known if v["status"] == "ok"]
    shots, clips = store._source(out, "shots"), store._source(out, "clips")
    con = storage.register_duckdb(duckdb.connect(), out)
    try:
        con.register("wanted", pa.table({"video_id": pa.array(wanted, pa.string())}))
        stored_ids = "NULL::VARCHAR[]"
        joins = ""
        if clips:
            joins += (
                " LEFT JOIN (SELECT video_id, list(clip_id ORDER BY clip_id) AS ids, count(*) AS n "
                f"FROM {clips} GROUP BY ALL) c USING (video_id)"
            )
            stored_ids = "c.ids"
        finished = "FALSE"
        if shots:
            joins += (
                f" LEFT JOIN (SELECT video_id, max(n_clips) AS n_clips FROM {shots} GROUP BY ALL) s USING (video_id)"
            )
            have = "coalesce(c.n, 0)" if clips else "0"
            finished = f"(s.video_id IS NOT NULL AND {have} >= coalesce(s.n_clips, 0))"
        q = f"SELECT w.video_id, {stored_ids}, s.video_id IS NOT NULL FROM wanted w{joins} WHERE NOT {finished}"
        if not shots:
            q = q.replace(", s.video_id IS NOT NULL", ", FALSE")
        todo = {vid: ids for vid, ids, _ in con.execute(q).fetchall()}
    finally:
        con.close()

    rows: list[dict[str, Any]] = []
    for r in sorted(new, key=lambda r: -(r["size_bytes"] or 0)):  # big files first: a long tail starts early
        rows.append({"input": {k: r.get(k) for k in INPUT.names}, "skip_ids": todo.get(r["video_id"])})
    unfinished = [v["video_id"] for v in known if v["status"] == "ok" and v["video_id"] in todo]
    if unfinished:
        rows += _stored_videos(out, unfinished, todo)
    clips_file = _clips_todo(out, clip_stage, use_stages(getattr(cfg, "stages", ())))
    n_clips = 0
    if clips_file is not None:
        import pyarrow.parquet as pq

        n_clips = pq.ParquetFile(clips_file).metadata.num_rows
    return Plan(from_rows(rows), clips_file if n_clips else None, len(new), len(unfinished), n_clips)


def _size(path: str) -> int | None:
    from stages import storage

    try:
        return storage.size(path)
    except (OSError, ValueError):
        return None


def _struct(row: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    return None if row is None else {f.name: row.get(f.name) for f in STREAM.field(name).type}


def _stored_videos(out: Path, unfinished: list[str], todo: dict[str, Any]) -> list[dict[str, Any]]:
    """Stream rows for stored ok videos that are not finished: their videos row, and their shots row when stored
    (then the video is cut again without detecting again)."""
    import duckdb

    con = storage.register_duckdb(duckdb.connect(), out)
    try:
        con.register("ids", pa.table({"video_id": pa.array(unfinished, pa.string())}))
        videos = con.sql(
            f"SELECT * FROM {store._source(out, 'videos')} SEMI JOIN ids USING (video_id)"
        ).to_arrow_table()
        shots_src = store._source(out, "shots")
        shots = {}
        if shots_src:
            q = f"SELECT * FROM {shots_src} SEMI JOIN ids USING (video_id)"
            shots = {s["video_id"]: s for s in con.sql(q).to_arrow_table().to_pylist()}
    finally:
        con.close()
    rows = []
    for v in videos.to_pylist():
        s = shots.get(v["video_id"])
        stored = ["videos"] + (["shots"] if s is not None else [])
        rows.append(
            {
                "videos": _struct(v, "videos"),
                "shots": _struct(s, "shots"),
                "skip_ids": todo[v["video_id"]],
                "stored": stored,
            }
        )
    return rows


def _stale(name: str) -> str | None:
    """SQL over ``t_<name>``: a stored row written before its table gained a column every such row now has
    (``cpu_scores.SUPERSEDED``). It is done again (its rule would skip the clip silently otherwise): the row's stage
    runs once more and the new row (later written_at) wins."""
    if name != "scores":
        return None
    from stages.cpu_scores import superseded_sql

    return superseded_sql(f"t_{name}.")


def _clips_todo(out: Path, clip_stage: bool, extra_tables: list[str] = ()) -> Path | None:
    """Stored cut clips lacking a ``scores`` row (or a ``clip_scores`` row when ``clip_stage``), each with the stage
    rows it has, written by DuckDB straight to ``OUT/.plan/clips.parquet`` (no clip row passes through Python)."""
    import duckdb

    clips = store._source(out, "clips")
    if clips is None:
        return None
    joins, select, missing, stored = [], ["c AS clips"], [], ["'clips'"]
    for name in ("scores", "clip_scores", *extra_tables):
        owed = name != "clip_scores" or clip_stage
        src = store._source(out, name)
        if src is None:
            select.append(f"NULL AS {name}")
            missing += ["TRUE"] if owed else []
            continue
        # a table written before a column was added (an OUT of an older schema) lacks it: null, as the views do
        have = set(store._columns(out, name))
        cols = ", ".join(f'"{f.name}"' if f.name in have else f'NULL AS "{f.name}"' for f in table_fields(name))
        latest = (
            f"SELECT {cols} FROM {src} QUALIFY row_number() OVER (PARTITION BY clip_id ORDER BY written_at DESC) = 1"
        )
        joins.append(f"LEFT JOIN ({latest}) t_{name} USING (clip_id)")
        stale = _stale(name)
        absent = f"t_{name}.clip_id IS NULL" + (f" OR ({stale})" if stale else "")
        select.append(f"CASE WHEN {absent} THEN NULL ELSE t_{name} END AS {name}")
        missing += [f"({absent})"] if owed else []
        stored.append(f"CASE WHEN {absent} THEN NULL ELSE '{name}' END")
    if not missing:
        return None
    path = storage.under(out, ".plan/clips.parquet")
    if not storage.is_uri(path):
        path.parent.mkdir(exist_ok=True)
    q = (
        f"SELECT {', '.join(select)}, list_filter([{', '.join(stored)}], lambda x: x IS NOT NULL) AS stored "
        f"FROM {clips} c {' '.join(joins)} WHERE c.clip_path IS NOT NULL AND ({' OR '.join(missing)})"
    )
    con = storage.register_duckdb(duckdb.connect(), out)
    try:
        con.execute(f"COPY ({q}) TO '{path}' (FORMAT parquet)")
    finally:
        con.close()
    return path


def stored_clip_rows(batch: pa.Table) -> pa.Table:
    """Rows read from ``OUT/.plan/clips.parquet`` (DuckDB's column shapes) as stream rows."""
    n = batch.num_rows
    cols = []
    for f in STREAM:
        if f.name in batch.column_names and not pa.types.is_null(batch.column(f.name).type):
            col = batch.column(f.name)
            if pa.types.is_struct(f.type):
                col = pa.StructArray.from_arrays(
                    [pc.struct_field(col, g.name).combine_chunks().cast(g.type) for g in f.type],
                    fields=list(f.type),
                    mask=pc.is_null(col).combine_chunks(),
                )
            else:
                col = col.cast(f.type)
            cols.append(col)
        else:
            cols.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(cols, schema=STREAM)


def _mark_duplicates(known: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """The first file with a given content is the original (stored ok videos first, then new files by path);
    later ones are planned as duplicates of it."""
    first: dict[str, str] = {}
    for v in known:
        if v["status"] == "ok" and v["content_hash"]:
            first.setdefault(v["content_hash"], v["video_id"])
    for v in sorted(new, key=lambda r: r["path"]):
        if not v["content_hash"] or v.get("input_error"):
            continue
        if v["content_hash"] in first:
            v["duplicate_of"] = first[v["content_hash"]]
        else:
            first[v["content_hash"]] = v["video_id"]
