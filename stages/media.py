"""Media I/O in one place: which stream a file's video is, when each frame is shown, and what its pixels are.

Every reader in clipforge (probe, all shot detectors, the cutter, the frame sampler behind the scorers, CLIP and
the captioner, the report's posters and training decode) opens files through this module, so they agree on:

**Stream.** :func:`pick_video_stream` chooses the video stream the way the ``ffmpeg`` command line does by
default (``fftools/ffmpeg_mux_init.c``, ``map_auto_video``): among the video streams, the one with the largest
``width * height``, plus a bonus of 5,000,000 for the ``default`` disposition; the first of equal scores wins.
Attached pictures (cover art, ``disposition.attached_pic``) are never video: ffmpeg scores them 1, we skip them.
(ffmpeg also adds 100,000,000 to streams whose packets appeared only after the header; such streams are rare and
PyAV cannot open them anyway.)

**Time.** Frame ``i`` is the ``i``-th frame in presentation order, and its time is its own presentation
timestamp: ``t_i = (pts_i - pts_0) * time_base`` (:class:`PtsIndex`). So a variable-frame-rate phone recording,
an MPEG-TS starting at 600 s and a file trimmed with an edit list all read true times from 0. Packets an MP4/MOV
edit list hides (FFmpeg marks them ``AV_PKT_FLAG_DISCARD``; the decoder drops their frames) are not frames, and
neither are packets before the first keyframe of a stream cut mid-GOP, or packets cut short by the end of the file.
The last frame lasts as long as the interval before it (what players do when packets carry no duration).

**Pixels.** :func:`to_rgb` converts with the frame's own colour range (full-range "pc"/JPEG sources are expanded
correctly) and matrix. An untagged matrix is taken as BT.709 for HD (height >= 720) and BT.601 (SMPTE 170M)
otherwise, as browsers and mpv do (:func:`assumed_matrix`). :func:`display_size` applies the sample aspect ratio
(SAR), so anamorphic pixels become square pixels at the display size. Rotation is the display matrix's.

Colour names are FFmpeg's (``av_color_*_name``): range ``tv``/``pc``, matrix ``bt709``/``smpte170m``/``bt2020nc``,
transfer ``smpte2084`` (PQ) / ``arib-std-b67`` (HLG) ...; ``None`` where the file says "unspecified".
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from stages import storage

# libavutil/pixfmt.h enums -> av_color_*_name() strings (unspecified/reserved -> None).
COLOR_RANGES = {1: "tv", 2: "pc"}
COLOR_MATRICES = {
    0: "gbr",
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
    11: "smpte2085",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
}
COLOR_PRIMARIES = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "ebu3213",
}
COLOR_TRANSFERS = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    12: "bt1361e",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    17: "smpte428",
    18: "arib-std-b67",
}
HDR_TRANSFERS = {16: "pq", 18: "hlg"}  # SMPTE ST 2084 (PQ) and ARIB STD-B67 (HLG)
_BT709, _BT601 = 1, 6  # matrix / primaries / transfer codes of HD and SD video


# ---------------------------------------------------------------------------------------------- streams


def pick_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The file's video stream as ``ffmpeg -i FILE out.mp4`` would pick it (module docstring); None if there is none.

    Attached pictures (cover art) are never picked, even when they are the only video stream.
    """
    best, best_score = None, 0
    for s in container.streams.video:
        if s.disposition & av.stream.Disposition.attached_pic:
            continue
        cc = s.codec_context
        area = (cc.width or 0) * (cc.height or 0) if cc is not None else 0
        score = area + 5_000_000 * bool(s.disposition & av.stream.Disposition.default)
        if best is None or score > best_score:
            best, best_score = s, score
    return best


class NoVideoStream(ValueError):
    """The file has no video stream (audio only, or only cover art)."""


def open_video(
    path: str | os.PathLike, threads: int | None = None, **open_kwargs: Any
) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` and its :func:`pick_video_stream` stream for decoding, other streams discarded.

    ``threads``: decoder threads (frame + slice threading); None = the worker's budget
    (``stages.resources.thread_budget``), or FFmpeg's choice (0) outside a Ray worker. Raises
    :class:`NoVideoStream` (and PyAV's errors for unreadable files); the caller closes the container.
    """
    if threads is None:
        from stages.resources import thread_budget

        threads = thread_budget() or 0
    container = av.open(storage.av_source(path), **open_kwargs)
    stream = pick_video_stream(container)
    if stream is None:
        container.close()
        raise NoVideoStream(f"no video stream in {path} (cover art is not video)")
    for s in container.streams:
        if s is not stream:
            s.discard = av.stream.Discard.all
    stream.thread_type = "AUTO"
    stream.thread_count = threads
    return container, stream


# ---------------------------------------------------------------------------------------------- time


def frame_packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, size: int | None = None
) -> Any:
    """The packets that become frames, in decode order.

    Left out: flush packets, packets an edit list hides (``is_discard``; a hidden keyframe still opens the GOP
    the visible frames decode from), packets before the first keyframe (a stream cut mid-GOP: they decode to
    nothing), packets the demuxer flags corrupt and packets that run past ``size`` bytes (cut by the end of file).
    """
    seen_key = False
    for packet in container.demux(stream):
        if not packet.size:
            continue
        seen_key = seen_key or packet.is_keyframe
        if not seen_key or packet.is_discard or packet.is_corrupt:
            continue
        if size is not None and packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size:
            continue
        yield packet


def decode_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Any:
    """Decode ``stream`` from the container's position to the end, packet by packet, then flush the decoder.

    Unlike ``container.decode``, a packet that fails to decode (a damaged frame, the cut at the end of a truncated
    file) does not end the decode: its frame is simply missing, which the callers see as a gap in the frame
    numbering (:class:`PtsIndex`) and report; the frames after it still come out.
    """
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.FFmpegError:
            continue
    try:
        yield from stream.decode(None)
    except av.error.FFmpegError:
        return


class PtsIndex:
    """Presentation-order index of a stream from one demux pass (no decoding).

    ``pts``: the frames' presentation timestamps, ascending (frame ``i`` has ``pts[i]``), in ``time_base``;
    ``keyframes``: frame indices of keyframes, ascending; ``end_pts``: where the last frame ends (its pts plus
    the interval before it; plus the packet duration or one nominal frame for a one-frame stream).
    ``times_s()`` gives the ``n + 1`` frame boundaries in seconds from the first frame: frame ``i`` is shown
    over ``[t[i], t[i+1])``. Lets a decoder seek to the keyframe before a wanted frame and still number every
    decoded frame exactly (constant and variable rates alike, with or without B-frames or edit lists).
    """

    def __init__(self, pts: list[int], keyframes: list[int], time_base: Fraction | None = None, end_pts=None):
        self.pts = pts
        self.keyframes = keyframes  # frame indices, ascending
        self.time_base = Fraction(time_base) if time_base else None
        if end_pts is None and pts:
            end_pts = pts[-1] + (pts[-1] - pts[-2] if len(pts) > 1 else 1)
        self.end_pts = end_pts

    @classmethod
    def build(
        cls, container: av.container.InputContainer, stream: av.video.stream.VideoStream, size: int | None = None
    ) -> PtsIndex | None:
        """Demux ``stream`` once; None when timestamps cannot number frames (missing or duplicate pts)."""
        entries = []
        last_duration = 0
        for packet in frame_packets(container, stream, size):
            if packet.pts is None:
                return None
            entries.append((packet.pts, packet.is_keyframe))
            last_duration = packet.duration or last_duration
        entries.sort()
        pts = [p for p, _ in entries]
        if any(a == b for a, b in zip(pts, pts[1:], strict=False)):
            return None
        tb = Fraction(stream.time_base) if stream.time_base else None
        end = None
        if len(pts) == 1:
            rate = stream.average_rate or stream.guessed_rate
            one = last_duration or (round(1 / (Fraction(rate) * tb)) if rate and tb else 1)
            end = pts[0] + max(1, one)
        return cls(pts, [i for i, (_, key) in enumerate(entries) if key], tb, end)

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

    def pts_at(self, index: int) -> int:
        """pts where frame ``index`` starts; ``index == len(self)`` is the end of the last frame."""
        return self.end_pts if index >= len(self.pts) else self.pts[index]

    def times_s(self) -> list[float]:
        """The ``n + 1`` frame boundaries in seconds from the first frame (needs a time base)."""
        if not self.pts or self.time_base is None:
            return [0.0]
        p0, tb = self.pts[0], self.time_base
        return [float((p - p0) * tb) for p in self.pts] + [float((self.end_pts - p0) * tb)]


def timeline(path: str | os.PathLike) -> PtsIndex | None:
    """The presentation-timestamp index of ``path``'s video stream (one demux pass), or None for a stream whose
    timestamps cannot number its frames."""
    container, stream = open_video(path)
    with container:
        return PtsIndex.build(container, stream, storage.size(path))


def source_times(video: dict, index: PtsIndex | None) -> list[float]:
    """A probed source's ``n + 1`` frame boundaries (seconds from its first frame): from ``index`` when it has
    timestamps, else at the videos row's constant ``fps`` over its ``num_frames``."""
    n = len(index) if index is not None else int(video.get("num_frames") or 0)
    return frame_times(index, n, float(video.get("fps") or 25.0))


def constant_rate_times(n: int, fps: float) -> list[float]:
    """Frame boundaries ``[i / fps for i in 0..n]`` for a stream without usable timestamps."""
    return [i / fps for i in range(n + 1)]


def frame_times(index: PtsIndex | None, n: int, fps: float) -> list[float]:
    """The first ``n + 1`` frame boundaries in seconds: from the presentation timestamps when ``index`` has them,
    else at a constant ``fps`` (a stream whose timestamps cannot number its frames)."""
    if index is not None and index.time_base is not None:
        return index.times_s()[: n + 1]
    return constant_rate_times(n, fps)


def index_at_time(times: list[float], t: float) -> int:
    """The frame boundary nearest to time ``t`` (seconds from the first frame), in ``0..len(times) - 1``."""
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return 0
    if i >= len(times):
        return len(times) - 1
    return i if times[i] - t <= t - times[i - 1] else i - 1


# ---------------------------------------------------------------------------------------------- geometry


def frame_rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise display rotation of a decoded frame (its display matrix), snapped to 0/90/180/270."""
    return int(round((getattr(frame, "rotation", 0) or 0) / 90.0)) * 90 % 360


def rotation_of(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Counter-clockwise display rotation in degrees (0, 90, 180, 270). Decodes one frame, since FFmpeg exposes
    the display matrix on frames; seek back (``container.seek(0)``) before decoding again."""
    for frame in container.decode(stream):
        return frame_rotation(frame)
    return 0


def sample_aspect_ratio(stream: av.video.stream.VideoStream) -> Fraction | None:
    """The stream's SAR (pixel width / pixel height); None when unset or 1:1 (square pixels)."""
    sar = stream.sample_aspect_ratio or (stream.codec_context.sample_aspect_ratio if stream.codec_context else None)
    if not sar or sar.numerator <= 0 or sar.denominator <= 0 or sar.numerator == sar.denominator:
        return None
    return Fraction(sar.numerator, sar.denominator)


def display_size(width: int, height: int, sar: Fraction | None, rotation: int = 0) -> tuple[int, int]:
    """Upright display size of coded ``width x height`` pixels: the width times the SAR (rounded to even, as
    ``ffmpeg -vf scale=iw*sar:ih`` users do), then swapped for a 90/270 degree rotation."""
    w = width
    if sar and sar != 1:
        w = max(2, round(width * sar / 2) * 2)
    return (height, w) if rotation in (90, 270) else (w, height)


# ---------------------------------------------------------------------------------------------- colour


@dataclass(frozen=True)
class Colour:
    """A stream's colour description, as FFmpeg codes (see the module docstring for the names)."""

    range: int = 0  # AVColorRange: 1 tv (limited), 2 pc (full), 0 unspecified (= tv)
    matrix: int = 2  # AVColorSpace
    primaries: int = 2  # AVColorPrimaries
    transfer: int = 2  # AVColorTransferCharacteristic

    @classmethod
    def of(cls, obj: Any) -> Colour:
        """From a decoded frame or a codec context; ``yuvj*`` pixel formats are full range whatever the tag."""
        fmt = getattr(obj, "format", None) or getattr(obj, "pix_fmt", None)
        name = fmt if isinstance(fmt, str) else getattr(fmt, "name", "") or ""
        rng = int(obj.color_range or 0)
        if name.startswith("yuvj"):
            rng = 2
        return cls(rng, int(obj.colorspace or 2), int(obj.color_primaries or 2), int(obj.color_trc or 2))

    def names(self) -> dict[str, str | None]:
        """``{"color_range", "color_space", "color_primaries", "color_transfer", "hdr"}`` for a ``videos`` row."""
        return {
            "color_range": COLOR_RANGES.get(self.range),
            "color_space": COLOR_MATRICES.get(self.matrix),
            "color_primaries": COLOR_PRIMARIES.get(self.primaries),
            "color_transfer": COLOR_TRANSFERS.get(self.transfer),
            "hdr": HDR_TRANSFERS.get(self.transfer),
        }

    @property
    def hdr(self) -> str | None:
        return HDR_TRANSFERS.get(self.transfer)


def assumed_matrix(matrix: int, height: int) -> int:
    """The YUV matrix to convert with: the tagged one, or for an untagged stream BT.709 when ``height >= 720``
    and BT.601 (SMPTE 170M) below, the rule browsers (Chromium) and mpv apply to untagged video."""
    if matrix not in (2, 3) and matrix in COLOR_MATRICES:
        return matrix
    return _BT709 if height >= 720 else _BT601


def tagged(colour: Colour, height: int) -> Colour:
    """The tags a derived (clip) file carries: limited range, and the source's matrix, primaries and transfer, or
    for untagged ones what :func:`assumed_matrix` assumed (so every later reader converts the same way)."""
    matrix = assumed_matrix(colour.matrix, height)
    sd_or_hd = _BT709 if matrix == _BT709 else _BT601
    primaries = colour.primaries if colour.primaries in COLOR_PRIMARIES else sd_or_hd
    transfer = colour.transfer if colour.transfer in COLOR_TRANSFERS else sd_or_hd
    return Colour(1, matrix, primaries, transfer)


def _sws_colorspace(matrix: int) -> int:
    # libswscale's coefficient table is indexed by AVColorSpace; bt470bg and smpte170m share BT.601's.
    return 5 if matrix == 6 else matrix


def to_rgb(
    frame: av.VideoFrame,
    width: int | None = None,
    height: int | None = None,
    *,
    reformatter: Any = None,
    interpolation: str | None = None,
    coded_height: int | None = None,
    colour: Colour | None = None,
) -> np.ndarray:
    """A decoded frame as ``(H, W, 3)`` uint8 RGB with its own colour range and matrix (module docstring),
    optionally resized to ``width x height`` by libswscale in the same pass (``reformatter``: a reused
    ``av.video.reformatter.VideoReformatter`` keeps the scaling context between frames). ``colour``: the stream's
    :class:`Colour` when the caller already read it (a loop over every frame reads it once)."""
    c = colour or Colour.of(frame)
    matrix = assumed_matrix(c.matrix, coded_height or frame.height)
    kw = dict(
        width=width,
        height=height,
        format="rgb24",
        src_colorspace=_sws_colorspace(matrix),
        dst_colorspace=_sws_colorspace(matrix),
        src_color_range=2 if c.range == 2 else 1,
        dst_color_range=2,
        interpolation=interpolation,
    )
    out = reformatter.reformat(frame, **kw) if reformatter is not None else frame.reformat(**kw)
    return out.to_ndarray()


def for_encoder(
    frame: av.VideoFrame,
    width: int,
    height: int,
    out: Colour,
    *,
    pix_fmt: str = "yuv420p",
    interpolation: str | None = None,
) -> av.VideoFrame:
    """A decoded (or RGB) frame converted for a limited-range ``pix_fmt`` encoder at ``width x height``: full range
    is compressed to limited, the matrix is kept (``out.matrix``), the frame is tagged with ``out``."""
    c = Colour.of(frame)
    if frame.format.name.startswith(("rgb", "bgr", "gbr")):
        src_range, src_matrix = 2, out.matrix
    else:
        src_range, src_matrix = (2 if c.range == 2 else 1), assumed_matrix(c.matrix, frame.height)
    g = frame.reformat(
        width=width,
        height=height,
        format=pix_fmt,
        src_colorspace=_sws_colorspace(src_matrix),
        dst_colorspace=_sws_colorspace(out.matrix),
        src_color_range=src_range,
        dst_color_range=1,
        interpolation=interpolation,
    )
    g.color_range, g.colorspace = 1, out.matrix
    g.color_primaries, g.color_trc = out.primaries, out.transfer
    return g


def tag_encoder(codec_context: Any, colour: Colour) -> None:
    """Write ``colour`` into an encoder's context, so the output file's VUI says how to read its pixels."""
    codec_context.color_range = colour.range
    codec_context.colorspace = colour.matrix
    codec_context.color_primaries = colour.primaries
    codec_context.color_trc = colour.transfer


__all__ = [
    "COLOR_MATRICES",
    "Colour",
    "NoVideoStream",
    "PtsIndex",
    "assumed_matrix",
    "constant_rate_times",
    "frame_rotation",
    "frame_times",
    "decode_frames",
    "display_size",
    "for_encoder",
    "frame_packets",
    "index_at_time",
    "open_video",
    "pick_video_stream",
    "rotation_of",
    "sample_aspect_ratio",
    "tag_encoder",
    "tagged",
    "to_rgb",
]
