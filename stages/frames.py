"""The project's frame sampler: which frames to look at, and decoding exactly those frames.

Scorers, the captioner and the training data loader all read pixels through this module, so every
consumer agrees on what "frame i" means: **the i-th frame in presentation order**, counted from 0,
the same numbering the shot detectors and ``stages.clips`` use for spans.

Two decoders:

* **decord** is the fast random-access path (it seeks by itself and decodes only what it needs).
* **PyAV** (FFmpeg) is the reference and the fallback. ``backend="auto"`` uses decord only when it is
  known to be right for the file (:func:`decord_suitable`: one video stream in MP4/MOV, square pixels, a
  width it handles) and falls back to PyAV when decord cannot open the file (AV1, some VP9/WebM), raises,
  reports a frame count that disagrees with ours (edit lists), or returns frames of the wrong shape.

Stream choice, frame numbering (presentation timestamps, edit lists), colour conversion and the sample aspect
ratio come from ``stages.media``, the one media I/O module.

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

import math
import os
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from stages import storage
from stages.media import (
    PtsIndex,
    decode_frames,
    display_size,
    frame_packets,
    open_video,
    rotation_of,
    sample_aspect_ratio,
    to_rgb,
)

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


def _stream_fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _count_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Frames of a stream whose container stores no count (WebM, MKV) or hides some (edit lists): one demux
    pass, no decoding."""
    return sum(1 for _ in frame_packets(container, stream))


def video_meta(path: str | os.PathLike, rotation: int | None = None) -> dict:
    """Cheap metadata of a video's stream (``stages.media.pick_video_stream``):
    ``{"num_frames", "fps", "width", "height", "rotation"}``.

    ``width``/``height`` are the upright display dimensions in pixels (SAR applied, then the display rotation), as
    :func:`read_frames` returns pixels; ``fps`` is the stream's average rate in frames per second. ``num_frames``
    counts the presented frames by demuxing (no decoding; edit lists and mid-GOP starts honoured). ``rotation`` is
    counter-clockwise degrees, read from the first decoded frame's display matrix; a caller that knows it (a file it
    has just written upright, with no display matrix) passes it, and no frame is decoded for it.
    """
    container, stream = open_video(path)
    with container:
        fps = _stream_fps(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        sar = sample_aspect_ratio(stream)
        if rotation is None:
            rotation = rotation_of(container, stream)
            container.seek(0)
        num_frames = _count_packets(container, stream)
    width, height = display_size(width, height, sar, rotation)
    return {
        "num_frames": int(num_frames),
        "fps": fps,
        "width": int(width),
        "height": int(height),
        "rotation": rotation,
    }


# ---------------------------------------------------------------------------------------------- PyAV decoding


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
    si = 0  # spans[si] is the first span not yet finished
    sought = -1  # last keyframe sought forward to: never seek forward to it twice (no loops)
    seeking = index is not None  # turned off when seeking proves unreliable (see below)
    last = -1  # last frame index yielded: never yield a frame twice
    landing = False  # the next decoded frame is the first after a seek: check where it landed

    def seek_target(position: int, target: int) -> int | None:
        if not seeking:
            return None
        key = index.keyframe_before(target)
        return key if key > sought and key - position >= _SEEK_MIN_GAP else None

    def decode_from(key: int | None) -> Iterator[av.VideoFrame]:
        nonlocal landing
        if key is None:
            container.seek(0)
        else:
            container.seek(index.pts[key], stream=stream, backward=True, any_frame=False)
        landing = key is not None
        return decode_frames(container, stream)

    key = seek_target(0, spans[0][0])
    if key is not None:
        sought = key
        frames = decode_from(key)
    else:
        frames = decode_frames(container, stream)
    counter = 0
    while True:
        frame = next(frames, None)
        if frame is None:
            if landing and si < len(spans):
                # a seek landed past every frame that is left: decode again from the start, without seeking
                seeking = False
                frames = decode_from(None)
                continue
            return
        if index is None:
            i = counter
            counter += 1
        else:
            i = index.index_of(frame.pts)
            if i is None:
                raise ValueError(f"decoded a frame with pts {frame.pts} that the stream's packets do not have")
        while si < len(spans) and last + 1 >= spans[si][1]:
            si += 1
        if si == len(spans):
            return
        need = max(spans[si][0], last + 1)  # the next frame to yield
        if landing:
            landing = False
            if i > need:
                # The seek overshot (MPEG-TS seeks by bytes and can land a GOP late): back off to an earlier
                # keyframe, and after the first keyframe decode from the start.
                earlier = index.keyframe_before(min(sought, need) - 1) if min(sought, need) > 0 else 0
                if earlier <= 0 or earlier >= sought:
                    seeking = False
                    frames = decode_from(None)
                else:
                    sought = earlier
                    frames = decode_from(earlier)
                    sought = max(sought, earlier)
                continue
        while si < len(spans) and i >= spans[si][1]:  # frames the decoder never gave: the caller sees the gap
            si += 1
        if si == len(spans):
            return
        need = max(spans[si][0], last + 1)
        if i < need:
            if i <= last:
                continue
            key = seek_target(i + 1, need)
            if key is not None:
                sought = key
                frames = decode_from(key)
            continue
        last = i
        yield i, frame


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation, as decord and FFmpeg's autorotate do."""
    return np.ascontiguousarray(np.rot90(rgb, k=rotation // 90)) if rotation else rgb


def open_stream(
    path: str | os.PathLike, threads: int | None = None
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path``'s video stream (``stages.media.open_video``) with frame/slice threads (None: the worker's
    thread budget, or FFmpeg's choice outside a worker)."""
    return open_video(path, threads=threads)


def _source_facts(path: str | os.PathLike) -> dict:
    """What both decoders need to know of a file, from one open and one demux pass (no full decode)."""
    container, stream = open_video(path)
    with container:
        cc = stream.codec_context
        facts = {
            "container": container.format.name,
            "video_streams": len(container.streams.video),
            "sar": sample_aspect_ratio(stream),
            "coded": (cc.width, cc.height),
            "rotation": rotation_of(container, stream),
        }
        container.seek(0)
        facts["index"] = PtsIndex.build(container, stream)
        if facts["index"] is None:
            container.seek(0)
            facts["num_frames"] = _count_packets(container, stream)
        else:
            facts["num_frames"] = len(facts["index"])
    w, h = facts["coded"]
    facts["display"] = display_size(w, h, facts["sar"])  # before rotation
    return facts


def _read_pyav(path: str | os.PathLike, wanted: list[int], facts: dict | None = None) -> dict[int, np.ndarray]:
    facts = facts or _source_facts(path)
    rotation, index = facts["rotation"], facts["index"]
    dw, dh = facts["display"]
    resize = (dw, dh) if (dw, dh) != tuple(facts["coded"]) else (None, None)
    container, stream = open_stream(path)
    with container:
        want = set(wanted)
        got: dict[int, np.ndarray] = {}
        spans = merge_spans([(i, i + 1) for i in wanted])
        for i, frame in iter_frames(container, stream, spans, index):
            if i in want:
                rgb = to_rgb(frame, *resize, interpolation="BICUBIC" if resize[0] else None)
                got[i] = _upright(rgb, rotation)
                if len(got) == len(want):
                    break
    missing = sorted(want - got.keys())
    if missing:
        raise IndexError(f"frames {missing[:10]} not in {path} (it decodes to fewer frames)")
    return got


def decord_suitable(facts: dict) -> str | None:
    """Why decord would not return the same frames as the PyAV reader for this file, or None when it would.

    decord 0.6 opens a file's "best" stream (which can be cover art), ignores edit lists, the sample aspect ratio
    and MPEG-TS start offsets, and returns corrupt frames at some widths (module docstring). It is used only for
    single-video-stream MP4/MOV files with square pixels at widths it handles (the clip files clipforge writes
    are exactly that); its frame count is checked against ours on every read.
    """
    if "mp4" not in facts["container"]:
        return f"container {facts['container']}"
    if facts["video_streams"] != 1:
        return f"{facts['video_streams']} video streams"
    if facts["sar"] not in (None, 1):
        return f"sample aspect ratio {facts['sar']}"
    w, h = facts["coded"]
    if not (decord_width_ok(w) and decord_width_ok(h)):
        return f"size {w}x{h}"
    return None


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
    report: dict | None = None,
) -> np.ndarray:
    """Decode exactly the frames ``indices`` of ``path`` as an ``(N, H, W, 3)`` uint8 RGB array.

    Indices are presentation-order frame numbers of the stream ``stages.media.pick_video_stream`` picks; they may
    be unsorted and repeat, and the result follows their order. Each distinct frame is decoded once. Pixels are
    upright, square (SAR applied: the display size) and converted with the frame's colour range and matrix.
    ``size``: an int resizes the shorter side to it (aspect kept), ``(w, h)`` resizes exactly, None keeps the
    display size. ``backend``: "decord", "pyav", or "auto" (decord where :func:`decord_suitable` says it reads the
    file right, PyAV otherwise and whenever decord fails). ``report``, when given, receives ``decoder`` ("decord"
    or "pyav") and ``fallback`` (why decord was not used or failed in auto mode, else None), so a caller can keep
    a trace of the fallback in its row. Out-of-range indices raise IndexError.
    """
    indices = [int(i) for i in indices]
    if any(i < 0 for i in indices):
        raise IndexError(f"negative frame index in {indices[:10]}")
    wanted = sorted(set(indices))
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"backend must be auto, decord or pyav, not {backend!r}")
    if not storage.is_file(path):
        raise FileNotFoundError(path)
    got = None
    used, fallback = "pyav", None
    facts = None
    if backend == "decord":
        got, used = _read_decord(path, wanted, None), "decord"
    elif backend == "auto":
        try:
            facts = _source_facts(path)
        except Exception as exc:  # noqa: BLE001 - unreadable by PyAV: let decord try, then report PyAV's error
            fallback = f"{type(exc).__name__}: {exc}"
        if facts is not None:
            fallback = "object storage" if storage.is_uri(path) else decord_suitable(facts)
        if facts is not None and fallback is None:
            try:
                got, used = _read_decord(path, wanted, facts["num_frames"]), "decord"
            except IndexError:
                raise
            except Exception as exc:  # noqa: BLE001 - any decord failure means: use the reference decoder
                got, fallback = None, f"decord failed: {type(exc).__name__}: {exc}"[:300]
    if got is None:
        got, used = _read_pyav(path, wanted, facts), "pyav"
    if report is not None:
        report.update(decoder=used, fallback=fallback if backend == "auto" else None)
    if not indices:
        meta = video_meta(path)
        h, w = _resize(np.zeros((meta["height"], meta["width"], 3), np.uint8), size).shape[:2]
        return np.zeros((0, h, w, 3), np.uint8)
    resized = {i: _resize(f, size) for i, f in got.items()}
    return np.stack([resized[i] for i in indices])
