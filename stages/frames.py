"""The project's frame sampler: which frames to look at, and decoding exactly those frames.

Scorers, the captioner and the training data loader all read pixels through this module, so every
consumer agrees on what "frame i" means: **the i-th frame in presentation order**, counted from 0,
the same numbering the shot detectors and ``stages.clips`` use for spans.

Two decoders:

* **decord** is the fast random-access path (it seeks by itself and decodes only what it needs).
* **PyAV** (FFmpeg) is the reference and the fallback. ``backend="auto"`` uses decord only when it is
  known to be right for the file and falls back to PyAV when decord cannot open the file (AV1, some
  VP9/WebM), raises, reports a frame count that disagrees with the container, returns frames of the
  wrong shape, or the width is one where decord returns corrupt frames.

The decord width rule (decord 0.6, measured against PyAV on synthesized H.264 videos of every
width 1..2100): decord converts to RGB through an FFmpeg frame whose rows are padded to a 32-byte
stride (``av_frame_get_buffer`` widens the width to powers of two until ``3 * width`` is a multiple of
32) and then takes ``stride // width`` as the channel count. When that padded stride is a whole
multiple of the width but not ``3 * width``, frames come out with 4 or 6 "channels" (indexing a frame
gives e.g. shape (H, 48, 4)) and batches raise. That happens for widths 1, 2, 3, 4, 6, 8, 12, 16,
24, 48 and 72 only (the stride exceeds ``3 * width`` by at most 93 bytes, so no width above 93 can
hit it). :func:`decord_width_ok` encodes the rule; ``read_frames`` also checks every decord result's
shape so a case the rule misses still falls back instead of returning garbage.

Rotation: decord applies the container's display matrix (a phone video stored 1920x1080 with
rotation 90 comes out 1080x1920). The PyAV path applies the same rotation, so both backends return
upright pixels and :func:`video_meta` reports the upright width and height. Mirror flips in the
display matrix are not applied by either backend.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Fewer wasted frames than this between the decoder's position and the next wanted keyframe: keep
# decoding rather than seek (a seek flushes the decoder, which costs about as much as a few frames).
_SEEK_MIN_GAP = 8


# ---------------------------------------------------------------------------------------------- sampling


def sample_indices(
    num_frames: int,
    n: int | None = None,
    *,
    start: int = 0,
    end: int | None = None,
    src_fps: float | None = None,
    target_fps: float | None = None,
    max_n: int | None = None,
) -> list[int]:
    """Frame indices to read from the span ``[start, end)`` of a video with ``num_frames`` frames.

    * ``n`` given: ``n`` evenly spaced frames, the centres of ``n`` equal bins of the span
      (``start + floor((k + 0.5) * span / n)``). Always exactly ``n`` indices, so a model gets a fixed
      shape: when ``n`` exceeds the span, frames repeat.
    * ``target_fps`` given (needs ``src_fps``): every frame of a ``target_fps`` resampling of the span,
      output frame ``k`` being the source frame that covers time ``k / target_fps``
      (``start + floor(k * src_fps / target_fps)``), the same rule ``stages.clips`` uses for fps
      normalisation. Above ``src_fps`` frames repeat.
    * neither: every frame of the span.

    ``max_n`` caps the result: ``n`` is clamped to it, and the fps/every-frame modes keep the *first*
    ``max_n`` indices, so the frame spacing (the motion speed a model sees) is preserved; choose
    ``start`` to place that window. ``end`` defaults to ``num_frames``; the span is clipped to
    the video. An empty span gives ``[]``.
    """
    if n is not None and target_fps is not None:
        raise ValueError("give n or target_fps, not both")
    end = num_frames if end is None else min(end, num_frames)
    start = max(0, start)
    span = end - start
    if span <= 0:
        return []
    if n is not None:
        if max_n is not None:
            n = min(n, max_n)
        if n <= 0:
            return []
        return [start + min(span - 1, int((2 * k + 1) * span // (2 * n))) for k in range(n)]
    if target_fps is None:
        return list(range(start, start + (span if max_n is None else min(span, max(0, max_n)))))
    limit = math.inf if max_n is None else max(0, max_n)
    if not src_fps or src_fps <= 0 or target_fps <= 0:
        raise ValueError(f"target_fps needs a positive src_fps (got src_fps={src_fps}, target_fps={target_fps})")
    ratio = Fraction(src_fps).limit_denominator(100_000) / Fraction(target_fps).limit_denominator(100_000)
    out: list[int] = []
    k = 0
    while len(out) < limit:
        offset = math.floor(k * ratio)
        if offset >= span:
            break
        out.append(start + offset)
        k += 1
    return out


# ---------------------------------------------------------------------------------------------- metadata


def _rotation_of(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Counter-clockwise display rotation in degrees (0, 90, 180, 270); needs one decoded frame, since
    FFmpeg exposes the display matrix on frames."""
    for frame in container.decode(stream):
        return int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) * 90 % 360  # PyAV >= 14
    return 0


def _stream_fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _frame_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Iterator[av.Packet]:
    """The packets that become frames, in decode order: not flush packets, not pre-roll an edit list cuts
    away, and not the packets before the first keyframe of a stream cut mid-GOP (they decode to nothing;
    the probe counts frames the same way)."""
    seen_key = False
    for packet in container.demux(stream):
        if not packet.size or getattr(packet, "is_discard", False):
            continue
        seen_key = seen_key or packet.is_keyframe
        if seen_key:
            yield packet


def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Frames of a stream whose container stores no count (WebM, MKV): one demux pass, no decoding."""
    return sum(1 for _ in _frame_packets(container, stream))


def video_meta(path: str | os.PathLike) -> dict:
    """Cheap metadata of a video's first video stream: ``{"num_frames", "fps", "width", "height", "rotation"}``.

    ``width``/``height`` are the upright dimensions (after the display rotation, as :func:`read_frames`
    returns pixels). ``num_frames`` comes from the container index; containers without one (WebM,
    MKV) are counted by demuxing packets (no decoding). ``rotation`` is counter-clockwise degrees.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        num_frames = stream.frames
        rotation = _rotation_of(container, stream)
        if not num_frames:
            container.seek(0)
            num_frames = _count_packets(container, stream)
    if rotation in (90, 270):
        width, height = height, width
    return {
        "num_frames": int(num_frames),
        "fps": fps,
        "width": int(width),
        "height": int(height),
        "rotation": rotation,
    }


# ---------------------------------------------------------------------------------------------- PyAV decoding


class PtsIndex:
    """Presentation-order index of a stream built from one demux pass (no decoding): the sorted
    presentation timestamps (frame i has the i-th smallest pts) and the frames that are keyframes.

    It lets a decoder seek to the keyframe before a wanted frame and still number every decoded frame
    exactly, for constant and variable frame rates alike, with or without B-frames.
    """

    def __init__(self, pts: list[int], keyframes: list[int]):
        self.pts = pts
        self.keyframes = keyframes  # frame indices, ascending

    @classmethod
    def build(cls, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> PtsIndex | None:
        """None when the stream's timestamps cannot number frames (missing or duplicate pts)."""
        entries = []
        for packet in _frame_packets(container, stream):
            if packet.pts is None:
                return None
            entries.append((packet.pts, packet.is_keyframe))
        entries.sort()
        pts = [p for p, _ in entries]
        if any(a == b for a, b in zip(pts, pts[1:], strict=False)):
            return None
        return cls(pts, [i for i, (_, key) in enumerate(entries) if key])

    def __len__(self) -> int:
        return len(self.pts)

    def index_of(self, pts: int | None) -> int | None:
        if pts is None:
            return None
        i = bisect.bisect_left(self.pts, pts)
        return i if i < len(self.pts) and self.pts[i] == pts else None

    def keyframe_before(self, index: int) -> int:
        """The last keyframe at or before frame ``index`` (0 when none is)."""
        i = bisect.bisect_right(self.keyframes, index) - 1
        return self.keyframes[i] if i >= 0 else 0


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged ``[start, end)`` spans (touching or overlapping spans become one)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def iter_frames(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    spans: list[tuple[int, int]],
    index: PtsIndex | None = None,
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(frame_index, frame)`` for every frame inside ``spans``, in presentation order, from one
    forward decode of ``container`` (opened fresh, never decoded from).

    With a :class:`PtsIndex` the decoder seeks to the keyframe before a span's first frame whenever
    that skips at least a few frames (before the first span and across large gaps), and frames are
    numbered by looking their pts up in the index, so numbering survives seeks. Without an index
    the decode is sequential from the start and frames are numbered by counting.
    The caller owns the frames; nothing is buffered here beyond FFmpeg's own decoder delay.
    """
    spans = merge_spans(spans)
    if not spans:
        return
    si = 0
    sought = -1  # last keyframe sought to: never seek backwards or twice to the same place (no loops)

    seeking = index is not None  # turned off when a seek proves unreliable (see below)
    last = -1  # last frame index yielded: never yield a frame twice

    def seek_target(position: int, target: int) -> int | None:
        if not seeking:
            return None
        key = index.keyframe_before(target)
        return key if key > sought and key - position >= _SEEK_MIN_GAP else None

    def decode_from(key: int | None) -> Iterator[av.VideoFrame]:
        if key is not None:
            container.seek(index.pts[key], stream=stream, backward=True, any_frame=False)
        return container.decode(stream)

    key = seek_target(0, spans[0][0])
    if key is not None:
        sought = key
    frames = decode_from(key)
    sought_since_yield = key is not None
    counter = 0
    while True:
        frame = next(frames, None)
        if frame is None:
            if sought_since_yield and si < len(spans):
                # Seeking in some containers (MPEG-TS is byte-based) can land past the keyframe we asked
                # for, so the wanted frames never come: decode again from the start, without seeking.
                seeking, sought_since_yield = False, False
                container.seek(0)
                frames = container.decode(stream)
                continue
            return
        if index is None:
            i = counter
            counter += 1
        else:
            i = index.index_of(frame.pts)
            if i is None:
                raise ValueError(f"decoded a frame with pts {frame.pts} that the stream's packets do not have")
        while si < len(spans) and i >= spans[si][1]:
            si += 1
        if si == len(spans):
            return
        a = spans[si][0]
        if i <= last:
            continue
        if i < a:
            key = seek_target(i + 1, a)
            if key is not None:
                sought, sought_since_yield = key, True
                frames = decode_from(key)
            continue
        if sought_since_yield and i > a and last < a:
            # a seek overshot the start of the span: those frames only come from an earlier position
            seeking, sought_since_yield = False, False
            container.seek(0)
            frames = container.decode(stream)
            continue
        sought_since_yield = False
        last = i
        yield i, frame


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation, as decord and FFmpeg's autorotate do."""
    return np.ascontiguousarray(np.rot90(rgb, k=rotation // 90)) if rotation else rgb


def open_stream(
    path: str | os.PathLike, threads: int = 0
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path``'s first video stream for decoding with frame/slice threads (0 = FFmpeg's choice)."""
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.thread_count = threads
    return container, stream


def _read_pyav(path: str | os.PathLike, wanted: list[int]) -> dict[int, np.ndarray]:
    with av.open(str(path)) as probe:
        s = probe.streams.video[0]
        rotation = _rotation_of(probe, s)
        probe.seek(0)
        index = PtsIndex.build(probe, s)
    container, stream = open_stream(path, threads=min(4, os.cpu_count() or 1))
    with container:
        want = set(wanted)
        got: dict[int, np.ndarray] = {}
        spans = merge_spans([(i, i + 1) for i in wanted])
        for i, frame in iter_frames(container, stream, spans, index):
            if i in want:
                got[i] = _upright(frame.to_ndarray(format="rgb24"), rotation)
                if len(got) == len(want):
                    break
    missing = sorted(want - got.keys())
    if missing:
        raise IndexError(f"frames {missing[:10]} not in {path} (it decodes to fewer frames)")
    return got


# ---------------------------------------------------------------------------------------------- decord


def _padded_rgb_stride(width: int, align: int = 32) -> int:
    """Row stride FFmpeg's av_frame_get_buffer gives an rgb24 frame: widen the width to multiples of
    1, 2, 4, ... until 3 * width is a multiple of ``align``."""
    i = 1
    while i <= align:
        stride = 3 * (-(-width // i) * i)
        if stride % align == 0:
            return stride
        i *= 2
    return 3 * width


def decord_width_ok(width: int) -> bool:
    """False for the widths where decord 0.6 returns corrupt RGB frames (see the module docstring):
    1, 2, 3, 4, 6, 8, 12, 16, 24, 48, 72."""
    stride = _padded_rgb_stride(width)
    return stride == 3 * width or stride % width != 0


def _read_decord(path: str | os.PathLike, wanted: list[int], expect_frames: int | None) -> dict[int, np.ndarray]:
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    if expect_frames is not None and len(vr) != expect_frames:
        raise RuntimeError(f"decord counts {len(vr)} frames, the container {expect_frames}: indexing would disagree")
    if wanted and max(wanted) >= len(vr):
        raise IndexError(f"frames {[i for i in wanted if i >= len(vr)][:10]} not in {path} ({len(vr)} frames)")
    batch = vr.get_batch(wanted).asnumpy() if wanted else np.zeros((0, 0, 0, 3), np.uint8)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise RuntimeError(f"decord returned frames of shape {batch.shape[1:]}")
    return dict(zip(wanted, batch, strict=True))


# ---------------------------------------------------------------------------------------------- public reader


def _resize(frame: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return frame
    h, w = frame.shape[:2]
    if isinstance(size, int):
        scale = size / min(h, w)
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    else:
        tw, th = size
    if (tw, th) == (w, h):
        return frame
    import cv2

    # INTER_AREA when shrinking (no aliasing), bilinear when enlarging
    interp = cv2.INTER_AREA if tw * th < w * h else cv2.INTER_LINEAR
    return cv2.resize(frame, (tw, th), interpolation=interp)


def read_frames(
    path: str | os.PathLike,
    indices: list[int],
    *,
    size: int | tuple[int, int] | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Decode exactly the frames ``indices`` of ``path`` as an ``(N, H, W, 3)`` uint8 RGB array.

    Indices are presentation-order frame numbers; they may be unsorted and repeat, and the result
    follows their order. Each distinct frame is decoded once. ``size``: an int resizes the shorter
    side to it (aspect kept), ``(w, h)`` resizes exactly, None keeps the upright source size.
    ``backend``: "decord", "pyav", or "auto" (decord when it is right for the file, else PyAV; both
    give identical pixels on H.264, see the module docstring). Out-of-range indices raise IndexError.
    """
    indices = [int(i) for i in indices]
    if any(i < 0 for i in indices):
        raise IndexError(f"negative frame index in {indices[:10]}")
    wanted = sorted(set(indices))
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"backend must be auto, decord or pyav, not {backend!r}")
    if not Path(path).is_file():
        raise FileNotFoundError(path)
    got = None
    if backend == "decord":
        got = _read_decord(path, wanted, None)
    elif backend == "auto":
        meta = _safe_meta(path)
        if meta is not None and decord_width_ok(meta["width"]) and decord_width_ok(meta["height"]):
            try:
                got = _read_decord(path, wanted, meta["num_frames"] or None)
            except IndexError:
                raise
            except Exception:  # noqa: BLE001 - any decord failure means: use the reference decoder
                got = None
    if got is None:
        got = _read_pyav(path, wanted)
    if not indices:
        meta = video_meta(path)
        h, w = _resize(np.zeros((meta["height"], meta["width"], 3), np.uint8), size).shape[:2]
        return np.zeros((0, h, w, 3), np.uint8)
    resized = {i: _resize(f, size) for i, f in got.items()}
    return np.stack([resized[i] for i in indices])


def _safe_meta(path: str | os.PathLike) -> dict | None:
    try:
        return video_meta(path)
    except Exception:  # noqa: BLE001 - unreadable by PyAV too: let decord try, then report PyAV's error
        return None
