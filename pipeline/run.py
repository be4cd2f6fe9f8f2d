"""The run: plan against the store, one streaming Ray Data graph, then the global steps.

1. plan (driver): expand the inputs, hash the new files (a Ray job: duplicate files are decided before probing),
   and find what is still to do by anti-joins against the stored tables (``pipeline.stream.plan``);
2. the graph (``pipeline.stream``): probe -> shots -> cut -> CPU scores -> CLIP -> per-clip filters -> captions ->
   text match, every stage at once with its own resources, workers writing the shards;
3. global steps: the filters table (per-clip rules + dataset-wide dedup, ``filter_clips``, also ``clipforge
   refilter``), then captions and text-match scores owed to kept clips (none after an uninterrupted run; after a
   kill, the clips it interrupted).

This module is wiring: each stage's Ray resources (CPUs, GPUs, batch size, actor pool min..max) come from its
config section and are applied here, in :func:`_graph`, with one thread policy (``stages.resources``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import store
from pipeline.config import Config, RayConfig


def init_ray(rc: RayConfig) -> None:
    import ray

    if not ray.is_initialized():
        if rc.address:
            ray.init(address=rc.address, log_to_driver=False)
        else:
            ray.init(num_cpus=rc.num_cpus, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = rc.progress
    ctx.execution_options.preserve_order = False


def _pool_size(rc: RayConfig, wanted: int | None = None) -> int:
    """Actors for a model stage: all CPUs but the headroom Ray Data needs to keep tasks flowing."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    size = max(1, int(cpus - rc.headroom_cpus))
    return min(size, wanted) if wanted else size


def _actor_pool(rc: RayConfig, stage_cfg):
    """The stage's autoscaling actor pool: ``min_actors`` .. ``max_actors`` (default: the cluster's CPUs minus the
    headroom), so a pool grows when the cluster does (Ray Data's ``ActorPoolStrategy``; ``concurrency=`` is
    deprecated since Ray 2.51)."""
    import ray

    most = _pool_size(rc, getattr(stage_cfg, "max_actors", None))
    least = max(1, min(int(getattr(stage_cfg, "min_actors", 1) or 1), most))
    return ray.data.ActorPoolStrategy(min_size=least, max_size=most)


class _Limited:
    """Ray Data actor around a stage class: first limits the worker's library threads to the stage's CPUs
    (``stages.resources.limit_threads``: OpenCV, torch, OpenMP/BLAS, and the budget PyAV and onnxruntime read),
    then builds the stage. The thread policy of every actor, applied here, at the one call site."""

    def __init__(self, stage_cls, cpus: float, **kwargs):
        from stages.resources import limit_threads

        limit_threads(cpus)
        self.stage = stage_cls(**kwargs)
        limit_threads(cpus)  # again: the stage may have imported torch

    def __call__(self, batch):
        return self.stage(batch)


@dataclass
class Summary:
    out: str
    counts: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the run skipped and why (missing model weights, ...)
    written: dict[str, int] = field(default_factory=dict)  # rows the graph's write tasks stored, per table

    def text(self) -> str:
        c = self.counts
        lines = [
            f"clipforge run -> {self.out}",
            f"  input files   {c.get('files', 0):>8}   (ok {c.get('videos_ok', 0)}, error {c.get('videos_error', 0)}, "
            f"duplicate {c.get('videos_duplicate', 0)})",
            f"  video hours   {c.get('video_hours', 0.0):>8.3f}",
            f"  shots         {c.get('shots', 0):>8}",
            f"  clips         {c.get('clips', 0):>8}   ({c.get('clip_hours', 0.0):.3f} h)",
            f"  kept          {c.get('kept', 0):>8}   ({c.get('kept_hours', 0.0):.3f} h)",
        ]
        for reason, n in c.get("drop_reasons", []):
            lines.append(f"    dropped {reason:<28} {n}")
        if self.phases:
            lines.append("  wall time     " + ", ".join(f"{k} {v:.1f}s" for k, v in self.phases.items()))
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f'  query with:   clipforge query {self.out} "SELECT * FROM kept LIMIT 10"')
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------- the graph


@dataclass
class Pool:
    """One actor stage's Ray resources as applied: logical CPUs per actor (``num_cpus``: what Ray reserves),
    threads per actor (``threads``: the stage's configured CPUs, what its libraries use), GPUs, pool size."""

    num_cpus: float
    threads: float
    num_gpus: float
    min_actors: int
    max_actors: int


def fit_pools(rc: RayConfig, stages: dict[str, Any]) -> tuple[dict[str, Pool], str | None]:
    """Each actor stage's pool, from its config (num_cpus, num_gpus, min_actors, max_actors), fitted to the
    cluster: all pools together hold at most the cluster's CPUs minus ``ray.headroom_cpus`` (the headroom is what
    the graph's tasks, probe, shots, cut, filters and the writes, run on; Ray Data stalls when actors hold every
    CPU). When the pools' minimum sizes ask for more than that, their CPU reservations are scaled down together
    (actors then share cores; each keeps its configured thread count) and the returned note says so.
    A pool's ``max_actors`` default (None) is as many as its share of the CPUs holds, so pools grow with the
    cluster. Returns ({stage: Pool}, note or None)."""
    import math

    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1))
    budget = max(0.5, cpus - rc.headroom_cpus)
    demand = sum(max(1, int(c.min_actors or 1)) * float(c.num_cpus) for c in stages.values())
    scale = min(1.0, budget / demand) if demand > 0 else 1.0
    pools = {}
    for name, c in stages.items():
        least = max(1, int(c.min_actors or 1))
        ask = float(c.num_cpus) * scale
        share = budget * (least * float(c.num_cpus)) / demand if demand else budget
        room = max(least, math.floor(share / ask + 1e-9)) if ask > 0 else least
        most = least if scale < 1.0 else (min(room, c.max_actors) if c.max_actors else room)
        pools[name] = Pool(ask, float(c.num_cpus), float(getattr(c, "num_gpus", 0.0) or 0.0), least, max(least, most))
    note = None
    if scale < 1.0:
        note = (
            f"{len(stages)} actor stages want {demand:g} CPUs at their minimum pool sizes but {cpus:g} CPUs leave "
            f"{budget:g} after ray.headroom_cpus: their CPU reservations are scaled by {scale:.2f} (they share cores)"
        )
    return pools, note


def _task(fn, stage: str, cpus: float, busy: str | None, extra: list[str] | tuple[str, ...] = ()):
    """A graph task: the thread policy (``stages.resources.limit_threads``) and the user's stages
    (``pipeline.stream.use_stages``) first, its busy interval recorded."""

    def run(batch, **kwargs):
        from pipeline.stream import record_busy, use_stages
        from stages.resources import limit_threads

        use_stages(extra)
        limit_threads(cpus)
        t0 = time.time()
        result = fn(batch, **kwargs)
        record_busy(busy, stage, t0, time.time(), batch.num_rows)
        return result

    run.__name__ = run.__qualname__ = stage
    return run


def _graph(out: Path, cfg: Config, plan, models: Models, busy: str | None, summary) -> Any:
    """The Ray Data graph for ``plan``: every stage's resources applied here, from its config section."""
    import ray

    from pipeline import stream
    from stages.clip_scores import ClipScorer, ClipTextScorer
    from stages.cpu_scores import CpuScorer

    sources = []
    if plan.videos.num_rows:
        # one block per video: each is its own probe / shots / cut task
        sources.append(ray.data.from_arrow([plan.videos.slice(i, 1) for i in range(plan.videos.num_rows)]))
    if plan.clips_file is not None:
        sources.append(
            ray.data.read_parquet(str(plan.clips_file)).map_batches(
                _task(stream.stored_clip_rows, "stored_clips", 0.25, busy, cfg.stages),
                batch_format="pyarrow",
                num_cpus=0.25,
            )
        )
    ds = sources[0] if len(sources) == 1 else sources[0].union(*sources[1:])

    def task(fn, stage, cpus, memory_mb, **kwargs):
        # memory: the task's reservation (Ray schedules no more tasks on a node than its memory holds); it also
        # keeps Ray Data from fusing the task into the next actor pool (their resources differ), so the cut never
        # runs inside the scorer's actors, whose pool is sized for scoring
        return ds.map_batches(
            _task(fn, stage, cpus, busy, cfg.stages),
            batch_format="pyarrow",
            batch_size=None,
            num_cpus=cpus,
            memory=memory_mb * 2**20 if memory_mb else None,
            fn_kwargs=kwargs,
        )

    # ---- which actor stages run, and their pools fitted to the cluster
    actors: dict[str, Any] = {"scores": cfg.scores}
    if cfg.shots.detector == "transnetv2":
        actors["shots"] = cfg.shots
    if not cfg.clip.enabled:
        summary.notes.append("CLIP scores disabled (clip.enabled = false): no aesthetic score, no aesthetic filter")
    elif not models.clip_ok:
        summary.notes.append(f"CLIP scores skipped, no aesthetic filter: {models.clip_why}")
    else:
        actors["clip_scores"] = cfg.clip
        if models.aesthetic_note and cfg.filters.min_aesthetic is not None:
            summary.notes.append(models.aesthetic_note)
    from stages.catalogue import load

    users = [load(ref) for ref in cfg.stages]  # the user's own stages (config `stages`), before the filters
    for st in users:
        actors[st.name] = cfg.sections[st.name]
    caption_model, caption_why = models.caption_model, models.caption_why
    if caption_model and caption_why is None:
        actors["captions"] = cfg.captioner
        if models.clip_ok:
            actors["text_scores"] = cfg.clip
    pools, note = fit_pools(cfg.ray, actors)
    if note:
        summary.notes.append(note)

    def actor(stage_cls, table, reads, stage_cfg, wrapper=stream.ClipStage, only_kept=False, **ctor):
        pool = pools[table]
        return ds.map_batches(
            wrapper,
            fn_constructor_kwargs={
                "stage_cls": stage_cls,
                "table": table,
                "cpus": pool.threads,
                "reads": reads,
                "only_kept": only_kept,
                "busy": busy,
                "extra": cfg.stages,
                **ctor,
            },
            batch_format="pyarrow",
            batch_size=max(1, int(getattr(stage_cfg, "batch_size", 1) or 1)),
            compute=ray.data.ActorPoolStrategy(min_size=pool.min_actors, max_size=pool.max_actors),
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus,
        )

    ds = task(stream.probe_rows, "probe", cfg.ingest.num_cpus, cfg.ingest.memory_mb, drop_hdr=cfg.ingest.drop_hdr)
    if "shots" in actors:
        ds = actor(stream.ShotsStage, "shots", {}, cfg.shots, wrapper=stream.ShotsActor, cfg=cfg.shots)
    else:
        ds = task(stream.shots_rows, "shots", cfg.shots.num_cpus, cfg.shots.memory_mb, cfg=cfg.shots)
    ds = task(stream.cut_rows, "cut", cfg.clips.num_cpus, cfg.clips.memory_mb, out=str(out), cfg=cfg.clips)
    ds = actor(CpuScorer, "scores", stream.CLIP_READS, cfg.scores, cfg=dataclasses.replace(cfg.scores, root=str(out)))
    if "clip_scores" in actors:
        ccfg = dataclasses.replace(cfg.clip, root=str(out))
        ds = actor(ClipScorer, "clip_scores", stream.CLIP_READS, cfg.clip, cfg=ccfg)
    for st in users:
        section = cfg.sections[st.name]
        ds = actor(st.resolve("stage"), st.name, st.reads, section, cfg=section, root=str(out))
    ds = task(stream.filter_rows, "filters", 0.25, None, cfg=cfg, extra=cfg.stages)
    if "captions" in actors:
        from stages.caption import CaptionStage

        capcfg = dataclasses.replace(cfg.captioner, root=str(out))
        ds = actor(
            CaptionStage, "captions", stream.CLIP_READS, cfg.captioner, only_kept=True, cfg=capcfg, root=str(out)
        )
        if "text_scores" in actors:
            tcfg = dataclasses.replace(cfg.clip, root=str(out))
            ds = actor(
                ClipTextScorer, "text_scores", stream.text_reads(), cfg.clip, wrapper=stream.TextStage, cfg=tcfg
            )
    elif caption_model:
        ds = task(stream.skip_caption_rows, "captions", 0.25, None, model=caption_model, why=caption_why)
        summary.notes.append(f"captions skipped (clips the filters keep are marked skipped_no_model): {caption_why}")
    else:
        summary.notes.append("captioning disabled (captioner.model = none)")
    return ds


@dataclass
class Models:
    """Which model stages can run here (checked once per run, on a worker, while the driver plans: the check
    imports open_clip and torch, which the driver then never loads)."""

    clip_ok: bool = False
    clip_why: str = ""
    aesthetic_note: str | None = None
    caption_model: str | None = None  # None: captioning off
    caption_why: str | None = None  # None: the caption model can run


def check_models(cfg: Config) -> Models:
    from captioner import captioner_available
    from stages.caption import resolved_model
    from stages.clip_scores import aesthetic_off_note, clip_available

    m = Models()
    if cfg.clip.enabled:
        m.clip_ok, m.clip_why = clip_available(cfg.clip)
        m.aesthetic_note = aesthetic_off_note(cfg.clip) if m.clip_ok else None
    if cfg.captioner.model not in ("", "none", "off"):
        m.caption_model = resolved_model(cfg.captioner)
        ok, why = captioner_available(m.caption_model)
        m.caption_why = None if ok else why
    return m


def _hash_new(out: Path, inputs: list[dict[str, Any]], cfg: Config) -> dict[str, str | None]:
    """Content hashes of the input files not stored yet (a Ray job: files are read in parallel, on the workers)."""
    import pyarrow as pa
    import ray

    from pipeline.stream import hash_rows

    known = store.ids(out, "videos", "path")
    paths = sorted(r["path"] for r in inputs if r["path"] not in known and not r.get("input_error"))
    if not paths:
        return {}
    step = 8
    ds = ray.data.from_arrow([pa.table({"path": paths[i : i + step]}) for i in range(0, len(paths), step)])
    ds = ds.map_batches(_task_dict(hash_rows, cfg.ingest.num_cpus), batch_size=None, num_cpus=cfg.ingest.num_cpus)
    hashes: dict[str, str | None] = {}
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        hashes.update(zip(batch["path"].to_pylist(), batch["content_hash"].to_pylist(), strict=True))
    return hashes


def _task_dict(fn, cpus: float):
    def run(batch):
        from stages.resources import limit_threads

        limit_threads(cpus)
        return fn(batch)

    run.__name__ = run.__qualname__ = fn.__name__
    return run


def run(cfg: Config) -> Summary:
    """One run over ``cfg.inputs`` into ``cfg.output`` (a new OUT, or one to resume): see the module docstring."""
    import shutil

    import ray

    from pipeline import stream
    from pipeline.report import run_counts
    from stages.ingest import expand_inputs

    out = Path(cfg.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    store.write_json(out / "config.json", cfg.to_dict())
    init_ray(cfg.ray)
    summary = Summary(out=str(out))
    run_id = time.strftime("%Y%m%dT%H%M%S")
    busy = str(out / "runs" / f"{run_id}.busy")

    t0 = time.perf_counter()
    checking = ray.remote(num_cpus=0)(check_models).remote(cfg)  # on a worker, while the driver plans
    inputs = expand_inputs(cfg.inputs, cfg.ingest)
    hashes = _hash_new(out, inputs, cfg)
    models = ray.get(checking)
    plan = stream.plan(out, cfg, inputs, hashes, clip_stage=models.clip_ok)
    summary.phases["plan"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ds = _graph(out, cfg, plan, models, busy, summary) if plan.videos.num_rows or plan.clips_file else None
    if ds is not None:
        sink = stream.StoreSink(str(out), cfg.store, cfg.store.stream_rows, cfg.stages)
        ds.write_datasink(sink, ray_remote_args={"num_cpus": 0.25})
        summary.written = dict(sink.written)
        if sink.written.get("captions") and models.caption_model and models.caption_why is None:
            summary.notes.append(
                f"captioned {sink.written['captions']} clips the per-clip filters keep with {models.caption_model}"
            )
        if sink.written.get("text_scores"):
            summary.notes.append(f"CLIP text-video match scored for {sink.written['text_scores']} captions")
    shutil.rmtree(out / ".plan", ignore_errors=True)
    summary.phases["graph"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    filter_clips(out, cfg)
    summary.phases["filters"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    captioning = (models.caption_why is None, models.caption_why or "")
    summary.notes += caption_clips(out, cfg, catch_up=True, available=captioning)
    summary.notes += text_score_clips(out, cfg, (models.clip_ok, models.clip_why))
    summary.phases["catch_up"] = time.perf_counter() - t0

    summary.counts = run_counts(out)
    record = {"run_id": run_id, **summary.counts, "phases": summary.phases, "written": summary.written}
    store.write_json(out / "runs" / f"{run_id}.json", record)
    return summary


# --------------------------------------------------------------------------------- filters, captions (global)


def filter_clips(out: Path, cfg: Config) -> dict[str, int]:
    """Phase 4 (and `clipforge refilter`): drop reasons from the stored scores, then dedup among the survivors.

    Decodes nothing. Replaces the filters table whole, so thresholds can be re-tuned at will. Reads only the columns
    the filter rules and dedup need (``stages.filters.columns``, ``stages.dedup.columns``): no embeddings (unless
    dedup confirms matches with them), no captions.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from stages.dedup import columns as dedup_columns
    from stages.dedup import find_duplicates
    from stages.filters import apply_filters
    from stages.filters import columns as filter_columns

    con = store.open(out, skip=("filters",))
    try:
        present = {r[0] for r in con.execute("DESCRIBE clips").fetchall()}
        wanted = dict.fromkeys(("clip_id", "drop_reason", *filter_columns(cfg.stages), *dedup_columns(cfg.dedup)))
        select = ", ".join(f'"{c}"' for c in wanted if c in present)
        table = con.sql(f"SELECT {select} FROM clips").to_arrow_table()
    finally:
        con.close()
    reasons = apply_filters(table, cfg, cfg.stages)
    survivors = pc.and_(pc.is_null(table["drop_reason"]), pc.is_null(reasons))
    candidates = table.filter(survivors)
    dupes = find_duplicates(candidates, cfg.dedup) if "phash" in table.column_names else {}
    ids = table["clip_id"].to_pylist()
    reason_list = reasons.to_pylist()
    final = [("duplicate" if cid in dupes else r) for cid, r in zip(ids, reason_list, strict=True)]
    filters = pa.table(
        {
            "clip_id": ids,
            "drop_reason": pa.array(final, pa.string()),
            "duplicate_of": pa.array([dupes.get(cid) for cid in ids], pa.string()),
        }
    )
    store.replace_table(out, "filters", filters, cfg.store)
    counts: dict[str, int] = {}
    for r in final:
        if r is not None:
            counts[r] = counts.get(r, 0) + 1
    return counts


def caption_clips(
    out: Path, cfg: Config, where: str | None = None, catch_up: bool = False, available: tuple[bool, str] | None = None
) -> list[str]:
    """`clipforge caption`, and the catch-up after a run's graph: VLM captions for kept clips (or the clips
    ``where`` selects) that need one (``stages.caption.needs_caption``: none yet, another model or prompt version,
    or ``captioner.recaption``). Without the model's weights the clips without a caption status are marked
    ``skipped_no_model``. ``catch_up``: the graph already said what captioning did; return notes only for work
    done here. ``available``: the ``captioner_available`` answer when the caller has it.
    """
    import dataclasses

    import pyarrow as pa

    from stages.caption import CaptionStage, needs_caption, resolved_model

    ccfg = cfg.captioner
    if ccfg.model in ("", "none", "off"):
        return [] if catch_up else ["captioning disabled (captioner.model = none)"]
    con = store.open(out)
    try:
        cols = {r[0] for r in con.execute("DESCRIBE clips").fetchall()}
        existing = [c for c in ("caption_status", "caption_model", "caption_prompt_version") if c in cols]
        select = ", ".join(["clip_id", "clip_path", "num_frames", "fps", *existing])
        source = f"clips WHERE clip_path IS NOT NULL AND ({where})" if where else "kept WHERE clip_path IS NOT NULL"
        rows = con.sql(f"SELECT {select} FROM {source}").to_arrow_table()
    finally:
        con.close()
    status = rows["caption_status"].to_pylist() if "caption_status" in rows.column_names else [None] * rows.num_rows
    todo_idx = [
        i for i, r in enumerate(rows.to_pylist()) if needs_caption(r if status[i] else None, ccfg)
    ]  # one row of strings per kept clip: the text columns only, never frames or embeddings
    if not todo_idx:
        return []
    todo = rows.take(todo_idx).select(["clip_id", "clip_path", "num_frames", "fps"])
    model = resolved_model(ccfg)
    if available is None:
        from captioner import captioner_available

        available = captioner_available(model)
    ok, why = available
    if not ok:
        fresh = [rows["clip_id"][i].as_py() for i in todo_idx if not status[i]]  # mark once
        if fresh:
            skipped = pa.table(
                {
                    "clip_id": fresh,
                    "caption_model": [model] * len(fresh),
                    "caption_status": ["skipped_no_model"] * len(fresh),
                    "error_caption": [why] * len(fresh),
                }
            )
            with store.ShardWriter(out, "captions", cfg=cfg.store) as w:
                w.add_table(store.stamp(skipped))
        return [] if catch_up else [f"captions skipped ({len(todo_idx)} clips marked skipped_no_model): {why}"]
    stage_cfg = dataclasses.replace(ccfg, root=str(out))
    n = _actor_stage(out, "captions", todo, CaptionStage, cfg, stage_cfg, root=str(out))
    return [f"captioned {n} clips with {model}" + (" (after the graph: clips a kill interrupted)" if catch_up else "")]


def text_score_clips(out: Path, cfg: Config, available: tuple[bool, str] | None = None) -> list[str]:
    """CLIP text-video match of each captioned clip (dense caption), where CLIP scores exist.

    Scores the clips whose caption is newer than their text score (or that have none). ``available``: the
    ``clip_available`` answer when the caller has it (checked here, only when there is work, otherwise).
    """
    import dataclasses

    from stages.clip_scores import ClipTextScorer, clip_available

    if not cfg.clip.enabled or not store.shard_files(out, "clip_scores") or not store.shard_files(out, "captions"):
        return []
    con = store.open(out)
    try:
        cap = store._source(out, "captions")
        done = store._source(out, "text_scores")
        stale = (
            f"NOT EXISTS (SELECT 1 FROM {done} AS t WHERE t.clip_id = c.clip_id AND t.written_at >= cap.written_at)"
            if done
            else "TRUE"
        )
        rows = (
            con.sql(
                "SELECT c.clip_id, c.clip_embedding, c.caption_dense AS text, 'caption_dense' AS text_column "
                f"FROM clips c JOIN (SELECT clip_id, max(written_at) AS written_at FROM {cap} GROUP BY ALL) cap "
                f"USING (clip_id) WHERE c.clip_embedding IS NOT NULL AND c.caption_dense IS NOT NULL AND {stale}"
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    if not rows:
        return []
    ok, why = available or clip_available(cfg.clip)
    if not ok:
        return [f"CLIP text-video scores skipped: {why}"]
    tcfg = dataclasses.replace(cfg.clip, root=str(out))
    n = _actor_stage(out, "text_scores", rows, ClipTextScorer, cfg, tcfg)
    return [f"CLIP text-video match scored for {n} captions"]


def _actor_stage(out: Path, table: str, rows, stage, cfg: Config, stage_cfg, **ctor) -> int:
    """One per-clip model stage outside the graph (``clipforge caption``, the catch-up): ``rows`` (a typed Arrow
    table, or a list of dicts) through an actor pool of ``stage`` (resources from ``stage_cfg``), written by the
    workers into the shards of ``table`` (``pipeline.stream.TableSink``). Returns the rows written."""
    import pyarrow as pa
    import ray

    from pipeline.stream import TableSink

    if not isinstance(rows, pa.Table):
        rows = pa.Table.from_pylist(rows)
    n = rows.num_rows
    step = max(1, stage_cfg.batch_size)
    # typed Arrow blocks of one batch each: the columns keep their types across Ray (no Python rows)
    ds = ray.data.from_arrow([rows.slice(i, step) for i in range(0, n, step)]).map_batches(
        _Limited,
        fn_constructor_kwargs={"stage_cls": stage, "cpus": stage_cfg.num_cpus, "cfg": stage_cfg, **ctor},
        batch_size=stage_cfg.batch_size,
        compute=_actor_pool(cfg.ray, stage_cfg),
        num_cpus=stage_cfg.num_cpus,
        num_gpus=getattr(stage_cfg, "num_gpus", 0.0),
    )
    sink = TableSink(str(out), table, cfg.store)
    ds.write_datasink(sink, ray_remote_args={"num_cpus": 0.25})
    return sink.written
