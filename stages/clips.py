"""Clip planning and frame-accurate cutting.

``plan_clips`` turns a video's shots into clip rows (pure arithmetic, no I/O); ``cut_clips`` writes the
kept ones as H.264 MP4 files from one forward decode of the source.

Planning rules, in source frames (``fps`` is the video row's frame rate):

1. ``trim_s`` is removed from both edges of every shot (transitions bleed into the first/last
   frames), ``round(trim_s * fps)`` frames each side. A shot that trimming empties keeps its untrimmed
   span and is dropped as ``duration_short``.
2. A shot shorter than ``min_s`` (fewer than ``ceil(min_s * fps)`` frames) becomes one row with
   ``drop_reason="duration_short"``; it is not cut.
3. A shot of at most ``max_s`` (``floor(max_s * fps)`` frames) becomes one clip.
4. A longer shot of L frames is split into ``n = ceil(L / max_frames)`` pieces of equal length
   (boundaries ``start + k * L // n``, lengths differ by at most one frame): every piece is at most
   ``max_s`` and as long as possible, and no frame is lost. The pieces are at least ``max_s / 2``
   long, so with ``min_s <= max_s / 2`` (the defaults: 2 and 10) they are always kept. When
   ``min_s > max_s / 2`` and equal pieces would fall under ``min_s``, the shot is instead cut into
   ``floor(L / max_frames)`` pieces of exactly ``max_s`` from its start, and the remainder (then
   always shorter than ``min_s``) becomes a ``duration_short`` row.

Every frame of every (trimmed) shot is in exactly one row, kept or dropped, so the clip table accounts
for the whole video.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from stages.frames import PtsIndex, _rotation_of, _upright, iter_frames, open_stream, video_meta

# Bump when the cutting code changes what a clip file contains: it goes into every clip_id.
CUT_VERSION = 1
DURATION_SHORT = "duration_short"


@dataclass
class ClipsConfig:
    """Clip split and encode settings. Everything but ``num_cpus`` goes into the clip ids."""

    min_s: float = 2.0  # shorter pieces become rows with drop_reason "duration_short" (not cut)
    max_s: float = 10.0  # longer shots are split into equal pieces of at most max_s (module docstring)
    trim_s: float = 0.0  # trimmed from both shot edges before the min/max rules
    crf: int = 20  # libx264 constant quality (not a bitrate): 18-23 is visually near-lossless
    preset: str = "veryfast"
    short_side: int | None = None  # downscale so the shorter side is this (never upscales; even dims)
    fps: float | None = None  # resample to this frame rate by timestamps (drops/duplicates frames)
    num_cpus: float = 1.0  # CPUs per cutting task; also the encoder/decoder thread count


def settings_of(cfg: ClipsConfig, detector: str) -> dict:
    """The settings that decide what a clip is (its span rules and its pixels): they go into clip_id
    and the ``settings`` column. ``num_cpus`` is excluded: it changes speed, not output."""
    s = asdict(cfg)
    s.pop("num_cpus")
    return {"detector": detector, "cut_version": CUT_VERSION, **s}


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


def _pieces(start: int, end: int, min_frames: int, max_frames: int) -> list[tuple[int, int, bool]]:
    """(start, end, keep) pieces of one trimmed shot, per the module docstring's rules 2-4."""
    length = end - start
    if length < min_frames:
        return [(start, end, False)]
    if length <= max_frames:
        return [(start, end, True)]
    n = math.ceil(length / max_frames)
    if length // n >= min_frames:
        bounds = [start + k * length // n for k in range(n + 1)]
        return [(a, b, True) for a, b in zip(bounds, bounds[1:], strict=False)]
    n = length // max_frames
    out = [(start + k * max_frames, start + (k + 1) * max_frames, True) for k in range(n)]
    if start + n * max_frames < end:
        out.append((start + n * max_frames, end, end - start - n * max_frames >= min_frames))
    return out


def plan_clips(video: dict, scenes: list[dict], cfg: ClipsConfig, detector: str) -> list[dict]:
    """Clip rows for one video's shots (no I/O).

    Reads: video_id, content_hash, fps, num_frames, original_caption (VIDEOS row); scenes
    (``start_frame``, ``end_frame`` exclusive, optional ``caption``).
    Writes: every CLIPS column; clip_path, num_frames, fps, width, height, clip_bytes stay None until
    ``cut_clips``. ``shot_index`` is the scene's index; ``original_caption`` the scene's caption, else
    the video's.
    Reasons: ``duration_short`` (shorter than min_s after trimming; not cut).
    """
    fps = video.get("fps")
    if not fps or fps <= 0:
        raise ValueError(f"video {video.get('video_id')} has no usable fps ({fps!r}): cannot place clips in time")
    settings = settings_of(cfg, detector)
    settings_json = json.dumps(settings, sort_keys=True)
    min_frames = max(1, math.ceil(cfg.min_s * fps - 1e-6))
    max_frames = max(min_frames, math.floor(cfg.max_s * fps + 1e-6))
    trim = max(0, round(cfg.trim_s * fps))
    total = video.get("num_frames")
    rows = []
    for shot_index, scene in enumerate(scenes):
        s0, e0 = int(scene["start_frame"]), int(scene["end_frame"])
        if total:
            s0, e0 = max(0, s0), min(int(total), e0)
        if e0 <= s0:
            continue
        s, e = s0 + trim, e0 - trim
        pieces = _pieces(s, e, min_frames, max_frames) if e > s else [(s0, e0, False)]
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
                    "start_s": a / fps,
                    "end_s": b / fps,
                    "duration_s": (b - a) / fps,
                    "num_frames": None,
                    "fps": None,
                    "width": None,
                    "height": None,
                    "clip_bytes": None,
                    "original_caption": caption,
                    "drop_reason": None if keep else DURATION_SHORT,
                    "error": None,
                    "settings": settings_json,
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------- cutting


def clip_relpath(cid: str) -> str:
    """Where a clip lives, relative to OUT: clips/<first two hex>/<id>.mp4 (256 fan-out dirs)."""
    return f"clips/{cid[:2]}/{cid}.mp4"


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


class _ClipWriter:
    """One clip being encoded: a temp MP4 next to the final path, moved into place on success."""

    def __init__(
        self, plan: dict, final: Path, cfg: ClipsConfig, src_rate: Fraction, src_tb: Fraction, end_pts: int | None
    ):
        self.plan, self.final, self.cfg = plan, final, cfg
        self.start, self.end = int(plan["start_frame"]), int(plan["end_frame"])
        self.expect = self.start  # next source frame this clip needs: any gap is an error
        self.tmp = final.with_name(f".{final.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.mp4")
        self.container = None
        self.stream = None
        self.tb: Fraction | None = None
        self.src_rate, self.src_tb = src_rate, src_tb
        self.t0: int | None = None  # first source pts: output timestamps start at 0
        self.out_rate = Fraction(cfg.fps).limit_denominator(100_000) if cfg.fps else None
        self.held: tuple[av.VideoFrame, Fraction] | None = None  # fps mode: the frame covering "now"
        self.emitted = 0
        # where the clip ends in source time: the pts of the first frame after it (exact for variable
        # frame rates; decoded frame durations are dts deltas, wrong with B-frames), None at the source end
        self.end_pts = end_pts
        self.last_duration: int | None = None

    def _open(self, width: int, height: int) -> None:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.tmp), "w", format="mp4", options={"movflags": "+faststart"})
        rate = self.out_rate or self.src_rate
        self.stream = self.container.add_stream("libx264", rate=rate, options=encoder_options(self.cfg))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        # fps mode numbers output frames 0, 1, 2... at the new rate; otherwise source timing is kept
        # (shifted to start at 0), which also preserves variable frame rates
        self.tb = Fraction(1, 1) / rate if self.out_rate else self.src_tb
        self.stream.time_base = self.stream.codec_context.time_base = self.tb

    def _encode(self, frame: av.VideoFrame, pts: int) -> None:
        frame.pts = pts
        # the codec's time base, not the stream's: the muxer may change the stream's on its header
        frame.time_base = self.tb
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.emitted += 1

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
        self.last_duration = duration
        rel = pts - self.t0
        if self.out_rate is None:
            self._encode(frame, rel)
            return
        t = rel * self.src_tb
        self._flush_held(until=t)
        self.held = (frame, t)

    def _flush_held(self, until: Fraction) -> None:
        """fps mode: output frame k shows the source frame covering time k / fps; emit the held frame
        for every output time before ``until`` (the next source frame's time, or the clip's end)."""
        if self.held is None:
            return
        frame, _ = self.held
        while Fraction(self.emitted) / self.out_rate < until:
            self._encode(frame, self.emitted)

    def finish(self) -> None:
        if self.expect != self.end:
            raise EOFError(f"source ended at frame {self.expect}, clip needs frames up to {self.end}")
        if self.out_rate is not None and self.held is not None:
            if self.end_pts is not None:
                until = (self.end_pts - self.t0) * self.src_tb
            elif self.last_duration:
                until = self.held[1] + self.last_duration * self.src_tb
            else:
                until = self.held[1] + 1 / self.src_rate
            self._flush_held(until=until)
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        self.container = None
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        except Exception:  # noqa: BLE001 - already failing; the temp file is removed below
            pass
        self.container = None
        self.tmp.unlink(missing_ok=True)


def _fill_from_file(row: dict, out_dir: Path, rel: str) -> None:
    """clip_path and the written clip's real properties, read back from the file."""
    path = out_dir / rel
    meta = video_meta(path)
    row.update(
        clip_path=rel,
        num_frames=meta["num_frames"],
        fps=meta["fps"],
        width=meta["width"],
        height=meta["height"],
        clip_bytes=path.stat().st_size,
    )


def _fail(row: dict, exc: BaseException) -> None:
    row["drop_reason"] = f"error_clips:{type(exc).__name__}"
    row["error"] = str(exc) or repr(exc)
    for k in ("clip_path", "num_frames", "fps", "width", "height", "clip_bytes"):
        row[k] = None


def cut_clips(
    path: str,
    video: dict,
    plans: list[dict],
    out_dir: str | Path,
    cfg: ClipsConfig,
    skip_ids: set[str] = frozenset(),
) -> list[dict]:
    """Cut every kept plan of one source video from one forward decode pass.

    Reads: the source file; plan rows from ``plan_clips`` (clip_id, start_frame, end_frame, drop_reason).
    Writes: ``OUT/clips/<id[:2]>/<id>.mp4`` (H.264 libx264 CRF, yuv420p, even dimensions, +faststart,
    upright pixels, timestamps from 0) holding exactly source frames ``[start_frame, end_frame)`` (or
    their resampling to ``cfg.fps``), written to a temp name and ``os.replace``d, so a reader never
    sees a partial file and a rerun overwrites safely. Columns clip_path (relative to out_dir, posix),
    num_frames, fps, width, height, clip_bytes, read back from the written file.
    Reasons: ``error_clips:<ExceptionType>`` with the message in ``error`` for a clip that failed (the
    others are still written); a failure to open or decode the source fails every clip not yet finished.

    Plans with a drop_reason are returned unchanged. Plans in ``skip_ids`` (already cut by an earlier
    run) are not cut again; their file columns are filled from the existing file when it is there.
    Frames are decoded once, numbered by presentation timestamp (``stages.frames.PtsIndex``), and the
    decoder seeks to the keyframe before the first needed frame and across large gaps. Only the frames
    in flight are held: one decoded frame plus each open encoder's lookahead.
    """
    out_dir = Path(out_dir)
    rows = [dict(p) for p in plans]
    todo = [r for r in rows if r.get("drop_reason") is None and r["clip_id"] not in skip_ids]
    for r in rows:
        if r.get("drop_reason") is None and r["clip_id"] in skip_ids:
            rel = clip_relpath(r["clip_id"])
            if (out_dir / rel).is_file():
                _fill_from_file(r, out_dir, rel)
    if not todo:
        return rows
    todo.sort(key=lambda r: (int(r["start_frame"]), int(r["end_frame"])))
    writers: dict[str, _ClipWriter] = {}
    done: set[str] = set()

    def fail(r: dict, exc: BaseException) -> None:
        w = writers.pop(r["clip_id"], None)
        if w is not None:
            w.abort()
        _fail(r, exc)
        done.add(r["clip_id"])

    threads = max(1, round(cfg.num_cpus))
    try:
        with av.open(str(path)) as probe:
            s = probe.streams.video[0]
            rotation = _rotation_of(probe, s)
            probe.seek(0)
            index = PtsIndex.build(probe, s)
        container, stream = open_stream(path, threads=threads)
    except Exception as exc:  # noqa: BLE001 - an unreadable source is data: every clip row says why
        for r in todo:
            fail(r, exc)
        return rows
    src_rate = Fraction(stream.average_rate or stream.guessed_rate or Fraction(video.get("fps") or 25))
    src_tb = Fraction(stream.time_base) if stream.time_base else 1 / src_rate
    size = None  # output size, fixed by the first frame (a source does not change size mid-stream here)
    # clips by start frame; a pointer walks them as frames advance (spans may overlap)
    pending = list(todo)
    active: list[dict] = []
    with container:
        try:
            for i, frame in iter_frames(container, stream, [(r["start_frame"], r["end_frame"]) for r in todo], index):
                while pending and pending[0]["start_frame"] <= i:
                    r = pending.pop(0)
                    active.append(r)
                    final = out_dir / clip_relpath(r["clip_id"])
                    end = int(r["end_frame"])
                    end_pts = index.pts[end] if index is not None and end < len(index) else None
                    writers[r["clip_id"]] = _ClipWriter(r, final, cfg, src_rate, src_tb, end_pts)
                if not active:
                    continue
                if size is None:
                    h0, w0 = (frame.width, frame.height) if rotation in (90, 270) else (frame.height, frame.width)
                    size = output_size(w0, h0, cfg.short_side)
                # read before encoders restamp the frame (out may be the same object)
                src_pts, src_duration = frame.pts, getattr(frame, "duration", None)
                out = _prepare(frame, rotation, size)
                for r in list(active):
                    if r["clip_id"] in done:
                        active.remove(r)
                        continue
                    w = writers[r["clip_id"]]
                    try:
                        w.add(i, out, src_pts, src_duration)
                        if i + 1 >= w.end:
                            w.finish()
                            writers.pop(r["clip_id"])
                            done.add(r["clip_id"])
                            active.remove(r)
                            _fill_from_file(r, out_dir, clip_relpath(r["clip_id"]))
                    except Exception as exc:  # noqa: BLE001 - one clip's failure must not lose the others
                        fail(r, exc)
                        active.remove(r)
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
            _fill_from_file(r, out_dir, clip_relpath(r["clip_id"]))
        except Exception as exc:  # noqa: BLE001
            fail(r, exc)
    return rows


def _prepare(frame: av.VideoFrame, rotation: int, size: tuple[int, int]) -> av.VideoFrame:
    """Upright, resized, yuv420p frame for the encoders, stripped of the decoder's picture type (libx264
    would otherwise force an I-frame wherever the source had one)."""
    if rotation:
        rgb = _upright(frame.to_ndarray(format="rgb24"), rotation)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    width, height = size
    if (frame.width, frame.height) != (width, height) or frame.format.name != "yuv420p":
        interp = "AREA" if width * height < frame.width * frame.height else "BICUBIC"
        frame = frame.reformat(width=width, height=height, format="yuv420p", interpolation=interp)
    frame.pict_type = av.video.frame.PictureType.NONE
    return frame
