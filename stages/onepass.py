"""Shots and clips from one decode of the source: the hybrid shot detector reads each frame's thumbnail as the
cutter gets the frame, so a source is decoded once instead of twice (once by the shot stage, once by the cut).

How (:func:`detect_and_cut`). Frames are decoded in presentation order (``stages.shots.SmallFrames``, the shot
stage's own decode, with the deblocking filter on: the cut needs the real pictures). Each frame's 32x18 thumbnail
goes to ``stages.shots.OnlineHybrid``, which confirms a boundary once the frames after it can no longer change it
(48-64 frames later); the decoded frame itself is held until the shot it belongs to is final. Then that shot's
clips are planned (``stages.clips.plan_clips``: its rules read only the shot's own frames) and cut from the held
frames (``stages.clips.cut_clips`` with ``frames``), and the frames are released.

Memory: the frames held, at most ``clips.one_pass_mb``: a shot plus 48-64 frames (at 1080p ~3.1 MB a frame, so
512 MB holds shots up to ~4 s at 24 fps; at 720p ~1.4 MB, ~12 s; at 360p ~0.35 MB, ~60 s). When the
frames held outgrow it they are dropped, and the shots they belonged to are cut afterwards from a second decode of
their spans, in one forward pass with seeks over the gaps: what the two-pass path does for every shot. A source that
needs it logs a warning (``clipforge.onepass``, shown on the driver's console as the worker's), so a budget too small
for the footage is seen.

Exactness. When the decode ends, the whole-video detector runs on the same thumbnails and features
(``OnlineHybrid.finish``: ``stages.shots.detect`` with ``deblock``, what the shot stage runs); that is the shots row.
Where a shot confirmed while decoding differs from it (in principle a fade or dissolve longer than the detector's
window), the clips cut from the wrong shot are deleted and the right ones cut from a second decode. So the shots, the
clip ids and the frames each clip's encoder receives (pixels and timestamps) are exactly the two-pass path's
(``tests/stages/test_onepass.py``). A source that fails to decode, or whose frames do not cover the probe's count,
gets the shots row error the shot stage gives it, and no clip (files already cut are deleted).

It applies to the hybrid detector on a source without given spans, with ``clips.one_pass`` on (default) and
``clips.crop_bars`` off (the crop box is measured over every clip of the source before the first is cut), and a
source whose timestamps number its frames; anything else takes the two-pass path (``pipeline.stream.cut_rows``).
"""

from __future__ import annotations

import logging
import time
from collections import deque

from stages import storage
from stages.errors import raise_if_environment

_log = logging.getLogger("clipforge.onepass")


def enabled(shots_cfg, clips_cfg) -> bool:
    """Whether a run with these settings detects the shots in its cut task (its graph then has no shot task)."""
    return shots_cfg.detector == "hybrid" and clips_cfg.one_pass and not clips_cfg.crop_bars


def applies(video: dict, shots_cfg, clips_cfg) -> bool:
    """Whether :func:`detect_and_cut` serves ``video`` (a videos row) under these settings."""
    return enabled(shots_cfg, clips_cfg) and not video.get("spans")


def _nbytes(frame) -> int:
    return sum(p.buffer_size for p in frame.planes)


def detect_and_cut(
    video: dict, shots_cfg, out_dir, clips_cfg, skip_ids=(), sample=None, on_clip=None
) -> tuple[dict, list[dict]]:
    """The shots row and the cut clip rows of one ok ``videos`` row from one decode; never raises (errors are rows).

    Returns what ``stages.shots.shots_row`` followed by ``stages.clips.cut_video`` return for the same video (the
    shots row with n_clips and cut_s; the clip rows of the plans not in ``skip_ids``), with ``detect_s`` the seconds
    spent in the detector's decisions and ``cut_s`` the rest (the decode with the thumbnails made during it, the
    encode, and with ``sample`` / ``on_clip`` a scorer's hooks: ``stages.clips.cut_clips``). Errors: the shots row's
    error_type / error (ShotDetectionError, ShotCoverageError, FileNotFoundError...) as the shot stage records them;
    the environment's errors (a full disk...) are raised (``stages.errors``).
    """
    from stages.clips import cut_video
    from stages.media import timeline
    from stages.shots import shots_row

    t0 = time.perf_counter()
    try:
        index = timeline(video["path"]) if storage.is_file(video["path"]) else None
    except Exception as e:  # noqa: BLE001 - the shot stage reports an unreadable file in its own words
        raise_if_environment(e, f"shots of {video.get('path')}")
        index = None
    if index is None or index.time_base is None:  # no timestamps to number frames by: the two-pass path
        shots = shots_row(video, shots_cfg)
        if shots["error_type"]:
            return shots, []
        return cut_video(video, shots, out_dir, clips_cfg, skip_ids=skip_ids, sample=sample, on_clip=on_clip)
    run = _OnePass(video, shots_cfg, out_dir, clips_cfg, index, skip_ids, sample, on_clip)
    shots, clips = run()
    shots["cut_s"] = time.perf_counter() - t0 - shots["detect_s"]
    return shots, clips


class _OnePass:
    """One source through :func:`detect_and_cut` (state of the decode: frames held, clips cut so far)."""

    def __init__(self, video, shots_cfg, out_dir, clips_cfg, index, skip_ids, sample, on_clip):
        self.video, self.shots_cfg, self.out_dir, self.cfg, self.index = video, shots_cfg, out_dir, clips_cfg, index
        self.stored = set(skip_ids or ())
        self.hooks = {"sample": sample, "on_clip": on_clip}
        self.held: deque = deque()  # (frame index, av.VideoFrame), contiguous, of the shots not cut yet
        self.held_bytes = 0
        self.cut: dict[str, dict] = {}  # clip_id -> the row cut_clips returned
        self.shot_start = 0  # first frame of the open shot
        self.n_shots = 0
        self.detect_s = 0.0
        self.facts = None  # stages.clips.SourceFacts
        self.again = 0  # clips cut from a second decode
        self.n_plans = 0  # the final shots' clip plans (the shots row's n_clips)
        self.wrong = 0  # clips cut from a shot the final pass does not have (deleted)

    def __call__(self) -> tuple[dict, list[dict]]:
        from stages.media import source_times
        from stages.shots import OnlineHybrid, SmallFrames, _result, check_coverage

        video = self.video
        row = {"video_id": video["video_id"], "detector": "hybrid", "fps": video.get("fps")}
        row.update(num_frames=video.get("num_frames"), scenes=[], error_type=None, error=None)
        try:
            self.times = source_times(video, self.index)
            detector = OnlineHybrid(self.shots_cfg)
            frames = SmallFrames(video["path"], (32, 18), "AREA", fast=False, index=self.index, frames=True)
            budget = max(0, int(self.cfg.one_pass_mb)) * 2**20
            for i, thumb, frame in frames:
                t = time.perf_counter()
                new = detector.push(thumb)
                self.detect_s += time.perf_counter() - t
                self.held.append((i, frame))
                self.held_bytes += _nbytes(frame)
                for b in new:
                    self._close_shot(b)
                if self.held_bytes > budget:  # the open shot outgrew the budget: it is cut from a second decode
                    self.held.clear()
                    self.held_bytes = 0
            t = time.perf_counter()
            found = _result(frames.path, frames.fps, frames.times, "hybrid", detector.finish())
            self.detect_s += time.perf_counter() - t
            check_coverage(found["scenes"], video["num_frames"])
            # scene times from the source's timestamps, unrounded, as the cut writes them (stages.clips.cut_video)
            row["scenes"] = [
                {"start_frame": a, "end_frame": b, "start_s": self.times[a], "end_s": self.times[b]}
                for a, b in ((sc["start_frame"], sc["end_frame"]) for sc in found["scenes"])
            ]
            clips = self._finish(row["scenes"])
        except Exception as e:  # errors are data: the video gets a shots row saying why, and no clip
            raise_if_environment(e, f"shots of {video.get('path')}")
            self._delete(self.cut.values())
            row.update(scenes=[], error_type=type(e).__name__, error=str(e)[:2000])
            clips = []
        finally:
            self.held.clear()
        row["n_shots"] = len(row["scenes"])
        row["detect_s"] = self.detect_s
        if not row["error_type"]:
            row["n_clips"] = self.n_plans
            if self.again:  # say so: a budget too small for the footage costs a decode per source
                _log.warning(
                    "one pass: %d of %d clips of %s were cut from a second decode (%s)", self.again,
                    sum(c.get("clip_path") is not None for c in clips), video["path"],
                    "their shots outgrew clips.one_pass_mb" if not self.wrong else
                    f"{self.wrong} clip(s) cut from shots the whole-video pass does not have were deleted",
                )  # fmt: skip
        return row, clips

    def _plans(self, scenes: list[dict], first_index: int = 0) -> list[dict]:
        from stages.clips import plan_clips

        plans = plan_clips(self.video, scenes, self.cfg, "hybrid", self.times)
        for p in plans:
            p["shot_index"] += first_index
        return plans

    def _cut(self, plans: list[dict], frames=None) -> None:
        from stages.clips import cut_clips, source_facts

        todo = [p for p in plans if p["clip_id"] not in self.stored]
        if not todo:
            return
        if self.facts is None:  # read once, when the first clip is cut (a file with no frame fails in the decode)
            self.facts = source_facts(self.video["path"], self.video)
        rows = cut_clips(
            self.video["path"], self.video, todo, self.out_dir, self.cfg, index=self.index, frames=frames,
            source=self.facts, **self.hooks,
        )  # fmt: skip
        self.cut.update((r["clip_id"], r) for r in rows)

    def _release(self, before: int) -> list:
        """Take the held frames before frame ``before`` out of the buffer."""
        out = []
        while self.held and self.held[0][0] < before:
            item = self.held.popleft()
            self.held_bytes -= _nbytes(item[1])
            out.append(item)
        return out

    def _close_shot(self, end: int) -> None:
        """The shot ``[shot_start, end)`` is final: cut its clips from the held frames when all of them are held
        (else :meth:`_finish` cuts them from a second decode) and release those frames."""
        a = self.shot_start
        scene = {"start_frame": a, "end_frame": end}
        plans = self._plans([scene], self.n_shots)
        whole = bool(self.held) and self.held[0][0] == a
        frames = self._release(end)
        if whole:
            self._cut(plans, iter(frames))
        del frames
        self.shot_start, self.n_shots = end, self.n_shots + 1

    def _finish(self, scenes: list[dict]) -> list[dict]:
        """Cut whatever the final shots still need; delete clips cut from a shot the final ones do not have;
        return the clip rows (plans not in skip_ids) in plan order."""
        plans = self._plans(scenes)
        self.n_plans = len(plans)
        wanted = {p["clip_id"] for p in plans}
        wrong = [r for cid, r in self.cut.items() if cid not in wanted]
        self._delete(wrong)
        for r in wrong:
            self.cut.pop(r["clip_id"])
        first_held = self.held[0][0] if self.held else None
        rest = [p for p in plans if p["clip_id"] not in self.cut]
        from_held = [p for p in rest if first_held is not None and p["start_frame"] >= first_held]
        if from_held:
            self._cut(from_held, iter(self._release(len(self.times))))
        held_ids = {p["clip_id"] for p in from_held}
        again = [p for p in rest if p["clip_id"] not in held_ids]
        if again:
            self._cut(again)
        self.again = sum(p["drop_reason"] is None and p["clip_id"] not in self.stored for p in again)
        self.wrong = sum(r.get("clip_path") is not None for r in wrong)
        out = []
        for p in plans:
            if p["clip_id"] in self.stored:
                continue
            r = self.cut.get(p["clip_id"])
            if r is None:  # a plan with a drop reason: returned as planned
                r = p
            r["shot_index"] = p["shot_index"]
            out.append(r)
        return out

    def _delete(self, rows) -> None:
        for r in list(rows):
            if r.get("clip_path"):
                try:
                    storage.remove(storage.under(storage.location(self.out_dir), r["clip_path"]))
                except FileNotFoundError:
                    pass
