"""Training data: clip rows -> shard rows (latents + text embeddings), shard reading, bucket-aware batches.

Shard format (Parquet, one row per clip): tensors are stored as raw bytes + shape + dtype columns so any reader
(pyarrow, DuckDB, numpy) can take them apart without pickles::

    clip_id, bucket ("FxHxW"), caption, caption_source (dense|short|original),
    latent (binary), latent_shape (list<int32>, C,t,h,w), latent_dtype ("float16"),
    text (binary), text_shape (list<int32>, L,D), text_dtype, error (null unless encoding failed)

``ClipEncoder`` is a plain Ray-callable (``__init__`` loads the codec and text encoder once; ``__call__`` maps
a batch of clip rows); training/prepare.py runs it on Ray Data, ``encode_clips_local`` runs it in-process.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from pipeline.captions import (  # noqa: F401 - CAPTION_SOURCES, DEFAULT_CAPTION_MIX re-exported
    CAPTION_SOURCES,
    DEFAULT_CAPTION_MIX,
    choose_caption,
    with_camera_tags,
)
from pipeline.provenance import package_versions
from stages import storage
from stages.errors import raise_if_environment
from training.buckets import Bucket, BucketSet, resize_crop

SHARD_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("bucket", pa.string()),
        ("caption", pa.string()),
        ("caption_source", pa.string()),
        # lineage: the clip's source video and its rights (the kept view's columns; clipforge remove finds shards
        # by clip_id)
        ("video_id", pa.string()),
        ("source_url", pa.string()),
        ("license", pa.string()),
        ("creator", pa.string()),
        ("latent", pa.binary()),
        ("latent_shape", pa.list_(pa.int32())),
        ("latent_dtype", pa.string()),
        ("text", pa.binary()),
        ("text_shape", pa.list_(pa.int32())),
        ("text_dtype", pa.string()),
        ("error", pa.string()),
    ]
)


def pack(array: np.ndarray, dtype: str) -> tuple[bytes, list[int], str]:
    a = np.ascontiguousarray(array, dtype=dtype)
    return a.tobytes(), list(a.shape), dtype


def unpack(data: bytes, shape: list[int], dtype: str) -> np.ndarray:
    return np.frombuffer(data, dtype=dtype).reshape(shape)


class ClipEncoder:
    """Decodes each clip at its bucket's size, encodes latents and caption token embeddings.

    Reads: clip_id, clip_path (relative to ``root``), width, height, num_frames, fps, caption_dense,
    caption_short, original_caption, video_id, source_url, license, creator (lineage, copied)
    Writes: the SHARD_SCHEMA columns (bucket, caption, caption_source, lineage, latent*, text*, error)
    Reasons: too_short / too_small (no bucket fits: ``BucketSet.why_not``), no_size, no_caption,
    error_prepare:<Type> (in ``error``)
    """

    def __init__(
        self,
        root: str | Path,
        codec: str = "pixel",
        text_encoder: str = "minilm",
        buckets: dict | str | Path | None = None,
        caption_mix: dict[str, float] | None = None,
        seed: int = 0,
        text_max_length: int | None = None,
        latent_dtype: str = "float16",
        device: str = "cpu",
        camera_tags: bool = False,
    ):
        from training.codecs import load_codec
        from training.text import load_text_encoder

        self.root = storage.location(root)  # local directory or bucket prefix
        self.codec = load_codec(codec, device=device)
        self.text = load_text_encoder(text_encoder, max_length=text_max_length, device=device)
        self.buckets = BucketSet.from_config(buckets)
        for b in self.buckets.buckets:
            if self.codec.fit_frames(b.frames) != b.frames:
                raise ValueError(f"bucket {b.name}: {b.frames} frames is not valid for codec {codec!r}")
        self.caption_mix = dict(caption_mix or DEFAULT_CAPTION_MIX)
        unknown = set(self.caption_mix) - set(CAPTION_SOURCES)
        if unknown:
            raise ValueError(f"unknown caption sources {sorted(unknown)}; known: {sorted(CAPTION_SOURCES)}")
        self.seed, self.latent_dtype = seed, latent_dtype
        self.camera_tags = camera_tags  # append the camera's move to each caption (pipeline.captions)

    def encode_row(self, row: dict) -> dict[str, Any]:
        out: dict[str, Any] = {name: None for name in SHARD_SCHEMA.names}
        out["clip_id"] = row["clip_id"]
        out.update(_lineage(row))
        source, caption = choose_caption(row, self.caption_mix, self.seed)
        if caption is None:
            out["error"] = "no_caption"
            return out
        if self.camera_tags:
            caption = with_camera_tags(caption, row)
        size = int(row["width"] or 0), int(row["height"] or 0), int(row["num_frames"] or 0), row.get("fps")
        bucket = self.buckets.assign(*size)
        if bucket is None:
            out["error"] = self.buckets.why_not(*size)  # too_short, too_small or no_size
            return out
        idx = self.buckets.frame_indices(bucket, int(row["num_frames"]), row.get("fps"))
        frames = read_clip(self.root, row["clip_path"], idx)
        frames = resize_crop(frames, bucket.height, bucket.width)  # (F, H, W, 3)
        latent = self.codec.encode(frames).numpy()  # (C, t, h, w)
        out.update(bucket=bucket.name, caption=caption, caption_source=source)
        out["latent"], out["latent_shape"], out["latent_dtype"] = pack(latent, self.latent_dtype)
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [dict(zip(batch.keys(), values, strict=True)) for values in zip(*batch.values(), strict=True)]
        outs = []
        for row in rows:
            try:
                outs.append(self.encode_row(row))
            except Exception as e:  # errors are data: the clip keeps a row saying why
                raise_if_environment(e, f"prepare {row.get('clip_id')}")
                out = {name: None for name in SHARD_SCHEMA.names} | _lineage(row)
                out["clip_id"], out["error"] = row["clip_id"], f"error_prepare:{type(e).__name__}: {e}"[:500]
                outs.append(out)
        todo = [o for o in outs if o["error"] is None]
        if todo:
            for o, emb in zip(todo, self.text.encode([o["caption"] for o in todo]), strict=True):
                o["text"], o["text_shape"], o["text_dtype"] = pack(emb, "float16")
        return {name: [o[name] for o in outs] for name in SHARD_SCHEMA.names}

    def describe(self) -> dict:
        return {
            "codec": self.codec.describe(),
            "text_encoder": self.text.describe(),
            "buckets": self.buckets.to_config(),
            "caption_mix": self.caption_mix,
            "seed": self.seed,
            "latent_dtype": self.latent_dtype,
            "camera_tags": self.camera_tags,
        }


def _lineage(row: dict) -> dict[str, Any]:
    """The row's lineage as strings; a missing value (None, or the NaN a Ray batch turns a null string into) is
    None."""

    def text(v: Any) -> str | None:
        if v is None or (not isinstance(v, str) and v != v):  # NaN of any float type (numpy's included)
            return None
        return str(v)

    return {k: text(row.get(k)) for k in ("video_id", "source_url", "license", "creator")}


def read_clip(root: Path, clip_path: str, indices: np.ndarray) -> np.ndarray:
    from training.video import read_clip_frames

    return read_clip_frames(storage.under(root, clip_path), indices)


def versions() -> dict[str, str]:
    """The versions that made a set of training shards (prepare's manifest)."""
    return package_versions("clipforge", "torch", "diffusers", "transformers", "ray", "pyarrow", "av")


def write_manifest(dest: str | Path, encoder_info: dict, table: pa.Table, query: str | None, n_in: int) -> dict:
    """manifest.json: what went in (query, codec, text encoder, buckets, versions) and what came out (counts)."""
    errors = table.column("error").to_pylist()
    buckets = table.column("bucket").to_pylist()
    sources = table.column("caption_source").to_pylist()
    counts: dict[str, Any] = {"clips_in": n_in, "written": sum(e is None for e in errors)}
    counts["skipped"] = {}
    for e in errors:
        if e is not None:
            key = e.split(":")[0] if e.startswith("error_") else e
            counts["skipped"][key] = counts["skipped"].get(key, 0) + 1
    counts["per_bucket"] = _histogram(b for b, e in zip(buckets, errors, strict=True) if e is None)
    counts["caption_source"] = _histogram(s for s, e in zip(sources, errors, strict=True) if e is None)
    if "license" in table.column_names:  # the rights of what went in, per licence
        lic = table.column("license").to_pylist()
        counts["license"] = _histogram((x or "not given") for x, e in zip(lic, errors, strict=True) if e is None)
    manifest = {"query": query, **encoder_info, "versions": versions(), "counts": counts, "created": time.time()}
    from stages import storage

    storage.write_text(f"{str(dest).rstrip('/')}/manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _histogram(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def encode_clips_local(
    rows: list[dict], root: str | Path, dest: str | Path, query: str | None = None, **encoder_kw
) -> dict:
    """In-process version of prepare (no Ray): encode ``rows`` with ClipEncoder, write one shard + manifest."""
    dest = Path(dest)
    (dest / "shards").mkdir(parents=True, exist_ok=True)
    encoder = ClipEncoder(root, **encoder_kw)
    cols: dict[str, list] = {name: [] for name in SHARD_SCHEMA.names}
    for i in range(0, len(rows), 8):
        chunk = rows[i : i + 8]
        out = encoder({k: np.array([r.get(k) for r in chunk], dtype=object) for k in _row_keys(chunk)})
        for k in cols:
            cols[k].extend(out[k])
    table = pa.Table.from_pydict(cols, schema=SHARD_SCHEMA)
    pq.write_table(table, dest / "shards" / "part-00000.parquet")
    return write_manifest(dest, encoder.describe(), table, query, len(rows))


def _row_keys(rows: list[dict]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    return keys


# ----------------------------------------------------------------------------------------------- reading


@dataclass
class Sample:
    clip_id: str
    bucket: str
    caption: str
    latent: np.ndarray  # (C, t, h, w)
    text: np.ndarray  # (L, D)


class ShardDataset:
    """The written rows of a prepared dataset (``dest/shards/*.parquet``, local or a URI), in clip_id order, read
    as they are needed.

    Opening reads only the small columns of every shard (clip_id, bucket, caption, error, tensor shapes); latents and
    text embeddings stay in the files and are read per batch (:meth:`samples`), a Parquet row group at a time, with
    at most ``cache_row_groups`` decoded row groups kept (least recently used dropped). Memory therefore grows with
    the number of clips only by their metadata (~100 bytes a clip), not with the shards' tensors. Sorting by clip_id
    makes the order independent of how many Ray tasks wrote the shards, which exact resume relies on.
    """

    SMALL = ("clip_id", "bucket", "caption", "error", "latent_shape", "text_shape")
    LARGE = ("latent", "latent_shape", "latent_dtype", "text", "text_shape", "text_dtype")

    def __init__(self, path: str | Path, cache_row_groups: int = 4):
        from stages import storage

        self.path = storage.as_path(path)
        self.files = _shard_files(self.path)
        if not self.files:
            raise FileNotFoundError(f"no training shards under {self.path}/shards; run `clipforge prepare` first")
        self._open: dict[int, pq.ParquetFile] = {}
        parts, rg_starts = [], []
        for f in range(len(self.files)):
            pf = self._file(f)
            t = pf.read(columns=list(self.SMALL))
            n = t.num_rows
            rg_starts.append(np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]))
            parts.append(
                t.append_column("_file", pa.array(np.full(n, f, np.int32))).append_column(
                    "_row", pa.array(np.arange(n, dtype=np.int64))
                )
            )
        table = pa.concat_tables(parts, promote_options="permissive")
        table = table.filter(pc.is_null(table.column("error"))).sort_by("clip_id")
        if table.num_rows == 0:
            raise ValueError(f"{self.path} has no usable rows (every clip was skipped; see manifest.json)")
        self.clip_ids = table.column("clip_id").to_pylist()
        self.buckets = table.column("bucket").to_pylist()
        self.captions = table.column("caption").to_pylist()
        self._where = np.stack([table.column("_file").to_numpy(), table.column("_row").to_numpy()], axis=1)
        self._text_len = np.array([s[0] for s in table.column("text_shape").to_pylist()], np.int64)
        self._latent_shape0 = table.column("latent_shape")[0].as_py()
        self._text_shape0 = table.column("text_shape")[0].as_py()
        self._rg_starts = rg_starts
        self._cache: dict[tuple[int, int], pa.Table] = {}
        self.cache_row_groups = max(1, int(cache_row_groups))
        self.manifest = _read_manifest(self.path)

    def _file(self, f: int) -> pq.ParquetFile:
        from stages import storage

        if f not in self._open:
            self._open[f] = pq.ParquetFile(storage.open_read(self.files[f]))
        return self._open[f]

    def _row_group(self, f: int, g: int) -> pa.Table:
        key = (f, g)
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # most recently used last
            return self._cache[key]
        t = self._file(f).read_row_group(g, columns=list(self.LARGE))
        self._cache[key] = t
        while len(self._cache) > self.cache_row_groups:
            self._cache.pop(next(iter(self._cache)))
        return t

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, i: int) -> Sample:
        return self.samples([i])[0]

    def samples(self, indices: list[int]) -> list[Sample]:
        """The samples at ``indices`` (dataset order), each row group read once for the whole list."""
        out = []
        for i in indices:
            f, r = (int(v) for v in self._where[i])
            g = int(np.searchsorted(self._rg_starts[f], r, side="right") - 1)
            row = self._row_group(f, g).slice(r - int(self._rg_starts[f][g]), 1).to_pylist()[0]
            out.append(
                Sample(
                    self.clip_ids[i],
                    self.buckets[i],
                    self.captions[i],
                    unpack(row["latent"], row["latent_shape"], row["latent_dtype"]),
                    unpack(row["text"], row["text_shape"], row["text_dtype"]),
                )
            )
        return out

    def text_length(self, indices: list[int]) -> int:
        """The longest text embedding (tokens) among ``indices``: what a global batch pads to, known from metadata
        so a worker that reads only its slice pads exactly as the whole batch would."""
        return int(self._text_len[indices].max())

    def by_bucket(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, b in enumerate(self.buckets):
            out.setdefault(b, []).append(i)
        return dict(sorted(out.items()))

    @property
    def latent_channels(self) -> int:
        return int(self._latent_shape0[0])

    @property
    def text_dim(self) -> int:
        return int(self._text_shape0[1])


def _shard_files(path: str | Path) -> list[str]:
    """The shard files of a prepared dataset, sorted (local directory or object-storage prefix)."""
    from stages import storage

    if storage.is_uri(path):
        fs, p = storage.filesystem(f"{str(path).rstrip('/')}/shards")
        return sorted(storage.full_uri(fs, q, str(path)) for q in fs.glob(f"{p}/*.parquet"))
    shards = Path(path) / "shards"
    return [str(f) for f in sorted(shards.glob("*.parquet"))] if shards.is_dir() else []


def _read_manifest(path: str | Path) -> dict:
    from stages import storage

    manifest = f"{str(path).rstrip('/')}/manifest.json"
    try:
        return json.loads(storage.read_text(manifest))
    except FileNotFoundError:
        return {}


class BucketBatchSampler:
    """Deterministic same-shape batches: each epoch shuffles every bucket, cuts it into ``batch_size`` batches
    (a short last batch is filled by wrapping around the bucket's permutation, so tiny buckets still train),
    then shuffles the batch order. The position is (epoch, index) - a two-integer cursor that checkpoints
    store, so a resumed run draws exactly the batches the uninterrupted run would have.
    """

    def __init__(self, groups: dict[str, list[int]], batch_size: int, seed: int = 0):
        self.groups = {k: list(v) for k, v in sorted(groups.items()) if v}
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch, self.index = 0, 0
        self._plan: list[list[int]] | None = None

    def plan(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        batches: list[list[int]] = []
        for _, idx in self.groups.items():
            perm = [idx[i] for i in rng.permutation(len(idx))]
            n = math.ceil(len(perm) / self.batch_size)
            cyc = perm * math.ceil(n * self.batch_size / len(perm))
            batches.extend(cyc[i * self.batch_size : (i + 1) * self.batch_size] for i in range(n))
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._plan = None

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            if self._plan is None:
                self._plan = self.plan(self.epoch)
            if self.index >= len(self._plan):
                self.epoch, self.index, self._plan = self.epoch + 1, 0, None
                continue
            batch = self._plan[self.index]
            self.index += 1
            yield batch


def collate(samples: list[Sample], text_length: int | None = None) -> dict[str, torch.Tensor]:
    """Same-bucket samples -> latents (B, C, t, h, w) float32, text (B, L, D) zero-padded, text_mask (B, L).

    ``text_length``: L (default: the longest text among ``samples``; a worker's slice passes the global batch's)."""
    shapes = {s.latent.shape for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"a batch mixes latent shapes {shapes}; batches must come from one bucket")
    latents = torch.from_numpy(np.stack([s.latent for s in samples]).astype(np.float32))
    length = max(s.text.shape[0] for s in samples) if text_length is None else int(text_length)
    dim = samples[0].text.shape[1]
    text = torch.zeros(len(samples), length, dim)
    mask = torch.zeros(len(samples), length, dtype=torch.bool)
    for i, s in enumerate(samples):
        n = s.text.shape[0]
        text[i, :n] = torch.from_numpy(s.text.astype(np.float32))
        mask[i, :n] = True
    return {"latents": latents, "text": text, "text_mask": mask}


def condition_masks(
    batch: int, latent_frames: int, p_i2v: float, p_extend: float, generator: torch.Generator
) -> torch.Tensor | None:
    """(B, t) conditioning masks: with probability p_i2v the first latent frame is given clean (image-to-video),
    with p_extend the first k in [1, t/2] (video extension); else none. Images (t = 1) never get one.
    Always draws the same number of random values, so the generator stream does not depend on the outcome."""
    u = torch.rand(batch, generator=generator)
    k_ext = torch.randint(1, max(2, latent_frames // 2 + 1), (batch,), generator=generator)
    if latent_frames < 2 or (p_i2v <= 0 and p_extend <= 0):
        return None
    k = torch.where(
        u < p_i2v, torch.ones_like(k_ext), torch.where(u < p_i2v + p_extend, k_ext, torch.zeros_like(k_ext))
    )
    mask = (torch.arange(latent_frames)[None, :] < k[:, None]).float()
    return mask


def bucket_of(name: str) -> Bucket:
    return Bucket.parse(name)
