"""The run's global steps, also commands of their own: the filters table (per-clip rules + dataset-wide dedup;
`clipforge refilter`), captions and text-match scores of kept clips (`clipforge caption`; the catch-up after a
run's graph), and the one helper that runs a per-clip model stage outside the graph (an actor pool whose workers
write the table's shards).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa

from pipeline import store
from pipeline.config import Config, RayConfig
from stages import storage


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


# the stored columns stages.shared_overlay reads of each clip
SHARED_COLUMNS = (
    "clip_id",
    "video_id",
    "clip_path",
    "num_frames",
    "fps",
    "overlay_area",
    "overlay_box",
    "error_scores",
)
SHARED_RESULTS = ("overlay_seen_in", "overlay_match", "overlay_seeds", "overlay_refused", "overlay_error")


def _check_video(rows, root, scores_cfg):
    from stages.shared_overlay import check_video

    return check_video(rows, root, scores_cfg)


def shared_overlays(
    out: Path, cfg: Config, report: dict | None = None, only: set[str] | None = None
) -> dict[str, dict]:
    """``stages.shared_overlay`` over the dataset: {clip_id: {overlay_seen_in, overlay_match, overlay_seeds,
    overlay_refused, overlay_error}} of every scored clip without an overlay (its ``overlay_area`` 0 or null) in a
    source where another clip has one. ``overlay_seeds``: the look's version and the seeds' clip_ids it was matched
    against ("v3:id,id"); a clip whose stored filters row was matched against the same seeds by the same version
    keeps that result (a refilter decodes nothing again), the others are decoded from their files (one Ray task per
    source when Ray is up, else here), with the source's seeds. ``only``: the clips that may be targets (None: all;
    the filters pass those the rules before ``text_overlay`` keep: a clip already dropped as blurry is not decoded
    for a verdict that cannot change). ``report``, when given, receives ``decoded``: the clips read (seeds and
    targets)."""
    from stages.shared_overlay import METHOD, is_seed, is_target

    con = store.open(out, skip=("filters",))
    try:
        present = {r[0] for r in con.execute("DESCRIBE clips").fetchall()}
        if not set(SHARED_COLUMNS) | {"scores_s"} <= present:
            return {}
        cols = ", ".join(f'"{c}"' for c in SHARED_COLUMNS)
        rows = (
            con.sql(
                f"SELECT {cols} FROM clips WHERE drop_reason IS NULL AND scores_s IS NOT NULL AND video_id IN "
                "(SELECT video_id FROM clips WHERE overlay_area > 0) ORDER BY video_id, clip_id"
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    by_video: dict[str, list[dict]] = {}
    for r in rows:
        by_video.setdefault(r["video_id"], []).append(r)
    had = set(store._columns(out, "filters"))
    previous = {}
    if set(SHARED_RESULTS) <= had:
        for r in store.read_table(out, "filters", ["clip_id", *SHARED_RESULTS]).to_pylist():
            if r["overlay_seeds"] is not None and r["overlay_error"] is None:
                previous[r["clip_id"]] = r
    result: dict[str, dict] = {}
    todo: list[tuple[str, list[dict]]] = []
    for mine in by_video.values():
        seeds = [r for r in mine if is_seed(r)]
        key = f"v{METHOD}:" + ",".join(sorted(str(r["clip_id"]) for r in seeds))
        targets = [r for r in mine if is_target(r) and (only is None or str(r["clip_id"]) in only)]
        if not seeds or not targets:
            continue
        known = {str(r["clip_id"]) for r in targets if previous.get(str(r["clip_id"]), {}).get("overlay_seeds") == key}
        result.update((cid, previous[cid]) for cid in known)
        new = [r for r in targets if str(r["clip_id"]) not in known]
        if new:
            todo.append((key, seeds + new))
    if report is not None:
        report["decoded"] = sum(len(rows) for _, rows in todo)
    if todo:
        import ray

        root = storage.location(out)
        if ray.is_initialized():
            task = ray.remote(num_cpus=1)(_check_video)
            found = ray.get([task.remote(mine, root, cfg.scores) for _, mine in todo])
        else:
            found = [_check_video(mine, root, cfg.scores) for _, mine in todo]
        for (seeds, _), got in zip(todo, found, strict=True):
            result.update((cid, {**r, "overlay_seeds": seeds}) for cid, r in got.items())
    return result


def _with_shared_overlays(table: pa.Table, shared: dict[str, dict]) -> pa.Table:
    """``table`` (the filters' columns) with the ``overlay_area`` of each clip that shows another clip's overlay
    (``overlay_seen_in``) set to that clip's, so the ``text_overlay`` rule judges it as it judges the other."""
    if "overlay_area" not in table.column_names:
        return table
    ids = table["clip_id"].to_pylist()
    area = dict(zip(ids, table["overlay_area"].to_pylist(), strict=True))
    new = [
        area.get(shared[c]["overlay_seen_in"]) if shared.get(c, {}).get("overlay_seen_in") else area[c] for c in ids
    ]
    i = table.column_names.index("overlay_area")
    return table.set_column(i, "overlay_area", pa.array(new, table.schema.field(i).type))


def filter_clips(out: Path, cfg: Config, report: dict | None = None) -> dict[str, int]:
    """Phase 4 (and `clipforge refilter`): drop reasons from the stored scores, then dedup among the survivors.

    Decodes nothing but the anchors of the clips the shared-overlay check has not matched yet against their source's
    current seeds (:func:`shared_overlays`; ``report["decoded"]`` counts them). Replaces the filters table whole, so
    thresholds can be re-tuned at will. Reads only the columns the filter rules and dedup need
    (``stages.filters.columns``, ``stages.dedup.columns``): no embeddings (unless dedup confirms matches with them),
    no captions.
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
    shared: dict[str, dict] = {}
    if cfg.filters.shared_overlay:
        from stages.filters import TEXT_OVERLAY, rules

        order = [r.reason for r in rules(cfg.stages)]
        later = set(order[order.index(TEXT_OVERLAY) :]) if TEXT_OVERLAY in order else set()
        at_cut = table["drop_reason"].to_pylist()
        eligible = {
            cid
            for cid, cut, r in zip(table["clip_id"].to_pylist(), at_cut, reasons.to_pylist(), strict=True)
            if cut is None and (r is None or r in later)
        }
        shared = shared_overlays(out, cfg, report, eligible)
        if report is not None:
            report["shown"] = sum(1 for v in shared.values() if v.get("overlay_seen_in"))
            refused = Counter(v["overlay_refused"] for v in shared.values() if v.get("overlay_refused"))
            report["refused"] = dict(sorted(refused.items()))
        if any(v.get("overlay_seen_in") for v in shared.values()):
            table = _with_shared_overlays(table, shared)
            reasons = apply_filters(table, cfg, cfg.stages)
    survivors = pc.and_(pc.is_null(table["drop_reason"]), pc.is_null(reasons))
    candidates = table.filter(survivors)
    dupes = find_duplicates(candidates, cfg.dedup) if cfg.dedup.enabled and "phash" in table.column_names else {}
    ids = table["clip_id"].to_pylist()
    reason_list = reasons.to_pylist()
    final = [("duplicate" if cid in dupes else r) for cid, r in zip(ids, reason_list, strict=True)]
    filters = pa.table(
        {
            "clip_id": ids,
            "drop_reason": pa.array(final, pa.string()),
            "duplicate_of": pa.array([dupes.get(cid) for cid in ids], pa.string()),
            **{
                col: pa.array([shared.get(cid, {}).get(col) for cid in ids], typ)
                for col, typ in (
                    ("overlay_seen_in", pa.string()),
                    ("overlay_match", pa.float32()),
                    ("overlay_seeds", pa.string()),
                    ("overlay_refused", pa.string()),
                    ("overlay_error", pa.string()),
                )
            },
        }
    )
    store.replace_table(out, "filters", filters, cfg.store)
    counts: dict[str, int] = {}
    for r in final:
        if r is not None:
            counts[r] = counts.get(r, 0) + 1
    return counts


def caption_clips(
    out: Path,
    cfg: Config,
    where: str | None = None,
    catch_up: bool = False,
    available: tuple[bool, str] | None = None,
    version: str | None = None,
) -> list[str]:
    """`clipforge caption`, and the catch-up after a run's graph: VLM captions for kept clips (or the clips
    ``where`` selects) that need one (the rule of ``stages.caption.needs_caption``: no caption yet, an error or a
    skip, another model or prompt version, or ``captioner.recaption``), selected in DuckDB: no row passes through
    Python. Without the model's weights the clips without a caption status are marked ``skipped_no_model``.
    ``catch_up``: the graph already said what captioning did; notes only for work done here. ``available``,
    ``version``: the ``captioner_available`` answer and the prompt version when the caller has them (the run's
    model check, on a worker); else computed here.
    """
    import dataclasses

    from stages.caption import STATUS_FLAGGED, STATUS_OK, CaptionStage, captioning_off, resolved_model

    ccfg = cfg.captioner
    if captioning_off(ccfg):
        if catch_up:
            return []
        return [f"captioning disabled (captioner.model = {ccfg.model or 'none'!r})"]
    model = resolved_model(ccfg)
    if version is None:
        from stages.caption import prompt_version

        version = prompt_version(ccfg)
    con = store.open(out)
    try:
        cols = {r[0] for r in con.execute("DESCRIBE clips").fetchall()}
        source = f"clips WHERE clip_path IS NOT NULL AND ({where})" if where else "kept WHERE clip_path IS NOT NULL"
        needs = "TRUE"
        if "caption_status" in cols and not ccfg.recaption:
            needs = (
                f"(caption_status IS NULL OR caption_status NOT IN ('{STATUS_OK}', '{STATUS_FLAGGED}') "
                "OR caption_model IS DISTINCT FROM $model OR caption_prompt_version IS DISTINCT FROM $version)"
            )
        fresh = "caption_status IS NULL" if "caption_status" in cols else "TRUE"
        q = f"SELECT clip_id, clip_path, num_frames, fps, {fresh} AS fresh FROM {source} AND {needs}"
        params = {"model": model, "version": version} if "$model" in needs else {}
        todo = con.sql(q, params=params or None).to_arrow_table()
    finally:
        con.close()
    if not todo.num_rows:
        return []
    if available is None:
        from captioner import captioner_available

        available = captioner_available(model)
    ok, why = available
    if not ok:
        marked = todo.filter(todo["fresh"]).select(["clip_id"])  # mark once; a later `clipforge caption` fills them
        if marked.num_rows:
            n = marked.num_rows
            marked = marked.append_column("caption_model", pa.array([model] * n, pa.string()))
            marked = marked.append_column("caption_status", pa.array(["skipped_no_model"] * n, pa.string()))
            marked = marked.append_column("error_caption", pa.array([why] * n, pa.string()))
            with store.ShardWriter(out, "captions", cfg=cfg.store) as w:
                w.add_table(store.stamp(marked))
        return [] if catch_up else [f"captions skipped ({todo.num_rows} clips marked skipped_no_model): {why}"]
    stage_cfg = dataclasses.replace(ccfg, root=str(out))
    todo = todo.drop_columns(["fresh"])
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
        rows = con.sql(
            "SELECT c.clip_id, c.clip_embedding, c.caption_dense AS text, 'caption_dense' AS text_column "
            f"FROM clips c JOIN (SELECT clip_id, max(written_at) AS written_at FROM {cap} GROUP BY ALL) cap "
            f"USING (clip_id) WHERE c.clip_embedding IS NOT NULL AND c.caption_dense IS NOT NULL AND {stale}"
        ).to_arrow_table()  # typed Arrow: the embeddings never become Python objects
    finally:
        con.close()
    if not rows.num_rows:
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

    from pipeline.run import init_ray
    from pipeline.stream import TableSink

    init_ray(cfg.ray)  # only once there is work (a no-op in a run): `clipforge caption` with none starts no Ray
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
