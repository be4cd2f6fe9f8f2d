"""The run: the Ray Data graph from input files to stored tables.

Phases, each a streaming Ray Data job whose rows the driver writes as Parquet shards:

1. probe   input files -> ``videos`` (one row per input file, failures included; repeated content marked)
2. clips   ok videos -> detect shots -> plan + cut clips (one sequential decode per video) -> ``clips`` + ``shots``

Rows carry paths and frame spans, never decoded frames. Resume needs no bookkeeping beyond the ids already
stored: a probed path is not probed again, a video with a ``shots`` row is finished (its clip rows are always
written before its shots row), and a clip id already stored is neither cut nor written again.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
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


def _limited(fn):
    """The same policy for a task function whose keyword ``cfg`` carries ``num_cpus``."""

    def run(row: dict[str, Any], **kwargs) -> dict[str, Any]:
        from stages.resources import limit_threads

        cfg = kwargs.get("cfg")
        limit_threads(getattr(cfg, "num_cpus", 1.0))
        return fn(row, **kwargs)

    run.__name__ = run.__qualname__ = fn.__name__
    return run


# ------------------------------------------------------------------------------------------ Ray callables
# Rows cross Ray as one JSON string: the metadata is small, and it spares Arrow type inference on columns
# that are null in one block and lists in another.


def _probe_json(row: dict[str, Any]) -> dict[str, Any]:
    from stages.probe import probe

    return {"json": json.dumps(probe(json.loads(row["json"])))}


def _timeline(path: str) -> Any:
    """The source's presentation-timestamp index (stages.media), or None for a stream without timestamps."""
    from stages.media import PtsIndex, open_video

    container, stream = open_video(path)
    with container:
        return PtsIndex.build(container, stream, Path(path).stat().st_size)


def _times(video: dict[str, Any], index) -> list[float]:
    from stages.media import frame_times

    n = len(index) if index is not None else int(video["num_frames"] or 0)
    return frame_times(index, n, float(video["fps"] or 25.0))


def _scenes_from_spans(video: dict[str, Any], times: list[float]) -> list[dict[str, Any]]:
    """Given spans (seconds, from a list input) as frame spans: each edge at the nearest frame boundary by
    presentation time."""
    from stages.media import index_at_time

    n = len(times) - 1
    scenes = []
    for span in video["spans"]:
        start = index_at_time(times, max(0.0, span["start_s"]))
        end = index_at_time(times, span["end_s"]) if span.get("end_s") is not None else n
        if end > start:
            scenes.append({"start_frame": start, "end_frame": end, "caption": span.get("caption")})
    return scenes


def _detect(video: dict[str, Any], cfg, detector_obj=None) -> dict[str, Any]:
    t0 = time.perf_counter()
    result: dict[str, Any] = {"video": video, "scenes": [], "detector": cfg.detector}
    result.update(error_type=None, error=None)
    try:
        if video.get("spans"):
            result["detector"] = "given"
            result["scenes"] = _scenes_from_spans(video, _times(video, _timeline(video["path"])))
        else:
            from stages.shots import check_coverage, detect

            found = detector_obj(video["path"]) if detector_obj is not None else detect(video["path"], cfg)
            check_coverage(found["scenes"], video["num_frames"])
            result["scenes"] = [{k: s[k] for k in ("start_frame", "end_frame")} for s in found["scenes"]]
            result["detector"] = found["detector"]
    except Exception as e:  # errors are data: the video gets a shots row saying why
        result["error_type"], result["error"] = type(e).__name__, str(e)[:2000]
    result["detect_s"] = time.perf_counter() - t0
    return result


def _detect_json(row: dict[str, Any], cfg) -> dict[str, Any]:
    return {"json": json.dumps(_detect(json.loads(row["json"]), cfg))}


class TransNetShots:
    """Shot detection with the TransNetV2 network, loaded once per actor.

    Reads: video row   Writes: scenes, detector, detect_s, error   Reasons: none
    """

    def __init__(self, cfg):
        from stages.shots import TransNetV2Detector

        self.cfg = cfg
        self.detector = TransNetV2Detector(cfg)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = [json.dumps(_detect(json.loads(j), self.cfg, self.detector)) for j in batch["json"]]
        return {"json": out}


def _cut_json(row: dict[str, Any], out: str, cfg, skip: dict[str, list[str]]) -> dict[str, Any]:
    from stages.clips import cut_clips, plan_clips

    d = json.loads(row["json"])
    video = d["video"]
    t0 = time.perf_counter()
    clips: list[dict[str, Any]] = []
    if d["error"] is None:
        try:
            index = _timeline(video["path"])
            times = _times(video, index)
            for s in d["scenes"]:
                s["start_s"], s["end_s"] = times[s["start_frame"]], times[s["end_frame"]]
            plans = plan_clips(video, d["scenes"], cfg, d["detector"], times)
            stored = set(skip.get(video["video_id"], ()))
            todo = [p for p in plans if p["clip_id"] not in stored]
            clips = cut_clips(video["path"], video, todo, out, cfg, skip_ids=stored, index=index) if todo else []
            d["n_clips"] = len(plans)
        except Exception as e:
            d["error_type"], d["error"] = type(e).__name__, str(e)[:2000]
    d["clips"] = clips
    d["cut_s"] = time.perf_counter() - t0
    return {"json": json.dumps(d)}


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class Summary:
    out: str
    counts: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the run skipped and why (missing model weights, ...)

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


def _mark_duplicates(known: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """The first file with a given content is the original; later ones are rows with status 'duplicate'."""
    first: dict[str, str] = {}
    for v in known:
        if v["status"] == "ok" and v["content_hash"]:
            first.setdefault(v["content_hash"], v["video_id"])
    for v in sorted(new, key=lambda r: r["path"]):
        if v["status"] != "ok" or not v["content_hash"]:
            continue
        if v["content_hash"] in first:
            v["status"] = "duplicate"
            v["duplicate_of"] = first[v["content_hash"]]
        else:
            first[v["content_hash"]] = v["video_id"]


def funnel(out: str | Path) -> dict[str, Any]:
    con = store.open(out)
    try:
        c: dict[str, Any] = {}
        row = con.execute(
            "SELECT count(*), count(*) FILTER (status = 'ok'), count(*) FILTER (status = 'error'), "
            "count(*) FILTER (status = 'duplicate'), coalesce(sum(duration_s) FILTER (status = 'ok'), 0) / 3600 "
            "FROM videos"
        ).fetchone()
        c["files"], c["videos_ok"], c["videos_error"], c["videos_duplicate"], c["video_hours"] = row
        c["shots"] = con.execute("SELECT coalesce(sum(n_shots), 0) FROM shots").fetchone()[0]
        c["clips"], c["clip_hours"] = con.execute(
            "SELECT count(*), coalesce(sum(duration_s), 0) / 3600 FROM clips"
        ).fetchone()
        c["kept"], c["kept_hours"] = con.execute(
            "SELECT count(*), coalesce(sum(duration_s), 0) / 3600 FROM kept"
        ).fetchone()
        c["drop_reasons"] = con.execute(
            "SELECT drop_reason, count(*) FROM clips WHERE drop_reason IS NOT NULL GROUP BY ALL ORDER BY 2 DESC"
        ).fetchall()
        return c
    finally:
        con.close()


def run(cfg: Config) -> Summary:
    import ray

    from stages.ingest import expand_inputs
    from stages.probe import exclude_hdr

    out = Path(cfg.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(exist_ok=True)
    store.write_json(out / "config.json", cfg.to_dict())
    init_ray(cfg.ray)
    summary = Summary(out=str(out))
    run_id = time.strftime("%Y%m%dT%H%M%S")

    # ---- 1. probe: one videos row per input file
    t0 = time.perf_counter()
    inputs = expand_inputs(cfg.inputs, cfg.ingest)
    known = store.read_table(out, "videos").to_pylist()
    known_paths = {v["path"] for v in known}
    todo = [r for r in inputs if r["path"] not in known_paths]
    new: list[dict[str, Any]] = []
    if todo:
        ds = ray.data.from_items([{"json": json.dumps(r)} for r in todo]).map(_limited(_probe_json), num_cpus=1)
        new = [json.loads(r["json"]) for r in ds.iter_rows()]
        if cfg.ingest.drop_hdr:
            new = [exclude_hdr(v) for v in new]
        _mark_duplicates(known, new)
        with store.ShardWriter(out, "videos", cfg=cfg.store) as w:
            w.add_rows(new)
    summary.phases["probe"] = time.perf_counter() - t0

    # ---- 2. shots and clips, per ok video not finished yet
    t0 = time.perf_counter()
    videos = [v for v in known + new if v["status"] == "ok"]
    done = store.ids(out, "shots", "video_id")
    todo_videos = [v for v in videos if v["video_id"] not in done]
    if todo_videos:
        stored_clips = store.read_table(out, "clips", columns=["clip_id", "video_id"])
        skip: dict[str, list[str]] = defaultdict(list)
        todo_ids = {v["video_id"] for v in todo_videos}
        for cid, vid in zip(stored_clips["clip_id"].to_pylist(), stored_clips["video_id"].to_pylist(), strict=True):
            if vid in todo_ids:
                skip[vid].append(cid)
        # big videos first: the long tail of one huge file should start early
        todo_videos.sort(key=lambda v: -(v.get("num_frames") or 0))
        ds = ray.data.from_items([{"json": json.dumps(v)} for v in todo_videos], override_num_blocks=len(todo_videos))
        if cfg.shots.detector == "transnetv2":
            ds = ds.map_batches(
                _Limited,
                fn_constructor_kwargs={"stage_cls": TransNetShots, "cpus": cfg.shots.num_cpus, "cfg": cfg.shots},
                batch_size=1,
                compute=_actor_pool(cfg.ray, cfg.shots),
                num_cpus=cfg.shots.num_cpus,
            )
        else:
            ds = ds.map(_limited(_detect_json), fn_kwargs={"cfg": cfg.shots}, num_cpus=cfg.shots.num_cpus)
        ds = ds.map(
            _limited(_cut_json),
            fn_kwargs={"out": str(out), "cfg": cfg.clips, "skip": dict(skip)},
            num_cpus=cfg.clips.num_cpus,
        )
        _write_clips(out, cfg, ds)
    summary.phases["clips"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    summary.notes += score_clips(out, cfg)
    summary.phases["scores"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    filter_clips(out, cfg)
    summary.phases["filters"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    summary.notes += caption_clips(out, cfg)
    summary.notes += text_score_clips(out, cfg)
    summary.phases["captions"] = time.perf_counter() - t0

    summary.counts = funnel(out)
    store.write_json(out / "runs" / f"{run_id}.json", {"run_id": run_id, **summary.counts, "phases": summary.phases})
    return summary


def _write_clips(out: Path, cfg: Config, ds) -> None:
    """Driver side of phase 2: clip rows first, then the video's shots row that marks it finished."""
    clips_w = store.ShardWriter(out, "clips", cfg=cfg.store)
    shots_w = store.ShardWriter(out, "shots", cfg=cfg.store)
    pending_shots: list[dict[str, Any]] = []
    last = time.monotonic()

    def commit() -> None:
        clips_w.flush()  # a shots row is only ever visible after all its clip rows
        shots_w.add_rows(pending_shots)
        shots_w.flush()
        pending_shots.clear()

    for row in ds.iter_rows():
        d = json.loads(row["json"])
        video = d["video"]
        clips_w.add_rows(d["clips"])
        pending_shots.append(
            {
                "video_id": video["video_id"],
                "detector": d["detector"],
                "fps": video["fps"],
                "num_frames": video["num_frames"],
                "scenes": [
                    {k: s.get(k) for k in ("start_frame", "end_frame", "start_s", "end_s")} for s in d["scenes"]
                ],
                "n_shots": len(d["scenes"]),
                "n_clips": d.get("n_clips", 0),
                "error_type": d["error_type"],
                "error": d["error"],
                "detect_s": d.get("detect_s"),
                "cut_s": d.get("cut_s"),
            }
        )
        if time.monotonic() - last > cfg.store.flush_s or len(pending_shots) >= cfg.store.shard_rows:
            commit()
            last = time.monotonic()
    commit()


# --------------------------------------------------------------------------------- scores, filters, captions


def _write_stream(out: Path, name: str, ds, cfg: Config) -> int:
    """Driver side of a per-clip phase: the stage's Arrow batches, stamped, as shards of table ``name``."""
    n = 0
    last = time.monotonic()
    with store.ShardWriter(out, name, cfg=cfg.store) as w:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            w.add_table(store.stamp(batch))
            n += batch.num_rows
            if time.monotonic() - last > cfg.store.flush_s:
                w.flush()
                last = time.monotonic()
    return n


def _actor_stage(out: Path, table: str, rows, stage, cfg: Config, stage_cfg, **ctor) -> int:
    """One per-clip model phase: ``rows`` (a typed Arrow table, or a list of dicts) through an actor pool of
    ``stage`` (resources from ``stage_cfg``) into the shards of ``table``. The one call site where these stages'
    Ray resources are applied."""
    import pyarrow as pa
    import ray

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
    return _write_stream(out, table, ds, cfg)


def score_clips(out: Path, cfg: Config) -> list[str]:
    """Phase 3: CPU scores for every cut clip (one decode per clip), then CLIP scores where weights exist."""
    import dataclasses

    from stages.clip_scores import ClipScorer, aesthetic_off_note, clip_available
    from stages.cpu_scores import CpuScorer

    notes: list[str] = []
    todo = _not_yet(out, "scores")
    if todo.num_rows:
        _actor_stage(out, "scores", todo, CpuScorer, cfg, dataclasses.replace(cfg.scores, root=str(out)))

    if not cfg.clip.enabled:
        notes.append("CLIP scores disabled (clip.enabled = false): no aesthetic score, no aesthetic filter")
        return notes
    ok, why = clip_available(cfg.clip)
    if not ok:
        notes.append(f"CLIP scores skipped, no aesthetic filter: {why}")
        return notes
    if (note := aesthetic_off_note(cfg.clip)) and cfg.filters.min_aesthetic is not None:
        notes.append(note)
    todo = _not_yet(out, "clip_scores")
    if todo.num_rows:
        _actor_stage(out, "clip_scores", todo, ClipScorer, cfg, dataclasses.replace(cfg.clip, root=str(out)))
    return notes


def _not_yet(out: Path, table: str):
    """The cut clips with no row in ``table`` yet, as a typed Arrow table (clip_id, clip_path, num_frames, fps):
    an anti-join in DuckDB over the stored shards, not a Python set of every id."""
    import duckdb

    clips, done = store._source(out, "clips"), store._source(out, table)
    if clips is None:
        return store.TABLES["clips"].empty_table().select(["clip_id", "clip_path", "num_frames", "fps"])
    anti = f"AND NOT EXISTS (SELECT 1 FROM {done} d WHERE d.clip_id = c.clip_id)" if done else ""
    con = duckdb.connect()
    try:
        return con.sql(
            f"SELECT c.clip_id, c.clip_path, c.num_frames, c.fps FROM {clips} c WHERE c.clip_path IS NOT NULL {anti} "
            "ORDER BY c.clip_id"
        ).to_arrow_table()
    finally:
        con.close()


def filter_clips(out: Path, cfg: Config) -> dict[str, int]:
    """Phase 4 (and `clipforge refilter`): drop reasons from the stored scores, then dedup among the survivors.

    Decodes nothing. Replaces the filters table whole, so thresholds can be re-tuned at will. Reads only the columns
    the filter rules and dedup need (``stages.filters.COLUMNS``, ``stages.dedup.columns``): no embeddings (unless
    dedup confirms matches with them), no captions.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from stages.dedup import columns as dedup_columns
    from stages.dedup import find_duplicates
    from stages.filters import COLUMNS as FILTER_COLUMNS
    from stages.filters import apply_filters

    con = store.open(out, skip=("filters",))
    try:
        present = {r[0] for r in con.execute("DESCRIBE clips").fetchall()}
        wanted = dict.fromkeys(("clip_id", "drop_reason", *FILTER_COLUMNS, *dedup_columns(cfg.dedup)))
        select = ", ".join(f'"{c}"' for c in wanted if c in present)
        table = con.sql(f"SELECT {select} FROM clips").to_arrow_table()
    finally:
        con.close()
    reasons = apply_filters(table, cfg.filters)
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


def caption_clips(out: Path, cfg: Config, where: str | None = None) -> list[str]:
    """Phase 5 (and `clipforge caption`): VLM captions for kept clips (or the clips ``where`` selects).

    Clips captioned by the same model and prompt version are skipped unless captioner.recaption is set.
    Without the model's weights the run says so once and marks the clips ``skipped_no_model``.
    """
    import dataclasses

    import pyarrow as pa

    from captioner import captioner_available
    from stages.caption import CaptionStage, needs_caption, resolved_model

    ccfg = cfg.captioner
    if ccfg.model in ("", "none", "off"):
        return ["captioning disabled (captioner.model = none)"]
    con = store.open(out)
    try:
        cols = {r[0] for r in con.execute("DESCRIBE clips").fetchall()}
        existing = [c for c in ("caption_status", "caption_model", "caption_prompt_version") if c in cols]
        select = ", ".join(["clip_id", "clip_path", "num_frames", "fps", *existing])
        source = f"clips WHERE clip_path IS NOT NULL AND ({where})" if where else "kept WHERE clip_path IS NOT NULL"
        rows = con.sql(f"SELECT {select} FROM {source}").to_arrow_table().to_pylist()
    finally:
        con.close()
    todo = [r for r in rows if needs_caption(r if r.get("caption_status") else None, ccfg)]
    if not todo:
        return []
    model = resolved_model(ccfg)
    ok, why = captioner_available(model)
    if not ok:
        fresh = [r for r in todo if not r.get("caption_status")]  # mark once; a later `clipforge caption` fills them
        if fresh:
            skipped = pa.table(
                {
                    "clip_id": [r["clip_id"] for r in fresh],
                    "caption_model": [model] * len(fresh),
                    "caption_status": ["skipped_no_model"] * len(fresh),
                    "error_caption": [why] * len(fresh),
                }
            )
            with store.ShardWriter(out, "captions", cfg=cfg.store) as w:
                w.add_table(store.stamp(skipped))
        return [f"captions skipped ({len(todo)} clips marked skipped_no_model): {why}"]
    stage_cfg = dataclasses.replace(ccfg, root=str(out))
    todo = [{k: r[k] for k in ("clip_id", "clip_path", "num_frames", "fps")} for r in todo]
    n = _actor_stage(out, "captions", todo, CaptionStage, cfg, stage_cfg, root=str(out))
    return [f"captioned {n} clips with {model}"]


def text_score_clips(out: Path, cfg: Config) -> list[str]:
    """CLIP text-video match of each captioned clip (dense caption), where CLIP scores exist.

    Scores the clips whose caption is newer than their text score (or that have none).
    """
    import dataclasses

    from stages.clip_scores import ClipTextScorer, clip_available

    if not cfg.clip.enabled or not store.shard_files(out, "clip_scores") or not store.shard_files(out, "captions"):
        return []
    ok, why = clip_available(cfg.clip)
    if not ok:
        return [f"CLIP text-video scores skipped: {why}"]
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
    tcfg = dataclasses.replace(cfg.clip, root=str(out))
    n = _actor_stage(out, "text_scores", rows, ClipTextScorer, cfg, tcfg)
    return [f"CLIP text-video match scored for {n} captions"]
