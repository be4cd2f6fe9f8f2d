"""Training buckets: resolution x aspect ratio x frame count, so clips of any shape train without padding.

A bucket is one (frames, height, width) shape; ``frames: 1`` is an image bucket, so images and videos train
jointly. Buckets come from a dict/YAML, either a grid::

    resolutions: [256, 512]          # sqrt(height * width) of the bucket
    aspect_ratios: ["1:1", "16:9", "9:16", "4:3"]    # width:height
    frames: [1, 16, 32]
    multiple: 16                     # height and width rounded to this (codec downsampling x DiT patch)
    fps: null                        # optional target fps: frames are taken at this rate, not every source frame

or an explicit list ``buckets: [{frames: 8, height: 32, width: 32}, ...]``.

A clip goes to the largest bucket (most pixels x frames) it fits without upscaling, among the buckets of the
aspect ratio nearest its own (then the next nearest, if none fits); it is resized to cover the bucket and
centre-cropped. Batches are drawn from one bucket at a time (training/data.py), so every batch is one shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True, order=True)
class Bucket:
    frames: int
    height: int
    width: int
    # the aspect ratio (width / height) the bucket was made for: a grid's named ratio, which rounding the sides to
    # ``multiple`` moves (16:9 at 128 is 96x176, 1.83; at 256 192x336, 1.75); buckets are grouped by it
    nominal: float | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @property
    def family(self) -> float:
        """The aspect ratio that groups this bucket with others of the same shape: the nominal one if given."""
        return round(self.nominal or self.aspect, 4)

    @classmethod
    def parse(cls, name: str) -> Bucket:
        f, h, w = (int(v) for v in name.split("x"))
        return cls(f, h, w)


def _ratio(text: str | float) -> float:
    if isinstance(text, int | float):
        return float(text)
    w, h = str(text).split(":")
    return float(w) / float(h)


@dataclass
class BucketSet:
    buckets: list[Bucket]
    fps: float | None = None

    @classmethod
    def from_config(cls, cfg: dict | str | Path | None) -> BucketSet:
        """Buckets from a dict, a YAML file path, or None (a single 8x32x32 bucket plus its image bucket).

        Two forms: ``{"buckets": [{"frames": F, "height": H, "width": W}, ...], "fps": optional}`` or a grid
        ``{"resolutions": [...], "aspect_ratios": ["16:9", ...], "frames": [...], "multiple": 16, "fps": ...}``.
        Raises FileNotFoundError for a missing file, ValueError for anything else malformed (naming what)."""
        try:
            return cls._from_config(cfg)
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(
                f"bucket config {cfg!s:.200}: malformed ({type(e).__name__}: {e}); give a 'buckets:' list of "
                "{frames, height, width} or a grid of resolutions / aspect_ratios / frames (training/buckets.py)"
            ) from e

    @classmethod
    def _from_config(cls, cfg: dict | str | Path | None) -> BucketSet:
        if cfg is None:
            cfg = {"buckets": [{"frames": 8, "height": 32, "width": 32}, {"frames": 1, "height": 32, "width": 32}]}
        if isinstance(cfg, str | Path):
            import yaml

            cfg = yaml.safe_load(Path(cfg).read_text()) or {}
        cfg = dict(cfg.get("buckets", cfg)) if isinstance(cfg.get("buckets"), dict) else cfg
        fps = cfg.get("fps")
        if isinstance(cfg.get("buckets"), list):
            buckets = [
                Bucket(
                    int(b["frames"]),
                    int(b["height"]),
                    int(b["width"]),
                    _ratio(b["aspect"]) if b.get("aspect") else None,
                )
                for b in cfg["buckets"]
            ]
        else:
            multiple = int(cfg.get("multiple", 16))
            buckets = []
            for res in cfg["resolutions"]:
                for ar in cfg.get("aspect_ratios", ["1:1"]):
                    r = _ratio(ar)
                    h = max(multiple, round(res / math.sqrt(r) / multiple) * multiple)
                    w = max(multiple, round(res * math.sqrt(r) / multiple) * multiple)
                    for f in cfg.get("frames", [1]):
                        buckets.append(Bucket(int(f), h, w, r))
        if not buckets:
            raise ValueError("bucket config defines no bucket")
        return cls(sorted(set(buckets)), float(fps) if fps else None)

    def to_config(self) -> dict:
        return {
            "fps": self.fps,
            "buckets": [
                {
                    "frames": b.frames,
                    "height": b.height,
                    "width": b.width,
                    **({"aspect": b.nominal} if b.nominal else {}),
                }
                for b in self.buckets
            ],
        }

    def available_frames(self, num_frames: int, fps: float | None) -> int:
        """How many frames a clip offers at the bucket frame rate (all of them if no target fps)."""
        if not self.fps or not fps or fps <= self.fps:
            return int(num_frames)
        return int(math.floor((num_frames - 1) * self.fps / fps)) + 1

    def assign(self, width: int, height: int, num_frames: int, fps: float | None = None) -> Bucket | None:
        """The largest bucket this clip fits without upscaling (the buckets of the nearest aspect ratio first: a
        grid's named ratio, however rounding moved each bucket's sides), or None."""
        if not width or not height or not num_frames:
            return None
        frames = self.available_frames(num_frames, fps)
        log_ar = math.log(width / height)
        by_ar: dict[float, list[Bucket]] = {}
        for b in self.buckets:
            by_ar.setdefault(b.family, []).append(b)
        for ar in sorted(by_ar, key=lambda a: (abs(math.log(a) - log_ar), a)):
            fits = [b for b in by_ar[ar] if b.frames <= frames and b.height <= height and b.width <= width]
            if fits:
                return max(fits, key=lambda b: (b.frames * b.height * b.width, b.frames))
        return None

    def why_not(self, width: int, height: int, num_frames: int, fps: float | None = None) -> str | None:
        """Why :meth:`assign` finds no bucket for this clip (None when it finds one): ``no_size`` (no width, height
        or frame count recorded), ``too_short`` (fewer frames, at the target fps, than every bucket of a fitting size
        needs), ``too_small`` (smaller than every bucket; buckets never upscale)."""
        if self.assign(width, height, num_frames, fps) is not None:
            return None
        if not width or not height or not num_frames:
            return "no_size"
        # assign found none: a bucket small enough exists only if every such bucket wants more frames
        return "too_short" if any(b.height <= height and b.width <= width for b in self.buckets) else "too_small"

    def frame_indices(self, bucket: Bucket, num_frames: int, fps: float | None) -> np.ndarray:
        """Source frame indices for a bucket: ``bucket.frames`` consecutive frames (at the target fps if set),
        centred in the clip so the middle of a shot is used rather than its edges."""
        step = fps / self.fps if self.fps and fps and fps > self.fps else 1.0
        span = (bucket.frames - 1) * step
        start = max(0.0, (num_frames - 1 - span) / 2)
        idx = np.round(start + np.arange(bucket.frames) * step).astype(np.int64)
        return np.clip(idx, 0, num_frames - 1)


def resize_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, height, width, 3): scale to cover (area filter, never up), centre-crop."""
    import cv2

    t, h, w, _ = frames.shape
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    out = np.empty((t, height, width, 3), dtype=np.uint8)
    y0, x0 = (nh - height) // 2, (nw - width) // 2
    for i in range(t):
        im = frames[i] if (nh, nw) == (h, w) else cv2.resize(frames[i], (nw, nh), interpolation=cv2.INTER_AREA)
        out[i] = im[y0 : y0 + height, x0 : x0 + width]
    return out
