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

The ``folder`` format also writes ``metadata.jsonl``: per clip ``file_name`` (what 🤗 ``videofolder`` and finetrainers
read), ``video_path`` and ``caption`` (what musubi-tuner's ``video_jsonl_file`` reads) and the clip's frames, rate and
size.

Normalisations (``folder``, ``webdataset``, ``hf``; ``csv`` refuses them, it references the clips in OUT unchanged):
``fps`` (a constant rate by presentation time), ``frames`` (``"4k+1"``: counts of that form, the middle kept),
``max_frames``, ``min_frames``, ``buckets`` (training/buckets.py's YAML: resize + centre-crop to the bucket, never
up); pipeline/normalise.py says exactly how. A normalised clip's metadata (json, columns, metadata.jsonl) holds the
written clip's frames, rate, size, duration and span in the source; a clip that cannot be normalised is left out with
its reason counted (``too_short``, ``too_small``, ``error_export:<Type>``).

Which caption goes in: ``dense``, ``short``, ``original`` or ``mix`` (drawn per clip with the probabilities of
``pipeline.captions.DEFAULT_CAPTION_MIX`` and ``--seed``, the same draw as ``prepare``). A clip without that caption is
left out with the reason counted. Every export writes ``manifest.json``: the query, the caption choice, the
normalisation settings (``normalise``, null without), counts (selected, written, left out per reason), OUT's version
and its tables' Delta versions, clipforge's version.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.captions import CAPTION_SOURCES, DEFAULT_CAPTION_MIX, choose_caption, with_camera_tags
from pipeline.normalise import Normalise, normalise_clip
from pipeline.provenance import package_versions
from stages import storage

FORMATS = ("webdataset", "folder", "hf", "csv")
NORMALISING = ("folder", "webdataset", "hf")  # the formats that write clip files, so can take --fps/--frames/--buckets
# metadata.jsonl's columns after file_name, video_path and caption: the written clip's properties and where it is from
_FOLDER_METADATA = (
    "clip_id", "caption_source", "num_frames", "fps", "width", "height", "duration_s", "bucket", "source_path",
    "start_s", "end_s", "source_url", "license", "license_id", "creator", "consent", "tags", "camera_tags",
)  # fmt: skip
CAPTION_CHOICES = ("dense", "short", "original", "mix")
# columns of the kept view that are not metadata worth shipping: signatures and embeddings (large, internal)
_INTERNAL = {"phash", "phash_mirror", "clip_embedding", "written_at"}


def select(out: str | Path, where: str | None) -> list[dict[str, Any]]:
    """The kept clips (the ``kept`` view, with their source video's path ``source_path``) matching SQL ``where``, by
    clip_id; only clips that were cut (a clip_path)."""
    from pipeline import store

    con = store.open(out)
    try:
        # the condition sees the kept view's columns (as prepare's does), the source video's path among them
        sql = f"SELECT * FROM kept WHERE clip_path IS NOT NULL AND ({where or 'TRUE'}) ORDER BY clip_id"
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
    *,
    fps: float | str | None = None,
    frames: int | str | None = None,
    max_frames: int | None = None,
    min_frames: int | None = None,
    buckets: dict | str | Path | None = None,
    crf: int = 18,
    camera_tags: bool = False,
) -> dict[str, Any]:
    """Export the selected kept clips of ``out`` to ``dest`` in format ``fmt`` (:data:`FORMATS`); returns the
    manifest (also written to ``dest/manifest.json``).

    ``fps`` (frames/s, a number or ``"30000/1001"``), ``frames`` (``"4k+1"``), ``max_frames``, ``min_frames``,
    ``buckets`` (a bucket YAML path or dict) and ``crf`` normalise every clip (pipeline/normalise.py) for the formats
    in :data:`NORMALISING`; without them clips are copied byte for byte. Raises ValueError for an unknown format or
    caption choice, a ``shard_clips`` below 1, a bad or unsupported normalisation option (naming it), or a ``dest``
    that already holds files (``overwrite``: empty it first); FileNotFoundError for a missing bucket file. Writes no
    data file when no clip is left to export (the manifest says why)."""
    if shard_clips < 1:
        raise ValueError(f"--shard-clips must be at least 1, not {shard_clips}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if caption not in CAPTION_CHOICES:
        raise ValueError(f"unknown caption choice {caption!r}; use one of {', '.join(CAPTION_CHOICES)}")
    norm = Normalise.build(fps, frames, max_frames, min_frames, buckets, crf)
    if norm.active and fmt not in NORMALISING:
        raise ValueError(
            f"--format {fmt} takes no --fps/--frames/--max-frames/--min-frames/--buckets: it references the clips "
            f"in OUT as they are (normalising formats: {', '.join(NORMALISING)})"
        )
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
    left_ids: dict[str, list[str]] = {}  # reason -> clip ids left out (so a removal can correct the counts)
    chosen = []
    for r in rows:
        source, text = caption_for(r, caption, seed)
        if text is None:
            left_out[f"no_{caption}_caption"] = left_out.get(f"no_{caption}_caption", 0) + 1
            left_ids.setdefault(f"no_{caption}_caption", []).append(r["clip_id"])
            continue
        if camera_tags:  # the camera's move said in words (stages/camera.py), as Open-Sora-style captions carry it
            text = with_camera_tags(text, r)
        chosen.append(({**r, "caption_source": source}, text))  # which caption went in, in every format
    writer = {"webdataset": _webdataset, "folder": _folder, "hf": _hf, "csv": _csv}[fmt]
    local: dict[str, Path] = {}  # clip_id -> its normalised file (in a scratch folder inside dest until written)
    scratch = dest / ".clipforge-normalising"
    outcome: dict[str, Any] = {}
    try:
        if norm.active:
            scratch.mkdir()
            chosen, local, outcome = _normalise(out, chosen, norm, scratch, left_out, left_ids)
        files = writer(out, dest, chosen, shard_clips, local) if chosen else []
    finally:
        if scratch.exists():
            import shutil

            shutil.rmtree(scratch)
    recorded = store.versions(out)
    manifest = {
        "format": fmt,
        "out": str(out),
        "where": where,
        "caption": caption,
        "camera_tags": camera_tags,
        "seed": seed,
        "normalise": {**norm.settings(), **outcome} if norm.active else None,
        "counts": {"selected": len(rows), "written": len(chosen), "left_out": left_out},
        "left_out_ids": left_ids,
        "out_version": recorded[-1]["version"] if recorded else None,
        "tables": store.table_versions(out),
        "files": files,
        "versions": package_versions("clipforge", "pyarrow", "deltalake", "webdataset", *(["av"] * norm.active)),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    from pipeline.remove import register

    register(out, "export", dest, manifest)  # so `clipforge remove` reaches this copy too
    return manifest


def _normalise(
    out, chosen: list, norm: Normalise, scratch: Path, left_out: dict[str, int], left_ids: dict[str, list[str]]
) -> tuple[list, dict[str, Path], dict[str, Any]]:
    """Normalise every chosen clip into ``scratch``: (the clips written, with their rows now describing the written
    file; clip_id -> file; the outcome for the manifest: clips copied / re-encoded, per bucket, errors). A clip that
    cannot be normalised is counted in ``left_out`` (its reason, or ``error_export:<Type>`` for an undecodable one,
    its message in the outcome's ``errors``); an error of the environment (disk full) stops the export."""
    from collections import Counter

    from stages.errors import raise_if_environment

    kept, files = [], {}
    how: Counter = Counter()
    per_bucket: Counter = Counter()
    errors = []
    for row, text in chosen:
        cid = row["clip_id"]
        try:
            got = normalise_clip(storage.under(out, row["clip_path"]), scratch / f"{cid}.mp4", norm)
        except Exception as e:  # noqa: BLE001 - one clip's failure is data, the export goes on
            raise_if_environment(e, f"export {cid}")
            got = f"error_export:{type(e).__name__}"
            if len(errors) < 100:  # the first hundred messages; left_out counts them all
                errors.append({"clip_id": cid, "error": str(e)[:500]})
        if isinstance(got, str):
            left_out[got] = left_out.get(got, 0) + 1
            left_ids.setdefault(got, []).append(cid)
            continue
        files[cid] = scratch / f"{cid}.mp4"
        how["copied" if got["copied"] else "encoded"] += 1
        written = {k: got[k] for k in ("num_frames", "fps", "width", "height", "duration_s")}
        if row.get("start_s") is not None:  # the span in the source video that the written clip shows
            written["start_s"] = row["start_s"] + got["offset_s"]
            written["end_s"] = written["start_s"] + got["duration_s"]
        if row.get("start_frame") is not None and got.get("src_frames"):  # and its source frames (end exclusive)
            first, stop = got["src_frames"]
            written["start_frame"], written["end_frame"] = row["start_frame"] + first, row["start_frame"] + stop
        if got["bucket"]:
            written["bucket"] = got["bucket"]
            per_bucket[got["bucket"]] += 1
        kept.append(({**row, **written, "clip_bytes": got["bytes"]}, text))
    outcome = {"clips": {"encoded": how["encoded"], "copied": how["copied"]}, "errors": errors}
    if norm.buckets is not None:
        outcome["per_bucket"] = dict(sorted(per_bucket.items()))
    return kept, files, outcome


def _clip_bytes(out: str | Path, row: dict[str, Any], local: dict[str, Path] | None = None) -> bytes:
    """The bytes of the clip file to ship: its normalised file when there is one, else the cut clip in OUT."""
    if local and row["clip_id"] in local:
        return local[row["clip_id"]].read_bytes()
    with storage.open_read(storage.under(out, row["clip_path"])) as f:
        return f.read()


def _webdataset(out, dest: Path, chosen, shard_clips: int, local) -> list[str]:
    import webdataset as wds

    pattern = str(dest / "shard-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=shard_clips, verbose=0) as sink:
        for row, text in chosen:
            sink.write(
                {
                    "__key__": row["clip_id"],
                    "mp4": _clip_bytes(out, row, local),
                    "json": json.dumps({**metadata(row), "caption": text}, default=str).encode(),
                    "txt": text.encode(),
                }
            )
    return sorted(p.name for p in dest.glob("shard-*.tar"))


def _folder(out, dest: Path, chosen, shard_clips: int, local) -> list[str]:
    names = []
    with open(dest / "metadata.jsonl", "w", encoding="utf-8") as meta:
        for row, text in chosen:
            name = f"{row['clip_id']}.mp4"
            if row["clip_id"] in local:
                local[row["clip_id"]].replace(dest / name)
            else:
                (dest / name).write_bytes(_clip_bytes(out, row))
            (dest / f"{row['clip_id']}.txt").write_text(text + "\n", encoding="utf-8")
            record = {"file_name": name, "video_path": name, "caption": text}
            record.update({k: row.get(k) for k in _FOLDER_METADATA})
            meta.write(json.dumps(metadata(record), default=str) + "\n")
            names.append(name)
    return [*names, "metadata.jsonl"]


def _hf(out, dest: Path, chosen, shard_clips: int, local) -> list[str]:
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
            "video": [_clip_bytes(out, r, local) for r, _ in part],
            **{f.name: [m.get(f.name) for m in meta] for f in meta_schema},
        }
        name = f"data/train-{i:05d}-of-{n_shards:05d}.parquet"
        pq.write_table(pa.table(columns, schema=schema), dest / name)
        names.append(name)
    card = (
        f"---\n{_hf_license(chosen)}configs:\n- config_name: default\n  data_files:\n  - split: train\n"
        "    path: data/train-*.parquet\n---\n"
        "# clipforge export\n\nVideo clips (`video`: mp4 bytes, H.264) with their captions (`caption`) and metadata "
        "(times, size, scores, source, and each clip's `license`, `source_url`, `creator`, `consent`). Written by "
        "`clipforge export --format hf`; see manifest.json for the query.\n"
    )
    (dest / "README.md").write_text(card)
    return names


def _hf_license(chosen) -> str:
    """The dataset card's ``license`` field (Hugging Face card metadata): the clips' one licence when every clip
    carries it and it reads as an identifier (lower-cased, e.g. ``cc-by-4.0``), else ``other`` with the licences
    named ("not given" among them when some clip has none); nothing when no clip carries one."""
    licences = sorted({r.get("license_id") or r.get("license") for r, _ in chosen if r.get("license")})
    if not licences:
        return ""
    unlicensed = any(not r.get("license") for r, _ in chosen)
    if len(licences) == 1 and not unlicensed and re.fullmatch(r"[A-Za-z0-9.+-]+", licences[0]):
        return f"license: {licences[0].lower()}\n"
    named = licences + ["not given"] * unlicensed  # some clips carry none: the set as a whole is not under one
    return f"license: other\nlicense_name: {json.dumps('; '.join(named))}\n"


def _csv(out, dest: Path, chosen, shard_clips: int, local) -> list[str]:
    import pyarrow.csv as pacsv

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
                "resolution": h * w if h and w else None,  # pixels, as Open-Sora's scripts/cnv/meta.py writes it
                "fps": row.get("fps"),
                "aes": row.get("aesthetic"),
                "flow": row.get("motion"),
                "clip_id": row["clip_id"],
                "caption_source": row["caption_source"],
                "source": row.get("source_path"),
                "start_s": row.get("start_s"),
                "end_s": row.get("end_s"),
                **{k: row.get(k) for k in ("source_url", "license", "license_id", "creator", "consent")},
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
            ("resolution", pa.int64()),
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
            ("license_id", pa.string()),
            ("creator", pa.string()),
            ("consent", pa.string()),
            ("tags", pa.string()),  # ';'-separated
        ]
    )
    pacsv.write_csv(pa.Table.from_pylist(rows, schema=schema), dest / "meta.csv")
    return ["meta.csv"]
