"""CPU scores: motion, technical quality, burned-in text and a perceptual hash, from ONE decode per clip.

Every clip (kept or not) gets these scores; the filters (stages/filters.py) and dedup (stages/dedup.py)
only read them, so thresholds can be re-tuned later without decoding again.

What is sampled: ``num_samples`` *anchor* frames at the relative times (i + 0.5) / n of the clip, each with a
*partner* frame ``pair_gap_s`` later (the pair used for optical flow and for the frozen-frame test). Anchors and
partners are read in a single ``stages.frames.read_frames`` call at ``size`` px on the shorter side, and every
score below is computed from that one array:

- ``motion``: mean optical-flow magnitude (OpenCV DIS, or Farneback) over the flow pairs, in *fractions of the
  frame diagonal per second*. Dividing by the diagonal removes the resolution, dividing by the pair's real time
  gap removes the fps (the pair gap is a fixed time, not a fixed frame count, so 25 and 50 fps copies of one shot
  compare the same displacement).
- ``camera_pan`` / ``camera_tilt`` / ``camera_zoom`` / ``scene_motion``: that flow split into the camera's motion
  (a similarity transform fitted to it) and the rest, the scene's own motion (:func:`camera_motion`).
- ``frozen_frac``: fraction of flow pairs whose mean absolute luma difference is below ``frozen_diff`` grey
  levels: frozen video, slideshows, still images padded to video.
- ``sharpness``: variance of the Laplacian of the luma at the fixed analysis resolution, median over anchors.
- ``luma_mean`` (0..1), ``luma_under_frac`` / ``luma_over_frac`` (pixels below / above the black / white
  clip levels), ``black_frac``: fraction of anchors that are black or blank (almost uniform).
- ``text_area``: fraction of the frame area covered by text boxes from the PP-OCRv4 *detection* model shipped in
  rapidocr-onnxruntime (no recognition), max over ``text_frames`` anchors; area, not box count, so one large
  watermark counts more than a few tiny credits. ``subtitle_area``: the same for the boxes in the subtitle zone
  (bottom 30 %, middle 60 % of the width), median over those anchors: text that stays where subtitles sit, which a
  short line of them (~1 % of the frame) shows while scene text rarely does (:func:`subtitle_boxes`).
- ``phash``: one 64-bit DCT perceptual hash per anchor (stored as signed int64, two's complement of the hash),
  the dedup signature. Anchors sit at relative times, so a re-encoded / resized / retimed copy hashes the same
  moments. ``phash_mirror``: the same of the horizontally mirrored picture, so dedup finds mirrored copies.
- ``border_top`` / ``border_bottom`` / ``border_left`` / ``border_right``: letterbox / pillarbox bars (black or
  one constant colour, the same on every anchor) as fractions of the frame's height / width (:func:`active_box`).
  **Every score above is computed on the active picture inside them**: bars inflate the Laplacian variance (their
  sharp edge), add black pixels to the exposure, zero flow to the motion, and make a boxed copy hash unlike its
  source.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from stages import storage
from stages.errors import raise_if_environment
from stages.resources import thread_budget

# The columns this stage writes, in order (see SCORE_COLUMNS_SCHEMA in the report / pipeline/schema.py).
FLOAT_COLUMNS = (
    "motion",
    "frozen_frac",
    "sharpness",
    "focus",
    "luma_mean",
    "luma_under_frac",
    "luma_over_frac",
    "black_frac",
    "text_area",
    "subtitle_area",
)
# The `scores` table columns this stage writes (pipeline/schema.py mirrors this; docs/SCHEMA.md documents it).
SCORES_SCHEMA = pa.schema(
    [("clip_id", pa.string())]
    + [(c, pa.float32()) for c in FLOAT_COLUMNS]
    + [
        ("phash", pa.list_(pa.int64())),  # one 64-bit pHash per anchor frame, signed view of the unsigned bits
        ("phash_mirror", pa.list_(pa.int64())),  # the same, of the horizontally mirrored active picture
        ("camera_pan", pa.float32()),  # camera motion (camera_motion): diagonals / s, + = right
        ("camera_tilt", pa.float32()),  # diagonals / s, + = down
        ("camera_zoom", pa.float32()),  # log scale / s, + = in
        ("scene_motion", pa.float32()),  # flow left after the camera's, diagonals / s (~0: a still picture)
        # what differs between frames ~1 s apart once the camera's motion is undone, relative to the picture's
        # contrast: <= 0.04 for a still picture under a pan/zoom, >= 0.156 for real scenes (still_residual); null
        # under 0.5 s or with a still camera
        ("still_residual", pa.float32()),
        ("border_top", pa.float32()),  # letterbox / pillarbox bars, fractions of the frame height / width
        ("border_bottom", pa.float32()),
        ("border_left", pa.float32()),
        ("border_right", pa.float32()),
        ("frames_decoded", pa.int32()),  # frames returned by the clip's single read_frames call
        ("decoder", pa.string()),  # "decord", "pyav", or "pyav (fallback: why decord was not used or failed)"
        ("scores_s", pa.float32()),  # wall time of this clip's decode + scoring
        ("error_scores", pa.string()),  # "error_scores:<ExceptionType>: message" or null
    ]
)
OUTPUT_COLUMNS = tuple(SCORES_SCHEMA.names)


@dataclass
class CpuScoresConfig:
    """Settings of the CPU scorer. Defaults are what the default pipeline uses.

    root: dataset directory OUT; clip_path values are relative to it (None: clip_path is used as given).
    """

    root: str | None = None
    # 8 anchors x (anchor + flow partner) = 16 frames: enough for stable medians on clips of 2-10 s, cheap to decode.
    num_samples: int = 8
    # analysis resolution (shorter side, px). Sharpness depends on it, so it is fixed for the whole dataset.
    size: int = 224
    # time between the two frames of a flow pair; 1/12.5 s is 2 frames at 25 fps and 1 at 12.5 fps.
    pair_gap_s: float = 0.08
    # DIS "fast" preset: on real bikes.mp4 pairs it leaves 15-35 % less warp error than Farneback and, unlike
    # Farneback (which reads a 32 px shift as ~9 px), recovers large shifts exactly; 15 ms per 224 px pair.
    flow: str = "dis_fast"  # "dis_ultrafast" | "dis_fast" | "dis_medium" | "farneback"
    # mean |delta luma| (0..255) under which two frames count as identical: H.264 re-encodes of a repeated
    # frame differ by < 0.3 levels, a static tripod shot with sensor noise by ~1-3.
    frozen_diff: float = 0.5
    under_luma: float = 16 / 255  # studio-swing black; pixels below count as crushed
    over_luma: float = 250 / 255  # pixels above count as blown out
    black_luma: float = 0.06  # a frame with mean luma below this is black
    blank_std: float = 0.02  # ... or with luma std below this (uniform colour card)
    # letterbox / pillarbox bars (active_box): a bar row/column varies by at most border_range grey levels along
    # itself and across anchors, and is dark (mean <= border_dark) or, if brighter, constant within 2 levels
    border_range: int = 6
    border_dark: int = 40
    text_frames: int = 4  # anchors sent to the text detector (burned-in text persists over the clip)
    # shorter side the detector sees: 320 px finds caption lines >= ~2.5 % of the frame height (a small subtitle
    # font) at a quarter of the cost of RapidOCR's 736; higher also fires more on bokeh and foliage.
    text_det_side: int = 320
    det_model_path: str | None = None  # default: ch_PP-OCRv4_det_infer.onnx shipped in rapidocr-onnxruntime
    ocr_threads: int | None = None  # onnxruntime intra-op threads; None: the worker's thread budget (its CPUs), else 1
    backend: str = "auto"  # stages.frames.read_frames backend
    # Ray resources the pipeline applies to this stage
    num_cpus: float = 1.0
    batch_size: int = 8
    min_actors: int = 1  # actor pool: grows from min to max (None: the cluster's CPUs minus ray.headroom_cpus)
    max_actors: int | None = None


# --------------------------------------------------------------------------------------------------------------
# pure scoring functions (frames in, numbers out): unit-testable without video files


def to_luma(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, H, W) uint8 luma (BT.601, what cv2 uses)."""
    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def resize_short(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize frames (N, H, W[, C]) so the shorter side is ``size`` (no-op when it already is)."""
    h, w = frames.shape[1:3]
    if min(h, w) == size:
        return frames
    scale = size / min(h, w)
    dsize = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, dsize, interpolation=interp) for f in frames])


def motion_scores(
    first: np.ndarray,
    second: np.ndarray,
    gap_s: float,
    *,
    flow: str = "dis_fast",
    frozen_diff: float = 0.5,
    camera: dict[str, float] | None = None,
) -> tuple[float, float]:
    """Motion of flow pairs: (mean flow in frame diagonals per second, fraction of frozen pairs).

    first, second: (P, H, W) uint8 luma, pair i = (first[i], second[i]) taken ``gap_s`` seconds apart.
    ``camera``, when given, is filled with the split of that motion (:func:`camera_motion`, median over the pairs;
    a frozen pair counts as no motion): ``camera_pan``, ``camera_tilt``, ``camera_zoom``, ``scene_motion``.
    """
    if len(first) == 0 or gap_s <= 0:
        raise ValueError("motion needs at least one frame pair with a positive time gap")
    h, w = first.shape[1:3]
    diag = math.hypot(h, w)
    presets = {
        "dis_ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "dis_fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "dis_medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }
    if flow not in presets and flow != "farneback":
        raise ValueError(f"unknown flow method {flow!r}; use one of {sorted(presets)} or 'farneback'")
    dis = cv2.DISOpticalFlow_create(presets[flow]) if flow in presets else None
    mags, frozen, cams = [], 0, []
    for a, b in zip(first, second, strict=True):
        if float(np.mean(cv2.absdiff(a, b))) < frozen_diff:
            frozen += 1
            mags.append(0.0)
            cams.append(dict.fromkeys(CAMERA_COLUMNS, 0.0))
            continue
        if dis is not None:
            f = dis.calc(a, b, None)
        else:
            f = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mags.append(float(np.mean(np.linalg.norm(f, axis=-1))))
        if camera is not None:
            cams.append(camera_motion(f, gap_s))
    if camera is not None:
        camera.update({k: float(np.median([c[k] for c in cams])) for k in CAMERA_COLUMNS})
    return float(np.mean(mags)) / diag / gap_s, frozen / len(first)


CAMERA_COLUMNS = ("camera_pan", "camera_tilt", "camera_zoom", "scene_motion")


def fit_similarity(
    flow: np.ndarray, threshold: float, step: int = 6, margin: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The similarity transform (translation, rotation, uniform scale) that best explains an optical-flow field
    (H, W, 2): RANSAC (``cv2.estimateAffinePartial2D``, ``threshold`` px reprojection error) on a grid of flow vectors
    every ``step`` px, ``margin`` px in from the edges (DIS is unreliable there). Returns (grid points (K, 2), where
    the flow takes them (K, 2), the 2x3 matrix or None when the field is degenerate)."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[margin : max(margin + 1, h - margin) : step, margin : max(margin + 1, w - margin) : step]
    src = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    dst = src + flow[ys.ravel(), xs.ravel()]
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold)
    return src, dst, matrix


def camera_motion(flow: np.ndarray, gap_s: float, step: int = 6, margin: int = 8) -> dict[str, float]:
    """Split one optical-flow field (H, W, 2) into the camera's motion and what moves in the scene.

    The camera's part is the similarity transform (translation, rotation, uniform scale) that best explains the
    flow, fitted with RANSAC (``cv2.estimateAffinePartial2D``, 0.5 px reprojection threshold) on a grid of flow
    vectors every ``step`` px, ``margin`` px in from the edges (DIS is unreliable there): the global-motion model of
    video stabilisation and of camera-motion tags in video datasets. Returns, per second and in frame diagonals
    (like ``motion``): ``camera_pan`` / ``camera_tilt``, the direction the camera turns (the image centre's
    displacement, negated: content moving left means a pan right; positive = right / down), ``camera_zoom`` (log
    scale change per second, positive = zoom in), and ``scene_motion``, the mean flow left after removing the
    camera's part (parallax and moving objects). A still picture under a pan or zoom (the "Ken Burns" slideshow)
    has camera motion but scene_motion ~0: measured on stills from bikes, bigbuckbunny, carphone and
    transnet_test panned 1-3 % of the width per second or zoomed 1-4 %/s, 0.0007-0.0061; on 16 real shots of the
    same footage, 0.007 (bigbuckbunny's near-still opening) to 0.30.
    """
    h, w = flow.shape[:2]
    diag = math.hypot(h, w)
    src, dst, matrix = fit_similarity(flow, 0.5, step, margin)
    if matrix is None:  # too few points or a degenerate field: all of it counts as scene motion
        mag = float(np.mean(np.linalg.norm(dst - src, axis=1))) / diag / gap_s
        return {"camera_pan": 0.0, "camera_tilt": 0.0, "camera_zoom": 0.0, "scene_motion": mag}
    residual = np.linalg.norm(dst - (src @ matrix[:, :2].T + matrix[:, 2]), axis=1)
    centre = np.array([w / 2, h / 2], np.float64)
    shift = centre @ matrix[:, :2].T + matrix[:, 2] - centre
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    return {
        "camera_pan": float(-shift[0]) / diag / gap_s,
        "camera_tilt": float(-shift[1]) / diag / gap_s,
        "camera_zoom": math.log(max(scale, 1e-6)) / gap_s,
        "scene_motion": float(np.mean(residual)) / diag / gap_s,
    }


def still_residual(
    luma: np.ndarray,
    times_s: list[float],
    *,
    baseline_s: float = 1.0,
    min_baseline_s: float = 0.5,
    pairs: int = 3,
    blur_sigma: float = 1.5,
    min_camera: float = 0.004,
) -> float | None:
    """How much of the picture changes once the camera's motion is undone, over a long baseline: the test that
    tells a still picture under a pan or zoom (the "Ken Burns" slideshow) from a real scene.

    luma: (N, H, W) uint8 anchors at ``times_s`` (seconds). For up to ``pairs`` anchor pairs spread over the clip,
    each ~``baseline_s`` apart (at least ``min_baseline_s``): DIS optical flow from the first to the second, the
    similarity transform that explains it (RANSAC, ``cv2.estimateAffinePartial2D``, 1 px), the first frame warped
    onto the second, both blurred (Gaussian, ``blur_sigma`` px: interpolation and compression noise are
    high-frequency) and their mean absolute difference taken inside the warped frame (eroded 4 px), divided by the
    second frame's luma standard deviation there (the picture's contrast). Returns the median over the pairs: the
    part of the picture's contrast that the camera's motion does not explain. None when no two anchors are
    ``min_baseline_s`` apart, or when the camera does not move: the fitted transform shifts the picture's centre by
    less than ``min_camera`` of the diagonal and scales it by less than that (log), per pair, in most pairs. A still
    picture that the camera does not move is ``motion_static``'s case; a locked-off shot where only a small subject
    moves (a talking head) must not read as a still picture (a 1 %/s pan moves the centre ~0.009 of the diagonal in
    1 s).

    A still picture moved by a similarity is explained entirely; real shots leave parallax, moving objects and
    light changes (bench/motion_bench.py, bench/filters_bench.py): stills of the shipped footage panned 1-3 %/s or
    zoomed 1-4 %/s measured 0.005-0.040 (the highest on transnet_test's 90 px frames), real shots 0.156 and up, their
    night and high-key grades the same (in raw luma levels a grade halved the residual: 3.5 -> 2.0). A
    short-baseline residual (``scene_motion``, 0.08 s) separates the two far less (0.0055 against 0.007): what a
    still picture lacks shows over time. The global-motion model is the one of video
    stabilisation (Grundmann et al., "Auto-directed video stabilization with robust L1 optimal camera paths",
    CVPR 2011, similarity/affine between frames)."""
    n = len(luma)
    cands = []
    for i in range(n):
        later = [j for j in range(i + 1, n) if times_s[j] - times_s[i] >= min_baseline_s]
        if later:
            cands.append((i, min(later, key=lambda j: abs(times_s[j] - times_s[i] - baseline_s))))
    if not cands:
        return None
    pick = np.unique(np.linspace(0, len(cands) - 1, min(pairs, len(cands))).round().astype(int))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    kernel = np.ones((9, 9), np.uint8)
    values, moved = [], 0
    for k in pick:
        a, b = luma[cands[k][0]], luma[cands[k][1]]
        h, w = a.shape
        flow = dis.calc(a, b, None)
        matrix = fit_similarity(flow, 1.0)[2]
        if matrix is None:
            matrix = np.array([[1, 0, 0], [0, 1, 0]], np.float64)  # no global motion found: compare as they are
        centre = np.array([w / 2, h / 2])
        shift = np.linalg.norm(centre @ matrix[:, :2].T + matrix[:, 2] - centre) / math.hypot(h, w)
        moved += shift >= min_camera or abs(math.log(max(math.hypot(matrix[0, 0], matrix[1, 0]), 1e-6))) >= min_camera
        warped = cv2.warpAffine(a, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        inside = cv2.warpAffine(np.full_like(a, 255), matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        inside = cv2.erode(inside, kernel) > 0
        if not inside.any():
            values.append(255.0)  # the camera moved the whole picture away: nothing of it is still
            continue
        wb = cv2.GaussianBlur(warped, (0, 0), blur_sigma).astype(np.float32)
        bb = cv2.GaussianBlur(b, (0, 0), blur_sigma).astype(np.float32)
        # relative to the picture's own contrast, so a night or high-key grade of a shot scores as the shot does
        values.append(float(np.mean(np.abs(wb - bb)[inside])) / max(1.0, float(bb[inside].std())))
    if 2 * moved <= len(pick):
        return None  # the camera holds still: not a moved picture (motion_static judges a still one)
    return float(np.median(values))


def sharpness(luma: np.ndarray) -> float:
    """Median over frames of the variance of the Laplacian (luma at the analysis resolution)."""
    return float(np.median([cv2.Laplacian(f, cv2.CV_64F).var() for f in luma]))


def focus(luma: np.ndarray, *, tile: int = 32, min_std: float = 6.0, percentile: float = 90.0) -> float | None:
    """Focus of the best-focused part of the picture, independent of its contrast: the blur measure.

    luma: (N, H, W) uint8 at the analysis resolution. Per frame, the picture is split into ``tile`` px tiles; in each
    tile with some structure (luma std >= ``min_std``) the energy of the finest band (I - G1*I, Gaussian sigma 1 px)
    is divided by that of the next octave (G1*I - G2*I): a two-band estimate of the local spectral slope. Natural
    images in focus have about as much energy per octave at every scale (their 1/f spectrum) and keep a ratio near or
    above 1; defocus removes the finest band first. The ``percentile`` over tiles is the best-focused region (a
    shallow depth of field keeps its sharp subject), the median over frames the clip's value; None when no tile has
    structure (a blank clip). Being a ratio of energies, it does not change with exposure or contrast (night,
    high-key grades), unlike the Laplacian variance. The caller passes frames at the analysis size or, when the
    active picture is smaller, at its own size: upsampling empties the finest band (every window of the 160x90
    transnet_test read 0.42-0.56 at 224 px, 1.2-1.7 at its own size).

    The local spectral slope and the max-over-blocks pooling follow Vu & Chandler, "S3: A spectral and spatial
    measure of local perceived sharpness in natural images", IEEE TIP 21(3), 2012. Measured (bench/filters_bench.py,
    analysis at 224 px): Gaussian defocus of sigma 2.0-2.5 px at 640x360 0.38-0.54; clean shots and their shallow
    depth-of-field, night, high-key, grain and letterbox variants 0.71-5.5.
    """
    values = []
    for f in luma:
        x = f.astype(np.float32)
        g1 = cv2.GaussianBlur(x, (0, 0), 1.0)
        g2 = cv2.GaussianBlur(x, (0, 0), 2.0)
        fine, mid = x - g1, g1 - g2
        h, w = x.shape
        ratios = []
        for y0 in range(0, h - tile + 1, tile):
            for x0 in range(0, w - tile + 1, tile):
                if x[y0 : y0 + tile, x0 : x0 + tile].std() < min_std:
                    continue
                e1 = float(fine[y0 : y0 + tile, x0 : x0 + tile].var())
                e2 = float(mid[y0 : y0 + tile, x0 : x0 + tile].var())
                ratios.append(e1 / (e2 + 1e-3))
        if ratios:
            values.append(float(np.percentile(ratios, percentile)))
    return float(np.median(values)) if values else None


def exposure_scores(
    luma: np.ndarray,
    *,
    under_luma: float = 16 / 255,
    over_luma: float = 250 / 255,
    black_luma: float = 0.06,
    blank_std: float = 0.02,
) -> dict[str, float]:
    """Exposure of (N, H, W) uint8 luma: mean luma, crushed / blown pixel fractions, black-or-blank frame fraction."""
    y = luma.astype(np.float32) / 255.0
    per_mean = y.mean(axis=(1, 2))
    per_std = y.std(axis=(1, 2))
    return {
        "luma_mean": float(per_mean.mean()),
        "luma_under_frac": float((y < under_luma).mean()),
        "luma_over_frac": float((y > over_luma).mean()),
        "black_frac": float(((per_mean < black_luma) | (per_std < blank_std)).mean()),
    }


def active_box(
    luma: np.ndarray, *, max_range: int = 6, dark: int = 40, min_active: float = 0.5
) -> tuple[int, int, int, int]:
    """Letterbox / pillarbox bars of a clip: (top, bottom, left, right) in pixels of ``luma`` (N, H, W) uint8.

    A bar is a run of rows (columns) from an edge inward in which every line is flat (its luma varies by at most
    ``max_range`` levels along the line and across the N anchors) and either dark (mean <= ``dark``: black bars,
    whatever their encoder noise) or constant within 2 levels (a coloured matte). Bars must come in pairs, as
    letterboxing and pillarboxing make them: both the top and bottom (or left and right) bars are found, each
    at least 1 % of the side, neither more than twice the other plus 2 % of the side; otherwise that axis has none
    (a dark sky or a crushed floor is one-sided and uneven, and is not cropped). The active picture keeps at least
    ``min_active`` of each side. A frame uniform everywhere has no bars (the exposure scores judge it). Same idea as
    FFmpeg's ``cropdetect`` filter (black lines from each edge), made two-sided and checked over the whole clip.
    """
    lo, hi = luma.min(axis=0).astype(np.int16), luma.max(axis=0).astype(np.int16)  # (H, W) over anchors
    mean = luma.mean(axis=0)

    def flat(lo_lines: np.ndarray, hi_lines: np.ndarray, mean_lines: np.ndarray) -> np.ndarray:
        spread = hi_lines.max(axis=1) - lo_lines.min(axis=1)
        m = mean_lines.mean(axis=1)
        return (spread <= max_range) & ((m <= dark) | (spread <= 2))

    def run(is_bar: np.ndarray) -> int:
        n = 0
        while n < len(is_bar) and is_bar[n]:
            n += 1
        return n

    def pair(is_bar: np.ndarray) -> tuple[int, int]:
        size = len(is_bar)
        a, b = run(is_bar), run(is_bar[::-1])
        if a >= size or size - a - b < min_active * size:
            return 0, 0
        if min(a, b) < 0.01 * size or max(a, b) > 2 * min(a, b) + 0.02 * size:
            return 0, 0
        return a, b

    rows = flat(lo, hi, mean)
    cols = flat(lo.T, hi.T, mean.T)
    top, bottom = pair(rows)
    left, right = pair(cols)
    return top, bottom, left, right


def crop_box(frames: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``frames`` (N, H, W[, C]) inside ``box`` = (top, bottom, left, right) bars in pixels."""
    top, bottom, left, right = box
    if not any(box):
        return frames
    h, w = frames.shape[1:3]
    return np.ascontiguousarray(frames[:, top : h - bottom, left : w - right])  # OpenCV wants contiguous rows


def phash64(luma: np.ndarray) -> int:
    """64-bit DCT perceptual hash of one luma frame, as a signed int64 (same bits as the unsigned hash).

    Same recipe as imagehash.phash: 32x32 area-resized grey, 2-D DCT, the 8x8 lowest frequencies against their
    median. Robust to re-encoding, resizing and small crops; changes with content.
    """
    small = cv2.resize(luma, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8]
    bits = (low > np.median(low)).flatten()
    value = int(np.packbits(bits).view(">u8")[0])
    return value - (1 << 64) if value >= 1 << 63 else value


class TextDetector:
    """The PP-OCRv4 text DETECTION model shipped in rapidocr-onnxruntime, run alone (no recognition).

    Uses the package's own ``TextDetector`` (DB pre/post-processing + onnxruntime session) with the package's
    config.yaml ``Det`` section, so thresholds match RapidOCR's defaults.
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        det_side: int = 320,
        threads: int = 1,
        min_aspect: float = 2.0,
        max_line_height: float = 0.2,
    ):
        import rapidocr_onnxruntime
        import yaml
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector as _RapidDet

        pkg = Path(rapidocr_onnxruntime.__file__).parent
        cfg = yaml.safe_load((pkg / "config.yaml").read_text())["Det"]
        cfg["model_path"] = str(model_path or pkg / cfg["model_path"])
        if not Path(cfg["model_path"]).is_file():
            raise FileNotFoundError(
                f"PP-OCR detection model not found at {cfg['model_path']}; it ships in rapidocr-onnxruntime "
                "(pip install rapidocr-onnxruntime) or set det_model_path to a ch_PP-OCR*_det_infer.onnx file"
            )
        # "min" + det_side: the detector always sees det_side px on the shorter side, whatever the frame size,
        # so small subtitles are found in small frames and large frames are not upscaled to 736 (the default).
        cfg.update(limit_type="min", limit_side_len=det_side, intra_op_num_threads=threads, inter_op_num_threads=1)
        self.model_path = cfg["model_path"]
        self.min_aspect, self.max_line_height = min_aspect, max_line_height
        self._det = _RapidDet(cfg)

    def boxes(self, rgb: np.ndarray) -> np.ndarray:
        """Text-line boxes (K, 4, 2) int32 in the frame's pixel coordinates.

        Runs the package detector's own pre-process / onnx session / DB post-process (box_thresh etc. from its
        config.yaml), then keeps only boxes shaped like horizontal text lines (width >= min_aspect x height,
        height <= max_line_height x the shorter frame side): DB also fires on bokeh highlights and faces (measured
        on bikes.mp4 and transnet_test), whose boxes are near-square or upright. Vertical CJK text is not counted.
        """
        h, w = rgb.shape[:2]
        pre = self._det.get_preprocess(max(h, w))(np.ascontiguousarray(rgb[..., ::-1]))  # PP-OCR expects BGR
        if pre is None:
            return np.zeros((0, 4, 2), np.int32)
        boxes, _ = self._det.postprocess_op(self._det.infer(pre)[0], (h, w))
        keep = []
        for box in boxes:
            bw, bh = np.ptp(box[:, 0]), np.ptp(box[:, 1])
            # Horizontal lines only. Measured false positives (bokeh on bikes, faces on transnet_test, the bunny's
            # ears in a CRF-28 bigbuckbunny) had aspect 0.7-1.5 or heights 0.25-0.44 of the frame; burned-in
            # subtitles / logos had aspect 4.7-17 and height ~0.1.
            if bh > 0 and bw / bh >= self.min_aspect and bh <= self.max_line_height * min(h, w):
                keep.append(box)
        return np.array(keep, np.int32).reshape(-1, 4, 2)

    def area_fraction(self, rgb: np.ndarray) -> float:
        """Fraction of the frame covered by the union of detected text boxes (overlaps counted once)."""
        return box_area(self.boxes(rgb), rgb.shape[:2])


def box_area(boxes: np.ndarray, shape: tuple[int, int]) -> float:
    """Fraction of an (H, W) frame covered by the union of quadrilaterals ``boxes`` (K, 4, 2), overlaps once."""
    if len(boxes) == 0:
        return 0.0
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, list(boxes), 1)
    return float(mask.mean())


def subtitle_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The text boxes where subtitles sit: centred in the bottom 30 % of the frame and in its middle 60 %
    horizontally (the placement of broadcast and web subtitles: EBU-TT-D / Netflix timed-text style guides put them
    bottom-centre)."""
    h, w = shape
    if len(boxes) == 0:
        return boxes
    centre = boxes.reshape(-1, 4, 2).mean(axis=1)
    keep = (centre[:, 1] >= 0.7 * h) & (centre[:, 0] >= 0.2 * w) & (centre[:, 0] <= 0.8 * w)
    return boxes[keep]


def sample_plan(num_frames: int, fps: float, num_samples: int, pair_gap_s: float) -> tuple[list[int], list[int]]:
    """Anchor and flow-partner frame indices: anchors at relative times (i + 0.5) / n, partners gap frames later.

    The gap is ``round(fps * pair_gap_s)`` frames (>= 1); anchors near the end move back so their partner exists.
    A one-frame clip has no partner (empty partner list).
    """
    if num_frames < 1:
        raise ValueError(f"clip has no frames (num_frames={num_frames})")
    gap = max(1, round(fps * pair_gap_s))
    n = min(num_samples, num_frames)
    anchors = [min(int((i + 0.5) * num_frames / n), num_frames - 1) for i in range(n)]
    if num_frames <= gap:
        return anchors, []
    anchors = [min(a, num_frames - 1 - gap) for a in anchors]
    return anchors, [a + gap for a in anchors]


def score_frames(
    anchors: np.ndarray,
    partners: np.ndarray | None,
    gap_s: float,
    cfg: CpuScoresConfig,
    detector: TextDetector | None,
    anchor_s: list[float] | None = None,
) -> dict[str, Any]:
    """All CPU scores from already-decoded frames (RGB uint8): anchors (N, H, W, 3), partners (N, H, W, 3) or None.
    ``anchor_s``: the anchors' times in seconds (``still_residual`` is None without them).

    The letterbox / pillarbox bars (:func:`active_box`, found on the anchors at up to twice the analysis resolution)
    are cut first, then the active picture is brought to the analysis resolution (``size`` px on its shorter side),
    so scores depend neither on the decode size nor on the bars. Motion and frozen_frac are None when there are no
    partners (a clip shorter than the pair gap).
    """
    h, w = anchors.shape[1:3]
    probe = to_luma(anchors if min(h, w) <= 2 * cfg.size else resize_short(anchors, 2 * cfg.size))
    ph, pw = probe.shape[1:3]
    bars = active_box(probe, max_range=cfg.border_range, dark=cfg.border_dark)
    out: dict[str, Any] = {"motion": None, "frozen_frac": None}
    out.update(border_top=bars[0] / ph, border_bottom=bars[1] / ph)
    out.update(border_left=bars[2] / pw, border_right=bars[3] / pw)
    # cut a little more than the bars: the encoder rings along the bar's edge (a block straddles it), and a sliver
    # of bar edge left in the picture would dominate the Laplacian
    margin = [0 if b == 0 else b + 2 + math.ceil(0.01 * side) for b, side in zip(bars, (ph, ph, pw, pw), strict=True)]
    box = tuple(round(m * s) for m, s in zip(margin, (h / ph, h / ph, w / pw, w / pw), strict=True))
    active = crop_box(anchors, box)
    anchors = resize_short(active, cfg.size)
    luma = to_luma(anchors)
    # focus never on an upsampled picture: upsampling empties the finest band, so a sharp 90 px source would read as
    # defocused at 224 px; a picture smaller than the analysis size is judged at its own size
    focus_luma = luma if min(active.shape[1:3]) >= cfg.size else to_luma(active)
    if partners is not None and len(partners):
        camera: dict[str, float] = {}
        out["motion"], out["frozen_frac"] = motion_scores(
            luma,
            to_luma(resize_short(crop_box(partners, box), cfg.size)),
            gap_s,
            flow=cfg.flow,
            frozen_diff=cfg.frozen_diff,
            camera=camera,
        )
        out.update(camera)
    out["still_residual"] = still_residual(luma, anchor_s) if anchor_s is not None else None
    out["sharpness"] = sharpness(luma)
    out["focus"] = focus(focus_luma)
    out.update(
        exposure_scores(
            luma,
            under_luma=cfg.under_luma,
            over_luma=cfg.over_luma,
            black_luma=cfg.black_luma,
            blank_std=cfg.blank_std,
        )
    )
    if detector is not None:
        pick = np.unique(np.linspace(0, len(anchors) - 1, min(cfg.text_frames, len(anchors))).round().astype(int))
        found = [(detector.boxes(anchors[i]), anchors[i].shape[:2]) for i in pick]
        out["text_area"] = max(box_area(b, shape) for b, shape in found)
        # persistent bottom-centre text: in at least half the sampled frames (the median), wherever scene text is
        out["subtitle_area"] = float(np.median([box_area(subtitle_boxes(b, shape), shape) for b, shape in found]))
    else:
        out["text_area"] = out["subtitle_area"] = None
    out["phash"] = [phash64(f) for f in luma]
    out["phash_mirror"] = [phash64(np.ascontiguousarray(f[:, ::-1])) for f in luma]
    return out


# --------------------------------------------------------------------------------------------------------------
# the Ray stage


def _num(batch: dict[str, np.ndarray], name: str, i: int) -> float | None:
    if name not in batch:
        return None
    v = batch[name][i]
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


class CpuScorer:
    """Decodes each clip once (anchors + flow partners, low resolution) and computes every CPU score from it.

    Reads: clip_id, clip_path (relative to OUT), and when present num_frames, fps (else probed from the file)
    Writes: motion, frozen_frac, sharpness, luma_mean, luma_under_frac, luma_over_frac, black_frac, text_area,
            phash, phash_mirror (list<int64>), border_top/bottom/left/right, frames_decoded,
            decoder (which decoder read it: a fallback leaves a trace), scores_s,
            error_scores
    Reasons: none (scores only; stages/filters.py turns them into drop reasons)

    A clip that fails (missing file, undecodable, ...) gets ``error_scores = "error_scores:<Type>: message"`` and
    null scores, never zeros. A row without clip_path (not cut upstream) gets null scores and no error.
    """

    def __init__(self, cfg: CpuScoresConfig | None = None, root: str | os.PathLike | None = None):
        self.cfg = cfg or CpuScoresConfig()
        root = root if root is not None else self.cfg.root
        self.root = storage.location(root) if root is not None else None  # local directory or bucket prefix
        # The OCR session is the only model here: load it once per actor.
        threads = self.cfg.ocr_threads or thread_budget() or 1
        self.detector = TextDetector(self.cfg.det_model_path, det_side=self.cfg.text_det_side, threads=threads)

    def score_clip(self, path: str | os.PathLike, num_frames: int | None = None, fps: float | None = None) -> dict:
        """Scores of one clip file, plus frames_decoded (frames returned by the single read_frames call)."""
        from stages.frames import read_frames, video_meta

        if not num_frames or not fps:
            meta = video_meta(path)
            num_frames, fps = int(meta["num_frames"]), float(meta["fps"])
        anchors, partners = sample_plan(int(num_frames), float(fps), self.cfg.num_samples, self.cfg.pair_gap_s)
        wanted = sorted(set(anchors) | set(partners))
        report: dict = {}
        # at the display size: the bars are cut before the frames are brought to the analysis size (score_frames)
        frames = read_frames(path, wanted, backend=self.cfg.backend, report=report)
        if len(frames) != len(wanted):
            raise RuntimeError(f"read_frames returned {len(frames)} frames for {len(wanted)} indices")
        pos = {idx: k for k, idx in enumerate(wanted)}
        a = frames[[pos[i] for i in anchors]]
        p = frames[[pos[i] for i in partners]] if partners else None
        gap_s = (partners[0] - anchors[0]) / fps if partners else 0.0
        out = score_frames(a, p, gap_s, self.cfg, self.detector, anchor_s=[i / fps for i in anchors])
        out["frames_decoded"] = len(frames)
        out["decoder"] = report["decoder"] + (f" (fallback: {report['fallback']})" if report.get("fallback") else "")
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Score a batch; returns a pyarrow Table with exactly SCORES_SCHEMA.

        A typed table, not a dict of numpy arrays: a batch where every clip failed would otherwise give Ray
        all-None object columns that Arrow types as ``null``, and blocks of different types. Here a missing
        score is a real null of the right type, never NaN or 0.
        """
        import time

        n = len(batch["clip_id"])
        rows: list[dict[str, Any]] = []
        for i in range(n):
            t0 = time.perf_counter()
            rel = batch["clip_path"][i] if "clip_path" in batch else None
            row: dict[str, Any] = {}
            if rel is not None and not (isinstance(rel, float) and math.isnan(rel)):
                path = storage.under(self.root, str(rel))
                nf = _num(batch, "num_frames", i)
                try:
                    row = self.score_clip(path, int(nf) if nf else None, _num(batch, "fps", i))
                except Exception as e:  # errors are data: one bad clip must not stop the run
                    raise_if_environment(e, f"CPU scores of {path}")
                    msg = str(e).replace("\n", " ")[:500]
                    row = {"error_scores": f"error_scores:{type(e).__name__}: {msg}"}
            row["clip_id"] = str(batch["clip_id"][i])
            row["scores_s"] = time.perf_counter() - t0
            row.setdefault("frames_decoded", 0)
            rows.append(row)
        return pa.Table.from_pylist(rows, schema=SCORES_SCHEMA)


def _stage():
    from stages.catalogue import Rule, Stage
    from stages.filters import (
        ERROR_SCORES,
        MOTION_JITTER,
        MOTION_STATIC,
        MOTION_STILL_IMAGE,
        QUALITY_BLACK,
        QUALITY_BLURRY,
        QUALITY_DARK,
        QUALITY_OVEREXPOSED,
        TEXT_BURNED_IN,
    )

    # order matters, first failing wins; why this order: stages/filters.py
    rules = (
        Rule(ERROR_SCORES, "error_scores", "notnull"),
        Rule(QUALITY_BLACK, "black_frac", ">", "filters.max_black_frac"),
        Rule(QUALITY_DARK, "luma_mean", "<", "filters.min_luma_mean"),
        Rule(QUALITY_DARK, "luma_under_frac", ">", "filters.max_under_frac"),
        Rule(QUALITY_OVEREXPOSED, "luma_mean", ">", "filters.max_luma_mean"),
        Rule(QUALITY_OVEREXPOSED, "luma_over_frac", ">", "filters.max_over_frac"),
        Rule(QUALITY_BLURRY, "focus", "<", "filters.min_focus"),
        Rule(QUALITY_BLURRY, "sharpness", "<", "filters.min_sharpness"),
        Rule(MOTION_STATIC, "frozen_frac", ">", "filters.max_frozen_frac"),
        Rule(MOTION_STATIC, "motion", "<", "filters.min_motion"),
        Rule(MOTION_STILL_IMAGE, "still_residual", "<", "filters.min_still_residual"),
        Rule(MOTION_JITTER, "motion", ">", "filters.max_motion"),
        Rule(TEXT_BURNED_IN, "text_area", ">", "filters.max_text_area"),
        Rule(TEXT_BURNED_IN, "subtitle_area", ">", "filters.max_subtitle_area"),
    )
    return Stage(
        name="scores",
        stage="stages.cpu_scores:CpuScorer",
        config="stages.cpu_scores:CpuScoresConfig",
        schema="stages.cpu_scores:SCORES_SCHEMA",
        rules=rules,
    )


STAGE = _stage()  # the catalogue entry (stages/catalogue.py); its thresholds live in the filters section
