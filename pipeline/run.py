"""The run: plan against the store, one streaming Ray Data graph, then the global steps.

1. plan (driver): expand the inputs, hash the new files (a Ray job: duplicate files are decided before probing),
   and find what is still to do by anti-joins against the stored tables (``pipeline.stream.plan``);
2. the graph (``pipeline.stream``): probe -> shots -> cut -> CPU scores -> CLIP -> per-clip filters -> captions ->
   text match, every stage at once with its own resources, workers writing the shards;
3. global steps (``pipeline.steps``): the filters table (per-clip rules + dataset-wide dedup, ``filter_clips``,
   also ``clipforge refilter``), then captions and text-match scores owed to kept clips (none after an
   uninterrupted run; after a kill, the clips it interrupted).

This module is wiring: each stage's Ray resources (CPUs, GPUs, batch size, actor pool min..max) come from its
config section and are applied here, in :func:`_graph`, with one thread policy (``stages.resources``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import steps, store
from pipeline.config import Config, RayConfig
from stages import storage


def _no_progress_hint(record: logging.LogRecord) -> bool:
    """Drops Ray Data's hint on turning its progress bars back on in Python: our setting is ``[ray] progress``."""
    return not record.getMessage().startswith("Progress bars disabled")


def init_ray(rc: RayConfig) -> None:
    import ray

    if not ray.is_initialized():
        address = rc.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # "local": a new Ray of our own. Without it ray.init() joins any cluster already running on this machine
            # (`ray start`, another user's, a test's), with that cluster's CPUs and lifetime.
            ray.init(address="local", num_cpus=rc.num_cpus, include_dashboard=False, log_to_driver=False)
    # the light tasks' cap (light_tasks) is a ceiling, not a wish: Ray Data warns whenever an operator receives fewer
    # blocks than it (every small run); the warning names a setting we do not want to change
    warnings.filterwarnings("ignore", message="The maximum number of concurrent tasks for", category=UserWarning)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = rc.progress
    if not rc.progress:  # once per process however often Ray is started (addFilter skips a filter it has)
        logging.getLogger("ray.data._internal.progress").addFilter(_no_progress_hint)
    ctx.execution_options.preserve_order = False


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
        lines.append(f'  query with:   clipforge query {shlex.quote(str(self.out))} "SELECT * FROM kept LIMIT 10"')
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
    cluster. A section without a resource setting gets its default (1 CPU, no GPU, 1..None actors). Returns
    ({stage: Pool}, note or None)."""
    import math

    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1))
    budget = max(0.5, cpus - rc.headroom_cpus)
    asked = {  # (min actors, CPUs per actor, GPUs per actor, max actors) of each section
        name: (
            max(1, int(getattr(c, "min_actors", 1) or 1)),
            float(getattr(c, "num_cpus", 1.0)),
            float(getattr(c, "num_gpus", 0.0) or 0.0),
            getattr(c, "max_actors", None),
        )
        for name, c in stages.items()
    }
    demand = sum(least * per for least, per, _, _ in asked.values())
    scale = min(1.0, budget / demand) if demand > 0 else 1.0
    pools = {}
    for name, (least, per, gpus, most_wanted) in asked.items():
        ask = per * scale
        share = budget * least * per / demand if demand else budget
        room = max(least, math.floor(share / ask + 1e-9)) if ask > 0 else least
        most = least if scale < 1.0 else (min(room, most_wanted) if most_wanted else room)
        pools[name] = Pool(ask, per, gpus, least, max(least, most))
    note = None
    if scale < 1.0:
        note = (
            f"{len(stages)} actor stages want {demand:g} CPUs at their minimum pool sizes but {cpus:g} CPUs leave "
            f"{budget:g} after ray.headroom_cpus: their CPU reservations are scaled by {scale:.2f} (they share cores)"
        )
    return pools, note


def light_tasks() -> int:
    """How many light tasks (the stored-clip reader, the per-clip filters, the writes: pyarrow compute and Parquet
    writes, milliseconds a batch) run at once: as many as the cluster has CPUs. They reserve no CPU (``num_cpus``
    0) and are capped in number instead. Ray Data reserves a share of the cluster for every operator that asks for
    CPUs, whether it uses them or not (``ReservationOpResourceAllocator``: half the cluster split among the
    operators); a quarter-CPU filters task held back half a core of a 2-CPU machine from the cut, which then ran
    one video at a time once the shot detector was done."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


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

    light = light_tasks()
    sources = []
    if plan.videos.num_rows:
        # one block per video: each is its own probe / shots / cut task
        sources.append(ray.data.from_arrow([plan.videos.slice(i, 1) for i in range(plan.videos.num_rows)]))
    if plan.clips_file is not None:
        fs, clips_file = storage.arrow_filesystem(plan.clips_file)
        sources.append(
            ray.data.read_parquet(clips_file, filesystem=fs).map_batches(
                _task(stream.stored_clip_rows, "stored_clips", 0, busy, cfg.stages),
                batch_format="pyarrow",
                num_cpus=0,
                compute=ray.data.TaskPoolStrategy(light),
            )
        )
    ds = sources[0] if len(sources) == 1 else sources[0].union(*sources[1:])

    def task(fn, stage, cpus, memory_mb, **kwargs):
        # memory: the task's reservation (Ray schedules no more tasks on a node than its memory holds); it also
        # keeps Ray Data from fusing the task into the next actor pool (their resources differ), so the cut never
        # runs inside an actor pool sized for another stage. cpus 0: a light task (light_tasks)
        return ds.map_batches(
            _task(fn, stage, cpus, busy, cfg.stages),
            batch_format="pyarrow",
            batch_size=None,
            num_cpus=cpus,
            memory=memory_mb * 2**20 if memory_mb else None,
            compute=ray.data.TaskPoolStrategy(light) if cpus == 0 else None,
            fn_kwargs=kwargs,
        )

    # ---- which actor stages run, and their pools fitted to the cluster
    # with scores.at_cut the CPU scores are computed in the cut task (no pool); clips cut by an earlier run are
    # scored by a task of their own below
    actors: dict[str, Any] = {} if cfg.scores.at_cut else {"scores": cfg.scores}
    if cfg.shots.detector == "transnetv2":
        actors["shots"] = cfg.shots
    summary.notes += model_notes(cfg, models)
    if cfg.clip.enabled and models.clip_ok:
        actors["clip_scores"] = cfg.clip
    from stages.catalogue import load, stages

    reads = {st.name: st.reads for st in stages()}  # each built-in stage's input columns, as it declares them
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
    # clips.one_pass: the hybrid detector runs in the cut task, on the frames it cuts (stages.onepass); the task
    # also holds up to one_pass_mb of decoded frames
    from stages import onepass

    one_pass = onepass.enabled(cfg.shots, cfg.clips)
    cut_mb = cfg.clips.memory_mb + (cfg.clips.one_pass_mb if one_pass else 0)
    if "shots" in actors:
        from stages.shots import TransNetShots

        ds = actor(TransNetShots, "shots", {}, cfg.shots, wrapper=stream.ShotsActor, cfg=cfg.shots)
    elif not one_pass:
        ds = task(stream.shots_rows, "shots", cfg.shots.num_cpus, cfg.shots.memory_mb, cfg=cfg.shots)
    shots = cfg.shots if one_pass else None
    scfg = dataclasses.replace(cfg.scores, root=str(out))
    if cfg.scores.at_cut:
        cpus = max(cfg.clips.num_cpus, cfg.scores.num_cpus)
        ds = task(stream.cut_rows, "cut", cpus, cut_mb, out=str(out), cfg=cfg.clips, scores=scfg, shots=shots)
        if plan.clips_file is not None:  # stored clips owed a scores row: scored from their files
            ds = task(  # it decodes sources as the cut does: the same CPUs
                stream.score_rows, "scores", cpus, cfg.clips.memory_mb, cfg=scfg,
                reads=reads["scores"], out=str(out), clips_cfg=cfg.clips,
            )  # fmt: skip
    else:
        ds = task(stream.cut_rows, "cut", cfg.clips.num_cpus, cut_mb, out=str(out), cfg=cfg.clips, shots=shots)
        ds = actor(CpuScorer, "scores", reads["scores"], cfg.scores, cfg=scfg)
    if "clip_scores" in actors:
        ccfg = dataclasses.replace(cfg.clip, root=str(out))
        ds = actor(ClipScorer, "clip_scores", reads["clip_scores"], cfg.clip, cfg=ccfg)
    for st in users:
        section = cfg.sections[st.name]
        ds = actor(st.resolve("stage"), st.name, st.reads, section, cfg=section, root=str(out))
    ds = task(stream.filter_rows, "filters", 0, None, cfg=cfg, extra=cfg.stages)
    if "captions" in actors:
        from stages.caption import CaptionStage

        capcfg = dataclasses.replace(cfg.captioner, root=str(out))
        ds = actor(
            CaptionStage, "captions", reads["captions"], cfg.captioner, only_kept=True, cfg=capcfg, root=str(out)
        )
        if "text_scores" in actors:
            tcfg = dataclasses.replace(cfg.clip, root=str(out))
            ds = actor(
                ClipTextScorer, "text_scores", reads["text_scores"], cfg.clip, wrapper=stream.TextStage, cfg=tcfg
            )
    elif caption_model:
        ds = task(stream.skip_caption_rows, "captions", 0, None, model=caption_model, why=caption_why)
    return ds


def model_notes(cfg: Config, models: Models) -> list[str]:
    """What a run says of its model stages that cannot run or are off (CLIP scores, the aesthetic head, captions):
    said by every run, a resumed one with nothing new to cut included (a newcomer's resumed run said nothing of
    the CLIP scores and captions its clips still lacked)."""
    notes = []
    if not cfg.clip.enabled:
        notes.append("CLIP scores disabled (clip.enabled = false): no aesthetic score, no aesthetic filter")
    elif not models.clip_ok:
        notes.append(f"CLIP scores skipped, no aesthetic filter: {models.clip_why}")
    elif models.aesthetic_note and cfg.filters.min_aesthetic is not None:
        notes.append(models.aesthetic_note)
    if models.caption_model and models.caption_why is not None:
        notes.append(f"captions skipped (clips the filters keep are marked skipped_no_model): {models.caption_why}")
    elif not models.caption_model:
        notes.append("captioning disabled (captioner.model = none)")
    return notes


@dataclass
class Models:
    """Which model stages can run here (checked once per run, on a worker, while the driver plans: the check
    imports open_clip and torch, which the driver then never loads)."""

    clip_ok: bool = False
    clip_why: str = ""
    aesthetic_note: str | None = None
    caption_model: str | None = None  # None: captioning off
    caption_why: str | None = None  # None: the caption model can run
    caption_prompt_version: str | None = None


def check_models(cfg: Config) -> Models:
    """The run's model check (a Ray task): imports only what an enabled stage needs."""
    m = Models()
    if cfg.clip.enabled:
        from stages.clip_scores import aesthetic_off_note, clip_available

        m.clip_ok, m.clip_why = clip_available(cfg.clip)
        m.aesthetic_note = aesthetic_off_note(cfg.clip) if m.clip_ok else None
    from stages.caption import captioning_off

    if not captioning_off(cfg.captioner):
        from captioner import captioner_available
        from stages.caption import prompt_version, resolved_model

        m.caption_model = resolved_model(cfg.captioner)
        ok, why = captioner_available(m.caption_model)
        m.caption_why = None if ok else why
        m.caption_prompt_version = prompt_version(cfg.captioner)
    return m


def _hash_new(out: Path, inputs: list[dict[str, Any]], cfg: Config) -> dict[str, str | None]:
    """Content hashes of the input files not stored yet: plain Ray tasks of 8 files each, read in parallel on the
    workers (``stages.probe.planned_hash``), at most twice as many in flight as the cluster has CPUs. Plain tasks, not
    a Ray Data job: the driver needs every hash before it plans anyway, and a Ray Data job's start-up cost ~1 s of
    a small run (a 1-file run: 1.5 s for the job)."""
    import ray

    from stages.probe import planned_hash

    known = store.ids(out, "videos", "path")
    paths = sorted(r["path"] for r in inputs if r["path"] not in known and not r.get("input_error"))
    if not paths:
        return {}

    def hash_files(chunk: list[str]) -> list[str | None]:
        from stages.resources import limit_threads

        limit_threads(cfg.ingest.num_cpus)
        return [planned_hash(p) for p in chunk]

    task = ray.remote(num_cpus=cfg.ingest.num_cpus)(hash_files)
    step, window = 8, 2 * light_tasks()
    chunks = [paths[i : i + step] for i in range(0, len(paths), step)]
    hashes: dict[str, str | None] = {}
    pending: dict[Any, list[str]] = {}
    for chunk in chunks:
        if len(pending) >= window:
            done, _ = ray.wait(list(pending), num_returns=1)
            hashes.update(zip(pending.pop(done[0]), ray.get(done[0]), strict=True))
        pending[task.remote(chunk)] = chunk
    for ref, chunk in pending.items():
        hashes.update(zip(chunk, ray.get(ref), strict=True))
    return hashes


def _cpus_back(timeout_s: float = 5.0) -> None:
    """Wait, at most ``timeout_s``, until Ray's view of the cluster shows a free CPU. Building the graph starts Ray
    Data's own actors (its stats actor, its autoscaling coordinator), and an actor holds a CPU while it is being
    placed (Ray's default: 1 CPU to schedule, 0 to run): on 2 cores none shows free for a moment, and Ray Data warns
    that the job "will hang unless more CPUs are freed up" when it starts then (a newcomer saw that warning on runs
    that went fine). A cluster that other jobs keep full still gets Ray's warning, after the wait."""
    import ray

    deadline = time.monotonic() + timeout_s
    while not ray.available_resources().get("CPU") and time.monotonic() < deadline:
        time.sleep(0.05)


def run(cfg: Config) -> Summary:
    """One run over ``cfg.inputs`` into ``cfg.output`` (a new OUT, or one to resume): see the module docstring.

    Holds OUT's writer lock throughout (``store.writer_lock``): raises ``store.OutInUse`` when another command is
    writing OUT."""
    out = storage.location(cfg.output)
    if not storage.is_uri(out):
        out.mkdir(parents=True, exist_ok=True)
    with store.writer_lock(out, "run", cfg.store):
        return _run(cfg)


def _run(cfg: Config) -> Summary:
    import ray

    from pipeline import stream
    from pipeline.remove import PENDING as REMOVING
    from pipeline.remove import keep_out
    from pipeline.report import run_counts
    from stages.ingest import expand_inputs

    out = storage.location(cfg.output)  # a local directory or a bucket prefix (s3://, gs:// ...)
    if not storage.is_uri(out):
        (out / "tables").mkdir(parents=True, exist_ok=True)
    store.write_json(storage.under(out, "config.json"), cfg.to_dict())
    from stages.clips import sweep_temporaries

    swept = sweep_temporaries(out)  # under the writer lock: a killed run's half-written clips
    init_ray(cfg.ray)
    stream.use_stages(cfg.stages)  # this run's stream schema: the built-in tables and exactly the user's stages
    summary = Summary(out=str(out))
    if swept:
        summary.notes.append(f"deleted {swept} temporary clip file(s) a killed run left half-written")
    run_id = time.strftime("%Y%m%dT%H%M%S")
    # stage busy intervals (the bench's overlap figures): appended by workers to local files, so not for a bucket
    busy = None if storage.is_uri(out) else str(out / "runs" / f"{run_id}.busy")

    t0 = time.perf_counter()
    checking = ray.remote(num_cpus=0)(check_models).remote(cfg)  # on a worker, while the driver plans
    inputs = expand_inputs(cfg.inputs, cfg.ingest)
    hashes = _hash_new(out, inputs, cfg)
    conflicts = [r["path"] for r in inputs if r.get("lineage_conflicts")]
    if conflicts:
        summary.notes.append(
            f"{len(conflicts)} input(s) listed more than once with different lineage (licence, creator ...); the "
            f"first listing's values were kept: {', '.join(conflicts[:5])}" + (" ..." if len(conflicts) > 5 else "")
        )
    inputs, removed = keep_out(out, inputs, hashes)  # sources `clipforge remove` took out stay out
    if storage.is_file(storage.under(out, REMOVING)):
        summary.notes.append(
            "a `clipforge remove` on this OUT was cut off before it ended: run any `clipforge remove` to finish it"
        )
    if removed:
        summary.notes.append(f"left out {removed} input(s) removed from this dataset by `clipforge remove` "
                             "(their path or content is in OUT/tombstones)")  # fmt: skip
    models = ray.get(checking)
    plan = stream.plan(out, cfg, inputs, hashes, clip_stage=models.clip_ok)
    if len(inputs) > plan.new_files:  # an OUT an earlier run wrote: say what this one takes up
        summary.notes.append(
            f"resumed: {len(inputs) - plan.new_files} of {len(inputs)} input file(s) were stored by an earlier run; "
            f"{plan.unfinished} unfinished video(s) cut for the clips they lack, {plan.clips_todo} stored clip(s) "
            "given the stage rows they lacked"
        )
    summary.phases["plan"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ds = _graph(out, cfg, plan, models, busy, summary) if plan.videos.num_rows or plan.clips_file else None
    if ds is None:  # nothing new to cut: the graph said nothing of the model stages
        summary.notes += model_notes(cfg, models)
    if ds is not None:
        _cpus_back()
        sink = stream.StoreSink(str(out), cfg.store, cfg.store.stream_rows, cfg.stages)
        ds.write_datasink(sink, ray_remote_args={"num_cpus": 0}, concurrency=light_tasks())
        summary.written = dict(sink.written)
        if sink.written.get("captions") and models.caption_model and models.caption_why is None:
            summary.notes.append(
                f"captioned {sink.written['captions']} clips the per-clip filters keep with {models.caption_model}"
            )
        if sink.written.get("text_scores"):
            summary.notes.append(f"CLIP text-video match scored for {sink.written['text_scores']} captions")
    storage.remove_tree(storage.under(out, ".plan"))
    summary.phases["graph"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # said on every run, a resumed one with nothing new to cut included: the filters below run either way
    if not cfg.dedup.enabled:
        from stages.dedup import DISABLED_NOTE

        summary.notes.append(DISABLED_NOTE)
    if not cfg.filters.shared_overlay:
        from stages.shared_overlay import DISABLED_NOTE as SHARED_OFF

        summary.notes.append(SHARED_OFF)
    looked: dict = {}
    steps.filter_clips(out, cfg, looked)
    if looked.get("shown"):
        summary.notes.append(
            f"{looked['shown']} clip(s) show an overlay found in another clip of their source (overlay_seen_in; "
            f"{looked['decoded']} clip(s) decoded for the look)"
        )
    if looked.get("refused"):
        from stages.shared_overlay import refused_note

        summary.notes.append(refused_note(looked["refused"]))
    summary.phases["filters"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    captioning = (models.caption_why is None, models.caption_why or "")
    summary.notes += steps.caption_clips(
        out, cfg, catch_up=True, available=captioning, version=models.caption_prompt_version
    )
    summary.notes += steps.text_score_clips(out, cfg, (models.clip_ok, models.clip_why))
    summary.phases["catch_up"] = time.perf_counter() - t0

    summary.counts = run_counts(out)
    record = {"run_id": run_id, **summary.counts, "phases": summary.phases, "written": summary.written}
    record["removed_inputs"] = removed
    store.write_json(storage.under(out, f"runs/{run_id}.json"), record)
    return summary
