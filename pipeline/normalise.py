"""Export normalisations: a constant frame rate, frame counts of the form N·k+1, resolution buckets.

``clipforge export --fps F --frames 4k+1 --max-frames N --min-frames N --buckets YAML`` (formats folder, webdataset
and hf; docs/EXPORT.md). Each clip is planned from its presentation timestamps (one demux pass, ``stages.media``),
then decoded once and re-encoded:

- **Frame rate** (``fps``): output frame ``k`` is shown at ``k / F`` and shows the source frame on screen at that
  instant: the last one whose timestamp is at or before it (1 ms of timestamp rounding allowed). Frames are dropped or
  repeated, never blended. The clip keeps ``round(duration * F)`` frames (a half rounds down), as the cutter's
  ``clips.fps`` resampling does. Without ``fps`` every source frame is kept with its own timestamps.
- **Frame count** (``frames_step`` N: 4 for the 4k+1 that causal video VAEs with 4x temporal compression need,
  8 for 8x ones): after re-timing, the clip is cut to the largest count N·k+1 that is not above its length nor
  ``max_frames``. The **middle** frames are kept (as ``prepare`` centres its frames, training/buckets.py), so a shot
  loses its edges first. A clip left with fewer than ``min_frames`` frames (at least 1) is left out: ``too_short``.
- **Resolution bucket** (``buckets``: training/buckets.py's YAML forms, the file ``prepare --buckets`` takes): only
  the buckets' height x width are used. A clip goes to the bucket :meth:`BucketSet.assign` picks (the largest of the
  aspect ratio nearest its own that it fills without upscaling; if it fills none of that ratio, the next nearest
  ratio), is scaled (area filter) to cover it and centre-cropped. A clip smaller than every bucket is left out:
  ``too_small`` (never upscaled). The buckets' ``frames`` and ``fps`` are not used here: ``--frames`` / ``--fps`` are.

Pixels, as the cutter writes them (stages/clips.py): square (the sample aspect ratio applied at the display size),
upright, limited-range 4:2:0 tagged with the source's colour description (``stages.media.tagged``; an HDR source stays
10-bit), even sizes; H.264 by libx264 at CRF ``crf``; no audio. A clip whose plan changes nothing (every frame, the
same times, the same size, square pixels) is copied byte for byte.
"""

from __future__ import annotations

import bisect
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from stages import storage
from stages.frames import iter_frames
from stages.media import (
    Colour,
    PtsIndex,
    decode_frames,
    display_size,
    for_encoder,
    frame_packets,
    frame_rotation,
    open_video,
    sample_aspect_ratio,
    tag_encoder,
    tagged,
)
from training.buckets import Bucket, BucketSet

TOO_SHORT = "too_short"  # fewer than min_frames (or no) frames after re-timing and the N·k+1 cut


def _tolerance(n: int, total: Fraction, rate: Fraction) -> Fraction:
    """How late a source timestamp may be and still count as at an output instant: the cutter's rule
    (``stages.clips.retime_tolerance``: millisecond rounding of MKV/WebM and phone-clock jitter), with the clip's
    mean rate as its source rate."""
    from stages.clips import retime_tolerance

    src_rate = Fraction(n) / total if total > 0 else rate
    return retime_tolerance(src_rate, Fraction(rate))


@dataclass
class Normalise:
    """What ``export`` does to each clip; the defaults change nothing (the clip is copied)."""

    fps: Fraction | None = None  # constant output rate, frames/s
    frames_step: int | None = None  # N: frame counts of the form N·k+1 (4 for 4k+1)
    max_frames: int | None = None  # at most this many frames (N·k+1 itself when frames_step is set)
    min_frames: int = 1  # fewer frames left: the clip is left out (too_short)
    buckets: BucketSet | None = None  # resolution buckets (frames 1: only height x width count)
    crf: int = 18  # libx264 constant quality (the cutter's default is 20: an export is a second generation)
    preset: str = "veryfast"

    @classmethod
    def build(
        cls,
        fps: float | str | Fraction | None = None,
        frames: int | str | None = None,
        max_frames: int | None = None,
        min_frames: int | None = None,
        buckets: dict | str | Path | None = None,
        crf: int = 18,
    ) -> Normalise:
        """Parse and check the export options. ``fps``: a number or a ratio string (``"30000/1001"``); ``frames``:
        ``"4k+1"`` (any ``"Nk+1"``) or N; ``buckets``: a bucket YAML path or dict (training/buckets.py). Raises
        ValueError naming the bad option (a rate <= 0, a step < 1, a max_frames not of the form N·k+1, min > max, a
        crf outside 0..51, a bucket file that is not YAML or not buckets, a bucket with an odd side),
        FileNotFoundError for a missing bucket file."""
        rate = None
        if fps is not None:
            try:
                rate = fps if isinstance(fps, Fraction) else Fraction(str(fps)).limit_denominator(100_000)
            except (ValueError, ZeroDivisionError) as e:
                raise ValueError(f"--fps {fps!r} is not a number or a ratio such as 30000/1001") from e
            if rate <= 0:
                raise ValueError(f"--fps must be above 0, not {fps}")
        step = None
        if frames is not None:
            m = re.fullmatch(r"\s*(\d+)\s*(?:k\s*\+\s*1)?\s*", str(frames))
            if m is None or int(m.group(1)) < 1:
                raise ValueError(f"--frames {frames!r}: give the form of the frame counts, e.g. 4k+1 (or 8k+1)")
            step = int(m.group(1))
        if max_frames is not None:
            if max_frames < 1:
                raise ValueError(f"--max-frames must be at least 1, not {max_frames}")
            if step and (max_frames - 1) % step:
                raise ValueError(f"--max-frames {max_frames} is not of the form {step}k+1 that --frames asks for")
        min_frames = 1 if min_frames is None else int(min_frames)
        if min_frames < 1 or (max_frames is not None and min_frames > max_frames):
            raise ValueError(f"--min-frames {min_frames} must be at least 1 and at most --max-frames ({max_frames})")
        if not 0 <= crf <= 51:
            raise ValueError(f"--crf must be in 0..51 (libx264), not {crf}")
        bucket_set = None
        if buckets is not None:
            import yaml

            try:
                given = BucketSet.from_config(buckets).buckets
            except yaml.YAMLError as e:
                raise ValueError(f"--buckets {buckets}: not YAML ({str(e).splitlines()[0]})") from e
            # one frame-less bucket per size, keeping the aspect ratio it was made for (a grid's 16:9 buckets rounded
            # to 1.83 and 1.75 stay one family, as in prepare)
            sizes = {(b.height, b.width): b.nominal for b in given}
            odd = sorted(f"{h}x{w}" for h, w in sizes if h % 2 or w % 2)
            if odd:
                raise ValueError(f"buckets {', '.join(odd)} (height x width) have an odd side: 4:2:0 video needs even")
            bucket_set = BucketSet([Bucket(1, h, w, r) for (h, w), r in sorted(sizes.items())])
        return cls(rate, step, max_frames, min_frames, bucket_set, int(crf))

    @property
    def active(self) -> bool:
        """True when any option is set: each clip is then planned, and re-encoded unless its plan changes nothing."""
        return bool(self.fps or self.frames_step or self.max_frames or self.min_frames > 1 or self.buckets)

    def settings(self) -> dict[str, Any]:
        """The settings for manifest.json."""
        return {
            "fps": None if self.fps is None else str(self.fps),
            "frames": f"{self.frames_step}k+1" if self.frames_step else None,
            "max_frames": self.max_frames,
            "min_frames": self.min_frames,
            "keep": "middle",  # which frames a shortened clip keeps
            "buckets": None if self.buckets is None else [f"{b.height}x{b.width}" for b in self.buckets.buckets],
            "codec": "libx264",
            "crf": self.crf,
            "preset": self.preset,
            "pixels": "square, upright, limited-range yuv420p (yuv420p10le for HDR), the source's colour tags",
            "audio": "dropped",
        }


@dataclass
class FramePlan:
    """Which source frame each output frame shows, and when.

    ``source``: presentation index of the source frame shown by output frame ``k`` (non-decreasing; repeats when
    the rate goes up); ``pts``: output frame ``k``'s time in ``time_base`` ticks from 0; ``end``: where the last output
    frame ends (same ticks); ``offset_s``: where output frame 0 starts in the source clip (seconds from its first
    frame); ``identity``: the output is the input (every frame, the same times)."""

    source: list[int]
    pts: list[int]
    end: int
    time_base: Fraction
    offset_s: float
    identity: bool

    @property
    def duration_s(self) -> float:
        return float(self.end * self.time_base)


def plan_frames(pts: Sequence[int], end_pts: int, time_base: Fraction, norm: Normalise) -> FramePlan | str:
    """The frame plan of a clip whose frames start at ``pts`` (presentation order, ``time_base`` ticks) and whose last
    frame ends at ``end_pts``, per the module docstring (re-time to ``norm.fps``, cut to ``norm.max_frames`` and the
    N·k+1 form keeping the middle); :data:`TOO_SHORT` when fewer than ``norm.min_frames`` (or no) frames are left.
    Pure arithmetic on exact fractions."""
    n = len(pts)
    if n == 0:
        return TOO_SHORT
    p0 = pts[0]
    total = (end_pts - p0) * time_base
    if norm.fps is None:
        src, out, end, tb = list(range(n)), [p - p0 for p in pts], end_pts - p0, time_base
    else:
        rate = norm.fps
        eps = _tolerance(n, total, rate)
        t = [(p - p0) * time_base for p in pts]
        # output frames k with k / F < duration - 1 / (2F): round(duration * F), a half rounded down (the cutter's
        # rule; no tolerance here: a timestamp's rounding moves the count only at such a tie)
        count = max(0, math.ceil(total * rate - Fraction(1, 2)))
        src = [max(0, bisect.bisect_right(t, k / rate + eps) - 1) for k in range(count)]
        out, end, tb = list(range(count)), count, 1 / rate
    keep = len(src)
    if norm.max_frames:
        keep = min(keep, norm.max_frames)
    if norm.frames_step and keep >= 1:
        keep = (keep - 1) // norm.frames_step * norm.frames_step + 1
    if keep < max(1, norm.min_frames):
        return TOO_SHORT
    start = (len(src) - keep) // 2  # the middle
    stop = out[start + keep] if start + keep < len(out) else end
    base = out[start]
    identity = start == 0 and keep == n
    if norm.fps is not None and identity:
        eps = _tolerance(n, total, norm.fps)
        identity = src == list(range(n)) and all(
            abs((p - p0) * time_base - i / norm.fps) <= eps for i, p in enumerate(pts)
        ) and abs(total - n / norm.fps) <= eps  # fmt: skip
    return FramePlan(
        source=src[start : start + keep],
        pts=[o - base for o in out[start : start + keep]],
        end=stop - base,
        time_base=Fraction(tb),
        offset_s=float(base * tb),
        identity=identity,
    )


def output_size(width: int, height: int, norm: Normalise) -> tuple[int, int] | str:
    """(width, height) of the written clip for an upright display size ``width x height``: its bucket's (module
    docstring) or its own rounded down to even; ``too_small`` / ``no_size`` (``BucketSet.why_not``) when no bucket
    takes it."""
    if norm.buckets is None:
        return max(2, width // 2 * 2), max(2, height // 2 * 2)
    b = norm.buckets.assign(width, height, 1)
    if b is None:
        return norm.buckets.why_not(width, height, 1) or "too_small"
    return b.width, b.height


def normalise_clip(src: str | os.PathLike, dst: Path, norm: Normalise) -> dict[str, Any] | str:
    """Write clip ``src`` (a local path or a URI) normalised by ``norm`` to the local file ``dst``.

    Returns the written clip's properties ``{"num_frames", "fps" (frames/s: the target rate, or frames / duration),
    "width", "height" (pixels), "duration_s", "offset_s" (where it starts in ``src``, seconds), "bytes", "copied"
    (True when the plan changed nothing and ``src`` was copied byte for byte), "bucket" ("HxW" or None)}``, or the
    reason it cannot be written: ``too_short``, ``too_small``, ``no_size`` (nothing is written then). Raises PyAV's
    errors for an undecodable clip, and ValueError when the written file does not hold the planned frame count.
    """
    dst = Path(dst)
    container, stream = open_video(src)
    with container:
        first = next(decode_frames(container, stream), None)
        if first is None:
            raise EOFError(f"no frame decodes from {src}")
        rotation, colour = frame_rotation(first), Colour.of(first)
        cc = stream.codec_context
        coded = (cc.width, cc.height)
        sar = sample_aspect_ratio(stream)
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25)
        container.seek(0)
        index = PtsIndex.build(container, stream, storage.size(src))
        if index is None or index.time_base is None:  # no usable timestamps: a constant rate is assumed
            container.seek(0)
            n = sum(1 for _ in frame_packets(container, stream))
            index, pts, end_pts, tb = None, list(range(n)), n, 1 / rate
        else:
            pts, end_pts, tb = index.pts, index.end_pts, index.time_base
    display = display_size(*coded, sar, rotation)
    size = output_size(*display, norm)
    if isinstance(size, str):
        return size
    plan = plan_frames(pts, end_pts, tb, norm)
    if isinstance(plan, str):
        return plan
    bucket = f"{size[1]}x{size[0]}" if norm.buckets is not None else None
    n_out = len(plan.source)
    fps = float(norm.fps) if norm.fps else round(n_out / plan.duration_s, 9) if plan.duration_s > 0 else float(rate)
    props = {"num_frames": n_out, "fps": fps, "width": size[0], "height": size[1], "duration_s": plan.duration_s,
             "offset_s": plan.offset_s, "bucket": bucket,
             # the frames of ``src`` the written clip shows, [first, last + 1) (repeated or dropped ones in between)
             "src_frames": (plan.source[0], plan.source[-1] + 1) if plan.source else (0, 0)}  # fmt: skip
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.mp4")
    try:
        if plan.identity and size == display and sar is None and not rotation:
            with storage.open_read(src) as f, open(tmp, "wb") as g:
                shutil.copyfileobj(f, g)
            props["copied"] = True
        else:
            _encode(src, tmp, plan, index, colour, coded, rotation, display, size, rate, norm)
            from stages.frames import video_meta

            meta = video_meta(tmp)
            if meta["num_frames"] != n_out or (meta["width"], meta["height"]) != size:
                raise ValueError(
                    f"normalised clip holds {meta['num_frames']} frames of {meta['width']}x{meta['height']}, "
                    f"{n_out} of {size[0]}x{size[1]} were written"
                )
            props["copied"] = False
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    props["bytes"] = dst.stat().st_size
    return props


def _plane(frame: av.VideoFrame, i: int, dtype: np.dtype) -> np.ndarray:
    """Plane ``i`` of ``frame`` as a writable (height, width) view (the line padding cut off)."""
    p = frame.planes[i]
    a = np.frombuffer(p, dtype)
    return a.reshape(p.height, p.line_size // a.itemsize)[:, : p.width]


def _encode(
    src: str | os.PathLike,
    path: Path,
    plan: FramePlan,
    index: PtsIndex | None,
    colour: Colour,
    coded: tuple[int, int],
    rotation: int,
    display: tuple[int, int],
    size: tuple[int, int],
    rate: Fraction,
    norm: Normalise,
) -> None:
    """Decode ``src`` once and encode ``plan``'s frames, scaled to cover ``size`` and centre-cropped, to ``path``."""
    out_colour = tagged(colour, coded[1])
    pix_fmt = "yuv420p10le" if colour.hdr else "yuv420p"
    dtype = np.dtype("<u2") if colour.hdr else np.dtype(np.uint8)
    (dw, dh), (bw, bh) = display, size
    if bw >= dw - 1 and bh >= dh - 1:
        sw, sh = dw, dh  # the display size itself: at most a pixel is cut to make it even
    else:
        scale = max(bw / dw, bh / dh)  # < 1: a bucket never upscales (output_size)
        sw, sh = max(bw, round(dw * scale)), max(bh, round(dh * scale))
    x0, y0 = (sw - bw) // 4 * 2, (sh - bh) // 4 * 2  # even offsets: the chroma planes are cut on the same pixels
    turned = rotation in (90, 270)
    # scaling and cropping happen in the coded orientation; the planes are turned upright last
    cw, ch, cx, cy, tw, th = (sh, sw, y0, x0, bh, bw) if turned else (sw, sh, x0, y0, bw, bh)
    interp = "AREA" if cw * ch < coded[0] * coded[1] else "BICUBIC"
    plain = (cw, ch) == (tw, th) and not rotation

    def fit(frame: av.VideoFrame) -> av.VideoFrame:
        g = for_encoder(frame, cw, ch, out_colour, pix_fmt=pix_fmt, interpolation=interp)
        if not plain:
            out = av.VideoFrame(bw, bh, pix_fmt)
            for i in range(3):
                s = 1 if i == 0 else 2
                part = _plane(g, i, dtype)[cy // s : (cy + th) // s, cx // s : (cx + tw) // s]
                _plane(out, i, dtype)[:] = np.rot90(part, k=rotation // 90) if rotation else part
            out.color_range, out.colorspace = out_colour.range, out_colour.matrix
            out.color_primaries, out.color_trc = out_colour.primaries, out_colour.transfer
            g = out
        g.pict_type = av.video.frame.PictureType.NONE  # no I-frame forced where the source had one
        return g

    def frames() -> Iterator[tuple[av.VideoFrame, int, int]]:
        wanted, k = plan.source, 0
        container, stream = open_video(src)
        with container:
            for i, frame in iter_frames(container, stream, [(wanted[0], wanted[-1] + 1)], index):
                if i > wanted[k]:
                    raise ValueError(f"source frame {wanted[k]} of {src} does not decode")
                if i < wanted[k]:
                    continue  # a frame no output instant shows (the rate went down)
                fitted = fit(frame)
                while k < len(wanted) and wanted[k] == i:
                    nxt = plan.pts[k + 1] if k + 1 < len(wanted) else plan.end
                    yield fitted, plan.pts[k], nxt - plan.pts[k]
                    k += 1
                if k == len(wanted):
                    return
        raise EOFError(f"{src} ended before source frame {wanted[k]}")

    _write(path, frames(), size, pix_fmt, out_colour, norm.fps or rate, plan.time_base, plan.end, norm)


def _write(
    path: Path,
    frames: Iterator[tuple[av.VideoFrame, int, int]],
    size: tuple[int, int],
    pix_fmt: str,
    colour: Colour,
    rate: Fraction,
    time_base: Fraction,
    end: int,
    norm: Normalise,
) -> None:
    """Encode ``(frame, pts, duration)`` (``time_base`` ticks) as H.264 MP4 at ``path``, the track ending at ``end``.

    Every packet carries its frame's display duration, and the last one in decode order (with B-frames not the last
    shown) is held back until its duration makes the track end where the last frame does: MP4 ends a track at the
    last sample's dts + duration, and the mean rate readers report is frames / that duration (as stages/clips.py)."""
    container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        stream = container.add_stream("libx264", rate=rate, options={"crf": str(norm.crf), "preset": norm.preset})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
        stream.codec_context.sample_aspect_ratio = Fraction(1, 1)
        tag_encoder(stream.codec_context, colour)
        stream.time_base = stream.codec_context.time_base = time_base
        durations: dict[int, int] = {}
        held: av.Packet | None = None
        delay: int | None = None

        def mux(packet: av.Packet) -> None:
            nonlocal held, delay
            if packet.pts is not None and packet.pts in durations:
                packet.duration = durations.pop(packet.pts)
            if delay is None and packet.pts is not None and packet.dts is not None:
                delay = packet.pts - packet.dts  # B-frame reorder delay: the edit list starts shown time there
            if held is not None:
                container.mux(held)
            held = packet

        for frame, pts, duration in frames:
            frame.pts, frame.time_base = pts, time_base
            durations[pts] = max(1, int(duration))
            for packet in stream.encode(frame):
                mux(packet)
        for packet in stream.encode(None):
            mux(packet)
        if held is not None:
            last = None if held.dts is None else held.dts + (delay or 0)
            if last is not None and end > last:
                held.duration = end - last
            container.mux(held)
    finally:
        container.close()
