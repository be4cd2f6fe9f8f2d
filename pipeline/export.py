"""``clipforge export``: the curated clips in the forms other trainers read.

Formats (each read back in tests by the library its users read it with):

- ``webdataset``: tar shards ``shard-000000.tar`` ... of samples ``<clip_id>.mp4`` (the clip), ``.json`` (its row:
  times, size, scores, captions, source) and ``.txt`` (the chosen caption), written with the ``webdataset``
  package's ``ShardWriter`` (the layout Cosmos / NeMo / Open-Sora-style loaders stream);
- ``folder``: ``<clip_id>.mp4`` + ``<clip_id>.txt`` per clip, the layout LoRA / fine-tuning trainers take
  (musubi-tuner, diffusion-pipe, ai-toolkit, finetrainers: docs/EXPORT.md);
- ``hf``: a Hugging Face dataset: ``data/train-NNNNN-of-NNNNN.parquet`` with the caption, the metadata and the mp4
  bytes (``video``), plus a README.md whose card names the split, so ``datasets.load_dataset(DEST)`` opens it;
- ``csv``: Open-Sora's metadata CSV (``path, text, num_frames, height, width, aspect_ratio, resolution, fps, aes,
  flow``, then clip_id, the source and its lineage: source_url, license, creator, consent, tags ``;``-joined), the
  clips referenced where they are in OUT (nothing copied).

Every format carries each clip's lineage and rights (its video's ``source_url``, ``license``, ``creator``,
``consent``, ``tags``). Every export is registered in ``OUT/exports/`` so ``clipforge remove`` reaches it.

Which caption goes in: ``dense``, ``short``, ``original`` or ``mix`` (drawn per clip with the probabilities of
``pipeline.captions.DEFAULT_CAPTION_MIX`` and ``--seed``, the same draw as ``prepare``). A clip without that caption is
left out with the reason counted. Every export writes ``manifest.json``: the query, the caption choice, counts
(selected, written, left out per reason), OUT's version and its tables' Delta versions, clipforge's version.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.captions import CAPTION_SOURCES, DEFAULT_CAPTION_MIX, choose_caption
from pipeline.provenance import package_versions
from stages import storage

FORMATS = ("webdataset", "folder", "hf", "csv")
CAPTION_CHOICES = ("dense", "short", "original", "mix")
# columns of the kept view that are not metadata worth shipping: signatures and embeddings (large, internal)
_INTERNAL = {"phash", "phash_mirror", "clip_embedding", "written_at"}


def select(out: str | Path, where: str | None) -> list[dict[str, Any]]:
    """The kept clips (the ``kept`` view, joined with their source video's path) matching SQL ``where``, by clip_id;
    only clips that were cut (a clip_path)."""
    from pipeline import store

    con = store.open(out)
    try:
        # the condition sees the kept view's columns only (as prepare's does); the source path is joined after
        sql = (
            f"WITH sel AS (SELECT * FROM kept WHERE clip_path IS NOT NULL AND ({where or 'TRUE'})) "
            "SELECT sel.*, v.path AS source_path FROM sel LEFT JOIN videos v USING (video_id) ORDER BY sel.clip_id"
        )
        return con.sql(sql).to_arrow_table().to_pylist()
    finally:
        con.close()


def caption_for(row: dict[str, Any], choice: str, seed: int) -> tuple[str | None, str | None]:
    """(source, caption) of ``row`` for ``choice`` (dense, short, original, or mix: drawn by ``choose_caption``);
    (None, None) when the clip has no such caption."""
    if choice == "mix":
        return choose_caption(row, DEFAULT_CAPTION_MIX, seed)
    text = row.get(CAPTION_SOURCES[choice])
    return (choice, text.strip()) if isinstance(text, str) and text.strip() else (None, None)


def metadata(row: dict[str, Any]) -> dict[str, Any]:
    """A clip's row as JSON-ready metadata: signatures, embeddings and binary values left out (lists such as the
    caption QA flags kept)."""
    out = {}
    for k, v in row.items():
        if k in _INTERNAL or isinstance(v, bytes):
            continue
        out[k] = v if not isinstance(v, float) or v == v else None  # NaN is not JSON
    return out


def export(
    out: str | Path,
    fmt: str,
    dest: str | Path,
    where: str | None = None,
    caption: str = "dense",
    seed: int = 0,
    shard_clips: int = 1000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Export the selected kept clips of ``out`` to ``dest`` in format ``fmt`` (:data:`FORMATS`); returns the
    manifest (also written to ``dest/manifest.json``). Raises ValueError for an unknown format or caption choice, a
    ``shard_clips`` below 1, or a ``dest`` that already holds files (``overwrite``: empty it first); writes no data
    file when no clip is left to export (the manifest says why)."""
    if shard_clips < 1:
        raise ValueError(f"--shard-clips must be at least 1, not {shard_clips}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if caption not in CAPTION_CHOICES:
        raise ValueError(f"unknown caption choice {caption!r}; use one of {', '.join(CAPTION_CHOICES)}")
    from pipeline import store

    out = storage.location(out)
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        if not overwrite or not dest.is_dir():
            raise ValueError(f"{dest} already exists and is not an empty directory (pass --overwrite to replace it)")
        import shutil

        shutil.rmtree(dest)
    rows = select(out, where)  # before anything is written: a mistake in the SQL leaves no directory behind
    dest.mkdir(parents=True, exist_ok=True)
    left_out: dict[str, int] = {}
    chosen = []
    for r in rows:
        source, text = caption_for(r, caption, seed)
        if text is None:
            left_out[f"no_{caption}_caption"] = left_out.get(f"no_{caption}_caption", 0) + 1
            continue
        chosen.append(({**r, "caption_source": source}, text))  # which caption went in, in every format
    writer = {"webdataset": _webdataset, "folder": _folder, "hf": _hf, "csv": _csv}[fmt]
    files = writer(out, dest, chosen, shard_clips) if chosen else []
    recorded = store.versions(out)
    manifest = {
        "format": fmt,
        "out": str(out),
        "where": where,
        "caption": caption,
        "seed": seed,
        "counts": {"selected": len(rows), "written": len(chosen), "left_out": left_out},
        "out_version": recorded[-1]["version"] if recorded else None,
        "tables": store.table_versions(out),
        "files": files,
        "versions": package_versions("clipforge", "pyarrow", "deltalake", "webdataset"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    from pipeline.remove import register

    register(out, "export", dest, manifest)  # so `clipforge remove` reaches this copy too
    return manifest


def _clip_bytes(out: str | Path, row: dict[str, Any]) -> bytes:
    with storage.open_read(storage.under(out, row["clip_path"])) as f:
        return f.read()


def _webdataset(out, dest: Path, chosen, shard_clips: int) -> list[str]:
    import webdataset as wds

    pattern = str(dest / "shard-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=shard_clips, verbose=0) as sink:
        for row, text in chosen:
            sink.write(
                {
                    "__key__": row["clip_id"],
                    "mp4": _clip_bytes(out, row),
                    "json": json.dumps({**metadata(row), "caption": text}, default=str).encode(),
                    "txt": text.encode(),
                }
            )
    return sorted(p.name for p in dest.glob("shard-*.tar"))


def _folder(out, dest: Path, chosen, shard_clips: int) -> list[str]:
    names = []
    for row, text in chosen:
        (dest / f"{row['clip_id']}.mp4").write_bytes(_clip_bytes(out, row))
        (dest / f"{row['clip_id']}.txt").write_text(text + "\n", encoding="utf-8")
        names.append(f"{row['clip_id']}.mp4")
    return names


def _hf(out, dest: Path, chosen, shard_clips: int) -> list[str]:
    import pyarrow.parquet as pq

    (dest / "data").mkdir(exist_ok=True)
    n_shards = -(-len(chosen) // shard_clips)
    # one schema for every file, from every clip's metadata: a column all null in one file keeps its type there
    meta_all = [{k: v for k, v in metadata(r).items() if k not in ("clip_id", "caption")} for r, _ in chosen]
    meta_schema = pa.Table.from_pylist(meta_all).schema
    schema = pa.schema([("clip_id", pa.string()), ("caption", pa.string()), ("video", pa.binary()), *meta_schema])
    names = []
    for i in range(n_shards):
        part = chosen[i * shard_clips : (i + 1) * shard_clips]
        meta = meta_all[i * shard_clips : (i + 1) * shard_clips]
        columns = {
            "clip_id": [r["clip_id"] for r, _ in part],
            "caption": [t for _, t in part],
            "video": [_clip_bytes(out, r) for r, _ in part],
            **{f.name: [m.get(f.name) for m in meta] for f in meta_schema},
        }
        name = f"data/train-{i:05d}-of-{n_shards:05d}.parquet"
        pq.write_table(pa.table(columns, schema=schema), dest / name)
        names.append(name)
    card = (
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*.parquet\n---\n"
        "# clipforge export\n\nVideo clips (`video`: mp4 bytes, H.264) with their captions (`caption`) and metadata "
        "(times, size, scores, source). Written by `clipforge export --format hf`; see manifest.json for the query.\n"
    )
    (dest / "README.md").write_text(card)
    return names


def _csv(out, dest: Path, chosen, shard_clips: int) -> list[str]:
    import pyarrow.csv as pacsv

    def resolution(h, w):
        return f"{min(h, w)}p" if h and w else None

    rows = []
    for row, text in chosen:
        h, w = row.get("height"), row.get("width")
        rows.append(
            {
                "path": str(storage.under(out, row["clip_path"])),
                "text": text,
                "num_frames": row.get("num_frames"),
                "height": h,
                "width": w,
                "aspect_ratio": round(h / w, 6) if h and w else None,
                "resolution": resolution(h, w),
                "fps": row.get("fps"),
                "aes": row.get("aesthetic"),
                "flow": row.get("motion"),
                "clip_id": row["clip_id"],
                "caption_source": row["caption_source"],
                "source": row.get("source_path"),
                "start_s": row.get("start_s"),
                "end_s": row.get("end_s"),
                **{k: row.get(k) for k in ("source_url", "license", "creator", "consent")},
                "tags": ";".join(row.get("tags") or []) or None,
            }
        )
    schema = pa.schema(
        [
            ("path", pa.string()),
            ("text", pa.string()),
            ("num_frames", pa.int64()),
            ("height", pa.int64()),
            ("width", pa.int64()),
            ("aspect_ratio", pa.float64()),
            ("resolution", pa.string()),
            ("fps", pa.float64()),
            ("aes", pa.float64()),
            ("flow", pa.float64()),
            ("clip_id", pa.string()),
            ("caption_source", pa.string()),
            ("source", pa.string()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("source_url", pa.string()),
            ("license", pa.string()),
            ("creator", pa.string()),
            ("consent", pa.string()),
            ("tags", pa.string()),  # ';'-separated
        ]
    )
    pacsv.write_csv(pa.Table.from_pylist(rows, schema=schema), dest / "meta.csv")
    return ["meta.csv"]
