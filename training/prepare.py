"""The Ray adapter of the training data path: SQL-selected clips -> latents + text embeddings -> Parquet shards.

    rows = select_clips(out, "aesthetic > 5 AND duration_s >= 2")        # DuckDB over the curated store
    prepare(out, where_sql, buckets, codec, text_encoder, caption_mix, dest)

runs ``training.data.ClipEncoder`` as a Ray Data actor (codec and text encoder load once per actor), writes
``dest/shards/*.parquet`` (tensors as bytes + shape + dtype columns) and ``dest/manifest.json`` (query, codec,
text encoder, buckets, versions, counts). This is the one training module that imports Ray.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stages import storage
from training.buckets import BucketSet
from training.data import CAPTION_SOURCES, DEFAULT_CAPTION_MIX, SHARD_SCHEMA, ClipEncoder, _shard_files, write_manifest


def select_clips(out: str | Path, where_sql: str = "TRUE", limit: int | None = None) -> list[dict]:
    """Rows of the store's ``kept`` view matching ``where_sql`` (any DuckDB condition), in clip_id order."""
    from pipeline import store

    con = store.open(out)
    sql = f"SELECT * FROM kept WHERE {where_sql or 'TRUE'} ORDER BY clip_id"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return con.sql(sql).to_arrow_table().to_pylist()


class _RayClipEncoder(ClipEncoder):
    """ClipEncoder returning Arrow tables of SHARD_SCHEMA, so Ray writes the exact column types."""

    def __init__(self, threads: int = 1, **kw):
        import torch

        torch.set_num_threads(max(1, threads))
        super().__init__(**kw)

    def __call__(self, batch: dict) -> pa.Table:
        return pa.Table.from_pydict(super().__call__(batch), schema=SHARD_SCHEMA)


def prepare(
    out: str | Path,
    where_sql: str | None,
    buckets: dict | str | Path | None,
    codec: str,
    text_encoder: str,
    caption_mix: dict[str, float] | None,
    dest: str | Path,
    *,
    rows: list[dict] | pa.Table | None = None,
    seed: int = 0,
    text_max_length: int | None = None,
    batch_size: int = 8,
    concurrency: int = 1,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    camera_tags: bool = False,
) -> dict:
    """Encode the selected clips into training shards under ``dest`` and return the manifest.

    The selection is ``rows`` if given (dicts or an Arrow table shaped like the ``kept`` view), else
    ``select_clips(out, where_sql)``. Clip paths are relative to ``out``. ``concurrency`` encoder actors with
    ``num_cpus``/``num_gpus`` each: on a 2-CPU machine keep num_cpus below the total, Ray Data needs headroom.
    """
    import ray

    if rows is None:
        rows = select_clips(out, where_sql or "TRUE")
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
    dest = storage.as_path(dest)  # a directory or an object-storage prefix
    shards = f"{str(dest).rstrip('/')}/shards"
    storage.remove_tree(shards)
    fs, shards_path = storage.arrow_filesystem(shards)
    fs.create_dir(shards_path, recursive=True)
    encoder_kw = dict(
        root=str(storage.location(out)),  # a local directory or a bucket prefix
        codec=codec,
        text_encoder=text_encoder,
        buckets=buckets,
        caption_mix=caption_mix or DEFAULT_CAPTION_MIX,
        seed=seed,
        text_max_length=text_max_length,
        camera_tags=camera_tags,
    )
    if not ray.is_initialized():
        # RAY_ADDRESS (Ray's own variable) joins a cluster; without it a new local Ray, never a stray one
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", ignore_reinit_error=True, include_dashboard=False)
    if table.num_rows:
        ds = ray.data.from_arrow(table)
        ds = ds.map_batches(
            _RayClipEncoder,
            fn_constructor_kwargs={"threads": max(1, int(num_cpus)), **encoder_kw},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=max(1, int(concurrency))),
            num_cpus=num_cpus,
            num_gpus=num_gpus,
        )
        ds.write_parquet(shards_path, filesystem=fs)
    files = _shard_files(dest)
    columns = ["clip_id", "bucket", "caption_source", "license", "error"]
    written = (
        pa.concat_tables([pq.read_table(storage.open_read(f), columns=columns) for f in files])
        if files
        else pa.table({k: pa.array([], pa.string()) for k in columns})
    )
    # The manifest describes the codec/text encoder as loaded (class, dims); build one in-process to ask.
    info = ClipEncoder(**encoder_kw).describe()
    manifest = write_manifest(dest, info, written, where_sql, table.num_rows)
    from pipeline.remove import register

    register(out, "prepare", dest, manifest)  # so `clipforge remove` reaches these shards too
    return manifest


def dry_run(
    out: str | Path,
    where_sql: str | None,
    buckets: dict | str | Path | None,
    caption_mix: dict[str, float] | None = None,
    seed: int = 0,
) -> dict:
    """What ``prepare`` would do, without decoding or encoding anything: per selected clip its bucket and caption
    source, or why it would be left out (``no_caption``, ``too_short``, ``too_small``, ``no_size``: the reasons the
    encoder records), and the counts. The same caption draw and bucket assignment as the encoder."""
    from pipeline.captions import choose_caption

    bucket_set = BucketSet.from_config(buckets)
    mix = caption_mix or DEFAULT_CAPTION_MIX
    rows = select_clips(out, where_sql or "TRUE")
    plan = []
    for r in rows:
        source, caption = choose_caption(r, mix, seed)
        size = int(r.get("width") or 0), int(r.get("height") or 0), int(r.get("num_frames") or 0), r.get("fps")
        bucket = bucket_set.assign(*size)
        reason = "no_caption" if caption is None else None if bucket is not None else bucket_set.why_not(*size)
        plan.append({"clip_id": r["clip_id"], "bucket": None if reason else bucket.name,
                     "caption_source": None if reason else source, "reason": reason})  # fmt: skip
    counts: dict = {"clips_in": len(plan), "would_write": sum(p["reason"] is None for p in plan)}
    counts["per_bucket"] = dict(Counter(p["bucket"] for p in plan if p["reason"] is None))
    counts["skipped"] = dict(Counter(p["reason"] for p in plan if p["reason"] is not None))
    return {"query": where_sql, "buckets": bucket_set.to_config(), "counts": counts, "clips": plan}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for `clipforge prepare OUT --dest DIR`."""
    parser.add_argument("out", help="curated dataset dir (pipeline output)")
    parser.add_argument("--dest", required=True, help="directory or object-storage prefix for shards/, manifest.json")
    parser.add_argument("--where", default="TRUE", help='SQL condition on the kept view, e.g. "duration_s >= 2"')
    parser.add_argument("--buckets", help="bucket YAML (default: 8x32x32 video + 1x32x32 image)")
    parser.add_argument("--codec", default="pixel", help="pixel | diffusers:<id_or_dir>[#subfolder] | spacetime:<dir>")
    parser.add_argument("--text-encoder", default="minilm", help="minilm | t5:<id_or_dir> | clip:<id_or_dir>")
    parser.add_argument("--text-max-length", type=int)
    parser.add_argument(
        "--caption-mix",
        default=json.dumps(DEFAULT_CAPTION_MIX),
        help='JSON, e.g. {"dense":0.6,"short":0.3,"original":0.1}',
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--camera-tags", action="store_true", help='append the camera move to each caption ("The camera pans left.")'
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=1, help="encoder actors")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per encoder actor")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per encoder actor")
    parser.add_argument(
        "--address", help="Ray cluster address, as `clipforge run --address` (default: RAY_ADDRESS, else a local Ray)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print each clip's bucket or why it is left out; encode nothing"
    )


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="clipforge prepare")
        add_arguments(parser)
        args = parser.parse_args(args)
    try:
        return _main(args)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:  # a mistake in the flags: one line, not a trace
        print(f"clipforge prepare: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        import duckdb

        if isinstance(e, duckdb.Error):  # a mistake in --where
            print(f"clipforge prepare: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        raise


def _main(args: argparse.Namespace) -> int:
    mix = json.loads(args.caption_mix)
    if not isinstance(mix, dict) or set(mix) - set(CAPTION_SOURCES):
        raise ValueError(f"--caption-mix {args.caption_mix}: a JSON object over {sorted(CAPTION_SOURCES)}")
    args.caption_mix = json.dumps(mix)
    if args.dry_run:
        plan = dry_run(args.out, args.where, args.buckets, json.loads(args.caption_mix), args.seed)
        for p in plan["clips"]:
            print(f"{p['clip_id']}  {p['bucket'] or 'left out: ' + p['reason']}")
        print(json.dumps(plan["counts"]), flush=True)
        return 0
    if getattr(args, "address", None):
        os.environ["RAY_ADDRESS"] = args.address  # what prepare() joins (Ray's own variable)
    manifest = prepare(
        args.out, args.where, args.buckets, args.codec, args.text_encoder, json.loads(args.caption_mix), args.dest,
        seed=args.seed, text_max_length=args.text_max_length, batch_size=args.batch_size,
        concurrency=args.concurrency, num_cpus=args.num_cpus, num_gpus=args.num_gpus, camera_tags=args.camera_tags,
    )  # fmt: skip
    print(json.dumps(manifest["counts"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
