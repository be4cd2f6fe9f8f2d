"""Clip planning and frame-accurate cutting.

``plan_clips`` turns a video's shots into clip rows (pure arithmetic, no I/O); ``cut_clips`` writes the
kept ones as H.264 MP4 files from one forward decode of the source.

Planning rules. Spans are in source frames (presentation order, ``stages.media``); every length rule is applied
to the frames' presentation times ``t`` (``times``: frame ``i`` is shown over ``[t[i], t[i+1])``; seconds from
the first frame), so variable-frame-rate video is measured as a player shows it. A tolerance of 2.5 ms absorbs
timestamp rounding and phone-clock jitter.

1. ``trim_s`` is removed from both edges of every shot (transitions bleed into the first/last
   frames): the trimmed shot starts at the first frame shown at least ``trim_s`` after the shot starts and
   ends at the last frame boundary at least ``trim_s`` before it ends. A shot that trimming empties keeps its
   untrimmed span and is dropped as ``duration_short``.
2. A shot shorter than ``min_s`` becomes one row with ``drop_reason="duration_short"``; it is not cut.
3. A shot of at most ``max_s`` becomes one clip.
4. A longer shot of duration D is split into ``n = ceil(D / max_s)`` pieces of equal duration: boundary ``k`` is
   the last frame boundary at or before ``t_start + k * D / n`` (for constant rates: ``start + k * L // n``
   frames), and ``n`` grows while a piece would still exceed ``max_s``. Every frame lands in exactly one piece and
   the pieces are at least about ``max_s / 2`` long, so with ``min_s <= max_s / 2`` (the defaults: 2 and 10)
   they are always kept. When ``min_s > max_s / 2`` and equal pieces would fall under ``min_s``, the shot is
   instead cut into pieces of ``max_s`` from its start, and the remainder (then shorter than ``min_s``) becomes
   a ``duration_short`` row.

Every frame of every (trimmed) shot is in exactly one row, kept or dropped, so the clip table accounts
for the whole video.

Cutting (``cut_clips``): clips keep the source's presentation timing (shifted to start at 0), or are resampled to
``fps``: output frame ``k`` is shown at ``k / fps`` and shows the source frame on screen at that instant, the last one
whose timestamp is at or before it within the tolerance (``_ClipWriter.retime_tolerance``), so a source re-timed to
its own rate keeps every frame once, and to half its rate every second frame, even when its timestamps are rounded
to milliseconds (Matroska, WebM) or jitter; a clip of duration D gets round(D * fps) frames. Pixels become square
at the display size (SAR applied) and upright; colour is converted to limited range with the source's matrix, and the
clip is tagged with the source's colour description (an untagged source gets the tags ``stages.media.assumed_matrix``
reads it with). HDR sources (PQ/HLG transfer) are kept HDR: 10-bit 4:2:0 with their tags (``hdr="keep"``);
``ingest.drop_hdr`` excludes them from a run instead.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import re
import tempfile
import uuid
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from stages import storage
from stages.errors import environment_cause, raise_if_environment
from stages.frames import _upright, iter_frames, open_stream, video_meta
from stages.media import (
    Colour,
    PtsIndex,
    constant_rate_times,
    display_size,
    for_encoder,
    frame_rotation,
    sample_aspect_ratio,
    tag_encoder,
    tagged,
    timeline,
    to_rgb,
)
from stages.settings import Settings

# Bump when the cutting code changes what a clip file contains: it goes into every clip_id (next bump: 4 for both).
CUT_VERSION = 2  # 2: PTS-timed length rules, square pixels at display size, colour range/tags
# Clips re-timed to ``fps`` only: 3: source frames chosen with the timestamp tolerance (millisecond timestamps
# no longer drop and repeat frames). Clips keeping the source timing did not change, so neither did their ids.
RETIME_CUT_VERSION = 3
DURATION_SHORT = "duration_short"
RESOLUTION_LOW = "resolution_low"
# what clips.crop_bars cut from each side (pipeline.schema.CLIPS, schema 21): null where it is off
CROP_COLUMNS = ("crop_top", "crop_bottom", "crop_left", "crop_right")
_EPS_S = 2.5e-3  # timestamp rounding (1 ms time bases round each pts and the inferred last interval), jitter


@dataclass
class ClipsConfig(Settings):
    """Clip split and encode settings. Everything but ``num_cpus`` goes into the clip ids."""

    min_s: float = 2.0  # shorter pieces become rows with drop_reason "duration_short" (not cut)
    max_s: float = 10.0  # longer shots are split into equal pieces of at most max_s (module docstring)
    trim_s: float = 0.0  # trimmed from both shot edges before the min/max rules
    crf: int = 20  # libx264 constant quality (not a bitrate): 18-23 is visually near-lossless
    preset: str = "veryfast"
    short_side: int | None = None  # downscale so the shorter side is this (never upscales; even dims)
    fps: float | None = None  # resample to this frame rate by timestamps (drops/repeats frames; module docstring)
    # crop letterbox/pillarbox bars found in every one of 8 frames sampled over the video's clips (bars_of); off
    # by default. When on it goes into the clip ids (settings "crop_bars": true); when off it is left out of them,
    # so clips cut before the option existed keep their ids.
    crop_bars: bool = False
    num_cpus: float = 1.0  # CPUs per cutting task; also the encoder/decoder thread count
    memory_mb: int = 2048  # memory Ray reserves for each cutting task (one source decoded, its clips encoded)
    # the hybrid shot detector runs in the cutting task, on the frames it cuts: one decode of each source instead
    # of two (stages.onepass); decoded frames are held until their shot is final, up to one_pass_mb (a longer
    # shot is cut from a second decode of its span). Neither changes a clip: they stay out of the clip ids.
    one_pass: bool = True
    one_pass_mb: int = 512  # at most this many MB of decoded frames held by a one-pass cut task (then: second decode)


def settings_of(cfg: ClipsConfig, detector: str) -> dict:
    """The settings that decide what a clip is (its span rules and its pixels): they go into clip_id
    and the ``settings`` column. The resources (``num_cpus``, ``memory_mb``) and the one-pass options are excluded:
    they change speed and memory, not output."""
    s = asdict(cfg)
    for key in ("num_cpus", "memory_mb", "one_pass", "one_pass_mb"):
        s.pop(key)
    if not s["crop_bars"]:
        s.pop("crop_bars")
    return {"detector": detector, "cut_version": RETIME_CUT_VERSION if cfg.fps else CUT_VERSION, **s}


def clip_id(source_hash: str, start_frame: int, end_frame: int, settings: dict) -> str:
    """Deterministic 24-hex id of a clip: sha256 of the source's content hash, the frame span and the
    settings (canonical JSON), so reruns and resumes produce the same ids and any change of source,
    span or settings gives a new one."""
    key = json.dumps(
        {"source": source_hash, "start": int(start_frame), "end": int(end_frame), "settings": settings},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def _last_at_or_before(times: list[float], t: float, lo: int, hi: int) -> int:
    """The last frame boundary in ``[lo, hi]`` whose time is at or before ``t`` (within the tolerance)."""
    return max(lo, min(hi, bisect.bisect_right(times, t + _EPS_S, lo, hi + 1) - 1))


def _pieces(times: list[float], start: int, end: int, min_s: float, max_s: float) -> list[tuple[int, int, bool]]:
    """(start, end, keep) pieces of one trimmed shot, per the module docstring's rules 2-4."""
    t0, dur = times[start], times[end] - times[start]
    if dur < min_s - _EPS_S:
        return [(start, end, False)]
    if dur <= max_s + _EPS_S:
        return [(start, end, True)]
    n = max(2, math.ceil(dur / max_s - _EPS_S / max_s))
    while True:
        bounds = [start] + [_last_at_or_before(times, t0 + k * dur / n, start, end) for k in range(1, n)] + [end]
        pairs = list(zip(bounds, bounds[1:], strict=False))
        longest = max(times[b] - times[a] for a, b in pairs)
        if (longest <= max_s + _EPS_S and all(b > a for a, b in pairs)) or n >= end - start:
            break
        n += 1
    if all(b > a and times[b] - times[a] >= min_s - _EPS_S for a, b in pairs):
        return [(a, b, True) for a, b in pairs]
    # min_s > max_s / 2: pieces of max_s from the start, the remainder (shorter than min_s) dropped
    out = []
    a = start
    while times[end] - times[a] > max_s + _EPS_S:
        b = max(a + 1, _last_at_or_before(times, times[a] + max_s, a, end))
        out.append((a, b, True))
        a = b
    if a < end:
        out.append((a, end, times[end] - times[a] >= min_s - _EPS_S))
    return out


def plan_clips(
    video: dict, scenes: list[dict], cfg: ClipsConfig, detector: str, times: list[float] | None = None
) -> list[dict]:
    """Clip rows for one video's shots (no I/O).

    Reads: video_id, content_hash, fps, num_frames, original_caption (VIDEOS row); scenes
    (``start_frame``, ``end_frame`` exclusive, optional ``caption``); ``times``: the source's ``num_frames + 1``
    frame boundaries in seconds from its presentation timestamps (``stages.media.PtsIndex.times_s``; None
    assumes a constant ``fps``, for sources without timestamps).
    Writes: every CLIPS column (``start_s``, ``end_s``, ``duration_s`` from ``times``); clip_path, num_frames,
    fps, width, height, clip_bytes stay None until ``cut_clips``. ``shot_index`` is the scene's index;
    ``original_caption`` the scene's caption, else the video's.
    Reasons: ``duration_short`` (shorter than min_s after trimming; not cut).
    """
    fps = video.get("fps")
    total = video.get("num_frames")
    if times is None:
        if not fps or fps <= 0:
            raise ValueError(f"video {video.get('video_id')} has no usable fps ({fps!r}): cannot place clips in time")
        n = int(total) if total else max((int(s["end_frame"]) for s in scenes), default=0)
        times = constant_rate_times(n, fps)
    total = len(times) - 1
    settings = settings_of(cfg, detector)
    settings_json = json.dumps(settings, sort_keys=True)
    rows = []
    for shot_index, scene in enumerate(scenes):
        s0, e0 = max(0, int(scene["start_frame"])), min(total, int(scene["end_frame"]))
        if e0 <= s0:
            continue
        if cfg.trim_s > 0:
            s = bisect.bisect_left(times, times[s0] + cfg.trim_s - _EPS_S, s0, e0 + 1)
            e = _last_at_or_before(times, times[e0] - cfg.trim_s, s0, e0)
        else:
            s, e = s0, e0
        pieces = _pieces(times, s, e, cfg.min_s, cfg.max_s) if e > s else [(s0, e0, False)]
        caption = scene.get("caption") or video.get("original_caption")
        for a, b, keep in pieces:
            rows.append(
                {
                    "clip_id": clip_id(video["content_hash"], a, b, settings),
                    "video_id": video["video_id"],
                    "source_hash": video["content_hash"],
                    "clip_path": None,
                    "shot_index": shot_index,
                    "start_frame": a,
                    "end_frame": b,
                    "start_s": times[a],
                    "end_s": times[b],
                    "duration_s": times[b] - times[a],
                    "num_frames": None,
                    "fps": None,
                    "width": None,
                    "height": None,
                    "clip_bytes": None,
                    "original_caption": caption,
                    "drop_reason": None if keep else DURATION_SHORT,
                    "error": None,
                    "settings": settings_json,
                    **dict.fromkeys(CROP_COLUMNS),
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------- cutting


def clip_relpath(cid: str) -> str:
    """Where a clip lives, relative to OUT: clips/<first two hex>/<id>.mp4 (256 fan-out dirs)."""
    return f"clips/{cid[:2]}/{cid}.mp4"


# the temporary name a clip is written under before it moves into place (_ClipWriter): .<id>.<pid>.<random>.tmp.mp4
_TEMPORARY = re.compile(r"^\.[0-9a-f]{24}\.\d+\.[0-9a-f]{8}\.tmp\.mp4$")


def sweep_temporaries(out_dir: str | Path) -> int:
    """Delete the temporary clip files a killed process left under a local ``OUT/clips`` (a clip being written when
    the kill came: its writer's temp file, never moved into place and never read); returns how many. Only for a
    caller holding OUT's writer lock (``pipeline.store.writer_lock``: no other command is writing clips then, so
    every such file is stale). Only names of the writer's exact pattern are touched. An OUT in a bucket has none
    (clips are written to a local temp file and uploaded whole)."""
    root = Path(out_dir) / "clips"
    if storage.is_uri(out_dir) or not root.is_dir():
        return 0
    n = 0
    for sub in os.scandir(root):
        if not sub.is_dir():
            continue
        for entry in os.scandir(sub.path):
            if _TEMPORARY.match(entry.name):
                try:
                    os.remove(entry.path)
                    n += 1
                except FileNotFoundError:
                    pass
    return n


def encoder_options(cfg: ClipsConfig) -> dict[str, str]:
    """libx264 options: constant quality (CRF, no bitrate target), the preset, and a thread count
    matching the task's CPUs."""
    return {"crf": str(cfg.crf), "preset": cfg.preset, "threads": str(max(1, round(cfg.num_cpus)))}


def output_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Upright output size: shorter side scaled down to ``short_side`` (never up), aspect kept, both
    dimensions even (yuv420p needs it)."""
    if short_side and min(width, height) > short_side:
        scale = short_side / min(width, height)
        width, height = width * scale, height * scale
        width, height = max(2, round(width / 2) * 2), max(2, round(height / 2) * 2)
    return max(2, int(width) // 2 * 2), max(2, int(height) // 2 * 2)


def retime_tolerance(src_rate: Fraction, out_rate: Fraction) -> Fraction:
    """How late a source timestamp may be and still count as at an output instant ``k / fps``.

    Exact comparison is wrong for real timestamps: Matroska/WebM store milliseconds, so 30 fps reads 0, 33, 67,
    100 ms and the frame shown from 66.67 ms is stamped 67; at 29.97 and 23.976 fps every container with a 1 ms
    time base rounds most frames, either way. Compared exactly, output instant 2/30 s would still show frame 1
    (frame 2 "starts" 0.33 ms later), so re-timing such a clip to its own rate repeated one frame and dropped
    the next every few frames. Half a tick would cover the rounding alone, but not the ~1 ms jitter of phone
    clocks (a 90 kHz stream whose frames are a millisecond late: half a tick there is 5.6 us), so the tolerance
    is the planner's ``_EPS_S`` (rounding and jitter): span edges and re-timed frames then agree on which frame
    is at a time. It is capped at a quarter of the shorter of the source's and the output's frame intervals
    (from 100 fps up), so it never moves a choice by more than a quarter frame on either clock.
    """
    return min(Fraction(str(_EPS_S)), 1 / (4 * src_rate), 1 / (4 * out_rate))


class _ClipWriter:
    """One clip being encoded: a temp MP4 next to the final path, moved into place on success. For an OUT in a
    bucket (``final`` a URI) the temp file is local and uploaded on success (one object PUT, visible only when
    complete). Its properties are read from the temp file before it moves (:attr:`meta`)."""

    def __init__(
        self,
        plan: dict,
        final: Path | str,
        cfg: ClipsConfig,
        src_rate: Fraction,
        src_tb: Fraction,
        end_pts: int | None,
        colour: Colour | None = None,
        pix_fmt: str = "yuv420p",
        sample=None,
        last_pts: int | None = None,
    ):
        self.plan, self.final, self.cfg = plan, final, cfg
        # frames kept for a scorer (cut_clips' ``sample``): output index -> RGB, indices chosen at the first frame
        self.sample, self.keep, self.kept = sample, frozenset(), {}
        self.colour, self.pix_fmt = colour, pix_fmt
        self.start, self.end = int(plan["start_frame"]), int(plan["end_frame"])
        self.expect = self.start  # next source frame this clip needs: any gap is an error
        stem = Path(str(final)).stem
        tmp_dir = Path(tempfile.gettempdir()) if storage.is_uri(final) else Path(final).parent
        self.tmp = tmp_dir / f".{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.mp4"
        self.meta: tuple[dict, int] | None = None  # (video_meta, bytes) of the written clip, read before it moves
        self.container = None
        self.stream = None
        self.tb: Fraction | None = None
        self.src_rate, self.src_tb = src_rate, src_tb
        self.t0: int | None = None  # first source pts: output timestamps start at 0
        self.out_rate = Fraction(cfg.fps).limit_denominator(100_000) if cfg.fps else None
        self.tolerance = self.retime_tolerance(src_rate, self.out_rate) if self.out_rate else Fraction(0)
        self.held: tuple[av.VideoFrame, Fraction] | None = None  # fps mode: the frame covering "now"
        self.pending: tuple[av.VideoFrame, int] | None = None  # source timing: the frame waiting for its duration
        self.durations: dict[int, int] = {}  # pts -> display duration of frames in the encoder
        self.last_packet: av.Packet | None = None
        self.delay: int | None = None
        self.emitted = 0
        # where the clip ends in source time: the pts of the first frame after it (exact for variable
        # frame rates; decoded frame durations are dts deltas, wrong with B-frames), None at the source end
        self.end_pts = end_pts
        self.last_pts = last_pts  # pts of the clip's last source frame (predict)
        self.last_duration: int | None = None

    def _open(self, width: int, height: int) -> None:
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.tmp), "w", format="mp4", options={"movflags": "+faststart"})
        rate = self.out_rate or self.src_rate
        self.stream = self.container.add_stream("libx264", rate=rate, options=encoder_options(self.cfg))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, self.pix_fmt
        self.stream.codec_context.sample_aspect_ratio = Fraction(1, 1)  # square pixels at the display size
        if self.colour is not None:
            tag_encoder(self.stream.codec_context, self.colour)
        # fps mode numbers output frames 0, 1, 2... at the new rate; otherwise source timing is kept
        # (shifted to start at 0), which also preserves variable frame rates
        self.tb = Fraction(1, 1) / rate if self.out_rate else self.src_tb
        self.stream.time_base = self.stream.codec_context.time_base = self.tb

    def _encode(self, frame: av.VideoFrame, pts: int, duration: int = 1) -> None:
        frame.pts = pts
        # the codec's time base, not the stream's: the muxer may change the stream's on its header
        frame.time_base = self.tb
        # libx264 leaves packet durations at 0 and the MP4 muxer then guesses the last sample's length: give each
        # packet its frame's display duration, so the file's length is the clip's true duration
        self.durations[pts] = max(1, int(duration))
        self._keep(frame)
        for packet in self.stream.encode(frame):
            self._mux(packet)
        self.emitted += 1

    def _keep(self, frame: av.VideoFrame) -> None:
        """Keep output frame ``emitted`` for a scorer when it asked for it: RGB as a decoder of the file converts it,
        before the encode's loss."""
        if self.emitted in self.keep:
            self.kept[self.emitted] = to_rgb(frame)

    def _mux(self, packet: av.Packet) -> None:
        """Mux the packet held back before this one: the last packet in decode order is kept until ``finish`` sets
        its duration (with B-frames it is not the last frame shown, and MP4 ends the track at its dts + duration)."""
        if packet.pts is not None and packet.pts in self.durations:
            packet.duration = self.durations.pop(packet.pts)
        if self.delay is None and packet.pts is not None and packet.dts is not None:
            self.delay = packet.pts - packet.dts  # B-frame reorder delay: the MP4 edit list starts shown time there
        if self.last_packet is not None:
            self.container.mux(self.last_packet)
        self.last_packet = packet

    def add(self, index: int, frame: av.VideoFrame, pts: int | None, duration: int | None = None) -> None:
        """Feed source frame ``index`` (already upright, resized, yuv420p) with its source pts."""
        if index != self.expect:
            raise ValueError(f"source frame {self.expect} missing (decoder jumped to {index})")
        self.expect += 1
        if self.container is None:
            self._open(frame.width, frame.height)
        if pts is None:  # a stream without timestamps: assume constant rate
            pts = round((index - self.start) / self.src_rate / self.src_tb)
        if self.t0 is None:
            self.t0 = pts
            if self.sample is not None:
                predicted = self.predict()
                self.keep = frozenset(self.sample(*predicted)) if predicted else frozenset()
        self.last_duration = duration
        rel = pts - self.t0
        if self.out_rate is None:
            # source timing: a frame is encoded once the next one tells how long it is shown
            if self.pending is not None:
                self._encode(self.pending[0], self.pending[1], rel - self.pending[1])
            self.pending = (frame, rel)
            return
        t = rel * self.src_tb
        # this frame takes over from output instant t - tolerance on: a frame stamped up to the tolerance late is
        # the one on screen at the instant its timestamp was rounded (or jittered) away from
        self._flush_held(until=t - self.tolerance)
        self.held = (frame, t)

    def predict(self) -> tuple[int, float] | None:
        """The clip's frame count and fps as its row will give them (``_fill_from_file``), known at its first
        frame: source timing keeps every frame of the span, at the planned duration's mean rate; fps mode gives
        the frames ``add`` and :meth:`finish` emit (see the code). None when they cannot be known yet. A wrong guess
        costs only speed: the scorer checks its frames against the row's real values and reads the file otherwise."""
        n = self.end - self.start
        if self.out_rate is None:
            duration = self.plan.get("duration_s")
            return (n, round(n / duration, 9)) if duration else None
        if self.end_pts is None or self.t0 is None or self.last_pts is None:
            return None
        # add() emits, before it holds the last source frame, every output frame k with k / fps < its time minus the
        # tolerance; finish() then every k with k / fps < duration - 1 / (2 fps). The count is the larger of the two
        # (from a source faster than twice the output rate the first can be larger: 122 frames at 120 fps -> 25 at 24)
        last = ((self.last_pts - self.t0) * self.src_tb - self.tolerance) * self.out_rate
        end = (self.end_pts - self.t0) * self.src_tb * self.out_rate - Fraction(1, 2)
        n = max(math.ceil(last), math.ceil(end), 0)
        return (n, float(self.out_rate)) if n >= 1 else None

    @staticmethod
    def retime_tolerance(src_rate: Fraction, out_rate: Fraction) -> Fraction:
        """:func:`retime_tolerance` (the module's)."""
        return retime_tolerance(src_rate, out_rate)

    def _flush_held(self, until: Fraction) -> None:
        """fps mode: output frame k shows the source frame on screen at time k / fps (:meth:`retime_tolerance`);
        emit the held frame for every output time before ``until`` (where the next source frame takes over, or the
        clip's end)."""
        if self.held is None:
            return
        frame, _ = self.held
        while Fraction(self.emitted) / self.out_rate < until:
            self._encode(frame, self.emitted)

    def duration_s(self) -> float:
        """The written clip's duration: output frames / fps, or the source span it kept the timing of."""
        if self.out_rate is not None:
            return float(self.emitted / self.out_rate)
        return (
            float((self.end_pts - self.t0) * self.src_tb) if self.end_pts is not None and self.t0 is not None else 0.0
        )

    def finish(self) -> None:
        """Emit what the clip still owes the encoder (:meth:`_emit_rest`), flush it, and move the file into place."""
        self._emit_rest()
        for packet in self.stream.encode(None):
            self._mux(packet)
        self._finish_file()

    def _emit_rest(self) -> None:
        """The frames still owed at the clip's end: the last frame of source timing once its duration is known, the
        held frame of fps mode for every output instant before the end."""
        if self.expect != self.end:
            raise EOFError(f"source ended at frame {self.expect}, clip needs frames up to {self.end}")
        self.end_pts_rel = None
        if self.pending is not None:
            frame, rel = self.pending
            if self.end_pts is not None:
                last = self.end_pts - self.t0 - rel
            else:
                last = self.last_duration or round(1 / (self.src_rate * self.src_tb))
            self._encode(frame, rel, last)
            self.end_pts_rel = rel + max(1, int(last))
            self.pending = None
        if self.out_rate is not None and self.held is not None:
            if self.end_pts is not None:
                until = (self.end_pts - self.t0) * self.src_tb
            elif self.last_duration:
                until = self.held[1] + self.last_duration * self.src_tb
            else:
                until = self.held[1] + 1 / self.src_rate
            # the clip gets round(duration * fps) frames (nearest, like ffmpeg's fps filter), so a span that
            # runs a millisecond past a whole output frame does not gain a frame
            self._flush_held(until=until - 1 / (2 * self.out_rate))

    def _finish_file(self) -> None:
        if self.last_packet is not None:
            # the track then ends exactly where the clip does: at the end of its last shown frame
            end = self.emitted if self.out_rate is not None else self.end_pts_rel
            last_dts = None if self.last_packet.dts is None else self.last_packet.dts + (self.delay or 0)
            if end is not None and last_dts is not None and end > last_dts:
                self.last_packet.duration = end - last_dts
            self.container.mux(self.last_packet)
            self.last_packet = None
        self.container.close()
        self.container = None
        # the file's properties, read back from it (the frame count is checked against the frames written); its
        # frames are upright and it has no display matrix: rotation 0, no frame decoded to learn it
        self.meta = (video_meta(self.tmp, rotation=0), self.tmp.stat().st_size)
        if storage.is_uri(self.final):
            try:
                storage.put_file(self.tmp, self.final)
            finally:
                self.tmp.unlink(missing_ok=True)
        else:
            storage.put_file(self.tmp, self.final)  # a rename into place

    def abort(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        except Exception:  # noqa: BLE001 - already failing; the temp file is removed below
            pass
        self.container = None
        self.tmp.unlink(missing_ok=True)


class _FrameTap(_ClipWriter):
    """A clip re-made up to its encoder's input and no further: nothing is encoded or written. It keeps the output
    frames ``keep`` as RGB (as :class:`_ClipWriter` does for a scorer) and counts the frames it would have encoded,
    for a clip an earlier run cut (``cut_clips``' ``tap``)."""

    def __init__(self, *args, keep: frozenset[int] = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.keep = frozenset(keep)

    def _open(self, width: int, height: int) -> None:
        pass

    def _encode(self, frame: av.VideoFrame, pts: int, duration: int = 1) -> None:
        self._keep(frame)
        self.emitted += 1

    def finish(self) -> None:
        self._emit_rest()


def _fill_from_file(
    row: dict,
    out_dir: Path | str,
    rel: str,
    cfg: ClipsConfig,
    expect_frames: int | None = None,
    known: tuple[dict, int] | None = None,
) -> None:
    """clip_path and the written clip's real properties, read back from the file; with ``cfg.fps`` the row's
    ``duration_s`` is the clip's own (its frames / fps). Raises when the file does not hold ``expect_frames``
    frames (every source frame of the span, or every output frame written): a clip is never silently short."""
    path = storage.under(out_dir, rel)
    meta, size = known if known is not None else (video_meta(path), None)
    if expect_frames is not None and meta["num_frames"] != expect_frames:
        raise ValueError(f"clip file {rel} holds {meta['num_frames']} frames, {expect_frames} were written")
    row.update(
        clip_path=rel,
        num_frames=meta["num_frames"],
        fps=meta["fps"],
        width=meta["width"],
        height=meta["height"],
        clip_bytes=size if size is not None else storage.size(path),
    )
    if cfg.fps:
        row["duration_s"] = meta["num_frames"] / cfg.fps
    elif row.get("duration_s"):
        # source timing: the clip's mean rate over its true span (a VFR clip has no single rate)
        row["fps"] = round(meta["num_frames"] / row["duration_s"], 9)


def _fail(row: dict, exc: BaseException) -> None:
    row["drop_reason"] = f"error_clips:{type(exc).__name__}"
    row["error"] = str(exc) or repr(exc)
    for k in ("clip_path", "num_frames", "fps", "width", "height", "clip_bytes", *CROP_COLUMNS):
        row[k] = None


def cut_clips(
    path: str,
    video: dict,
    plans: list[dict],
    out_dir: str | Path,
    cfg: ClipsConfig,
    skip_ids: set[str] = frozenset(),
    index: PtsIndex | None = None,
    sample=None,
    on_clip=None,
    tap: dict[str, frozenset[int]] | None = None,
    frames=None,
    source: SourceFacts | None = None,
) -> list[dict]:
    """Cut every kept plan of one source video from one forward decode pass.

    Reads: the source file; plan rows from ``plan_clips`` (clip_id, start_frame, end_frame, drop_reason).
    Writes: ``OUT/clips/<id[:2]>/<id>.mp4`` (H.264 libx264 CRF, limited-range yuv420p tagged with the source's
    colour description, or 10-bit yuv420p10le for an HDR source; square pixels at the display size, even
    dimensions, upright, +faststart, timestamps from 0) holding exactly source frames ``[start_frame,
    end_frame)`` (or their resampling to ``cfg.fps``), written to a temp name and ``os.replace``d, so a reader
    never sees a partial file and a rerun overwrites safely. Columns clip_path (relative to out_dir, posix),
    num_frames, fps, width, height, clip_bytes, read back from the written file, whose frame count is checked
    against the frames written (``duration_s`` becomes the clip's own with ``cfg.fps``); with ``cfg.crop_bars`` the
    :data:`CROP_COLUMNS`, px cut from each side of the picture at the output size (0 where no bars were found).
    Reasons: ``error_clips:<ExceptionType>`` with the message in ``error`` for a clip that failed (the
    others are still written); a failure to open or decode the source fails every clip not yet finished.

    Plans with a drop_reason are returned unchanged. Plans in ``skip_ids`` (already cut by an earlier
    run) are not cut again; their file columns are filled from the existing file when it is there.
    ``index``: the source's ``stages.media.PtsIndex`` when the caller already built it (else built here).
    ``sample(num_frames, fps) -> indices`` and ``on_clip(row, frames)``: a scorer's hooks (``pipeline.stream.cut_rows``
    with ``scores.at_cut``). At a clip's first frame ``sample`` is asked which output frames it wants, given the
    clip's predicted frame count and fps; those frames are kept as (H, W, 3) uint8 RGB as the encoder receives them
    (``stages.media.to_rgb``), and ``on_clip`` gets the finished clip's row (file columns filled) and {output index:
    frame} before they are freed. A clip that failed is not passed.
    ``tap`` ({clip_id: output frame indices}): the plans are clips an earlier run cut (their rows as stored); nothing
    is encoded or written, each clip is re-made only up to its encoder's input, and ``on_clip`` gets its row and the
    frames named, when the clip re-made has the stored row's ``num_frames`` (else the row gets an error and is not
    passed: a scorer reads the file then). The frames are those the clip's encoder received when it was cut, so a
    clip scored after a resume gets the scores an uninterrupted run gives it.
    ``frames``: ``(index, frame)`` pairs, in presentation order, of a decode the caller runs (``stages.onepass``,
    which detects shots from the same frames) instead of this function's own; a clip they do not finish is decoded
    from the source afterwards, as after a damaged packet. ``source``: :func:`source_facts` of ``path`` when the
    caller has them (else read here: one frame decoded).
    Frames are decoded once, numbered by presentation timestamp (``stages.media.PtsIndex``), and the
    decoder seeks to the keyframe before the first needed frame and across large gaps. Only the frames
    in flight are held: one decoded frame plus each open encoder's lookahead.
    """
    out_dir = storage.location(out_dir)  # a local directory or a bucket prefix
    rows = [dict(p) for p in plans]
    todo = [r for r in rows if r.get("drop_reason") is None and r["clip_id"] not in skip_ids]
    for r in rows if tap is None else ():
        if r.get("drop_reason") is None and r["clip_id"] in skip_ids:
            rel = clip_relpath(r["clip_id"])
            if storage.is_file(storage.under(out_dir, rel)):
                _fill_from_file(r, out_dir, rel, cfg)
    if not todo:
        return rows
    todo.sort(key=lambda r: (int(r["start_frame"]), int(r["end_frame"])))
    writers: dict[str, _ClipWriter] = {}
    done: set[str] = set()

    def fail(r: dict, exc: BaseException) -> None:
        w = writers.pop(r["clip_id"], None)
        if w is not None:
            w.abort()
        if environment_cause(exc) is not None:
            # the disk, not the clip: no open clip keeps a temporary file, and the run stops (stages/errors.py)
            for other in writers.values():
                other.abort()
            writers.clear()
            raise_if_environment(exc, f"cut {path}")
        _fail(r, exc)
        done.add(r["clip_id"])

    threads = max(1, round(cfg.num_cpus))
    try:
        if source is None:
            source = source_facts(path, video)
        if index is None:
            index = timeline(path)
        container = stream = None
        if frames is None:
            container, stream = open_stream(path, threads=threads)
    except Exception as exc:  # noqa: BLE001 - an unreadable source is data: every clip row says why
        for r in todo:
            fail(r, exc)
        return rows
    rotation, src_colour, display, coded_h = source.rotation, source.colour, source.display, source.coded_height
    src_rate, src_tb = source.rate, source.time_base
    # output size: upright display size, shorter side capped (a source does not change size mid-stream here)
    size = output_size(*((display[1], display[0]) if rotation in (90, 270) else display), cfg.short_side)
    out_colour = tagged(src_colour, coded_h)
    pix_fmt = "yuv420p10le" if src_colour.hdr else "yuv420p"
    crop = None
    if cfg.crop_bars:
        try:
            crop = _Crop.of(path, todo, index, rotation, size, out_colour, pix_fmt)
        except Exception as exc:  # noqa: BLE001 - a source that cannot be sampled cannot be cut either
            for r in todo:
                fail(r, exc)
            return rows
        cut = crop.box if crop is not None else (0, 0, 0, 0)
        for r in todo:
            r.update(zip(CROP_COLUMNS, cut, strict=True))
    # clips by start frame; a pointer walks them as frames advance (spans may overlap)
    pending = list(todo)
    active: list[dict] = []

    def consume(frames) -> None:
        for i, frame in frames:
            while pending and pending[0]["start_frame"] <= i:
                r = pending.pop(0)
                active.append(r)
                final = storage.under(out_dir, clip_relpath(r["clip_id"]))
                end_pts = index.pts_at(int(r["end_frame"])) if index is not None else None
                last_pts = index.pts_at(int(r["end_frame"]) - 1) if index is not None else None
                if tap is None:
                    writers[r["clip_id"]] = _ClipWriter(
                        r, final, cfg, src_rate, src_tb, end_pts, colour=out_colour, pix_fmt=pix_fmt, sample=sample,
                        last_pts=last_pts,
                    )  # fmt: skip
                else:
                    writers[r["clip_id"]] = _FrameTap(
                        r, final, cfg, src_rate, src_tb, end_pts, colour=out_colour, pix_fmt=pix_fmt,
                        keep=tap.get(r["clip_id"], frozenset()),
                    )  # fmt: skip
            if not active:
                continue
            # read before encoders restamp the frame (out may be the same object)
            src_pts, src_duration = frame.pts, getattr(frame, "duration", None)
            out = None
            for r in list(active):
                if r["clip_id"] in done:
                    active.remove(r)
                    continue
                w = writers[r["clip_id"]]
                if i < w.expect:
                    continue  # a second pass re-decodes frames this clip already has
                try:
                    if out is None:
                        out = _prepare(frame, rotation, size, out_colour, pix_fmt)
                        out = crop(out) if crop is not None else out
                    w.add(i, out, src_pts, src_duration)
                    if i + 1 >= w.end:
                        w.finish()
                        writers.pop(r["clip_id"])
                        done.add(r["clip_id"])
                        active.remove(r)
                        finished(r, w)
                except Exception as exc:  # noqa: BLE001 - one clip's failure must not lose the others
                    fail(r, exc)
                    if r in active:  # a clip that fails once finished (its file's check) has left it already
                        active.remove(r)

    def finished(r: dict, w: _ClipWriter, at_end: bool = False) -> None:
        if tap is not None:
            if w.emitted != r.get("num_frames"):
                raise ValueError(
                    f"the source gives this clip {w.emitted} frames, its stored row {r.get('num_frames')}"
                )
        else:
            _fill_from_file(r, out_dir, clip_relpath(r["clip_id"]), cfg, w.emitted, w.meta)
            if not cfg.fps and not at_end:
                r["duration_s"] = w.duration_s()
        if on_clip is not None:
            on_clip(r, w.kept)

    def unfinished() -> list[tuple[int, int]]:
        return [
            (writers[r["clip_id"]].expect if r["clip_id"] in writers else int(r["start_frame"]), int(r["end_frame"]))
            for r in todo
            if r["clip_id"] not in done
        ]

    try:
        if frames is not None:
            consume(frames)
        else:
            with container:
                consume(iter_frames(container, stream, [(r["start_frame"], r["end_frame"]) for r in todo], index))
        if unfinished() and index is not None:
            # FFmpeg's frame threading loses the frames queued behind a damaged packet (the cut end of a truncated
            # file); the rest is decoded again slice-threaded, from the first frame still missing.
            container, stream = open_stream(path, threads=threads)
            stream.thread_type = "SLICE"
            with container:
                consume(iter_frames(container, stream, unfinished(), index))
    except Exception as exc:  # noqa: BLE001 - the source broke mid-decode: every unfinished clip fails
        for r in todo:
            if r["clip_id"] not in done:
                fail(r, exc)
    # the source ended before some spans did: finish() raises EOFError for those
    for r in todo:
        if r["clip_id"] in done:
            continue
        w = writers.get(r["clip_id"])
        try:
            if w is None:
                raise EOFError(f"source has no frame {r['start_frame']}: it ends earlier than the planned span")
            w.finish()
            writers.pop(r["clip_id"])
            done.add(r["clip_id"])
            finished(r, w, at_end=True)
        except Exception as exc:  # noqa: BLE001
            fail(r, exc)
    return rows


@dataclass(frozen=True)
class SourceFacts:
    """What the cutter reads from a source before cutting it (:func:`source_facts`)."""

    rotation: int  # degrees clockwise to show the picture upright (display matrix)
    colour: Colour  # the first frame's colour description
    display: tuple[int, int]  # display size (SAR applied), before rotation
    coded_height: int  # the coded picture's height (guesses an untagged matrix: stages.media.assumed_matrix)
    rate: Fraction  # nominal frame rate
    time_base: Fraction  # the stream's time base


def source_facts(path: str, video: dict) -> SourceFacts:
    """:class:`SourceFacts` of ``path``'s video stream from its first decoded frame; raises EOFError when no frame
    decodes (PyAV's errors for an unreadable file). ``video``: its videos row (``fps``: the rate of a stream
    that gives none)."""
    container, stream = open_stream(path)
    with container:
        first = next(container.decode(stream), None)
        if first is None:
            raise EOFError(f"no frame decodes from {path}")
        cc = stream.codec_context
        rate = Fraction(stream.average_rate or stream.guessed_rate or Fraction(video.get("fps") or 25))
        return SourceFacts(
            rotation=frame_rotation(first),
            colour=Colour.of(first),
            display=display_size(cc.width, cc.height, sample_aspect_ratio(stream)),
            coded_height=cc.height,
            rate=rate,
            time_base=Fraction(stream.time_base) if stream.time_base else 1 / rate,
        )


def _prepare(
    frame: av.VideoFrame, rotation: int, size: tuple[int, int], colour: Colour, pix_fmt: str = "yuv420p"
) -> av.VideoFrame:
    """Upright frame at the output (display) size in ``pix_fmt``, limited range, tagged ``colour``
    (``stages.media.for_encoder``), stripped of the decoder's picture type (libx264 would otherwise force an
    I-frame wherever the source had one)."""
    width, height = size
    if rotation:
        pre = (height, width) if rotation in (90, 270) else (width, height)
        rgb = _upright(to_rgb(frame, *pre, interpolation=_interp(pre, frame)), rotation)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    frame = for_encoder(frame, width, height, colour, pix_fmt=pix_fmt, interpolation=_interp(size, frame))
    frame.pict_type = av.video.frame.PictureType.NONE
    return frame


def bars_of(luma: np.ndarray) -> tuple[int, int, int, int]:
    """Bars (top, bottom, left, right) in pixels of ``luma`` (N, H, W) uint8 frames: the scorer's
    ``stages.cpu_scores.active_box`` with its default thresholds, so a clip cut with ``crop_bars`` is cropped where
    the scorer would have measured bars, and then each bar found taken on inward through the near-black lines the
    encoder's ringing leaves beside it (:func:`_ringing`). The offsets are rounded up and the size down to even
    numbers (4:2:0 chroma): a bar is removed whole, at the cost of at most one line of picture."""
    from stages.cpu_scores import CpuScoresConfig, active_box

    cfg = CpuScoresConfig()
    bars = active_box(luma, max_range=cfg.border_range, dark=cfg.border_dark)
    top, bottom, left, right = _ringing(luma, bars, cfg.border_range)
    return top + top % 2, bottom + bottom % 2, left + left % 2, right + right % 2


def _ringing(
    luma: np.ndarray, bars: tuple[int, int, int, int], mean_level: float, level: float = 24, most: float = 0.02
) -> tuple[int, int, int, int]:
    """``bars`` (top, bottom, left, right px of ``luma``, (N, H, W) uint8) each taken on inward over the lines next to
    it that are black on average over the N frames: the line's mean at most ``mean_level`` grey levels and each of its
    pixels' at most ``level`` (24: FFmpeg's ``cropdetect`` default ``limit``, the level under which it counts a line
    as black); ``most`` of the side at most (at least 2 lines). A side without a bar stays 0.

    A picture scaled into black bars and coded with H.264 rings into the bar's last lines: the transform blocks that
    straddle the picture's edge spread its detail a few levels into the black (a bigbuckbunny window scaled 0.7-0.8
    into 640x360, 854x480 or 960x540 and coded at CRF 23-28: up to 5 lines per bar, line means 0.1-2.0, a pixel's
    mean up to 13 levels, 7-29 levels apart over the frames). The scorer's bar test (``stages.cpu_scores.active_box``)
    wants a bar's lines flat within ``border_range`` (6) levels, so it stops before them, and a clip cropped there
    kept them as a dark stripe along its edge (a newcomer's boxed copy, 768x432 in 960x540: cropped to 768x436). The
    first picture line's mean read 74-120 in those cases. What this can take of a picture is its outermost lines
    where they are black all clip long, 2 % of the side at most: a night sky's edge beside a letterbox bar, as dark as
    the bar."""
    mean = luma.mean(axis=0)
    h, w = mean.shape
    out = list(bars)
    for k, (lines, size) in enumerate(((mean, h), (mean[::-1], h), (mean.T, w), (mean.T[::-1], w))):
        if not bars[k]:
            continue
        limit = min(bars[k] + max(2, int(most * size)), size // 2)
        at = bars[k]
        while at < limit and lines[at].mean() <= mean_level and lines[at].max() <= level:
            at += 1
        out[k] = at
    return out[0], out[1], out[2], out[3]


class _Crop:
    """Crops every prepared frame of one source to its active picture (``ClipsConfig.crop_bars``): FFmpeg's
    ``crop`` filter through PyAV's filter graph (it keeps the frame's colour properties and pixel format)."""

    SAMPLES = 8

    def __init__(self, box: tuple[int, int, int, int], size: tuple[int, int], pix_fmt: str):
        # box: what the crop takes from each side (top, bottom, left, right px of the frame it is given): the bars,
        # and on the bottom and right the line an odd size leaves when rounded down to even; size: what is left
        self.box, self.size, self.pix_fmt = box, size, pix_fmt
        self.graph = None

    @classmethod
    def of(cls, path, todo, index, rotation, size, colour, pix_fmt) -> _Crop | None:
        """The crop of one source's clips, from :data:`SAMPLES` frames spread over the span its clips cover (bars
        must be in all of them: a letterbox that changes between shots is cropped only where they share it), or
        None when there are none."""
        start, end = min(int(r["start_frame"]) for r in todo), max(int(r["end_frame"]) for r in todo)
        picks = sorted({start + (end - start - 1) * k // max(1, cls.SAMPLES - 1) for k in range(cls.SAMPLES)})
        container, stream = open_stream(path)
        with container:
            frames = [
                _prepare(f, rotation, size, colour, pix_fmt).reformat(format="gray").to_ndarray()
                for _, f in iter_frames(container, stream, [(i, i + 1) for i in picks], index)
            ]
        if not frames:
            return None
        top, bottom, left, right = bars_of(np.stack(frames))
        if not (top or bottom or left or right):
            return None
        w, h = size
        width, height = (w - left - right) // 2 * 2, (h - top - bottom) // 2 * 2
        return cls((top, h - top - height, left, w - left - width), (width, height), pix_fmt)

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        if self.graph is None:
            graph = av.filter.Graph()
            src = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name, time_base=1)
            w, h = self.size
            cropper = graph.add("crop", f"{w}:{h}:{self.box[2]}:{self.box[0]}")
            sink = graph.add("buffersink")
            src.link_to(cropper)
            cropper.link_to(sink)
            graph.configure()
            self.graph = graph
        self.graph.push(frame)
        out = self.graph.pull()
        out.pict_type = av.video.frame.PictureType.NONE
        return out


def _interp(size: tuple[int, int], frame: av.VideoFrame) -> str:
    return "AREA" if size[0] * size[1] < frame.width * frame.height else "BICUBIC"


def cut_video(
    video: dict, shots: dict, out_dir: str | Path, cfg: ClipsConfig, skip_ids=(), sample=None, on_clip=None
) -> tuple[dict, list]:
    """Plan and cut the clips of one video from its shots row; never raises.

    Reads: the videos row, its shots row (scenes), the source file
    Writes: (the shots row with scene times from the source's timestamps, n_clips and cut_s; the clip rows of
    the plans not in ``skip_ids``, i.e. not stored by an earlier run). A failure leaves the shots row's
    error_type / error set and no clip rows. ``sample`` / ``on_clip``: a scorer's hooks (:func:`cut_clips`).
    """
    import time

    from stages.media import source_times, timeline

    t0 = time.perf_counter()
    shots = dict(shots)
    clips: list[dict] = []
    try:
        index = timeline(video["path"])
        times = source_times(video, index)
        scenes = [dict(sc) for sc in shots["scenes"]]
        for sc in scenes:
            sc["start_s"], sc["end_s"] = times[sc["start_frame"]], times[sc["end_frame"]]
        shots["scenes"] = scenes
        plans = plan_clips(video, scenes, cfg, shots["detector"], times)
        stored = set(skip_ids or ())
        todo = [p for p in plans if p["clip_id"] not in stored]
        clips = (
            cut_clips(
                video["path"], video, todo, out_dir, cfg, skip_ids=stored, index=index, sample=sample, on_clip=on_clip
            )
            if todo
            else []
        )
        shots["n_clips"] = len(plans)
    except Exception as e:  # errors are data: the shots row says why
        raise_if_environment(e, f"cut {video.get('path')}")
        shots["error_type"], shots["error"] = type(e).__name__, str(e)[:2000]
        clips = []
    shots["cut_s"] = time.perf_counter() - t0
    return shots, clips


def _rules():
    from stages.catalogue import Rule

    # "short_side" is derived: the shorter side of the written clip's active picture (stages.filters.short_side)
    return (
        Rule(DURATION_SHORT, "duration_s", "<", "filters.min_duration_s"),
        Rule(RESOLUTION_LOW, "short_side", "<", "filters.min_short_side"),
    )


# The filter rules on the clip's own columns: the first ones (stages.catalogue.rules), true whatever a scorer says.
RULES = _rules()
