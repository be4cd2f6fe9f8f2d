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
- ``frozen_frac``: fraction of flow pairs that are the same picture, their change (:func:`pair_change`) under
  ``frozen_change`` grey levels: frozen video, slideshows, still images padded to video. ``pair_change``: the median
  over the pairs of that change (schema 19; before it a pair was frozen when its *mean* change was under 0.5 levels,
  which a locked-off shot whose subject is small and darkened reads).
- ``sharpness``: variance of the Laplacian of the luma at the fixed analysis resolution, median over anchors.
- ``focus`` / ``detail`` / ``isotropy`` / ``streak``: blur (:func:`blur_scores`): defocus (above the noise floor, so
  grain does not read as sharpness), blur too heavy for focus, and motion blur (the finest detail missing along one
  direction only, and what is left along it spread over a few pixels: camera shake, a smear). ``noise_floor``: the
  floor focus subtracted (grey levels).
- ``luma_mean`` (0..1), ``luma_highlight`` (0..1: the 99.9th percentile of luma, the level of the clip's highlights,
  which tells a night or low-key look, whose lights and lit edges stay bright, from an underexposed clip, where no
  level reaches above the gain it was darkened by), ``luma_under_frac`` / ``luma_over_frac`` (pixels below / above
  the black / white clip levels), ``black_frac``: fraction of anchors that are black or blank (almost uniform).
- ``text_area``: fraction of the frame area covered by text boxes from the PP-OCRv4 *detection* model shipped in
  rapidocr-onnxruntime (no recognition), the second largest over ``text_frames`` anchors (text found in at least two
  of them: burned-in text persists, a detection in one frame only is the detector firing on that picture); area, not
  box count, so one large watermark counts more than a few tiny credits. ``subtitle_area``: the same for the boxes
  in the subtitle zone (bottom 30 %, middle 60 % of the width), median over those anchors: text that stays where
  subtitles sit, which a short line of them (~1 % of the frame) shows while scene text rarely does
  (:func:`subtitle_boxes`).
- ``overlay_area`` / ``overlay_box`` / ``overlay_persistence``: persistent overlay graphics (channel logos,
  watermarks, tickers, subtitles) found by what they are, patterns that stay put in the picture while the camera moves
  the scene around them, or text boxes at the same place in every OCR frame, in the top or bottom third
  (:func:`overlay_scores`); null when it cannot be told (a locked-off shot without such text).
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
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from stages import storage
from stages.errors import raise_if_environment
from stages.resources import thread_budget
from stages.settings import Settings

# The columns this stage writes, in order (see SCORE_COLUMNS_SCHEMA in the report / pipeline/schema.py).
FLOAT_COLUMNS = (
    "motion",
    "frozen_frac",
    "pair_change",
    "sharpness",
    "focus",
    "detail",
    "noise_floor",
    "isotropy",
    "streak",
    "cepstrum_dip",
    "luma_mean",
    "luma_highlight",
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
        # contrast: <= 0.04 for a still picture under a pan/zoom, >= 0.16 for real scenes (still_residual); null
        # under 0.5 s or with a still camera
        ("still_residual", pa.float32()),
        # how far the picture's parts move against each other over that ~1 s once the camera's motion is undone:
        # the 90th percentile of the residual optical flow, frame diagonals (schema 15; still_scores): <= 0.003 for a
        # still picture, parallax and moving subjects more; null with still_residual
        ("residual_flow", pa.float32()),
        # persistent overlay graphics (overlay_scores): area (fraction of the active picture) of the boxes of what
        # stays fixed in the picture while the scene moves, their union box [x0, y0, x1, y1] (fractions of width /
        # height), the share of observations in which it stayed put; all null when it cannot be told (locked-off
        # camera and no persistent text box), area 0 when the camera moved and nothing stayed put
        ("overlay_area", pa.float32()),
        ("overlay_box", pa.list_(pa.float32())),
        ("overlay_persistence", pa.float32()),
        # the picture planes the overlay test's gradients were taken of: "Y,R-Y,B-Y" (schema 20 on,
        # scores.overlay_colour: the colour differences in RGB levels, colour_planes), "YCrCb" (schemas 11-19: Cr and
        # Cb as coded, scored again by a run) or "luma"; null in rows of earlier schemas (luma) and without scores
        ("overlay_planes", pa.string()),
        # true: the overlay test also looked for a layer fixed in the frame under the moving scene (schema 12 on,
        # overlay_scores' last look); null in rows of earlier schemas and in rows without scores
        ("overlay_layers", pa.bool_()),
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
# (a score, one added later, the schema that added it): a stored row with the first and without the second was
# written before the second existed, and the run scores that clip again (pipeline/stream.py); `clipforge refilter`
# warns of such rows. Each second column is set wherever its first is:
# - overlay_layers (schema 12, when the overlay test began to look for a fixed layer under a moving scene: a row
#   without it may have missed a faint logo over texture) wherever focus is, so every row of schema 5-11 is caught
#   (schema 11 looked in colour, schema 10 added noise_floor and changed focus's and detail's scale: those rows are
#   caught too);
# - residual_flow (schema 15: the still-picture rule reads it with still_residual; a row without it would never be
#   judged a still picture) wherever still_residual is;
# - cepstrum_dip (schema 17: the motion-blur rule reads it with streak under filters.max_streak_alone; a row without
#   it would be judged by the strong-streak rule alone) wherever streak is.
SUPERSEDED = (
    ("focus", "overlay_layers", "12"),
    ("still_residual", "residual_flow", "15"),
    ("streak", "cepstrum_dip", "17"),
    ("luma_mean", "luma_highlight", "18"),
    ("frozen_frac", "pair_change", "19"),
)
# (a column, a value it held, the schema that replaced what wrote it): a stored row holding that value was scored by
# what that schema replaced, and the run scores that clip again too:
# - overlay_planes "YCrCb" (schema 20: the overlay test's chroma planes as colour differences in RGB levels,
#   :func:`colour_planes`; a row with it may have missed a logo in a channel's colour, a red one over a dark street).
SUPERSEDED_VALUES = (("overlay_planes", "YCrCb", "20"),)


def superseded_terms(qualifier: str = "", columns: Collection[str] | None = None) -> list[tuple[str, str, str]]:
    """(what the row lacks or holds, as said to the user: "without `pair_change`", "with overlay_planes 'YCrCb'";
    the schema; SQL predicate) per :data:`SUPERSEDED` pair whose first column the table has and per
    :data:`SUPERSEDED_VALUES` entry whose column it has: the predicate is true for a stored scores row written before
    that schema, its columns named after ``qualifier`` (e.g. ``'t_scores.'``). ``columns``: the stored table's
    columns, when it may lack some (a table written before a column was added: every row with the first is then such
    a row; one without the first has none); None: every column is there (missing ones read as null)."""
    terms = []
    for had, added, schema in SUPERSEDED:
        if columns is not None and had not in columns:
            continue
        missing = f'{qualifier}"{added}" IS NULL' if columns is None or added in columns else "TRUE"
        terms.append((f"without `{added}`", schema, f'({qualifier}"{had}" IS NOT NULL AND {missing})'))
    for column, value, schema in SUPERSEDED_VALUES:
        if columns is not None and column not in columns:
            continue
        terms.append((f"with {column} '{value}'", schema, f"({qualifier}\"{column}\" = '{value}')"))
    return terms


def superseded_sql(qualifier: str = "", columns: Collection[str] | None = None) -> str:
    """SQL predicate true for a stored scores row written before one of :data:`SUPERSEDED`'s second columns existed
    (:func:`superseded_terms`, OR-ed)."""
    return " OR ".join(sql for _, _, sql in superseded_terms(qualifier, columns)) or "FALSE"


@dataclass
class CpuScoresConfig(Settings):
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
    # change (pair_change: grey levels 0..255, the most-changed 1 % of the picture) under which the two frames of a
    # flow pair are the same picture (schema 19): H.264 re-encodes of a repeated frame read <= 0.96 (CRF 18-45, at
    # gain 1 and 0.3, bikes / carphone / bigbuckbunny), a locked-off shot whose only motion is a small subject 1.7 and
    # up darkened to 0.3 (5-70 undarkened); before schema 19 the mean change under 0.5, which that darkened shot read
    # (0.21-0.33) as frozen and dropped as motion_static. docs/PERFORMANCE.md.
    frozen_change: float = 1.25
    under_luma: float = 16 / 255  # studio-swing black; pixels below count as crushed
    over_luma: float = 250 / 255  # pixels above count as blown out
    # a frame is black when black_ratio of its pixels are darker than black_luma (FFmpeg's blackdetect filter:
    # pixel_black_th 0.10, picture_black_ratio_th 0.98; schema 18, before it a mean luma under 0.06, which a night
    # grade's frames read while their lit edges stay bright)
    black_luma: float = 0.10
    black_ratio: float = 0.98
    blank_std: float = 0.02  # ... or with luma std below this (uniform colour card)
    # letterbox / pillarbox bars (active_box): a bar row/column varies by at most border_range grey levels along
    # itself and across anchors, and is dark (mean <= border_dark) or, if brighter, constant within 2 levels
    border_range: int = 6
    border_dark: int = 40
    # the overlay test (overlay_scores) on the Y, Cr and Cb planes, the colour differences in RGB levels since schema
    # 20 (colour_planes): a coloured logo can match its background's luma (bench/logo_styles_bench.py: 33/40 logos of
    # every form and colour found on luma alone, 37/40 in colour, no clean window flagged either way; the scorer
    # 10-15 % slower). False: luma alone, as before schema 11.
    overlay_colour: bool = True
    # the overlay test's look for a layer fixed in the frame under the moving scene (overlay_scores' last look: a faint
    # logo over moving texture; docs/PERFORMANCE.md gives what it finds and costs). False: as before schema 12.
    overlay_layers: bool = True
    # the corners' closer look also where the motion test judged the corners and found nothing (in the colour
    # differences Cr and Cb, at 320 px: a faint coloured logo over a moving shot; overlay_scores' ``corner_always``).
    # False: only where it could not judge them, as before 2026-12-05.
    overlay_corner_always: bool = True
    # the corners' closer look reads the colour differences Cr and Cb (CHROMA_VIEWS) besides the lightness and the
    # whiteness: a logo in a colour of its own whose lightness matches the picture under it. False: lightness and
    # whiteness only, and no look where the motion test judged the corners (it reads Cr and Cb alone), as before
    # 2026-12-05: bench/scores_bench.py's ``corner_look`` measures the two (the scorer 1.26x slower with them).
    overlay_corner_colour: bool = True
    # focus, detail and noise_floor leave out the tiles of the overlays found and of burned-in subtitle lines: a logo's
    # strokes over a defocused shot read sharp (bench/overlay_blur_bench.py). False: they count, as before 2026-12-04.
    blur_without_overlays: bool = True
    text_frames: int = 4  # anchors sent to the text detector (burned-in text persists over the clip)
    # shorter side the detector sees (the 224 px anchors upscaled to it): 256 px finds caption lines >= ~2.5-3 % of
    # the frame height (bigbuckbunny's 2.5 %-high scene sign) at half the cost of 320 (0.043 against 0.09 s a frame,
    # 2026-12-01) and a fraction of RapidOCR's 736; on the hard set (bench/filters_bench.py) 224, 256 and 320 give
    # the same drop reasons for every clip (224 loses the small sign; the corners' closer look has its own side,
    # CORNER_DET_SIDE); higher also fires more on bokeh and foliage.
    text_det_side: int = 256
    det_model_path: str | None = None  # default: ch_PP-OCRv4_det_infer.onnx shipped in rapidocr-onnxruntime
    rec_model_path: str | None = None  # default: ch_PP-OCRv4_rec_infer.onnx shipped in rapidocr-onnxruntime
    ocr_threads: int | None = None  # onnxruntime intra-op threads; None: the worker's thread budget (its CPUs), else 1
    backend: str = "auto"  # stages.frames.read_frames backend
    # score each clip the run cuts in the cut task, from the frames the cutter hands its encoder: no decode of the
    # written clip (it would nearly double the scorer's time, docs/PERFORMANCE.md); a clip cut by an earlier run gets
    # the same frames re-made from its source. False: every clip scored from its file, one libx264 generation later
    # (the scores differ, docs/SCHEMA.md), on an actor pool of its own (the resources below).
    at_cut: bool = True
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
    frozen_change: float = 1.25,
    camera: dict[str, float] | None = None,
    changes: list[float] | None = None,
) -> tuple[float, float]:
    """Motion of flow pairs: (mean flow in frame diagonals per second, fraction of frozen pairs: those whose
    :func:`pair_change` is under ``frozen_change`` grey levels; ``changes``, when given, is extended with each pair's).

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
        change = pair_change(a, b)
        if changes is not None:
            changes.append(change)
        if change < frozen_change:
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


def pair_change(a: np.ndarray, b: np.ndarray, window: int = 5, pct: float = 99.0) -> float:
    """How much two (H, W) uint8 luma frames differ where they differ most: the ``pct`` percentile of their absolute
    difference averaged over ``window`` x ``window`` px (grey levels, 0..255). The average takes out the codec's
    per-pixel noise, the percentile keeps a subject that moves over 1 % of the picture, however still the rest is: a
    locked-off shot whose only motion is a small subject changes little on *average* (0.7-0.9 levels mean over a
    pair of bigbuckbunny's grass with the bunny moving, 0.2-0.3 darkened to 0.3), much at its peak (5-70, 1.7-21)."""
    diff = cv2.blur(cv2.absdiff(a, b).astype(np.float32), (window, window))
    return float(np.percentile(diff, pct))


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


def anchor_flows(luma: np.ndarray) -> list[np.ndarray]:
    """Optical flow between consecutive anchors: (N, H, W) uint8 luma -> N - 1 fields (H, W, 2) float32, in pixels.
    DIS, OpenCV's "medium" preset (Kroeger et al., "Fast optical flow using dense inverse search", ECCV 2016). These
    fields serve the camera's global motion (:func:`camera_steps`) and median flows over regions of the picture, for
    both still_residual and the overlay score (computed once per clip). Computing them on half-size frames was
    measured and rejected: it found an overlay on a locked-off real shot."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return [dis.calc(a, b, None) for a, b in zip(luma[:-1], luma[1:], strict=True)] if len(luma) >= 2 else []


def camera_steps(flows: list[np.ndarray], threshold: float = 1.0) -> list[np.ndarray]:
    """The camera's transform between consecutive anchors: per flow field (H, W, 2), the 3x3 homogeneous matrix of
    the similarity :func:`fit_similarity` fits to it (``threshold`` px RANSAC reprojection error); the identity when
    the field is degenerate. :func:`_chain` composes them between any two anchors."""
    steps = []
    for f in flows:
        m = fit_similarity(f, threshold)[2]
        steps.append(np.vstack([m if m is not None else np.eye(2, 3), [0.0, 0.0, 1.0]]))
    return steps


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


STILL_COLUMNS = ("still_residual", "residual_flow")


def still_scores(
    luma: np.ndarray,
    times_s: list[float],
    *,
    baseline_s: float = 1.0,
    min_baseline_s: float = 0.5,
    pairs: int = 3,
    blur_sigma: float = 1.5,
    min_camera: float = 0.004,
    flow_margin: int = 8,
    steps: list[np.ndarray] | None = None,
) -> dict[str, float | None]:
    """How much of the picture changes once the camera's motion is undone, over a long baseline: the tests that
    tell a still picture under a pan or zoom (the "Ken Burns" slideshow) from a real scene. Returns
    ``{"still_residual": float | None, "residual_flow": float | None}`` (:data:`STILL_COLUMNS`).

    luma: (N, H, W) uint8 anchors at ``times_s`` (seconds). For up to ``pairs`` anchor pairs spread over the clip,
    each ~``baseline_s`` apart (at least ``min_baseline_s``): the camera's similarity transform from the first to
    the second, composed from the consecutive anchors' (``steps``, :func:`camera_steps` of :func:`anchor_flows`;
    computed here when not given: the overlay score shares them), and the first frame warped onto the second. Then:

    - ``still_residual``: both frames blurred (Gaussian, ``blur_sigma`` px: interpolation and compression noise are
      high-frequency), their mean absolute difference inside the warped frame (eroded 4 px), divided by the second
      frame's luma standard deviation there (the picture's contrast): what the camera's motion does not explain, in
      the picture's own contrast. Dimensionless.
    - ``residual_flow``: the optical flow (DIS, as :func:`anchor_flows`) from the warped frame to the second, its
      90th percentile magnitude inside the warped frame (eroded ``flow_margin`` px, where DIS is unreliable), in
      frame diagonals over the pair's baseline (not per second): how far the picture's parts move against each
      other once the camera's motion is undone (parallax between near and far things, moving subjects).

    Each is the median over the pairs. Both are None when no two anchors are ``min_baseline_s`` apart, or when the
    camera does not move: the fitted transform shifts the picture's centre by less than ``min_camera`` of the
    diagonal and scales it by less than that (log), per pair, in most pairs. A still picture that the camera does
    not move is ``motion_static``'s case; a locked-off shot where only a small subject moves (a talking head) must
    not read as a still picture (a 1 %/s pan moves the centre ~0.009 of the diagonal in 1 s).

    A still picture moved by a similarity is explained entirely; real shots leave parallax, moving objects and
    light changes (bench/motion_bench.py, bench/filters_bench.py): stills of the shipped footage panned 1-3 %/s or
    zoomed 1-4 %/s measured still_residual 0.006-0.040 (the highest on transnet_test's 90 px frames), real shots
    0.16 and up, their night and high-key grades the same (in raw luma levels a grade halved the residual:
    3.5 -> 2.0). A short-baseline residual (``scene_motion``, 0.08 s) separates the two far less (0.0055 against
    0.007): what a still picture lacks shows over time. still_residual alone does not separate a real shot where
    little but the camera moves (bigbuckbunny's top-right quadrant under its slow tilt: the trees, sky and a rock,
    0.015-0.042, against 0.004-0.014 for stills of 224 px and more): there, what the camera's transform leaves is
    parallax (mostly the far sky's low-contrast clouds drifting 3-14 px against the trees: the flow's top tenth lies
    there, docs/PERFORMANCE.md), which residual_flow measures in pixels, so a grade does not move it (stills <= 0.0035
    of the diagonal at CRF 18, that crop 0.0051-0.0083 bare or night-graded over three windows). Film grain new in
    every frame does: DIS follows some of it (grained stills up to 0.0049, the crop under grain down to 0.0035; bench/
    motion_bench.py, filters.min_residual_flow). So does heavy coding: a grey level of coding error over a smooth area
    reads as pixels of flow (carphone's stills at CRF 28: 0.0083-0.012, kept). The global-motion
    model is the one of video stabilisation (Grundmann et al., "Auto-directed video stabilization with robust L1
    optimal camera paths", CVPR 2011, similarity/affine between frames); DIS: Kroeger et al., ECCV 2016."""
    none: dict[str, float | None] = dict.fromkeys(STILL_COLUMNS)
    n = len(luma)
    cands = []
    for i in range(n):
        later = [j for j in range(i + 1, n) if times_s[j] - times_s[i] >= min_baseline_s]
        if later:
            cands.append((i, min(later, key=lambda j: abs(times_s[j] - times_s[i] - baseline_s))))
    if not cands:
        return none
    pick = np.unique(np.linspace(0, len(cands) - 1, min(pairs, len(cands))).round().astype(int))
    if steps is None:
        steps = camera_steps(anchor_flows(luma))
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    kernel = np.ones((9, 9), np.uint8)
    flow_kernel = np.ones((2 * flow_margin + 1, 2 * flow_margin + 1), np.uint8)
    values, flows, moved = [], [], 0
    for k in pick:
        a, b = luma[cands[k][0]], luma[cands[k][1]]
        h, w = a.shape
        diag = math.hypot(h, w)
        matrix = _chain(steps, cands[k][0], cands[k][1])[:2]
        centre = np.array([w / 2, h / 2])
        shift = np.linalg.norm(centre @ matrix[:, :2].T + matrix[:, 2] - centre) / diag
        moved += shift >= min_camera or abs(math.log(max(math.hypot(matrix[0, 0], matrix[1, 0]), 1e-6))) >= min_camera
        warped = cv2.warpAffine(a, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        footprint = cv2.warpAffine(np.full_like(a, 255), matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
        inside = cv2.erode(footprint, kernel) > 0
        if not inside.any():
            values.append(255.0)  # the camera moved the whole picture away: nothing of it is still
            flows.append(1.0)
            continue
        wb = cv2.GaussianBlur(warped, (0, 0), blur_sigma).astype(np.float32)
        bb = cv2.GaussianBlur(b, (0, 0), blur_sigma).astype(np.float32)
        # relative to the picture's own contrast, so a night or high-key grade of a shot scores as the shot does
        values.append(float(np.mean(np.abs(wb - bb)[inside])) / max(1.0, float(bb[inside].std())))
        core = cv2.erode(footprint, flow_kernel) > 0
        core = core if core.any() else inside
        # edge pixels repeated rather than black: a black edge would drag DIS's coarse levels
        filled = cv2.warpAffine(a, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mag = np.linalg.norm(dis.calc(filled, b, None), axis=-1)[core]
        flows.append(float(np.percentile(mag, 90)) / diag)
    if 2 * moved <= len(pick):
        return none  # the camera holds still: not a moved picture (motion_static judges a still one)
    return {"still_residual": float(np.median(values)), "residual_flow": float(np.median(flows))}


OVERLAY_COLUMNS = ("overlay_area", "overlay_box", "overlay_persistence")


def gradients(picture: np.ndarray, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) uint8 luma, or (N, H, W, C) uint8 channels -> the Sobel gradients d/dx, d/dy, each (N, H, W, C)
    float32 (C = 1 for luma), of the frames smoothed by a Gaussian of ``sigma`` px (the encoder's blocking and
    ringing are finer). Every energy made of them sums the channels (:func:`_energy`)."""
    if picture.ndim == 3:
        picture = picture[..., None]
    c = picture.shape[-1]
    smooth = [cv2.GaussianBlur(f.astype(np.float32), (0, 0), sigma).reshape(f.shape) for f in picture]
    gx = np.stack([cv2.Sobel(x, cv2.CV_32F, 1, 0).reshape(*x.shape[:2], c) for x in smooth])
    gy = np.stack([cv2.Sobel(x, cv2.CV_32F, 0, 1).reshape(*x.shape[:2], c) for x in smooth])
    return gx, gy


# BT.601's colour-difference scaling (OpenCV's COLOR_RGB2YCrCb): Cr = 0.713 (R - Y) + 128, Cb = 0.564 (B - Y) + 128
CHROMA_GAINS = (1 / 0.713, 1 / 0.564)


def colour_planes(rgb: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, H, W, 3) float32 planes Y, R - Y and B - Y, all three in RGB levels (BT.601's
    Y, Cr and Cb, OpenCV's ``COLOR_RGB2YCrCb``, with the coding's scaling of the colour differences undone:
    :data:`CHROMA_GAINS`; offset by -128): what the overlay test's gradients are taken of. A coloured logo can match
    its background's luma and still stand out in chroma (a green "arte" over bigbuckbunny's grass; a semi-transparent
    white logo desaturates what is under it), and natural pictures carry little fine detail in chroma (subsampled
    4:2:0 and smooth), so the chroma planes add a graphic's edges without adding the texture's. In Cr and Cb as coded
    a colour difference weighs 0.71x and 0.56x what the same difference of luma weighs: a red logo whose luma is
    near its background's (a red "TV5" at alpha 0.44 over bikes.mp4's dark street, a red "NEWS" at alpha 0.37 over
    bigbuckbunny's grass) was missed, found with the differences in RGB levels (overlay_planes "Y,R-Y,B-Y", schema
    20; bench/defect_sweep_bench.py --wide, docs/PERFORMANCE.md)."""
    out = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2YCrCb) for f in rgb]).astype(np.float32)
    out[..., 1:] = (out[..., 1:] - 128.0) * np.float32(CHROMA_GAINS)
    return out


def _energy(*grads: np.ndarray) -> np.ndarray:
    """The squared gradients, summed over the given arrays and their channels (the last axis)."""
    out = np.zeros(grads[0].shape[:-1], np.float32)
    for g in grads:
        for c in range(g.shape[-1]):  # channel by channel: ~20x faster than a sum over a short last axis
            out += np.square(g[..., c])
    return out


def _warp(a: np.ndarray, t: np.ndarray, size: tuple[int, int], **kw) -> np.ndarray:
    """``cv2.warpAffine`` of an (H, W, C) array, keeping its channel axis when C is 1 (OpenCV drops it)."""
    return cv2.warpAffine(a, t, size, **kw).reshape(size[1], size[0], *a.shape[2:])


def _median0(a: np.ndarray) -> np.ndarray:
    """``np.median(a, axis=0)`` with the same values, ~10x faster for a short first axis (a few frames of many
    pixels, where numpy partitions each pixel's column through a slow strided path): an odd-even transposition
    sorting network (Knuth, TAOCP vol. 3, 5.3.4) of elementwise min/max over the frames, then the middle one or two."""
    n = len(a)
    if n > 16:
        return np.median(a, axis=0)
    rows = [np.array(x) for x in a]
    for r in range(n):
        for k in range(r % 2, n - 1, 2):
            lo = np.minimum(rows[k], rows[k + 1])
            np.maximum(rows[k], rows[k + 1], out=rows[k + 1])
            rows[k] = lo
    return rows[n // 2] if n % 2 else (rows[n // 2 - 1] + rows[n // 2]) / 2


def _median_flow(f: np.ndarray) -> np.ndarray:
    """Median flow vector (2,) of a region of a flow field, (..., 2): each component's median (as
    ``np.median(f.reshape(-1, 2), axis=0)``), from contiguous columns."""
    v = f.reshape(-1, 2)
    return np.array([np.median(v[:, 0]), np.median(v[:, 1])])


def _chain(steps: list[np.ndarray], i: int, j: int) -> np.ndarray:
    """The 3x3 camera transform from anchor i to anchor j (i < j), composed from the consecutive ones."""
    t = np.eye(3)
    for k in range(i, j):
        t = steps[k] @ t
    return t


def _components(mask: np.ndarray, min_area: float, max_side: float, margin: float) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) of the connected parts of a candidate mask (closed 5x5), ``margin`` of each side in from
    the frame's edges (a bar's or the scaler's edge line is image-fixed too), of at least ``min_area`` of the frame
    and at most ``max_side`` of its width / height, centred in the top or bottom third and not a thin strip along an
    edge."""
    h, w = mask.shape
    mh, mw = max(3, round(margin * h)), max(3, round(margin * w))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    mask[:mh], mask[h - mh :], mask[:, :mw], mask[:, w - mw :] = 0, 0, 0, 0
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    for x, y, bw, bh, _ in stats[1:n]:
        if bw * bh < min_area * h * w or bw > max_side * w or bh > max_side * h:
            continue
        if _placed_like_overlay((x / w, y / h, (x + bw) / w, (y + bh) / h), w / h):
            out.append((int(x), int(y), int(bw), int(bh)))
    return out


def _placed_like_overlay(box: tuple[float, float, float, float], aspect: float) -> bool:
    """Whether a box (x0, y0, x1, y1 in fractions of a frame ``aspect`` = W / H wide) is placed and shaped as overlays
    are: its centre in the top or bottom third (channel logos in the corners, tickers, lower thirds and subtitles
    along the bottom: the broadcast safe-area layout), not upright (at most 3x taller than wide: logos, text lines
    and tickers are not), and not a strip hugging the top or bottom edge (within 8 % of it and 4x wider than high:
    a bar's edge, a scaler's border line)."""
    x0, y0, x1, y1 = box
    if 1 / 3 < (y0 + y1) / 2 < 2 / 3:
        return False
    bw, bh = (x1 - x0) * aspect, y1 - y0
    return bh <= 3 * bw and not ((y1 <= 0.08 or y0 >= 0.92) and bw >= 4 * bh)


def _with_camera(moved: np.ndarray, camera: np.ndarray, min_shift: float, tol: float = 0.3) -> bool:
    """Whether a part of the picture that moved by ``moved`` px (its median optical flow) moved as the camera did
    (``camera``: the fitted camera's displacement there): both by ``min_shift`` px or more, and within ``tol`` of it
    (at least 1 px). A part a moving subject drags while the camera holds still, or that holds still while the fit
    follows a large subject, did not."""
    cam = math.hypot(*camera)
    return min(math.hypot(*moved), cam) >= min_shift and math.hypot(*(moved - camera)) <= max(1.0, tol * cam)


def _ring_path(
    flows: list[np.ndarray], box: tuple[int, int, int, int], shape: tuple[int, int], scale: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Where the picture around ``box`` (x, y, w, h px at ``scale`` times the analysis resolution of ``flows``, in a
    picture of ``shape`` (H, W) at that scale) went: (N, 2) px at the analysis resolution, the median optical flow
    (:func:`anchor_flows`) of a ring around the box (half the box's shorter side wide, at least 6 px) summed over the
    consecutive anchors (anchor 0 at (0, 0)); and the box's centre at the analysis resolution, (3,) homogeneous
    (x, y, 1)."""
    h, w = shape
    x, y, bw, bh = box
    fh, fw = flows[0].shape[:2] if flows else (h // scale, w // scale)
    x1, y1 = x // scale, y // scale
    bw1, bh1 = max(1, -(-(x + bw) // scale) - x1), max(1, -(-(y + bh) // scale) - y1)
    r1 = max(6, min(bw1, bh1) // 2)
    fa, fb, ga, gb = max(0, y1 - r1), min(fh, y1 + bh1 + r1), max(0, x1 - r1), min(fw, x1 + bw1 + r1)
    ring = np.ones((fb - fa, gb - ga), bool)
    ring[y1 - fa : y1 - fa + bh1, x1 - ga : x1 - ga + bw1] = False
    pos = np.vstack([[0.0, 0.0], np.cumsum([_median_flow(f[fa:fb, ga:gb][ring]) for f in flows], axis=0)])
    return pos, np.array([x1 + bw1 / 2, y1 + bh1 / 2, 1.0])


def _stays_put(
    grads: tuple[np.ndarray, np.ndarray],
    flows: list[np.ndarray],
    steps: list[np.ndarray],
    box: tuple[int, int, int, int],
    *,
    min_shift: float,
    noise: float,
    tol: float = 0.3,
    scale: int = 1,
    own_when: Callable[[list[float], list[float]], bool] | None = None,
) -> tuple[list[float], list[float], list[float]]:
    """Does the pattern inside ``box`` (x, y, w, h) stay where it is in the picture while the scene around it
    moves? For every anchor pair (i, j) in which the content of a ring around the box moved (the median optical flow
    of the ring, summed over the consecutive anchors in between) by at least ``min_shift`` px, and moved as the
    camera did (within ``tol`` of the fitted camera displacement at the box: a ring that a moving subject drags
    while the camera holds still, or that holds still while the fit follows a subject, tells nothing), the box's
    gradients in frame j are predicted two ways from frame i: unmoved (an overlay) and moved with the ring (the
    scene). Returns, per such pair, (E_scene - E_fixed) / (E_scene + E_fixed + noise) of the two prediction errors
    (+1: the pattern stayed put; -1: it moved with the scene), the pattern's exactness 1 - E_fixed / (its energy
    in both frames + noise) (1: the same pattern in both frames, as a graphic; a subject the camera follows changes
    shape and reads lower) and, when ``own_when(fixed, exact)`` holds, the box's own displacement per pair (else an
    empty list: the search costs a dozen more predictions a pair, so it is made only for a candidate that passed).

    The own displacement (px at the analysis resolution, >= 0) is the shift s along the ring's motion d, among 0,
    0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, ... px and |d| itself, that predicts frame j's gradients in the
    box best from frame i's moved by s: exhaustive block matching along one line (the search of a block-matching
    motion estimator, as in H.264 encoders, restricted to the ring's direction). A graphic does not move: 0 or
    0.25 px (the hard set's 44 logos: at most 0.5 px in at least three quarters of their pairs). Scene content that
    moves less than its ring, because it lies further away than the foreground around it (parallax), is left
    behind by the ring and reads as "stayed put" in the two-way test; its own displacement is where it went
    (paving beside a passing bollard in bikes.mp4: 2-3.5 px in every pair while the ring moved 3-14 px).

    ``scale``: the gradients (and ``box``) are at ``scale`` times the analysis resolution of ``flows`` and ``steps``
    (a finer look at a small logo in a large source); the ring's motion is measured at the flows' resolution and
    scaled, the ``min_shift`` test and the own displacement stay in analysis pixels."""
    gx, gy = grads
    n, h, w = gx.shape[:3]
    x, y, bw, bh = box
    pos, centre = _ring_path(flows, box, (h, w), scale)
    r = max(6, min(bw, bh) // 2)
    ya, yb, xa, xb = max(0, y - r), min(h, y + bh + r), max(0, x - r), min(w, x + bw + r)
    inner = (slice(y - ya, y - ya + bh), slice(x - xa, x - xa + bw))
    floor = noise * bw * bh

    def error(i: int, j: int, d: np.ndarray) -> tuple[float, float]:
        """Error of predicting frame j's gradients in the box from frame i's moved by d (px at ``scale``), and
        their energy in both frames."""
        shift = np.float32([[1, 0, d[0]], [0, 1, d[1]]])  # frame j at q is frame i at q - d
        e = both = 0.0
        for g in (gx, gy):
            a, b = g[i, ya:yb, xa:xb], g[j, ya:yb, xa:xb]
            m = _warp(a, shift, (xb - xa, yb - ya), borderMode=cv2.BORDER_REPLICATE)
            e += float(np.square(b[inner] - m[inner]).sum())
            both += float(np.square(a[inner]).sum() + np.square(b[inner]).sum())
        return e, both

    fixed, exact, judged = [], [], []
    for i in range(n):
        for j in range(i + 1, n):
            if not _with_camera(pos[j] - pos[i], (_chain(steps, i, j) @ centre)[:2] - centre[:2], min_shift, tol):
                continue
            d = scale * (pos[j] - pos[i])
            e_fixed, e_both = error(i, j, np.zeros(2))
            e_scene, _ = error(i, j, d)
            fixed.append((e_scene - e_fixed) / (e_scene + e_fixed + floor))
            exact.append(1 - e_fixed / (e_both + floor))
            judged.append((i, j, d, float(np.hypot(*pos[j] - pos[i])), e_fixed, e_scene))
    moved = []
    if own_when is not None and own_when(fixed, exact):
        for i, j, d, length, e_fixed, e_scene in judged:
            grid = [s for s in OWN_SHIFTS if s < length] + [length]
            errors = [e_fixed] + [error(i, j, d * (s / length))[0] for s in grid[1:-1]] + [e_scene]
            moved.append(grid[int(np.argmin(errors))])
    return fixed, exact, moved


def _separate(
    grads: list[np.ndarray],
    ahead: Callable[[np.ndarray, int], np.ndarray],
    back: Callable[[np.ndarray, int], np.ndarray],
    iters: int = 2,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two layers of gradient fields (each of ``grads``: (N, H, W, C), one per derivative): F, fixed in the frame,
    and S, the scene in anchor 0's coordinates, with g_k = F + ahead(S, k) (``ahead``: anchor 0's coordinates to
    anchor k's; ``back``: the inverse). Alternating per-pixel medians over the N anchors, ``iters`` rounds from F = 0
    (:func:`_two_layers` gives the method and its sources). Returns (F, S), one (H, W, C) array per derivative."""
    n = len(grads[0])
    fixed = [np.zeros_like(g[0]) for g in grads]
    scene = fixed
    for _ in range(iters):
        scene = [_median0(np.stack([back(g[k] - f, k) for k in range(n)])) for g, f in zip(grads, fixed, strict=True)]
        fixed = [_median0(np.stack([g[k] - ahead(s, k) for k in range(n)])) for g, s in zip(grads, scene, strict=True)]
    return fixed, scene


def _two_layers(
    grads: tuple[np.ndarray, np.ndarray],
    flows: list[np.ndarray],
    box: tuple[int, int, int, int],
    noise: float,
    iters: int = 2,
    min_px: int = 12,
) -> tuple[float, float, float, tuple[int, int, int, int] | None]:
    """Explain the gradients in ``box`` (x, y, w, h; analysis resolution, as ``flows``) as two layers: one that
    stays fixed in the frame (an overlay, F) and one that moves with the ring of picture around the box (the scene,
    S; its displacement at anchor k, d_k, the ring's median optical flow summed from anchor 0): g_k(q) = F(q) +
    S(q - d_k). Both are estimated by alternating per-pixel medians over the anchors (S: the median of g_k - F
    shifted back by d_k; F: the median of g_k - S shifted by d_k; ``iters`` rounds from F = 0): the median estimate
    of a watermark's gradients over many images (Dekel et al., "On the effectiveness of visible watermarks", CVPR
    2017) with the images' own content removed first, as in layer extraction from images containing transparency
    (Szeliski, Avidan, Anandan, "Layer extraction from multiple images containing reflections and transparency",
    CVPR 2000). A semi-transparent logo over a textured scene that moves (a white word at alpha 0.3 over
    bigbuckbunny's grass) is such a sum: the two-way test of :func:`_stays_put` weighs the logo's gradients against
    the grass's, which are stronger, and reads "moved"; here the grass goes into S and the logo into F.

    Returns (share: F's energy in the box over the gradients' mean energy there (+ ``noise`` per pixel); rest: the
    mean energy the two layers leave unexplained, on the same scale (a subject that changes shape, or content that
    moves otherwise than its ring, leaves much); helped: the share of anchors whose gradients F brings closer; the
    box tightened to the pixels where F holds at least half of the mean energy (5x5 windows), None when fewer than
    ``min_px`` do)."""
    gx, gy = grads
    n, h, w = gx.shape[:3]
    x, y, bw, bh = box
    r = max(6, min(bw, bh) // 2)
    ya, yb, xa, xb = max(0, y - r), min(h, y + bh + r), max(0, x - r), min(w, x + bw + r)
    ring = np.ones((yb - ya, xb - xa), bool)
    ring[y - ya : y - ya + bh, x - xa : x - xa + bw] = False
    pos = np.vstack([[0.0, 0.0], np.cumsum([_median_flow(f[ya:yb, xa:xb][ring]) for f in flows], axis=0)])
    inner = (slice(y - ya, y - ya + bh), slice(x - xa, x - xa + bw))
    size = (xb - xa, yb - ya)
    g = [gx[:, ya:yb, xa:xb], gy[:, ya:yb, xa:xb]]

    def shift(a: np.ndarray, d: np.ndarray) -> np.ndarray:
        return _warp(a, np.float32([[1, 0, d[0]], [0, 1, d[1]]]), size, borderMode=cv2.BORDER_REPLICATE)

    fixed, scene = _separate(g, lambda a, k: shift(a, pos[k]), lambda a, k: shift(a, -pos[k]), iters)
    e_fixed = _energy(*(f[inner] for f in fixed))
    e_mean = _energy(*(gc[:, inner[0], inner[1]] for gc in g)).mean(axis=0)
    floor = noise * bw * bh
    rest, helped = [], 0
    for k in range(n):
        moved = [shift(sc, pos[k])[inner] for sc in scene]
        without = _energy(*(gc[k][inner] - m for gc, m in zip(g, moved, strict=True)))
        with_f = _energy(*(gc[k][inner] - m - f[inner] for gc, m, f in zip(g, moved, fixed, strict=True)))
        rest.append(float(with_f.sum()))
        helped += bool(with_f.sum() < without.sum())
    total = float(e_mean.sum()) + floor
    held = cv2.boxFilter(e_fixed, -1, (5, 5)) / (cv2.boxFilter(e_mean, -1, (5, 5)) + noise) >= 0.5
    ys, xs = np.nonzero(held)
    tight = None
    if len(ys) >= min_px:
        tight = x + int(xs.min()), y + int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
    return float(e_fixed.sum()) / total, float(np.mean(rest)) / total, helped / n, tight


# _stays_put's own-displacement search: px along the ring's motion (quarter pixels first, where a graphic's lies)
def plane_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two gradient fields (..., 2C): channels 0..C-1 are d/dx of C picture planes, C..2C-1
    their d/dy (C = 3 for the Y, Cr, Cb planes, 1 for luma). The sum over the planes (channels p and p + C) of the
    absolute inner product, over the root of the two energies; 0.0 when either is empty or flat. Absolute per plane
    because a graphic's edge has the sign of its colour less the picture's under it, plane by plane: a green logo over
    a brighter background in one shot and a darker one in another flips its Y gradients and keeps its Cr (a
    newcomer's green triangle: Y -0.69, Cr 0.99, summed signed ~0)."""
    aa, bb = float(np.square(a).sum()), float(np.square(b).sum())
    if aa <= 0 or bb <= 0:
        return 0.0
    c = a.shape[-1] // 2
    planes = sum(abs(float((a[..., [p, p + c]] * b[..., [p, p + c]]).sum())) for p in range(c))
    return planes / math.sqrt(aa * bb)


def _parabola(a: float, b: float, c: float) -> float:
    """The sub-sample offset, within [-0.5, 0.5], of the top of the parabola through (-1, a), (0, b), (1, c) when b
    is the largest of the three (the sub-pixel refinement of block matching and of correlation peaks); 0.0 when the
    three do not curve down."""
    d = a - 2 * b + c
    return 0.0 if d >= 0 else float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))


IN_PLACE_REACH = 3  # px (analysis size): how far, in every direction, an anchor's best place is looked for
# a graphic's best place in an anchor is within MAX_OFF_PLACE px (analysis size) of the anchors' median's in at least
# MIN_IN_PLACE of the anchors (5 of 8); docs/PERFORMANCE.md gives the margins (bench/board_bench.py)
MAX_OFF_PLACE = 1.0
MIN_IN_PLACE = 0.625


def placements(
    grads: tuple[np.ndarray, np.ndarray], box: tuple[int, int, int, int], scale: int = 1, pad: int = 3
) -> list[float]:
    """Where the pattern in ``box`` sits in each anchor, against where the anchors' median has it: per anchor, the
    distance in px at the analysis size of its best offset from (0, 0). The best offset is
    the one within :data:`IN_PLACE_REACH` px (every direction, times ``scale``) at which the anchor's gradients best
    match (:func:`plane_corr`, computed for every offset at once) the per-pixel median over the anchors of the
    gradients in ``box`` (x, y, w, h, padded by ``pad`` px), refined to a fraction of a pixel by a parabola through
    the best and its neighbours along each axis. grads: (gx, gy) of :func:`gradients`, (N, H, W, C) each, at
    ``scale`` times the analysis size (``box`` in those pixels). [] for an empty box."""
    gx, gy = grads
    h, w = gx.shape[1:3]
    x, y, bw, bh = box
    reach = IN_PLACE_REACH * scale
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(w, x + bw + pad), min(h, y + bh + pad)
    if x1 <= x0 or y1 <= y0:
        return []
    ya, xa = max(0, y0 - reach), max(0, x0 - reach)  # the window searched, and the box's corner in it
    stack = np.concatenate([gx[:, ya : y1 + reach, xa : x1 + reach], gy[:, ya : y1 + reach, xa : x1 + reach]], axis=-1)
    oy, ox = y0 - ya, x0 - xa
    bh0, bw0 = y1 - y0, x1 - x0
    c = stack.shape[-1] // 2
    template = np.ascontiguousarray(_median0(stack[:, oy : oy + bh0, ox : ox + bw0]), np.float32)
    aa = float(np.square(template, dtype=np.float64).sum())
    ones = np.ones((bh0, bw0), np.float32)
    size, last = 2 * reach + 1, 2 * reach
    # the offsets within reach that the window holds (it is cut at the picture's edges), in the map's indices
    ty0, tx0 = max(0, oy - reach), max(0, ox - reach)
    out = []
    for g in stack:
        g = g.astype(np.float32)
        # plane_corr at every offset at once: per channel, the inner products (cv2.matchTemplate, TM_CCORR) and the
        # window's energy under the box
        inner = [cv2.matchTemplate(g[..., k].copy(), template[..., k].copy(), cv2.TM_CCORR) for k in range(2 * c)]
        dot = sum(np.abs(inner[p] + inner[p + c]) for p in range(c))
        bb = sum(cv2.matchTemplate(np.square(g[..., k]), ones, cv2.TM_CCORR) for k in range(2 * c))
        corr = np.where(bb > 0, dot / np.sqrt(np.maximum(aa * bb, 1e-30)), 0.0) if aa > 0 else np.zeros_like(dot)
        ty1, tx1 = min(corr.shape[0], oy + reach + 1), min(corr.shape[1], ox + reach + 1)
        score = np.full((size, size), -1.0)
        score[ty0 - oy + reach : ty1 - oy + reach, tx0 - ox + reach : tx1 - ox + reach] = corr[ty0:ty1, tx0:tx1]
        iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
        fx = _parabola(score[iy, ix - 1], score[iy, ix], score[iy, ix + 1]) if 0 < ix < last else 0.0
        fy = _parabola(score[iy - 1, ix], score[iy, ix], score[iy + 1, ix]) if 0 < iy < last else 0.0
        out.append(math.hypot(ix - reach + fx, iy - reach + fy) / scale)
    return out


def in_place(grads: tuple[np.ndarray, np.ndarray], box: tuple[int, int, int, int], scale: int = 1) -> float:
    """The share of the anchors in which the pattern in ``box`` sits where the anchors' median has it: whose best
    match (:func:`placements`, the same arguments) is within :data:`MAX_OFF_PLACE` px (analysis size) of it.

    A graphic is composited in the frame's coordinates, so it sits at the same pixels in every anchor; what only
    stays put relative to the scene around it does not: an opaque board drawn into panning footage that was then
    shaken moves with the shake. A newcomer's such boards passed the pair test (it compares anchors a little apart,
    and the board stays put against the panning scene) and the text test (a text box at the same place, IoU >= 0.5,
    in every OCR frame), and were dropped as logos. Both ask at least :data:`MIN_IN_PLACE` of the anchors in place
    (a box of the corners' closer look may pass in the colour differences alone: ``overlay_scores``' text test).
    Measured (bench/board_bench.py, docs/PERFORMANCE.md): a logo's best place is not exactly the median's where the
    picture under it moves and the encoder smears it (a red alpha-0.33 "ZDF" at CRF 28 over bikes.mp4's parallax
    shot: 0.01-1.19 px, 6 anchors of 8 within 1 px; an alpha-0.25 word over panning grass, 7), and a ticker's
    scrolling or a subtitle's change of words moves it by up to 0.6 px; boards shaken by 8 px at 640x360 (2.8 px at
    224) are more than 1 px off in most anchors, those shaken by 4 px often in only 2 or 3. The fixed-in-frame premise
    of TV-logo detection (Wang et al., ICME 2006), asked of each anchor rather than of anchor pairs. 0.0 for an empty
    box."""
    placed = placements(grads, box, scale)
    return sum(off <= MAX_OFF_PLACE for off in placed) / len(placed) if placed else 0.0


OWN_SHIFTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, *range(8, 64, 2))


def _tighten(
    grads: tuple[np.ndarray, np.ndarray], box: tuple[int, int, int, int], noise: float, min_px: int = 24
) -> tuple[int, int, int, int] | None:
    """``box`` (x, y, w, h) shrunk to the bounding box of the pixels inside it whose gradient the per-pixel median over
    the frames keeps (at least 0.8 of the mean gradient energy, 5x5 windows: Dekel et al.'s watermark estimate, held
    stricter than the candidate search's 0.5): a logo's strokes, without the scene around them. None when fewer than
    ``min_px`` pixels qualify. On bigbuckbunny's small "HD" logo over grass (1280x720, at 796x448) the box shrank from
    46x44 to 37x35 px and its stay-put score rose from 0.10 to 0.20; at 0.5 or 0.6 it did not shrink."""
    gx, gy = grads
    x, y, bw, bh = box
    sx, sy = gx[:, y : y + bh, x : x + bw], gy[:, y : y + bh, x : x + bw]
    if sx.size == 0:
        return None
    median = _energy(_median0(sx), _median0(sy))
    energy = _energy(sx, sy).mean(axis=0)
    kept = cv2.boxFilter(median, -1, (5, 5)) / (cv2.boxFilter(energy, -1, (5, 5)) + noise) >= 0.8
    ys, xs = np.nonzero(kept)
    if len(ys) < min_px:
        return None
    return x + int(xs.min()), y + int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


CORNER_W, CORNER_H = 0.35, 0.3  # corner_text_boxes: a corner's share of the picture's width and height
CORNER_DET_SIDE = 320  # ... and the shorter side the text detector sees the corners' mosaic at
CORNER_DET_SIDE_SMALL = 480  # ... that side for a mosaic under CORNER_SMALL px (a small source's), since 2026-12-03
CORNER_SMALL = 300
# ... and the contrast-normalised views of it the detector reads (the colour differences Cr and Cb since 2026-12-05)
CORNER_VIEWS = ("lightness", "whiteness", "cr", "cb")
# ... those read with the mosaic at CORNER_DET_SIDE at most (4:2:0 chroma has half the luma's resolution), and the
# only ones read where the motion test judged the corners (overlay_scores' ``corner_always``)
CHROMA_VIEWS = ("cr", "cb")


def corner_text_boxes(
    detector: TextDetector,
    frames: np.ndarray,
    size: tuple[int, int],
    min_aspect: float = 1.25,
    views: tuple[str, ...] = CORNER_VIEWS,
    reads: list[float] | None = None,
    glyph_read: float | None = None,
    side: int | None = None,
) -> np.ndarray:
    """The text detector's raw boxes in the four corners of one frame, looked at closely: (K, 4, 2) int32 in the
    coordinates of an (H, W) = ``size`` picture (the analysis size). ``reads``, when given, is extended with one
    reading per box returned (:func:`read_score`: what the recogniser makes of the box in the view it was found in).

    frames: (H', W', 3) uint8 RGB, the same picture at any size (the caller passes up to 4x the analysis size). The
    corners (:data:`CORNER_W` x :data:`CORNER_H` of the picture: where channel logos sit, the broadcast safe-area
    layout) are tiled into one 2 x 2 mosaic, so the detector runs once per view, and contrast-normalised first: CLAHE
    (clip limit 2, 4 x 4 tiles; Zuiderveld, "Contrast limited adaptive histogram equalization", Graphics Gems IV,
    1994; OpenCV's ``createCLAHE``), which lifts a faint semi-transparent logo's strokes to the contrast the
    detector's DB threshold wants (an alpha-0.3 white "24" over a light grey car roof: found in both frames after it,
    in neither before, nor in the whole frame at the analysis size). Views, their boxes pooled: CLAHE on the L
    channel of CIELAB, and CLAHE on the whiteness min(R, G, B) (the W of Smith and Lyons' HWB model, "HWB: a more
    intuitive hue-based color model", Journal of Graphics Tools, 1996). A white logo at alpha a lifts every channel
    by a (255 - c), the lowest channel of a saturated picture most, where the lightness, led by the bright channels,
    barely moves: an alpha-0.33 white "ORF" 15 % wide over bigbuckbunny's bright yellow-green grass is read in the
    whiteness and not in the lightness (CLAHE on L even lowered it below what the plain picture gave), while a logo
    in a colour of its own keeps the lightness view. Since 2026-12-05 two more: CLAHE on the colour differences Cr
    and Cb (YCbCr, ITU-R BT.601, OpenCV's ``COLOR_RGB2YCrCb``; the planes the overlay test's motion test reads too),
    for a faint logo in a colour of its own whose lightness the picture under it matches: a red "24" at alpha 0.42
    over bikes.mp4's second shot at CRF 28 is found with the Cr view alone and not with the lightness, the whiteness
    or Cb (its last anchor is read in Cr only). ``views``: a subset of :data:`CORNER_VIEWS` (``lightness``,
    ``whiteness``, ``cr``, ``cb``); ValueError for another name. ``side``: the shorter side the detector sees the
    mosaic at, when not the one chosen by the mosaic's size below. The detector sees the mosaic at
    :data:`CORNER_DET_SIDE` (320 px on its shorter side, a larger one as it is), whatever ``text_det_side`` is: at 256,
    224 or 160 px it read 4, 1 and 1 of the 8 faint and small logos of the hard set's sources it reads at 320. A
    mosaic under :data:`CORNER_SMALL` (300 px; the mosaic's shorter side is 0.6 of the frame's, so a source under
    500 px on its shorter side: 176x144, 320x180, 640x272, 640x360, 854x480) is seen at :data:`CORNER_DET_SIDE_SMALL`
    (480 px) instead: it is upscaled anyway, and the side decides how many pixels a small logo's strokes get. On two
    small locked-off sources (carphone, 176x144, and bikes.mp4's first shot at 320x180) 480 reads many logos 10-13 %
    wide that 320 does not, no clean window either way, for about three times the time of a detection on such a
    mosaic (bench/small_logo_bench.py; docs/PERFORMANCE.md gives the figures; 640 gained little more); a newcomer's
    white "SAT.1" at alpha 0.5, 14 % wide, over bigbuckbunny's grass cropped to 640x360 (a 216 px mosaic) is read at
    480 and not at 320. On a large mosaic 480 only brought out noise: the hard set's defocused and grained-defocused
    bigbuckbunny at 1280x720 (a 432 px mosaic, upscaled a little) read word-shaped blobs in both frames in the
    whiteness view (DB box scores 0.55-0.66, as low as a faint logo's 0.67) that 320 does not. A box is
    clipped to its tile. Only boxes shaped like a word are kept (at least ``min_aspect`` times wider than high; the
    faint "24"s measured 1.46-1.7): once the contrast is lifted DB also fires on blobs, as on a yellow tag on the
    pavement of bikes.mp4's locked-off first shot (20x24 px, in both frames). With ``glyph_read`` (score_frames
    passes :data:`GLYPH_READ`, 0.9), a box not shaped like a word is kept when the recogniser reads a letter or digit
    in it that surely (:func:`read_score`): a channel's single-glyph logo (a newcomer's "7"s on carphone and
    bigbuckbunny, plain and on a plate, read 0.97-0.998 and were missed before); no box of a clip without a logo in
    the benches read a single character over 0.6 (docs/PERFORMANCE.md).
    """
    fh, fw = frames.shape[:2]
    ch, cw = max(1, int(fh * CORNER_H)), max(1, int(fw * CORNER_W))
    origins = [(0, 0), (0, fw - cw), (fh - ch, 0), (fh - ch, fw - cw)]  # (y, x) of tl, tr, bl, br
    tiles = [frames[y : y + ch, x : x + cw] for y, x in origins]
    mosaic = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
    if unknown := set(views) - set(CORNER_VIEWS):
        raise ValueError(f"unknown corner views {sorted(unknown)}: a subset of {CORNER_VIEWS}")
    if side is None:
        side = CORNER_DET_SIDE if min(mosaic.shape[:2]) >= CORNER_SMALL else CORNER_DET_SIDE_SMALL
    clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))
    pictures = []
    if "lightness" in views:
        lab = cv2.cvtColor(np.ascontiguousarray(mosaic), cv2.COLOR_RGB2LAB)
        lab[..., 0] = clahe.apply(lab[..., 0])
        pictures.append(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))
    if "whiteness" in views:
        whiteness = clahe.apply(np.ascontiguousarray(mosaic.min(axis=2)))
        pictures.append(cv2.cvtColor(whiteness, cv2.COLOR_GRAY2RGB))
    if "cr" in views or "cb" in views:
        ycrcb = cv2.cvtColor(np.ascontiguousarray(mosaic), cv2.COLOR_RGB2YCrCb)
        for k, name in ((1, "cr"), (2, "cb")):
            if name in views:
                pictures.append(cv2.cvtColor(clahe.apply(np.ascontiguousarray(ycrcb[..., k])), cv2.COLOR_GRAY2RGB))
    boxes = np.zeros((0, 4, 2), np.int32)
    seen_in: list[np.ndarray] = []  # the view each box was found in
    for picture in pictures:
        found = detector.detect(picture, side=side).reshape(-1, 4, 2)
        boxes = np.concatenate([boxes, found])
        seen_in += [picture] * len(found)
    sy, sx = size[0] / fh, size[1] / fw
    out = []
    for quad, picture in zip(boxes.astype(np.float64), seen_in, strict=True):
        read = None
        if np.ptp(quad[:, 0]) < min_aspect * np.ptp(quad[:, 1]):
            # not a word: DB fires on blobs too once the contrast is lifted; a single glyph read surely is kept
            if glyph_read is None or (read := read_score(detector, picture, quad)) < glyph_read:
                continue
        if reads is not None:
            reads.append(read_score(detector, picture, quad) if read is None else read)
        centre = quad.mean(axis=0)
        r, c = int(centre[1] >= ch), int(centre[0] >= cw)
        oy, ox = origins[2 * r + c]
        local = np.clip(quad - [c * cw, r * ch], 0, [cw - 1, ch - 1])
        out.append((local + [ox, oy]) * [sx, sy])
    return np.array(out, np.float64).round().astype(np.int32).reshape(-1, 4, 2)


MIN_LEFT_BEHIND = 8.0  # overlay_scores: px (analysis size) the picture around a corner box must move past it
MIN_READ = 0.3  # overlay_scores: the reading a box of the corners' closer look needs to count as text
# corner_text_boxes: the reading a box not shaped like a word (a single glyph: a "7", a "1") needs to be kept there
GLYPH_READ = 0.9


def read_score(detector: TextDetector, picture: np.ndarray, quad: np.ndarray) -> float:
    """How surely the recogniser (:meth:`TextDetector.read`) reads a letter or digit in the box ``quad`` ((4, 2) x, y
    px) of ``picture`` ((H, W, 3) uint8 RGB): its confidence when what it reads has a letter or digit (any script:
    ``str.isalnum``), else 0.0. The crop is the box's bounding rectangle padded by 15 % of its height (at least 2
    px): some background around the strokes, as the readings of docs/PERFORMANCE.md were measured."""
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    pad = max(2, int(0.15 * (y1 - y0)))
    h, w = picture.shape[:2]
    crop = picture[max(0, y0 - pad) : min(h, y1 + pad), max(0, x0 - pad) : min(w, x1 + pad)]
    text, score = detector.read(crop)
    return score if any(c.isalnum() for c in text) else 0.0


def _rect(quad: np.ndarray) -> tuple[int, int, int, int]:
    x0, y0 = quad.min(axis=0)
    x1, y1 = quad.max(axis=0)
    return int(x0), int(y0), int(max(1, x1 - x0)), int(max(1, y1 - y0))


def _intersection(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Area shared by two boxes (x, y, w, h)."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter = _intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _nested(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """The share of the smaller of two boxes (x, y, w, h) inside the larger: 1 when one holds the other. The
    contrast-normalised corners' boxes of a faint logo are its word in one frame and the word with its frame in
    another (bikes.mp4 under an alpha-0.3 logo: 35x23 inside 68x40 px, IoU 0.3)."""
    small = min(a[2] * a[3], b[2] * b[3])
    return _intersection(a, b) / small if small > 0 else 0.0


def overlay_scores(
    luma: np.ndarray,
    text_boxes: list[np.ndarray] | None = None,
    *,
    min_shift: float = 1.5,
    min_pairs: int = 5,
    min_fixed: float = 0.1,
    min_exact: float = 0.42,
    max_own: float = 0.5,
    min_still: float = 0.66,
    min_area: float = 0.002,
    max_side: float = 0.5,
    margin: float = 0.02,
    noise: float = 50.0,
    min_layer: float = 0.2,
    max_layer_rest: float = 0.15,
    min_layer_helped: float = 0.85,
    flows: list[np.ndarray] | None = None,
    steps: list[np.ndarray] | None = None,
    source: np.ndarray | None = None,
    corner_text: Callable[[bool], list[tuple[np.ndarray, list[float] | None, list[bool]]]] | None = None,
    colour: np.ndarray | None = None,
    layers: bool = True,
    found_boxes: list[tuple[int, int, int, int]] | None = None,
    min_read: float = MIN_READ,
    corner_always: bool = True,
) -> dict[str, Any]:
    """Persistent overlay graphics (channel logos, watermarks, tickers, subtitles) found by what they are: patterns
    that stay fixed in the picture while the scene under and around them moves.

    luma: (N, H, W) uint8 anchors spread over the clip (analysis resolution, bars cut); colour: the same anchors in
    RGB, (N, H, W, 3) uint8, or None (luma alone); source: the same anchors' active picture as decoded,
    (N, H', W', 3) RGB uint8, or None. text_boxes: the raw PP-OCR
    detector boxes (:meth:`TextDetector.detect`, (K, 4, 2) each, same coordinates) of some of those anchors, or None.
    Returns ``overlay_area`` (fraction of the frame covered by the union of the overlays' boxes), ``overlay_box``
    ([x0, y0, x1, y1] of that union, fractions of the width / height) and ``overlay_persistence`` (the largest, over
    the overlays found, of the share of observations in which it stayed put: frame pairs for the motion test, OCR
    frames for a text box; null when none was found).

    The motion test. A static camera cannot tell a logo from a sign on a wall: both are fixed in the picture, so
    "pixels that stay the same" fires on every locked-off shot. What tells them apart is the camera's motion: it
    moves the scene, never what was composited over it. So:

    1. Gradients of each anchor (Sobel of the picture smoothed by 1 px): of its Y, Cr and Cb planes when ``colour``
       is given (:func:`colour_planes`; every energy sums the three), else of the luma. A logo in a channel's colour
       can match its background's luma (a red "CNN" at alpha 0.4 over bikes.mp4's last shot: nothing found on luma,
       found in colour) and a semi-transparent white one desaturates what is under it; bench/logo_styles_bench.py
       measures both. The camera's motion between consecutive
       anchors, a similarity transform fitted to their optical flow (:func:`anchor_flows`, :func:`camera_steps`;
       ``flows`` / ``steps`` when the caller has them), composed for every anchor pair.
    2. Candidates: (a) where, summed over the anchor pairs the camera moved by ``min_shift`` px or more, frame j's
       gradients are predicted better by frame i's unmoved than by frame i's moved with the camera (windowed, 9 px);
       (b) where the per-pixel median of the gradients over the anchors keeps at least half of their mean energy:
       the median of gradients is the estimator of a watermark's gradients of Dekel et al., "On the effectiveness
       of visible watermarks", CVPR 2017 (the median over many images is the watermark, the content's gradients
       vary and cancel); a fixed pattern that edges persist over frames is also the cue of TV-logo detectors (Wang
       et al., "A robust method for TV logo tracking in video streams", ICME 2006). Connected parts of at least
       ``min_area`` of the frame, at most ``max_side`` of its sides, centred in the top or bottom third, not strips
       along an edge (:func:`_placed_like_overlay`); (c) when ``layers`` is set and the camera
       moved in ``min_pairs`` pairs or more, where a layer fixed in the frame holds at least 0.3 of the gradients'
       mean energy once the scene, brought back by the camera's motion, is taken out (the two layers of
       :func:`_two_layers` over the whole picture, the camera's transforms for the ring's motion): a faint logo over
       texture that (b) loses among the texture's own near-still gradients.
    3. Each candidate is verified locally (:func:`_stays_put`): in the anchor pairs in which the ring of picture
       around it moved with the camera, it must stay put (median score >= ``min_fixed``) and stay the same
       (median exactness >= ``min_exact``), over at least ``min_pairs`` such pairs. The local check is what makes it
       robust to a camera fit that follows a large subject, and to a subject the camera follows (it changes shape).
       ``min_fixed`` 0.1 sits midway between the best candidate of any clean or graded clip of the hard set
       (bench/filters_bench.py: -0.02, with exactness >= 0.5) and the faintest logo's (an alpha-0.3 logo over
       bikes.mp4's moving shot: 0.19, its box wider than the logo, so the scene's gradients in it weigh in).
       ``min_exact`` 0.42 sits between the one candidate of a clean or graded clip that stays put by ``min_fixed``
       (bikes1's shallow depth of field, 0.11: a blurred background that barely changes, exactness 0.35) and an
       alpha-0.3 logo over bigbuckbunny's bright, slowly panning scene (its fine look: 0.12, exactness 0.49).
       What cannot be judged is not judged: a candidate whose surroundings do not move with the camera is left out.
       A candidate that passes must also not have moved on its own: its own displacement along its ring's motion
       (:func:`_stays_put`, exhaustive block matching along that line) must be at most ``max_own`` px in at least
       ``min_still`` of the pairs. Scene content that moves less than the foreground around it (parallax) is predicted
       better unmoved than moved with its ring, and passes the two tests above; it still moves (paving beside a
       passing bollard in bikes.mp4 frames 188-242: fixed 0.68, exactness 0.57, own 2.75 px at the median, 0.5 px or
       less in none of 8 pairs; frames 197-239 of the same shot: 3 of 5), where every logo candidate of the hard set
       stays within 0.5 px in 0.75 of its pairs or more (graphics are exactly still; a faint one's median is 0.25-0.38
       px at the fine look). ``min_still`` 0.66: two pairs in three, between the two. Nor may it move with the frame
       while staying put against its ring (a board drawn into panning footage that was then shaken): its best place
       in at least :data:`MIN_IN_PLACE` of the anchors is within :data:`MAX_OFF_PLACE` px of the anchors' median's
       (:func:`in_place`; a found fixed layer, below, too).
       A candidate that passes is reported by its box tightened to what stays in it (:func:`_tighten`): the
       component can take in picture around the graphic (an opaque "NEWS" over bikes.mp4's second shot came with
       half the quarter of the frame above it once the chroma planes were read; tightened, the logo's own box).
       A candidate that fails gets a second look at twice the analysis size when ``source`` has those pixels (made
       only then, once per clip): its box tightened to the pixels whose gradients the
       temporal median keeps (:func:`_tighten`) and verified the same way at that size. A small logo on a large
       source has ~1 px strokes at the analysis size (bigbuckbunny's 8 %-wide "HD" logo at 1280x720: 0.10 on the
       candidate box at 224 px, 0.20 on the tightened box at 448 px; no clean or graded clip of the hard set gained
       an overlay).
       The last look, for a candidate that fails both and was judged in ``min_pairs`` pairs or more: the two layers of
       :func:`_two_layers` in its box. A layer fixed in the frame that holds ``min_layer`` or more of the box's
       gradient energy while the two layers leave at most ``max_layer_rest`` of it unexplained is an overlay, its box
       tightened to where that layer holds, its persistence the share of anchors it explains better (at least
       ``min_layer_helped``: a graphic is in every anchor). The stay-put
       test weighs a graphic's gradients against the scene's in the same box, and a faint logo over strong texture
       loses (a white "ARD" at alpha 0.3 over bigbuckbunny's grass while the camera pans: -0.37); the layers hold it
       apart (share 0.23-0.41, rest 0.06-0.11 over three such windows). ``min_layer`` 0.2 and ``max_layer_rest``
       0.15: a clean candidate scores either a small fixed layer or a large rest (a subject that changes shape, or
       content moving otherwise than its ring, fits neither layer); docs/PERFORMANCE.md gives the benches' margins.

    The text test. A text box the OCR detector finds at the same place (IoU >= 0.5) in every OCR frame, centred in the
    top or bottom third and at most a quarter of the frame high, is an overlay too (a station name, a subtitle line);
    this is what finds one in a locked-off shot, where the motion test cannot look. It is dropped when the motion
    test says it moves with the scene (median score < 0 over ``min_pairs`` pairs), or when it is not in place in
    enough anchors (:func:`in_place`: a board or sign that moves with a shaken frame is read at the same place, IoU
    >= 0.5, in every OCR frame).

    The closer look at the corners. ``corner_text``, when given, returns per anchor the text detector's raw boxes (as
    ``text_boxes``), each box's reading (:func:`read_score`; None: not read) and whether it was read in the colour
    differences (a box read there may be in place in them alone, since 2026-12-05) of two anchors' corners,
    contrast-normalised and at the source's own size up to four times the analysis size (:func:`corner_text_boxes`; at
    most twice until 2026-12-02: the detector, which upscales a mosaic smaller than its side (320 px then) and leaves a
    larger one as it is, then saw a 1280x720 source's corners at 320 px and missed an alpha-0.44 "HD" 15 % wide over
    bigbuckbunny's still grass that it reads at 432 px). It is called when nothing else was found and the motion test
    could not judge the corners (a locked-off shot, fewer than ``min_pairs`` moved pairs, or a candidate in a corner,
    its centre in the outer 35 % of the width, in fewer than ``min_pairs`` judged pairs: a shot whose only motion is a
    subject's), and since 2026-12-05 with ``corner_always`` (the default) where it judged them too, as
    ``corner_text(True)``: the scorer then reads the colour differences only (:data:`CHROMA_VIEWS`, Cr and Cb; where
    the motion test judged, a logo whose lightness stands out is mostly found by it) with the mosaic at
    :data:`CORNER_DET_SIDE` (320 px, smaller and larger mosaics scaled to it), and the last anchor only when a box
    of the first reads ``min_read`` or more, so that the look costs two detections on most such clips
    (docs/PERFORMANCE.md gives the cost).
    Its boxes go through the text test above, one box of each frame holding another (:func:`_nested`) rather than the
    same box. This is what finds a faint logo over a static part of a picture: an alpha-0.3 "24" over carphone's grey
    car roof, or over bikes.mp4's traffic while the camera holds still, where the detector at the analysis size sees
    nothing. Over a moving shot the text test's motion veto would drop a faint word over texture (its pairwise
    stay-put score weighs the word's gradients against the texture's: a red "24" at alpha 0.42 over bikes.mp4's
    second shot at CRF 28 read -0.1 to 0.08, a yellow "SPORT" at alpha 0.33 over bigbuckbunny's grass -0.35 to
    -0.61), so a corner box is kept against it when it is left behind: read at the same place in the first and the
    last anchor while the picture around it (:func:`_ring_path`) moved between them by :data:`MIN_LEFT_BEHIND` (8 px)
    or more and the box's centre by at most a third of that. Scene text the camera carries moves with its
    surroundings (a sign on a panned still: 36 px of their 42), a faint logo stays (the two above: 3 of 54 px, 2.7 of
    11.8); 8 px is three times the jitter of the detector's boxes of one faint word between anchors (2-3 px).
    Once the contrast is lifted the detector also boxes scene content that is no text, and
    in a locked-off shot such a box is at the same place in both anchors: a corner box counts only when the recogniser
    (PP-OCRv4's, :meth:`TextDetector.read`) reads a letter or digit in it, or in a box it matched, with confidence
    ``min_read`` or more (a bunny's ear in bigbuckbunny darkened to 0.3, a newcomer's clip: "M" at 0.15; the hard set's
    and the sweeps' logos found there read 0.52 or more but one, a framed green "K2" 13 % wide at alpha 0.3 over
    bikes.mp4's street at 320x180, read 0.13; docs/PERFORMANCE.md). ``min_read`` 0.3 sits between the two (2x over the
    ear, 1.7x under the lowest logo but one). RapidOCR's own ``text_score`` (0.5 in its config.yaml: the confidence
    under which it drops a reading) would leave two faint framed logos, read at 0.52 and 0.57, a hair over the line.

    Null (all three) when it cannot be told: no overlay was found and in fewer than ``min_pairs`` anchor pairs did the
    top or bottom third of the picture move with the camera by ``min_shift`` px or more (a locked-off shot, one whose
    only motion is a subject's, or fewer than 3 anchors), so a graphic without text would look like the scene there.
    0.0 area when it moved and nothing stayed put.

    Known limits: a fixed part of the camera rig (a dashboard, a helmet visor) is image-fixed too and reads as an
    overlay when it sits in the top or bottom third; a logo that never has moving picture around it (over a static
    sky in a locked-off shot, or over letterbox bars) is found only if the OCR detector reads it (in the whole frame or
    in the corners' closer look: a small 8 %-wide "HD" at alpha 0.5 over bigbuckbunny's still grass is read there
    in the whiteness view since 2026-12-03, many alpha-0.3 logos 8 % wide over a grey wall or foliage are not); a
    white logo over white picture is invisible to both. ``noise`` (squared Sobel units, ~1 grey level per
    pixel of slope) keeps flat regions from voting. ``found_boxes``, when given, is extended with the box (x, y, w, h,
    analysis px) of each graphic found (:func:`score_frames` leaves them out of the blur scores).
    """
    n, h, w = luma.shape
    none = dict.fromkeys(OVERLAY_COLUMNS)
    if n < 3:
        return none
    grads = gx, gy = gradients(luma if colour is None else colour_planes(colour))
    if flows is None:
        flows = anchor_flows(luma)
    if steps is None:
        steps = camera_steps(flows)
    # (a) image-fixed beats camera-moved, summed over the pairs in which the camera moved
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    probe = np.array([[x, y, 1.0] for y in (0.25 * h, 0.5 * h, 0.75 * h) for x in (0.25 * w, 0.5 * w, 0.75 * w)])
    # where overlays sit, the top and bottom thirds: the path of their content (median flow, summed)
    bands = [(0, h // 3), (h - h // 3, h)]
    paths = [np.vstack([[0.0, 0.0], np.cumsum([_median_flow(f[a:b]) for f in flows], axis=0)]) for a, b in bands]
    num, den, cnt = (np.zeros((h, w), np.float32) for _ in range(3))
    moved_pairs = 0  # pairs in which the top or bottom third moved as the camera did: the test can look there
    kernel = np.ones((5, 5), np.uint8)
    full = np.full((h, w), 255, np.uint8)
    for i in range(n):
        for j in range(i + 1, n):
            t = _chain(steps, i, j)[:2]
            if np.linalg.norm(probe @ t.T - probe[:, :2], axis=1).max() < min_shift:
                continue  # (a zoom moves the picture's outer parts, where overlays sit, and not its centre)
            for (a, b), path in zip(bands, paths, strict=True):
                centre = np.array([w / 2, (a + b) / 2, 1.0])
                if _with_camera(path[j] - path[i], t @ centre - centre[:2], min_shift):
                    moved_pairs += 1
                    break
            # float32 throughout (the gradients' type); OpenCV's arithmetic writes in place and takes masks
            t00, t01, t02, t10, t11, t12 = (np.float32(v) for v in t.ravel())
            dx = (t00 - 1) * xs + t01 * ys + t02
            dy = t10 * xs + (t11 - 1) * ys + t12
            moving = cv2.magnitude(dx, dy) >= min_shift
            scale = max(1e-6, math.hypot(t[0, 0], t[1, 0]))
            rx, ry = np.float32(t[0, 0] / scale), np.float32(t[1, 0] / scale)  # gradients turn with the picture
            mx = _warp(rx * gx[i] - ry * gy[i], t, (w, h))
            my = _warp(ry * gx[i] + rx * gy[i], t, (w, h))
            inside = cv2.warpAffine(full, t, (w, h), flags=cv2.INTER_NEAREST)
            ok = ((cv2.erode(inside, kernel) > 0) & moving).view(np.uint8)
            e_fixed = _energy(gx[j] - gx[i], gy[j] - gy[i])
            e_scene = _energy(gx[j] - mx, gy[j] - my)
            cv2.add(num, e_scene - e_fixed, dst=num, mask=ok)
            cv2.add(den, e_scene + e_fixed, dst=den, mask=ok)
            cv2.add(cnt, ok.astype(np.float32), dst=cnt)
    win = (9, 9)
    candidates = []
    if moved_pairs:
        floor = noise * cv2.boxFilter(cnt, -1, win) + 1e-3
        fixed = cv2.boxFilter(num, -1, win) / (cv2.boxFilter(den, -1, win) + floor)
        candidates += _components(fixed >= 0.3, min_area, max_side, margin)
    # (b) a pattern the median of the gradients keeps (Dekel et al.)
    median = _energy(_median0(gx), _median0(gy))
    energy = _energy(gx, gy).mean(axis=0)
    kept = cv2.boxFilter(median, -1, win) / (cv2.boxFilter(energy, -1, win) + noise)
    candidates += _components(kept >= 0.5, min_area, max_side, margin)
    layered = None  # (c)'s mask: where a fixed layer holds under the moving scene
    if layers and moved_pairs >= min_pairs:
        # (c) two layers over the whole picture (:func:`_two_layers` with the camera's motion for the ring's): the
        # scene, the anchors' gradients brought back to anchor 0 by the camera, and what stays in the frame
        back = [np.linalg.inv(_chain(steps, 0, k))[:2].astype(np.float32) for k in range(n)]
        ahead = [_chain(steps, 0, k)[:2].astype(np.float32) for k in range(n)]

        def move(a: np.ndarray, t: np.ndarray) -> np.ndarray:
            return _warp(a, t, (w, h), borderMode=cv2.BORDER_REPLICATE)

        layer, _ = _separate(list(grads), lambda a, k: move(a, ahead[k]), lambda a, k: move(a, back[k]))
        share = cv2.boxFilter(_energy(*layer), -1, win) / (cv2.boxFilter(energy, -1, win) + noise)
        layered = share >= 0.3
        candidates += _components(layered, min_area, max_side, margin)

    found: list[tuple[tuple[int, int, int, int], float]] = []  # (box, persistence)
    fine_grads = None  # the anchors' gradients at twice the analysis size, made at the first failed candidate
    short = min(h, w)
    if source is not None and min(source.shape[1:3]) < 2 * short:
        source = None  # the source has no more pixels than the analysis size
    unjudged = False  # a candidate in a corner the motion test could not judge

    def stayed(fixed_s: list[float], exact_s: list[float]) -> bool:
        return len(fixed_s) >= min_pairs and np.median(fixed_s) >= min_fixed and np.median(exact_s) >= min_exact

    def verify(g: tuple[np.ndarray, np.ndarray], box: tuple[int, int, int, int], scale: int = 1):
        """(anchor pairs judged, the stay-put scores of a candidate that passes the motion test or None, and then
        its box tightened to what stays in it)."""
        args = dict(min_shift=min_shift, noise=noise, scale=scale, own_when=stayed)
        fixed_s, exact_s, own = _stays_put(g, flows, steps, box, **args)
        if not stayed(fixed_s, exact_s) or np.mean(np.array(own) <= max_own) < min_still:
            return len(fixed_s), None, None  # it moved with its ring, or less than it (parallax) but moved
        # is it at the same pixels in every anchor, as a graphic is, or only still relative to its ring (a board
        # shaken with the frame while the scene pans)?
        tight = _tighten(g, box, noise) or box
        if in_place(g, tight, scale) < MIN_IN_PLACE:
            return len(fixed_s), None, None
        return len(fixed_s), fixed_s, tight

    def finer(box: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], float] | None:
        """A second look at twice the resolution, on the box tightened to what stays: a small logo's strokes are
        ~1 px at the analysis size, where the scene's gradients around them outweigh them."""
        nonlocal fine_grads
        if fine_grads is None:
            fine = resize_short(source, 2 * short)
            fine_grads = gradients(to_luma(fine) if colour is None else colour_planes(fine))
        scale = fine_grads[0].shape[1] // h
        tight = _tighten(fine_grads, tuple(scale * v for v in box), noise)
        if tight is None:
            return None
        _, fixed_s, _ = verify(fine_grads, tight, scale)
        if fixed_s is None:
            return None
        x, y, bw, bh = tight  # back to the analysis size, rounded outward
        x1, y1 = x // scale, y // scale
        return (x1, y1, -(-(x + bw) // scale) - x1, -(-(y + bh) // scale) - y1), float(np.mean(np.array(fixed_s) > 0))

    for box in dict.fromkeys(candidates):
        judged, fixed_s, tight = verify(grads, box)
        if fixed_s is not None:
            # the box of what stays in it (a candidate's component can take in picture around the graphic)
            found.append((tight, float(np.mean(np.array(fixed_s) > 0))))
            continue
        if judged < min_pairs:
            if abs(box[0] + box[2] / 2 - w / 2) >= (0.5 - CORNER_W) * w:
                unjudged = True
            continue
        seen = finer(box) if source is not None else None
        if seen is not None:
            found.append(seen)
            continue
        # the last look: a fixed layer under a moving scene (a faint logo over texture the two tests above weigh as
        # the scene), its box tightened to where that layer holds; only where (c) saw such a layer
        x, y, bw, bh = box
        if layered is None or not layered[y : y + bh, x : x + bw].any():
            continue
        share, rest, helped, tight = _two_layers(grads, flows, box, noise)
        if share >= min_layer and rest <= max_layer_rest and helped >= min_layer_helped and tight is not None:
            if in_place(grads, tight) >= MIN_IN_PLACE:
                found.append((tight, helped))

    def left_behind(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]]) -> bool:
        """Whether a box the corners' closer look read in the first anchor stayed where it was in the last (the
        nearest by its centre of ``others``, the boxes it matched there, that is the same box: IoU >= 0.5, not one
        nested in it) while the picture around it moved by :data:`MIN_LEFT_BEHIND` px or more between those two
        anchors, the box by at most a third of that."""
        same = [o for o in others if _iou(box, o) >= 0.5]
        if not same:
            return False
        pos, _ = _ring_path(flows, box, (h, w))
        ring = float(np.hypot(*(pos[-1] - pos[0])))
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        shift = min(math.hypot(o[0] + o[2] / 2 - cx, o[1] + o[3] / 2 - cy) for o in same)
        return ring >= MIN_LEFT_BEHIND and shift <= ring / 3

    def chroma_in_place(box: tuple[int, int, int, int]) -> bool:
        """Whether a box the corners' closer look read in the colour differences (Cr or Cb) is in place in them
        (:func:`in_place` on the R - Y and B - Y planes): a faint coloured logo at a coarse CRF over texture the
        camera moves through is swamped in luma by the texture's gradients, which move (a green alpha-0.4 "SPORT"
        over bikes.mp4's street at CRF 28: 2 anchors of 8 in place over the three planes, 8 of 8 in the colour
        differences). Not asked of the boxes read in the lightness or whiteness: an opaque white plate shaken 4 px
        with the frame (bench/board_bench.py) reads 4 of 8 over the three planes and 5 of 8 in the colour
        differences, at its edges against the scene."""
        if grads[0].shape[-1] != 3:
            return False
        return in_place((grads[0][..., 1:], grads[1][..., 1:]), box) >= MIN_IN_PLACE

    def text_test(
        boxes: list[np.ndarray] | None,
        same: Callable[[tuple, tuple], float] = _iou,
        reads: list[list[float]] | None = None,
        in_colour: list[bool] | None = None,
    ) -> None:
        """Text boxes at the same place (``same`` >= 0.5) in every OCR frame; with ``reads`` (one reading per box
        per frame), the best reading of the box and of those it matched at least ``min_read``; ``in_colour`` (per
        box of the first frame): read in the colour differences, so it may be in place in those alone."""
        frames = [[_rect(q) for q in b] for b in (boxes or [])]
        for k, box in enumerate(frames[0] if len(frames) >= 2 else []):
            x, y, bw, bh = box
            if bh > 0.25 * h or not _placed_like_overlay((x / w, y / h, (x + bw) / w, (y + bh) / h), w / h):
                continue
            matched = [[m for m, other in enumerate(f) if same(box, other) >= 0.5] for f in frames[1:]]
            if not all(matched):
                continue
            fixed_s = _stays_put(grads, flows, steps, box, min_shift=min_shift, noise=noise)[0]
            moves = len(fixed_s) >= min_pairs and np.median(fixed_s) < 0
            if moves and not (reads is not None and left_behind(box, [frames[-1][m] for m in matched[-1]])):
                continue  # it moves with the scene: text in the picture
            if in_place(grads, box) < MIN_IN_PLACE and not (in_colour and in_colour[k] and chroma_in_place(box)):
                continue  # the same text is elsewhere in some anchors: it moves with the frame (a board, a sign)
            if reads is not None:
                if [len(r) for r in reads] != [len(f) for f in frames]:
                    raise ValueError("corner_text: one reading per box per frame, or None")
                best = max([reads[0][k]] + [reads[i + 1][m] for i, ms in enumerate(matched) for m in ms])
                if best < min_read:
                    continue  # the recogniser reads no letter or digit in it: scene content the detector boxed
            found.append((box, 1.0))

    text_test(text_boxes)
    judged = moved_pairs >= min_pairs and not unjudged
    if not found and corner_text is not None and (corner_always or not judged):
        corner = corner_text(judged)
        reads = None if any(c[1] is None for c in corner) else [c[1] for c in corner]
        text_test([c[0] for c in corner], _nested, reads, corner[0][2])
    if found_boxes is not None:  # each graphic's own box (x, y, w, h), for the blur scores to leave out
        found_boxes.extend(b for b, _ in found)
    if not found:
        return none if moved_pairs < min_pairs else {**none, "overlay_area": 0.0}
    mask = np.zeros((h, w), bool)
    for x, y, bw, bh in (b for b, _ in found):
        mask[y : y + bh, x : x + bw] = True
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return {
        "overlay_area": float(mask.mean()),
        "overlay_box": [float(cols[0] / w), float(rows[0] / h), float((cols[-1] + 1) / w), float((rows[-1] + 1) / h)],
        "overlay_persistence": max(p for _, p in found),
    }


def sharpness(luma: np.ndarray) -> float:
    """Median over frames of the variance of the Laplacian (luma at the analysis resolution)."""
    return float(np.median([cv2.Laplacian(f, cv2.CV_64F).var() for f in luma]))


# A tile grid's phase: (down, across) in half tiles; None: the grid from the top-left corner (:func:`_tiles`)
Phase = tuple[int, int] | None
# the four phases focus, detail and noise_floor average over (schema 16): where the grid falls is noise of the measure
TILE_PHASES: tuple[Phase, ...] = ((0, 0), (0, 1), (1, 0), (1, 1))


def band_energies(
    luma: np.ndarray, tile: int = 32, phases: tuple[Phase, ...] | None = TILE_PHASES
) -> dict[Phase, list[tuple[np.ndarray, np.ndarray]]]:
    """Per tile-grid phase (:data:`TILE_PHASES`; ``phases`` None: the one grid from the corner, key None), per frame of
    (N, H, W) uint8 ``luma``, per ``tile`` px tile: the energy (variance) of its finest band I - G1*I and of the next
    octave G1*I - G2*I (Gaussian sigma 1 and 2 px), each a (rows, columns) float64 array (:func:`_tile_var`): what
    :func:`focus` and :func:`noise_floor` both read (:func:`blur_scores` makes them once)."""
    keys = (None,) if phases is None else phases
    out: dict[Phase, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in keys}
    for f in luma:
        x = f.astype(np.float32)
        g1 = cv2.GaussianBlur(x, (0, 0), 1.0)
        g2 = cv2.GaussianBlur(x, (0, 0), 2.0)
        for k in keys:
            out[k].append((_tile_var(x - g1, tile, k), _tile_var(g1 - g2, tile, k)))
    return out


def _phase_mean(value: Callable[[Phase], float | None], phases: tuple[Phase, ...] | None) -> float | None:
    """The mean of ``value(phase)`` over the tile-grid ``phases`` (None: the one grid from the corner), those that
    are None left out; None when all are."""
    got = [v for v in (value(k) for k in ((None,) if phases is None else phases)) if v is not None]
    return float(np.mean(got)) if got else None


def noise_floor(
    luma: np.ndarray,
    *,
    tile: int = 32,
    floor_pct: float = 10.0,
    min_tiles: int = 40,
    bands: dict[Phase, list[tuple[np.ndarray, np.ndarray]]] | None = None,
    exclude: np.ndarray | None = None,
    phases: tuple[Phase, ...] | None = TILE_PHASES,
) -> float | None:
    """The floor :func:`focus` subtracts from its finest band, as a standard deviation: the quietest tenth of the
    picture's finest detail.

    luma: (N, H, W) uint8, the frames :func:`focus` reads (the analysis size, or the picture's own size under 128 px).
    Per frame, the square root of the ``floor_pct`` percentile of the finest band's (I - G1*I) energy over the frame's
    ``tile`` px tiles, grey levels (0-255 luma); the median over frames. None when the frames are smaller than one
    tile; 0 for a frame of fewer than ``min_tiles`` tiles, where focus takes no floor (see there). ``bands``: the
    frames' :func:`band_energies` when the caller has them (made here when None). Where a tenth of the
    picture is flat, that is the grain, sensor and coding noise left at the analysis size (the block-based estimators
    of Lee & Hoppel, IGARSS 1989, and Olsen, CVGIP 55(4), 1993); where none is, it is the quietest texture's detail, so
    it is an upper bound on the noise, not an estimate of it. Measured on H.264 (CRF 18) copies of
    bench/filters_bench.py's sources (bench/grain_focus_bench.py): clean shots 0.5-3.6 (bikes.mp4's fast third shot and
    bigbuckbunny's first half, detailed edge to edge, the highest), the same under grain of sigma 7 grey levels at
    640x360 2.3-4.6, each 0.3-2.4 above its clean shot. Stored as a diagnostic of what focus judged above, with no
    rule; from schema 10 its presence marks a row whose focus and detail have the noise floor (schema 12 marks its
    rows by ``overlay_layers``, :data:`SUPERSEDED`). ``exclude``: the overlay graphics' pixels, their tiles left out
    (as :func:`focus`'s). The mean over the tile grid's ``phases``, as :func:`focus`.
    """
    if min(luma.shape[1:3]) < tile + (0 if phases is None else tile // 2):
        return None
    bands = band_energies(luma, tile, phases) if bands is None else bands

    def one(phase: Phase) -> float:
        floors = []
        picture = _picture_tiles(luma.shape[1:3], tile, exclude, phase)
        for fine, _ in bands[phase]:
            floors.append(np.sqrt(np.percentile(fine[picture], floor_pct)) if fine.size >= min_tiles else 0.0)
        return float(np.median(floors))

    return _phase_mean(one, phases)


def focus(
    luma: np.ndarray,
    *,
    tile: int = 32,
    min_std: float = 6.0,
    floor_pct: float = 10.0,
    top: float = 0.1,
    percentile: float = 95.0,
    min_tiles: int = 40,
    bands: dict[Phase, list[tuple[np.ndarray, np.ndarray]]] | None = None,
    exclude: np.ndarray | None = None,
    phases: tuple[Phase, ...] | None = TILE_PHASES,
) -> float | None:
    """Focus of the best-focused part of the picture, independent of its contrast and robust to grain: the blur
    measure.

    luma: (N, H, W) uint8 at the analysis resolution; ``bands``: their :func:`band_energies` when the caller has them
    (made here when None). Per frame, the picture is split into ``tile`` px tiles and in each the energy of the finest
    band (I - G1*I, Gaussian sigma 1 px) and of the next octave (G1*I - G2*I) is measured. Each band's *noise floor*,
    the ``floor_pct`` percentile of that band's energy over the frame's tiles (the least-textured tiles hold little but
    grain, sensor and coding noise), is subtracted from every tile's energy of that band. Of the tiles with some
    structure (luma std >= ``min_std``), the ``top`` fraction with the most floor-subtracted mid-band energy (the
    strongest structure, where the signal stands furthest above the noise) is kept, and the ``percentile`` of their
    fine-to-mid ratio is the frame's value: a two-band estimate of the local spectral slope where the picture is best
    focused. The median over frames is the clip's value; None when no tile has structure (a blank clip). Natural images
    in focus have about as much energy per octave at every scale (their 1/f spectrum) and keep a ratio near 1 or above;
    defocus removes the finest band first. A frame of fewer than ``min_tiles`` tiles (a picture judged at its own size,
    under 128 px: 90x160 px has 10) takes no floor: a low percentile of so few tiles is one of them, texture rather
    than noise (with the floor, 14 of the demo's 94 sharp 160x90 windows of transnet_test fell under min_detail;
    without, none did and 91 of them heavily blurred did). A ratio of energies: it does not move with exposure or
    contrast (night, high-key grades), unlike the Laplacian variance. Frames at the analysis size; a picture smaller
    than it is judged by :func:`blur_scores`.

    Why the floor (schema 10; until then the ratio of every structured tile, 90th percentile): grain (Gaussian noise
    of sigma 7 grey levels, new in every frame) fills the finest band and, weakly, the mid band; the tiles' 90th
    percentile then picked flat tiles whose ratio is the noise's own (white noise reads ~20), so defocus under grain
    read 1.04-7.5 and passed as sharp, and heavy blur, with nothing left in either band but the encoder's noise,
    rose back above the line too. The floor is measured in the very band it is subtracted from, on the decoded frame,
    so it holds what the encoder left of the grain (a white-noise model, e.g. Donoho-Johnstone's MAD of the finest
    Haar band times the band's gain, underestimates it: libx264 shapes the noise). Choosing the tiles by
    floor-subtracted mid-band energy keeps the ratio where the signal dominates (a ratio of two noisy energies is
    unstable where both are small). Both parts are needed: without the floor, defocus under grain read up to 0.84;
    the floor under the old pooling, up to 319.

    Sources: the local spectral slope and max-over-blocks pooling, Vu & Chandler, "S3: A spectral and spatial measure
    of local perceived sharpness in natural images", IEEE TIP 21(3), 2012; the noise estimated from the
    least-textured blocks, Lee & Hoppel, "Noise modeling and estimation of remotely-sensed images", IGARSS 1989,
    Olsen, "Estimation of noise in images: an evaluation", CVGIP 55(4), 1993, and the weak-texture patches of Liu,
    Tanaka & Okutomi, "Single-image noise level estimation for blind denoising", IEEE TIP 22(12), 2013. Measured at 224
    px on H.264 (CRF 18) copies of bench/filters_bench.py's seven sources and bigbuckbunny's grass filling the frame
    (bench/grain_focus_bench.py): Gaussian defocus of sigma 2.0-2.5 px at 640x360, bare or under grain of sigma 4 or 7,
    0.27-0.455 (schema 16's four phases; one grid: 0.27-0.454); heavy blur (sigma 5), bare or grained, 0.18-0.69 (a
    newcomer's under grain up to 0.76: :func:`detail` catches it); clean shots and their grain, shallow depth-of-field,
    night, high-key and grained-grade variants 0.59-2.8 (one grid: 0.60-2.8; the lowest: bikes.mp4's motion-blurred
    first shot with a shallow depth of field). Grain moves a clip's reading by 0.93-1.09x (the old pooling:
    1.04-10.8x). Known limits: a full-frame fine texture with no flat tile to take a floor from (the grass) loses some
    of its own signal to the floor: defocused 0.40-0.45, in focus 1.47 and up; impulse noise (salt and pepper, dust
    specks, hot pixels) is no floor: a few pixels far off their neighbours fill the finest band of the best tiles, and
    blurred shots under it read sharp.

    ``exclude``: (H, W) bool, the pixels of overlay graphics (:func:`overlay_scores`' boxes, burned-in subtitle
    lines): the tiles holding any of them are left out, floor included. A graphic is not the picture, and its strokes
    are the sharpest, highest-contrast thing in a defocused frame: since 2026-12-04, before which a channel logo over a
    defocused shot of the hard set's sources read focus 1.1-2.2 (0.29-0.39 without it) and a subtitle line 2.2-3.1,
    passing as sharp wherever the text rules did not drop them (bench/overlay_blur_bench.py). A graphic the overlay
    test does not find still counts (an icon over a locked-off defocused shot: 0.67-1.1).

    ``phases``: the clip's value is the mean of the above over the tile grid's four phases (:data:`TILE_PHASES`:
    the grid moved by half a tile across, down and both, over the frame less half a tile), since schema 16; None:
    one grid from the corner (schema 15 and before, and pictures judged at their own size). Where the grid falls
    moved a clip's reading by up to 17 % (a defocused bigbuckbunny shot of the hard set read 0.399, 0.466, 0.404
    and 0.451 at the four phases, the first two either side of ``filters.min_focus``; the grid from the corner 0.394):
    noise of the measure, which the mean takes out (0.430). Block-based sharpness maps are computed over overlapping
    blocks for the same reason (S3's spectral map, Vu & Chandler 2012).
    """
    if min(luma.shape[1:3]) < tile + (0 if phases is None else tile // 2):
        return None
    bands = band_energies(luma, tile, phases) if bands is None else bands

    def one(phase: Phase) -> float | None:
        values = []
        picture = _picture_tiles(luma.shape[1:3], tile, exclude, phase)
        for f, (fine, mid) in zip(luma, bands[phase], strict=True):
            structured = (np.sqrt(_tile_var(f.astype(np.float32), tile, phase)) >= min_std) & picture
            if not structured.any():
                continue
            if fine.size >= min_tiles:  # enough tiles for a low percentile of them to be the noise
                fine = fine - np.percentile(fine[picture], floor_pct)
                mid = mid - np.percentile(mid[picture], floor_pct)
            fine, mid = fine[structured], mid[structured]
            keep = np.argsort(mid, kind="stable")[-max(1, int(np.ceil(top * mid.size))) :]
            ratios = np.maximum(fine[keep], 0) / (np.maximum(mid[keep], 0) + 1e-3)
            values.append(float(np.percentile(ratios, percentile)))
        return float(np.median(values)) if values else None

    return _phase_mean(one, phases)


# blur_scores: the smallest picture judged at the analysis size, and the exponent of its calibration (see there)
BLUR_MIN_UPSAMPLED = 128
BLUR_SIZE_EXPONENT = 0.4
# blur_scores: a picture under BLUR_MIN_UPSAMPLED px is judged as schema 9 judged it (see there), on today's scale:
# schema 10's min_focus over schema 9's
OWN_SIZE_FOCUS = 0.46 / 0.62


def blur_scores(
    luma: np.ndarray, active: np.ndarray, size: int, exclude: np.ndarray | None = None
) -> tuple[float | None, float | None, float | None, float | None, float | None, float | None]:
    """(:func:`focus`, :func:`detail`, :func:`noise_floor`, :func:`isotropy`, :func:`streak`, :func:`cepstrum_dip`)
    of a clip, on one scale for every picture size, so that one ``filters.min_focus``, one ``filters.min_detail`` and
    one ``filters.min_isotropy`` / ``filters.max_streak`` / ``filters.max_cepstrum_dip`` hold for all (noise_floor, in
    grey levels, is read on the same frames and not calibrated).

    luma: (N, H, W) uint8, the anchors at the analysis size (``size`` px on the shorter side; bilinear upsampling when
    the picture is smaller, :func:`resize_short`); active: the same anchors' active picture as decoded, (N, H', W', 3)
    RGB uint8, ``short`` = min(H', W') px on its shorter side. A defect is as large as the picture (a defocus of
    sigma 2 px at 640x360 is 0.8 px at 176x144), so a picture judged at its own size shows a small one as a small one:
    judged there, sigma 2-2.5 px defocus (at 640x360, scaled) of bikes.mp4 and bigbuckbunny shots downscaled to
    128-208 px reads focus up to 0.97, above min_focus (0.46), while the same shots in focus read 0.64 and up. At the
    analysis size a defect is as large as on any other source, but bilinear upsampling by ``size / short`` also
    lowers what sharp pictures read (by more than what blurred ones read), so both focus and detail are divided by
    ``(short / size) ** 0.4`` (:data:`BLUR_SIZE_EXPONENT`), fitted on shots of bikes.mp4 and bigbuckbunny at 128, 160
    and 192 px and checked on other shots of them at 136, 176 and 208 px (schema 5's focus; for schema 10's,
    exponents 0.2-0.4 separate alike, 0.3 best by 1.11x against 1.09x, so it was kept): defocus then reads
    focus 0.29-0.44, in focus and the shallow depth-of-field, night and high-key variants 0.48 and up (the lowest:
    bikes.mp4's motion-blurred first shot); heavy blur (sigma 5 px) reads detail 0.020-0.040, the rest 0.104 and up
    (bench/blur_sizes_bench.py). The factor is 1 at ``size`` and above: a picture that large reads as it always did.

    A picture under :data:`BLUR_MIN_UPSAMPLED` (128) px has too few pixels for it: it is judged at its own size,
    where mild defocus is not seen (below the default ``filters.min_short_side``, 128, the clip is
    ``resolution_low`` anyway), and as schema 9 judged it: its few tiles (10 at 90x160 px) are too few for a noise
    floor or for pooling a tenth of them, so focus is the 90th percentile of every structured tile's ratio with no
    floor, times :data:`OWN_SIZE_FOCUS` (0.46 / 0.62, the ratio of the two schemas' ``min_focus``: the same verdicts),
    and detail takes no floor (:func:`detail`'s ``min_tiles``). On the 94 sharp 160x90 windows of transnet_test that
    `clipforge demo` keeps: in focus focus 0.72 and up, detail 0.116 and up, none blurry; heavily blurred (sigma 5 at
    640x360, scaled) all 94 blurry; with the floor and pooling of larger pictures 14 sharp ones fell under
    min_detail and 3 heavy ones passed. Each None as :func:`focus` / :func:`detail` / :func:`noise_floor`; isotropy
    is None wherever detail is (a clip with no structured tile).

    isotropy is a ratio of two of the picture's own directional balances, so it needs no calibration: it is read on
    the same frames as the other two (at the analysis size, or at its own size under 128 px with its reference band
    one octave finer, the same share of the picture) and measured alike on 68-120 px pictures at their own size and
    150-210 px ones upsampled (in focus 0.66 and up, see :func:`isotropy`). cepstrum_dip is read on the same frames,
    in px of them: a smear is judged by its length in the frames read (a 10 px smear at 640x360 is 6.2 px at 224,
    2.5 px in a 90 px picture read at its own size, under its ``lo``: those are ``resolution_low`` anyway).

    ``exclude``: (H, W) bool at ``luma``'s size, the pixels of overlay graphics (logos, subtitle lines): focus,
    detail and noise_floor leave out the tiles that hold any (see :func:`focus`). isotropy, streak and cepstrum_dip
    keep them: their structure tensor caps each tile's weight already (:func:`_tensor`).
    """
    short = min(active.shape[1:3])
    own = short < BLUR_MIN_UPSAMPLED
    frames = to_luma(active) if own else luma
    if exclude is not None and exclude.shape != frames.shape[1:3]:
        exclude = cv2.resize(exclude.astype(np.uint8), frames.shape[1:3][::-1], interpolation=cv2.INTER_NEAREST) > 0
    phases = None if own else TILE_PHASES  # a picture judged at its own size has too few tiles to move the grid
    enough = min(frames.shape[1:3]) >= 32 + (0 if phases is None else 16)  # one tile, and half a tile to move by
    bands = band_energies(frames, phases=phases) if enough else None  # focus's and noise_floor's tiles
    if own:  # schema 9's reading (every structured tile, no floor), on today's scale: see OWN_SIZE_FOCUS
        f = focus(frames, top=1.0, percentile=90.0, bands=bands, exclude=exclude, phases=None)
        f = None if f is None else f * OWN_SIZE_FOCUS
    else:
        f = focus(frames, bands=bands, exclude=exclude)
    d = detail(frames, exclude=exclude, phases=phases)
    n = noise_floor(frames, bands=bands, exclude=exclude, phases=phases)
    fine = None if d is None else fine_tensors(frames)
    iso = None if d is None else isotropy(frames, reference=(2.0, 4.0) if own else (4.0, 8.0), fine=fine)
    spread = None if iso is None else streak(frames, fine=fine)
    dip = None if iso is None else cepstrum_dip(frames, fine=fine)
    if BLUR_MIN_UPSAMPLED <= short < size:
        k = (short / size) ** BLUR_SIZE_EXPONENT
        f, d = (None if f is None else f / k), (None if d is None else d / k)
    return f, d, n, iso, spread, dip


def _tiles(a: np.ndarray, tile: int, phase: Phase = None) -> np.ndarray:
    """The whole ``tile`` x ``tile`` tiles of (H, W) ``a`` as a (rows, tile, columns, tile) view: reduce over axes
    (1, 3) for one value per tile. ``phase`` None: the grid from the top-left corner, (H // tile, W // tile) tiles
    (the partial ones at the right and bottom left out); (py, px) (:data:`TILE_PHASES`): the grid over the frame less
    half a tile, moved down by py and across by px half tiles, ((H - tile // 2) // tile, (W - tile // 2) // tile)
    tiles at every phase."""
    y0, x0, ty, tx = _grid(a.shape[:2], tile, phase)
    return a[y0 : y0 + ty * tile, x0 : x0 + tx * tile].reshape(ty, tile, tx, tile)


def _grid(shape: tuple[int, int], tile: int, phase: Phase) -> tuple[int, int, int, int]:
    """(top, left, rows, columns) of :func:`_tiles`' grid at ``phase`` on an (H, W) = ``shape`` frame."""
    half = 0 if phase is None else tile // 2
    y0, x0 = (0, 0) if phase is None else (phase[0] * half, phase[1] * half)
    return y0, x0, (shape[0] - half) // tile, (shape[1] - half) // tile


def _picture_tiles(shape: tuple[int, int], tile: int, exclude: np.ndarray | None, phase: Phase = None) -> np.ndarray:
    """Which whole ``tile`` px tiles of an (H, W) = ``shape`` frame (:func:`_tiles` at ``phase``) hold picture only:
    (rows, columns) bool, False where ``exclude`` ((H, W) bool, or None: none) marks any pixel (an overlay graphic).
    All True when ``exclude`` would leave no tile."""
    if exclude is None or not exclude.any():
        return np.ones(_grid(shape, tile, phase)[2:], bool)
    picture = ~_tiles(exclude, tile, phase).any(axis=(1, 3))
    return picture if picture.any() else np.ones_like(picture)


def _tile_var(a: np.ndarray, tile: int, phase: Phase = None) -> np.ndarray:
    """Variance of each whole ``tile`` x ``tile`` tile of (H, W) ``a`` (:func:`_tiles` at ``phase``): (rows,
    columns) float64."""
    return _tiles(a, tile, phase).astype(np.float64).var(axis=(1, 3))


def detail(
    luma: np.ndarray,
    *,
    tile: int = 32,
    min_std: float = 6.0,
    floor_pct: float = 25.0,
    percentile: float = 99.0,
    min_tiles: int = 40,
    exclude: np.ndarray | None = None,
    phases: tuple[Phase, ...] | None = TILE_PHASES,
) -> float | None:
    """Share of the best-detailed region's luma variance at scales under 2 px, above the noise: the guard against
    heavy blur.

    luma: (N, H, W) uint8, the frames :func:`focus` reads. Per frame, the energy of I - G2*I (Gaussian sigma 2 px)
    is measured in every ``tile`` px tile; its noise floor, the ``floor_pct`` percentile over the frame's tiles (as in
    :func:`focus`), is taken out of both that energy and the tile's variance (grain's energy is nearly all under 2
    px: white noise has 98 % of it there). In each tile whose floor-subtracted variance is still structure (>=
    ``min_std`` squared grey levels) the share is the band's energy over the variance; the ``percentile`` over tiles
    (99: the best-detailed tiles, so a shallow depth of field keeps its sharp subject) per frame, the median over
    frames the clip's value, in [0, 1]; None when no tile has structure. A frame of fewer than ``min_tiles`` tiles
    takes no floor, as in :func:`focus`. A ratio of energies: it does not move with
    exposure or contrast.

    Why :func:`focus` needs it: a picture blurred far beyond ~2.5 px at the analysis size has little left in either
    of focus's bands but noise; this share falls monotonically with blur. The share of a picture's energy at high
    frequencies as a no-reference blur measure: De & Masilamani, "Image sharpness measure for blurred images in
    frequency domain", Procedia Engineering 64, 2013; the max-over-blocks pooling as for focus (Vu & Chandler, S3,
    2012), the noise floor as for focus (Lee & Hoppel 1989; Liu, Tanaka & Okutomi 2013). Measured (bench/
    grain_focus_bench.py, 224 px, H.264 CRF 18): Gaussian blur of sigma 5 px at 640x360, bare or under grain of
    sigma 7, 0.020-0.040 (without the floor, schema 9 and before: up to 0.37 under grain); every clean shot and its
    graded or grained variants 0.124 and up; grain moves a clip's reading by 0.85-1.04x. Mild defocus (sigma 2-2.5
    px at 640x360) reads 0.06-0.17: focus is what catches it. ``exclude``: the overlay graphics' pixels, their tiles
    left out (as :func:`focus`'s). The mean over the tile grid's ``phases``, as :func:`focus` (the hard set's
    readings moved by 0.71-1.10x with the grid's phase, 5th-95th percentile).
    """
    if min(luma.shape[1:3]) < tile + (0 if phases is None else tile // 2):
        return None
    frames = [f.astype(np.float32) for f in luma]
    fine_images = [x - cv2.GaussianBlur(x, (0, 0), 2.0) for x in frames]

    def one(phase: Phase) -> float | None:
        values = []
        picture = _picture_tiles(luma.shape[1:3], tile, exclude, phase)
        for x, band in zip(frames, fine_images, strict=True):
            fine = _tile_var(band, tile, phase)
            floor = float(np.percentile(fine[picture], floor_pct)) if fine.size >= min_tiles else 0.0
            var = _tile_var(x, tile, phase) - floor
            structured = (var >= min_std**2) & picture
            if structured.any():
                share = np.maximum(fine[structured] - floor, 0) / var[structured]
                values.append(float(np.percentile(share, percentile)))
        return float(np.median(values)) if values else None

    return _phase_mean(one, phases)


def _tensor(band: np.ndarray, *, tile: int = 16, cap: float = 32.0) -> tuple[float, float, float] | None:
    """The gradient structure tensor (sum gx^2, sum gx gy, sum gy^2; Sobel) of (H, W) float32 ``band``, summed over
    ``tile`` px tiles (the partial ones at the right and bottom left out), each tile's weight capped so that it adds
    at most ``cap`` times the median tile's energy: a few tiles of much higher contrast than the scene (burned-in
    subtitles, a logo: their strokes are vertical at the finest scale and a horizontal band at the coarser one)
    would otherwise decide the whole picture's (a subtitle line over a bikes.mp4 shot read balance 0.61 uncapped,
    0.81 capped; the shot itself 0.79). None for a flat band or one smaller than a tile."""
    gx = cv2.Sobel(band, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(band, cv2.CV_32F, 0, 1)
    a, b, c = (_tiles(t, tile).sum(axis=(1, 3), dtype=np.float64) for t in (gx * gx, gx * gy, gy * gy))
    energy = a + c
    if not (energy > 0).any():  # also a band smaller than one tile
        return None
    w = np.minimum(1.0, cap * float(np.median(energy[energy > 0])) / np.maximum(energy, 1e-12))
    a, b, c = float((a * w).sum()), float((b * w).sum()), float((c * w).sum())
    return None if a + c <= 1e-6 else (a, b, c)


def _balance(t: tuple[float, float, float] | None) -> float | None:
    """Directional balance of a structure tensor (:func:`_tensor`): its smaller over its larger eigenvalue (Bigün &
    Granlund, "Optimal orientation detection of linear symmetry", ICCV 1987), i.e. the least over the most gradient
    energy in any direction, in [0, 1]; None for None (a flat band)."""
    if t is None:
        return None
    a, b, c = t
    half, disc = (a + c) / 2, math.sqrt(((a - c) / 2) ** 2 + b * b)
    return (half - disc) / (half + disc)


def fine_tensors(luma: np.ndarray) -> list[tuple[float, float, float] | None]:
    """Per frame of (N, H, W) uint8 ``luma``, the structure tensor (:func:`_tensor`) of its finest band I - G1*I
    (Gaussian sigma 1 px): what :func:`isotropy` and :func:`streak` both read (:func:`blur_scores` makes it once)."""
    out = []
    for f in luma:
        x = f.astype(np.float32)
        out.append(_tensor(x - cv2.GaussianBlur(x, (0, 0), 1.0)))
    return out


def isotropy(
    luma: np.ndarray,
    *,
    reference: tuple[float, float] = (4.0, 8.0),
    eps: float = 0.05,
    fine: list[tuple[float, float, float] | None] | None = None,
) -> float | None:
    """How evenly the picture's finest detail is spread over directions, relative to its coarser structure: the
    motion-blur measure (camera shake, a smear), which neither :func:`focus` nor :func:`detail` sees.

    luma: (N, H, W) uint8, the frames :func:`focus` reads; ``fine``: their :func:`fine_tensors` when the caller has
    them (made here when None). Per frame, the directional balance (:func:`_balance`: the least over the most
    gradient energy in any direction, from the structure tensor) of the finest band (I - G1*I,
    Gaussian sigma 1 px) is divided by that of a coarser ``reference`` band (G4*I - G8*I at the analysis size; a
    picture judged at its own size, under 128 px, is given G2*I - G4*I by :func:`blur_scores`, the same share of
    the picture): ``(fine + eps) / (reference + eps)``, median over frames; None when no frame has structure in both
    bands. Motion blur along one direction removes that direction's finest detail (a line of L px zeroes frequencies
    from 1/L up), so the fine band turns one-directional while the reference band, coarser than the smear, keeps the
    scene's own balance; the scene's orientation (a street of verticals, a horizon) is in both bands and cancels.
    Defocus is isotropic and leaves it near 1 (focus sees that). ``eps`` keeps a scene of one direction only
    (stripes) from dividing two near-zero balances.

    Motion blur told from the anisotropy of the picture's gradients follows Liu, Li & Jia, "Image partial blur
    detection and classification", CVPR 2008, and Chakrabarti, Zickler & Freeman, "Analyzing spatially-varying
    blur", CVPR 2010; the structure tensor is Bigün & Granlund 1987. Measured (bench/filters_bench.py's sources,
    lines of 6-16 px at 640x360 at 0-135 degrees, ``pipeline.defects.smear``, and a newcomer's own camera-shake
    clips of 8-32 px): clean shots and their shallow depth-of-field, night, high-key, scene-text, subtitle,
    letterbox and grain variants 0.86 and up, the newcomer's clean and graded clips 0.69 and up (static blinds over
    a pan; pans of 8 px a frame 0.84); 68-120 px letterboxed pictures and 160x90 transnet_test windows at their own
    size 0.66 and up; Gaussian defocus 0.91-1.7; smears of 10-32 px that focus and detail pass 0.57 and under (6 px:
    18 of 23 under 0.62). A reference band of G2-G4 at the analysis size (first tried) read 0.75-0.78 on a 16 px
    smear of the newcomer's: the smear reached into it.

    Known limit, why the rule also reads :func:`streak`: fine detail that runs one way while the coarser structure
    does not reads like a smear: clean close-ups of grass 0.20-0.37, scenes behind blinds or stripes 0.10-0.14 (a
    second newcomer's own clips), a brick wall 0.57. A smear across the content's dominant gradients reads higher
    than one along them (a 25 px smear at 135 degrees 0.64-0.70 where the same at 45 degrees read 0.36-0.52: the
    content's orientation, not a fault of the measure).
    """
    lo, hi = reference
    values = []
    for f, t in zip(luma, fine_tensors(luma) if fine is None else fine, strict=True):
        x = f.astype(np.float32)
        glo, ghi = (cv2.GaussianBlur(x, (0, 0), s) for s in (lo, hi))
        fine_balance, coarse = _balance(t), _balance(_tensor(glo - ghi))
        if fine_balance is not None and coarse is not None:
            values.append((fine_balance + eps) / (coarse + eps))
    return float(np.median(values)) if values else None


def _weak_direction(t: tuple[float, float, float]) -> tuple[float, float]:
    """The unit vector (ux, uy) at right angles to the dominant orientation of structure tensor ``t`` (Sxx, Sxy, Syy;
    :func:`_tensor`): t = atan2(2 Sxy, Sxx - Syy) / 2 + 90 degrees (Bigün & Granlund, ICCV 1987), the direction a
    smear runs along (:func:`streak`, :func:`cepstrum_dip`)."""
    sxx, sxy, syy = t
    angle = 0.5 * math.atan2(2 * sxy, sxx - syy) + math.pi / 2
    return math.cos(angle), math.sin(angle)


def streak(
    luma: np.ndarray, *, lag: float = 3.0, margin: int = 4, fine: list[tuple[float, float, float] | None] | None = None
) -> float | None:
    """How far the picture's derivative along its weakest direction stays correlated: with a low :func:`isotropy`,
    tells motion blur (camera shake, a smear) from clean detail that runs one way (grass, blinds, stripes, brick), in
    [-1, 1].

    luma: (N, H, W) uint8, the frames :func:`isotropy` reads; ``fine``: their :func:`fine_tensors` when the caller
    has them (made here when None). Per frame:

    1. the weak direction u = (cos t, sin t), at right angles to the dominant orientation of the finest band's
       structure tensor (I - G1*I, Gaussian sigma 1 px; :func:`_tensor`, its tiles capped as for isotropy):
       t = atan2(2 Sxy, Sxx - Syy) / 2 + 90 degrees (Bigün & Granlund, ICCV 1987). A smear runs along u (it removes
       the fine detail along it); so does a texture whose fine detail runs one way;
    2. d, the derivative of I along u (central differences: u_x dI/dx + u_y dI/dy);
    3. the normalised correlation of d with itself moved ``lag`` px along u (bilinear), over the frame less a
       ``margin`` px border; 0 when d is zero (nothing varies along u).

    Median over frames; None where isotropy is None (no frame with a finest band to orient by).

    Why: a smear of L px is a box along u, so the smeared picture's d is the box average of the sharp picture's
    derivative, and its autocorrelation along u is the sharp one's widened by the box's own (a triangle L px wide):
    it stays correlated for about L px, whatever the content. Yitzhaky & Kopeika, "Identification of blur parameters
    from motion blurred images", Graphical Models and Image Processing 59(5), 1997, read the blur's extent off this
    autocorrelation; in the frequency domain it is the sinc of Cannon, "Blind deconvolution of spatially invariant
    image blurs with phase", IEEE TASSP 24(1), 1976. A texture whose fine detail runs along u (grass blades, blinds,
    mortar) has little derivative along u, and what it has is sharp (blade tips, bends, joints): it decorrelates in
    a pixel or two. Defocus, upsampling and a shot's own pan blur also read high, but they blur every direction, so
    the rule reads streak only where isotropy is low (``filters.max_streak``), and focus sees the rest.

    ``lag`` 3 px at the analysis size is half a 10 px smear at 640x360 (6.2 px at 224 px), where the triangle is
    ~0.5. Measured by a helper (8 anchors at 224 px after H.264 CRF 18; bench/motion_blur_bench.py rebuilds it):
    smears of 10 and 16 px at 0-135 degrees 0.44-0.81 (25 px 0.69-0.86); the hard set's clean shots and their
    variants -0.13-0.59 (the high ones with isotropy 0.86 and up); one-way textures (bigbuckbunny's grass close-ups,
    blinds, stripes, synthetic brick walls) and 54 native-resolution crops of the sources with isotropy under 0.62
    -0.35-0.31. Cost: ~1 ms a 224x398 frame.
    """
    values = []
    for f, t in zip(luma, fine_tensors(luma) if fine is None else fine, strict=True):
        if t is None:
            continue
        x = f.astype(np.float32)
        ux, uy = _weak_direction(t)
        d = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=1) * ux + cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=1) * uy
        moved = np.float32([[1, 0, lag * ux], [0, 1, lag * uy]])
        e = cv2.warpAffine(d, moved, (d.shape[1], d.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        d, e = d[margin:-margin, margin:-margin], e[margin:-margin, margin:-margin]
        den = math.sqrt(float(np.square(d).sum()) * float(np.square(e).sum()))
        values.append(float((d * e).sum()) / den if den > 0 else 0.0)
    return float(np.median(values)) if values else None


def cepstrum_dip(
    luma: np.ndarray,
    *,
    fine: list[tuple[float, float, float] | None] | None = None,
    lo: int = 4,
    hi: int = 32,
    bins: int = 64,
) -> float | None:
    """How deep the picture's spectrum along its weakest direction is notched at one period: the zeros a smear's
    straight path puts there, which a Gaussian blur (defocus, shallow depth of field) and a one-way texture do not
    have. Natural-log power units (a cepstral amplitude): ~0-0.05 on a picture with no straight motion blur, 0.1-0.6
    under a smear (a source's own motion blur, a pan shot with an open shutter, notches it too: up to ~0.2).

    luma: (N, H, W) uint8, the frames :func:`isotropy` reads; ``fine``: their :func:`fine_tensors` when the caller
    has them (made here when None). Per frame:

    1. the weak direction u (:func:`streak`'s: at right angles to the finest band's dominant orientation);
    2. the power spectrum of the Hann-windowed frame (2-D FFT), each frequency binned by its component along u,
       |f . u|, into ``bins`` bins over 0-0.5 cycles/px (at most half the shorter side; an empty bin takes its
       neighbours' value): the mean over every frequency across u, without resampling the picture at any angle;
       times (2 sin pi f)^2, the derivative along u, which whitens a natural picture's 1/f^2 fall;
    3. its real cepstrum c(q), the inverse FFT of the log of that power, q in px;
    4. the depth of its lowest point, -min c(q) for q in [``lo``, ``hi``] px (the smear lengths judged; at the
       analysis size 4 px is a 6.4 px smear at 640x360).

    Median over frames; None where no frame has a weak direction (isotropy None) or every frame's shorter side is
    under 4 ``lo`` + 2 px (too few quefrencies).

    Why: a smear of L px along u is a box of L px along u: its transfer function sin(pi L f)/(pi L f) is zero at
    every multiple of 1/L along u, a ripple of period 1/L in the log spectrum that the cepstrum turns into a negative
    peak at q = L (Cannon, "Blind deconvolution of spatially invariant image blurs with phase", IEEE TASSP 24(1),
    1976, which finds a blur's length from these zeros; the two-dimensional cepstrum is Rom, "On the cepstrum of
    two-dimensional functions", IEEE Trans. Information Theory 21(2), 1975). Defocus and a shallow depth of field's
    background are Gaussian blurs, whose log spectrum falls smoothly: no peak. So where :func:`isotropy` and
    :func:`streak` read a one-way texture blurred by depth of field like a smear (its derivative along u spread over
    a few px either way), this reads the smear's straight path. Measured (bench/motion_blur_bench.py and three
    newcomers' clips): smears of 10-16 px at 640x360 that streak puts under 0.65 read 0.10 and up (the dip at
    q = 6.2 and 10 px, their lengths at 224 px), clean clips with isotropy under 0.62 and streak over 0.38 (depth of
    field over grass, a still picture zoomed) 0.007-0.045. A smear along a shot's own motion blur (bikes.mp4's pan)
    or of a texture that runs along it reads as little as 0.025: its streak (0.70 and up) drops it alone
    (``filters.max_streak_alone``). A diagonal smear's notches are shallower (the line's anti-aliasing); a curved
    or uneven shake has no clean notch: streak alone judges those. Cost: ~2 ms a 224x398 frame (OpenCV's DFT).
    """
    values = []
    h, w = luma.shape[1:3]
    n = min(bins, min(h, w) // 2)
    if n <= 2 * lo:  # too few quefrencies to judge
        return None
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None] * (2 * n)  # in bins
    fx = np.fft.fftfreq(w).astype(np.float32)[None, :] * (2 * n)
    for f, t in zip(luma, fine_tensors(luma) if fine is None else fine, strict=True):
        if t is None:
            continue
        ux, uy = _weak_direction(t)
        x = f.astype(np.float32)
        spectrum2d = cv2.dft((x - x.mean()) * window, flags=cv2.DFT_COMPLEX_OUTPUT)  # (H, W, 2) float32
        power = cv2.magnitude(spectrum2d[..., 0], spectrum2d[..., 1]) ** 2
        b = np.rint(np.abs(fx * ux + fy * uy)).astype(np.intp).ravel()  # its bin; over n: beyond 0.5 cycles/px
        sums = np.bincount(b, weights=power.ravel(), minlength=n + 1)[: n + 1]
        counts = np.bincount(b, minlength=n + 1)[: n + 1]
        freq = np.arange(n + 1) / (2 * n)
        have = counts > 0
        spectrum = np.interp(freq, freq[have], sums[have] / counts[have]) * (2 * np.sin(np.pi * freq)) ** 2
        spectrum[0] = spectrum[1]  # the derivative has no DC
        if spectrum.max() <= 0:
            continue
        log = np.log(spectrum + 1e-6 * spectrum.max())
        c = np.fft.irfft(log - log.mean())  # 2 n quefrencies, 1 px apart
        values.append(float(-c[lo : min(hi, n - 1) + 1].min()))
    return float(np.median(values)) if values else None


def exposure_scores(
    luma: np.ndarray,
    *,
    under_luma: float = 16 / 255,
    over_luma: float = 250 / 255,
    black_luma: float = 0.10,
    black_ratio: float = 0.98,
    blank_std: float = 0.02,
) -> dict[str, float]:
    """Exposure of (N, H, W) uint8 luma: mean luma, highlight level, crushed / blown pixel fractions, black-or-blank
    frame fraction (floats; luma levels 0..1).

    ``luma_highlight`` is the 99.9th percentile of every pixel of the N frames (exact, from their 256-bin histogram).
    It is what tells a dark look from a dark picture: a copy darkened by a gain g (underexposure) has no level above
    g of the brightest, while a night or low-key grade keeps its lights and lit edges bright: the zone system's
    distinction between a low-key subject, which keeps values in the high zones, and underexposure, which moves every
    value down (Adams, *The Negative*, 1981). The 99.9th percentile, not the maximum, so a few hot pixels or an
    encoder's ringing do not count as highlights; not the 99th, which read the sparse lit edges of a dark shot's night
    grade too low (bikes.mp4's third shot: 0.30 at the 99th, 0.39 at the 99.9th; copies darkened 4x at most 0.25 and
    0.26: docs/PERFORMANCE.md). ``filters.night_highlight`` uses it (threshold: bench/night_bench.py).

    ``black_frac`` is the fraction of frames that are black, ``black_ratio`` of their pixels under ``black_luma``
    (the definition of FFmpeg's blackdetect filter, its defaults: https://ffmpeg.org/ffmpeg-filters.html#blackdetect),
    or blank (luma std under ``blank_std``: a colour card)."""
    y = luma.astype(np.float32) / 255.0
    per_mean = y.mean(axis=(1, 2))
    per_std = y.std(axis=(1, 2))
    counts = np.bincount(np.ascontiguousarray(luma, dtype=np.uint8).ravel(), minlength=256)
    highlight = int(np.searchsorted(np.cumsum(counts), 0.999 * counts.sum()))
    return {
        "luma_mean": float(per_mean.mean()),
        "luma_highlight": highlight / 255.0,
        "luma_under_frac": float((y < under_luma).mean()),
        "luma_over_frac": float((y > over_luma).mean()),
        "black_frac": float((((y < black_luma).mean(axis=(1, 2)) >= black_ratio) | (per_std < blank_std)).mean()),
    }


def active_box(
    luma: np.ndarray, *, max_range: int = 6, dark: int = 40, min_active: float = 0.5, max_graphic: float = 1 / 3
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

    A graphic on a bar (a channel logo or a timecode over the black of a pillarbox, a subtitle in a letterbox bar)
    makes the lines through it uneven and would stop the bar there, leaving the pair uneven and the bars uncut. So
    where the pair of flat runs fails or is uneven, lines flat but for at most ``max_graphic`` of their length
    (each of the others within ``max_range`` / 2 of the line's median, and those as above; a logo up to 16 % of
    the width and as high is under a third of a pillarbox's height) and still over the anchors (at most a tenth of
    the line varies by more than 2 x ``max_range``, the encoder's ringing on a graphic's edges: a graphic holds still,
    the dark edge of a picture next to the bar does not, and the runs ran on into transnet_test's dark edges without
    this) extend the runs, each starting with a flat line at the edge; the pair so extended is taken when it passes
    and is more even. It can take in a few lines of a dark, still edge of the picture next to the bar (transnet_test
    frames 572-671 under a logo: 21 px where the clean window's bars are 16). :func:`bar_graphics` finds what is on
    them.
    """
    lo, hi = luma.min(axis=0).astype(np.int16), luma.max(axis=0).astype(np.int16)  # (H, W) over anchors
    mean = luma.mean(axis=0)

    def flat(lo_lines: np.ndarray, hi_lines: np.ndarray, mean_lines: np.ndarray) -> np.ndarray:
        spread = hi_lines.max(axis=1) - lo_lines.min(axis=1)
        m = mean_lines.mean(axis=1)
        return (spread <= max_range) & ((m <= dark) | (spread <= 2))

    def mostly_flat(lo_lines: np.ndarray, hi_lines: np.ndarray, mean_lines: np.ndarray) -> np.ndarray:
        level = np.median(mean_lines, axis=1, keepdims=True)
        ok = (lo_lines >= level - max_range / 2) & (hi_lines <= level + max_range / 2)
        big = np.int16(1 << 14)
        spread = np.where(ok, hi_lines, -big).max(axis=1) - np.where(ok, lo_lines, big).min(axis=1)
        m = level[:, 0]
        # a graphic on a bar holds still (but for the encoder's ringing on its edges); a picture next to it moves
        still = ((hi_lines - lo_lines) > 2 * max_range).mean(axis=1) <= 0.1
        return still & (ok.mean(axis=1) >= 1 - max_graphic) & ((m <= dark) | (spread <= 2))

    def run(is_bar: np.ndarray) -> int:
        n = 0
        while n < len(is_bar) and is_bar[n]:
            n += 1
        return n

    def pair(is_bar: np.ndarray, loose: np.ndarray) -> tuple[int, int]:
        size = len(is_bar)

        def judged(a: int, b: int) -> tuple[int, int] | None:
            if a >= size or size - a - b < min_active * size:
                return None
            if min(a, b) < 0.01 * size or max(a, b) > 2 * min(a, b) + 0.02 * size:
                return None
            return a, b

        if not (is_bar[0] and is_bar[-1]):
            return 0, 0
        strict = judged(run(is_bar), run(is_bar[::-1]))
        either = loose | is_bar
        extended = judged(run(either), run(either[::-1]))
        if strict is None or (extended is not None and abs(np.subtract(*extended)) < abs(np.subtract(*strict))):
            return extended or (0, 0)
        return strict

    rows = flat(lo, hi, mean)
    cols = flat(lo.T, hi.T, mean.T)
    top, bottom = pair(rows, mostly_flat(lo, hi, mean))
    left, right = pair(cols, mostly_flat(lo.T, hi.T, mean.T))
    return top, bottom, left, right


def bar_graphics(
    luma: np.ndarray,
    bars: tuple[int, int, int, int],
    *,
    max_range: int = 6,
    min_area: float = 0.001,
    min_share: float = 0.5,
) -> list[tuple[tuple[int, int, int, int], float]]:
    """Graphics on the bars (:func:`active_box`) of (N, H, W) uint8 ``luma``: boxes (x, y, w, h) in its pixels, each
    with the share of anchors it shows in. A bar holds no picture, so whatever stands out of it in at least
    ``min_share`` of the anchors (more than 2 x ``max_range`` grey levels from the bar's median level, dilated by
    3 px; the bar's 2 px next to the picture left out, where the encoder rings) over at least ``min_area`` of the
    frame is a graphic put there: a channel logo or a timecode on a pillarbox, a subtitle in a letterbox bar."""
    n, h, w = luma.shape
    top, bottom, left, right = bars
    region = np.zeros((h, w), bool)
    region[: max(0, top - 2)] = True
    region[:, : max(0, left - 2)] = True
    if bottom > 2:
        region[h - (bottom - 2) :] = True
    if right > 2:
        region[:, w - (right - 2) :] = True
    if not region.any():
        return []
    level = float(np.median(luma[:, region]))
    kernel = np.ones((7, 7), np.uint8)
    seen = np.zeros((h, w), np.float32)
    for f in luma:
        out = (np.abs(f.astype(np.int16) - level) > 2 * max_range) & region
        seen += cv2.dilate(out.view(np.uint8), kernel) > 0
    mask = (seen >= min_share * n) & region
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    found = []
    for x, y, bw, bh, _ in stats[1:count]:
        if bw * bh >= min_area * h * w:
            box = (int(x), int(y), int(bw), int(bh))
            found.append((box, float(seen[y : y + bh, x : x + bw].max() / n)))
    return found


def with_bar_graphics(
    overlay: dict[str, Any],
    graphics: list[tuple[tuple[int, int, int, int], float]],
    cut: list[int],
    shape: tuple[int, int],
) -> dict[str, Any]:
    """:func:`overlay_scores`' columns with the graphics on the bars (:func:`bar_graphics`, boxes in an (H, W) =
    ``shape`` picture whose ``cut`` = [top, bottom, left, right] px are cut off as bars) added: their area as a
    fraction of the active picture (they lie outside it), the box the union of all, in fractions of the active
    picture's width / height (so a graphic on a bar reads below 0 or above 1: x1 < 0 on the left bar), the
    persistence the largest."""
    if not graphics:
        return overlay
    h, w = shape
    top, bottom, left, right = cut
    ah, aw = h - top - bottom, w - left - right
    boxes = [
        ((x - left) / aw, (y - top) / ah, (x + bw - left) / aw, (y + bh - top) / ah) for (x, y, bw, bh), _ in graphics
    ]
    if overlay.get("overlay_box") is not None:
        boxes.append(tuple(overlay["overlay_box"]))
    area = (overlay.get("overlay_area") or 0.0) + sum(bw * bh for (_, _, bw, bh), _ in graphics) / (ah * aw)
    persistence = max([overlay.get("overlay_persistence") or 0.0] + [p for _, p in graphics])
    union = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    return {
        **overlay,
        "overlay_area": float(area),
        "overlay_box": [float(v) for v in union],
        "overlay_persistence": float(persistence),
    }


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
    """The PP-OCRv4 text DETECTION model shipped in rapidocr-onnxruntime, run alone; its RECOGNITION model only to
    read a box the corners' closer look found (:meth:`read`, loaded on first use).

    Uses the package's own ``TextDetector`` / ``TextRecognizer`` (DB pre/post-processing, CTC decoding, onnxruntime
    sessions) with the package's config.yaml ``Det`` / ``Rec`` sections, so thresholds match RapidOCR's defaults.
    ``rec_model_path``: a ch_PP-OCR*_rec_infer.onnx file (default: the one the package ships); FileNotFoundError
    here when either model file is not there (a run fails at its start, not clip by clip).
    """

    def __init__(
        self,
        model_path: str | None = None,
        *,
        det_side: int = 320,
        threads: int = 1,
        min_aspect: float = 2.0,
        max_line_height: float = 0.2,
        rec_model_path: str | None = None,
    ):
        import rapidocr_onnxruntime
        import yaml
        from rapidocr_onnxruntime.ch_ppocr_det import TextDetector as _RapidDet

        pkg = Path(rapidocr_onnxruntime.__file__).parent
        package_cfg = yaml.safe_load((pkg / "config.yaml").read_text())
        self._rec_cfg = package_cfg["Rec"]
        self._rec_cfg["model_path"] = str(rec_model_path or pkg / self._rec_cfg["model_path"])
        self._rec_cfg.update(intra_op_num_threads=threads, inter_op_num_threads=1)
        if not Path(self._rec_cfg["model_path"]).is_file():
            raise FileNotFoundError(
                f"PP-OCR recognition model not found at {self._rec_cfg['model_path']}; it ships in "
                "rapidocr-onnxruntime (pip install rapidocr-onnxruntime) or set rec_model_path to a "
                "ch_PP-OCR*_rec_infer.onnx file"
            )
        self._rec = None
        cfg = package_cfg["Det"]
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

    def detect(self, rgb: np.ndarray, side: int | None = None) -> np.ndarray:
        """Every box (K, 4, 2) int32 the DB detector finds, in the frame's pixel coordinates, before :meth:`lines`
        keeps the text-line shapes. The package detector's own pre-process / onnx session / DB post-process
        (box_thresh etc. from its config.yaml). ``side``: the shorter side the detector sees, when not this detector's
        ``det_side`` (a smaller picture is upscaled to it, a larger one left as it is)."""
        h, w = rgb.shape[:2]
        if side is None:
            prep = self._det.get_preprocess(max(h, w))
        else:
            from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

            prep = DetPreProcess(side, "min", self._det.mean, self._det.std)
        pre = prep(np.ascontiguousarray(rgb[..., ::-1]))  # PP-OCR expects BGR
        if pre is None:
            return np.zeros((0, 4, 2), np.int32)
        boxes, _ = self._det.postprocess_op(self._det.infer(pre)[0], (h, w))
        return np.array(boxes, np.int32).reshape(-1, 4, 2)

    def read(self, rgb: np.ndarray) -> tuple[str, float]:
        """The text the recogniser reads in one (H, W, 3) uint8 RGB crop of a text line and its confidence in [0, 1]
        (RapidOCR's CTC decoding: the mean over the characters read of their probability; ("", 0.0) when it reads
        nothing). The model is loaded on the first call."""
        if self._rec is None:
            from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer as _RapidRec

            self._rec = _RapidRec(self._rec_cfg)
        if rgb.size == 0:
            return "", 0.0
        ((text, score),) = self._rec(np.ascontiguousarray(rgb[..., ::-1]))[0]  # PP-OCR expects BGR
        return str(text), float(score)

    def lines(self, boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The boxes shaped like horizontal text lines in an (H, W) frame: width >= min_aspect x height, height <=
        max_line_height x the shorter frame side. DB also fires on bokeh highlights and faces (measured on bikes.mp4
        and transnet_test), whose boxes are near-square or upright. Vertical CJK text is not counted."""
        h, w = shape
        keep = []
        for box in boxes:
            bw, bh = np.ptp(box[:, 0]), np.ptp(box[:, 1])
            # Horizontal lines only. Measured false positives (bokeh on bikes, faces on transnet_test, the bunny's
            # ears in a CRF-28 bigbuckbunny) had aspect 0.7-1.5 or heights 0.25-0.44 of the frame; burned-in
            # subtitles / logos had aspect 4.7-17 and height ~0.1.
            if bh > 0 and bw / bh >= self.min_aspect and bh <= self.max_line_height * min(h, w):
                keep.append(box)
        return np.array(keep, np.int32).reshape(-1, 4, 2)

    def boxes(self, rgb: np.ndarray) -> np.ndarray:
        """Text-line boxes (K, 4, 2) int32 in the frame's pixel coordinates: :meth:`detect`, then :meth:`lines`."""
        return self.lines(self.detect(rgb), rgb.shape[:2])

    def area_fraction(self, rgb: np.ndarray) -> float:
        """Fraction of the frame covered by the union of detected text boxes (overlaps counted once)."""
        return box_area(self.boxes(rgb), rgb.shape[:2])


def box_mask(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels of an (H, W) frame inside any of the quadrilaterals ``boxes`` (K, 4, 2): (H, W) bool."""
    mask = np.zeros(shape, np.uint8)
    if len(boxes):
        cv2.fillPoly(mask, list(boxes), 1)
    return mask > 0


def box_area(boxes: np.ndarray, shape: tuple[int, int]) -> float:
    """Fraction of an (H, W) frame covered by the union of quadrilaterals ``boxes`` (K, 4, 2), overlaps once."""
    return float(box_mask(boxes, shape).mean()) if len(boxes) else 0.0


def text_settled(raw: list[np.ndarray], found: list[tuple[np.ndarray, tuple[int, int]]], frames: int) -> bool:
    """Whether the text detector's frames still to run (``frames`` in all, ``len(raw)`` run) can change nothing the
    scorer reads from it: ``text_area`` (the second largest line area) is 0 whatever they find when at most one frame
    can have lines; ``subtitle_area`` (the median) is 0 when more than half the frames have none in the subtitle zone;
    the OCR overlay (a box at the same place in every frame, :func:`overlay_scores`) is impossible once a frame has
    no box at all. All three settled: the rest would be spent for nothing (a clip without text skips its last OCR
    frame of 4, a quarter of the detector's time; the scores are exactly those of running every frame)."""
    left = frames - len(raw)
    if left <= 0:
        return True
    lined = sum(box_area(lines, shape) > 0 for lines, shape in found)
    no_subtitle = sum(box_area(subtitle_boxes(lines, shape), shape) == 0 for lines, shape in found)
    return lined + left <= 1 and no_subtitle >= frames // 2 + 1 and any(len(b) == 0 for b in raw)


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


def bars_cut(
    anchors: np.ndarray, cfg: CpuScoresConfig
) -> tuple[np.ndarray, tuple[int, int, int, int], list[int], tuple[int, int, int, int]]:
    """The letterbox / pillarbox bars of (N, H, W, 3) RGB uint8 anchors and what :func:`score_frames` cuts off:
    (the luma probe the bars were found on, at up to twice ``cfg.size`` on its shorter side; the bars [top, bottom,
    left, right] in probe px (:func:`active_box`); the cut in probe px; the cut in the anchors' px, for
    :func:`crop_box`). The cut is a little more than the bars (2 px plus 1 % of the side): the encoder rings along a
    bar's edge (a block straddles it), and a sliver of bar edge left in the picture would dominate the Laplacian."""
    h, w = anchors.shape[1:3]
    probe = to_luma(anchors if min(h, w) <= 2 * cfg.size else resize_short(anchors, 2 * cfg.size))
    ph, pw = probe.shape[1:3]
    bars = active_box(probe, max_range=cfg.border_range, dark=cfg.border_dark)
    margin = [0 if b == 0 else b + 2 + math.ceil(0.01 * side) for b, side in zip(bars, (ph, ph, pw, pw), strict=True)]
    box = tuple(round(m * s) for m, s in zip(margin, (h / ph, h / ph, w / pw, w / pw), strict=True))
    return probe, bars, margin, box


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
    so scores depend neither on the decode size nor on the bars. Motion, frozen_frac and pair_change are None when
    there are no partners (a clip shorter than the pair gap).
    """
    probe, bars, margin, box = bars_cut(anchors, cfg)
    ph, pw = probe.shape[1:3]
    out: dict[str, Any] = {"motion": None, "frozen_frac": None, "pair_change": None}
    out.update(border_top=bars[0] / ph, border_bottom=bars[1] / ph)
    out.update(border_left=bars[2] / pw, border_right=bars[3] / pw)
    active = crop_box(anchors, box)
    anchors = resize_short(active, cfg.size)
    luma = to_luma(anchors)
    short = min(active.shape[1:3])
    if partners is not None and len(partners):
        camera: dict[str, float] = {}
        changes: list[float] = []
        out["motion"], out["frozen_frac"] = motion_scores(
            luma,
            to_luma(resize_short(crop_box(partners, box), cfg.size)),
            gap_s,
            flow=cfg.flow,
            frozen_change=cfg.frozen_change,
            camera=camera,
            changes=changes,
        )
        out["pair_change"] = float(np.median(changes))
        out.update(camera)
    # one set of consecutive-anchor flows and camera transforms for still_residual and the overlay score
    flows = anchor_flows(luma)
    steps = camera_steps(flows)
    out.update(still_scores(luma, anchor_s, steps=steps) if anchor_s is not None else dict.fromkeys(STILL_COLUMNS))
    out["sharpness"] = sharpness(luma)
    # read below the overlays
    out.update(dict.fromkeys(("focus", "detail", "noise_floor", "isotropy", "streak", "cepstrum_dip")))
    out.update(
        exposure_scores(
            luma,
            under_luma=cfg.under_luma,
            over_luma=cfg.over_luma,
            black_luma=cfg.black_luma,
            black_ratio=cfg.black_ratio,
            blank_std=cfg.blank_std,
        )
    )
    if detector is not None:
        pick = np.unique(np.linspace(0, len(anchors) - 1, min(cfg.text_frames, len(anchors))).round().astype(int))
        raw, found = [], []  # every box (the overlay test wants logos too), and the text lines of each frame
        for i in pick:
            raw.append(detector.detect(anchors[i]))
            found.append((detector.lines(raw[-1], anchors[i].shape[:2]), anchors[i].shape[:2]))
            if text_settled(raw, found, len(pick)):
                break  # the frames left cannot change text_area, subtitle_area or the OCR overlay: not run
        # burned-in text stays: the area found in at least two of the frames (the second largest), so the detector
        # firing on one picture's bokeh or foliage does not count (a night and a high-key grade of a bikes shot read
        # 0.036-0.045 in one frame of four, 0 in the others; subtitle lines 0.015-0.035 in all four)
        areas = sorted((box_area(b, shape) for b, shape in found), reverse=True)
        out["text_area"] = areas[1] if len(areas) > 1 else areas[0]
        # persistent bottom-centre text: in at least half the sampled frames (the median), wherever scene text is
        out["subtitle_area"] = float(np.median([box_area(subtitle_boxes(b, shape), shape) for b, shape in found]))
    else:
        raw = found = None
        out["text_area"] = out["subtitle_area"] = None

    # the active picture as decoded: a failed overlay candidate is looked at again at twice the analysis size
    def corner_text(judged: bool = False) -> list[tuple[np.ndarray, list[float] | None, list[bool]]]:
        # the first and last anchors (the most apart), at their own size up to four times the analysis size; the
        # last only when the first has a box (the text test wants one in both); each box with its reading. The colour
        # differences (CHROMA_VIEWS) at a size whose mosaic is CORNER_DET_SIDE at most (4:2:0 chroma has half the
        # luma's resolution); where the motion test judged the corners (``judged``), those alone at that side
        top = min(4 * cfg.size, max(short, cfg.size))
        chroma_top = min(top, math.ceil(CORNER_DET_SIDE / (2 * CORNER_H)))
        chroma = CHROMA_VIEWS if cfg.overlay_corner_colour else ()
        if judged:
            looks = [(chroma_top, chroma, CORNER_DET_SIDE)]
        else:
            looks = [
                (top, tuple(v for v in CORNER_VIEWS if v not in CHROMA_VIEWS), None),
                (chroma_top, tuple(v for v in CORNER_VIEWS if v in chroma), None),
            ]
        found = []
        for i in (0, len(active) - 1):
            reads: list[float] = []
            boxes = [np.zeros((0, 4, 2), np.int32)]
            colour: list[bool] = []  # per box: read in the colour differences
            sized: dict[int, np.ndarray] = {}  # the anchor at each size asked for, resized once
            for size, views, side in looks:
                if views:
                    if size not in sized:
                        sized[size] = resize_short(active[i : i + 1], size)[0]
                    frame = sized[size]
                    boxes.append(
                        corner_text_boxes(
                            detector,
                            frame,
                            luma.shape[1:3],
                            views=views,
                            reads=reads,
                            glyph_read=GLYPH_READ,
                            side=side,
                        )
                    )
                    colour += [set(views) <= set(CHROMA_VIEWS)] * len(boxes[-1])
            found.append((np.concatenate(boxes), reads, colour))
            if not len(found[-1][0]) or (judged and max(reads) < MIN_READ):
                break  # (where judged, a first anchor with nothing read: its boxes cannot pass the reading test alone)
        return found

    corner = corner_text if detector is not None and len(anchors) >= 2 else None
    colour = anchors if cfg.overlay_colour else None
    graphics: list[tuple[int, int, int, int]] = []
    overlay = overlay_scores(
        luma,
        raw,
        flows=flows,
        steps=steps,
        source=active,
        corner_text=corner,
        colour=colour,
        layers=cfg.overlay_layers,
        corner_always=cfg.overlay_corner_always and cfg.overlay_corner_colour,  # the judged look reads Cr and Cb
        found_boxes=graphics,
    )
    # the blur scores read the picture, not what is laid over it: the overlays found and the subtitle lines left out
    graphic = np.zeros(luma.shape[1:3], bool)
    for x, y, bw, bh in graphics:
        graphic[y : y + bh, x : x + bw] = True
    if found is not None and out["subtitle_area"]:
        for b, shape in found:
            graphic |= box_mask(subtitle_boxes(b, shape), shape)
    # a picture smaller than the analysis size: calibrated for the upsampling (blur_scores)
    blur = blur_scores(luma, active, cfg.size, exclude=graphic if cfg.blur_without_overlays else None)
    out["focus"], out["detail"], out["noise_floor"], out["isotropy"], out["streak"], out["cepstrum_dip"] = blur
    out.update(with_bar_graphics(overlay, bar_graphics(probe, bars, max_range=cfg.border_range), margin, (ph, pw)))
    out["overlay_planes"] = "luma" if colour is None else "Y,R-Y,B-Y"
    out["overlay_layers"] = cfg.overlay_layers
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
    Writes: motion, frozen_frac, pair_change, sharpness, luma_mean, luma_under_frac, luma_over_frac, black_frac,
            text_area, overlay_area, overlay_box (list<float32>), overlay_persistence,
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
        self.detector = TextDetector(
            self.cfg.det_model_path,
            det_side=self.cfg.text_det_side,
            threads=threads,
            rec_model_path=self.cfg.rec_model_path,
        )

    def score_clip(self, path: str | os.PathLike, num_frames: int | None = None, fps: float | None = None) -> dict:
        """Scores of one clip file, plus frames_decoded (frames returned by the single read_frames call)."""
        from stages.frames import read_frames, video_meta

        if not num_frames or not fps:
            meta = video_meta(path)
            num_frames, fps = int(meta["num_frames"]), float(meta["fps"])
        wanted = self.wanted(int(num_frames), float(fps))
        report: dict = {}
        # at the display size: the bars are cut before the frames are brought to the analysis size (score_frames)
        frames = read_frames(path, wanted, backend=self.cfg.backend, report=report)
        if len(frames) != len(wanted):
            raise RuntimeError(f"read_frames returned {len(frames)} frames for {len(wanted)} indices")
        out = self._score(dict(zip(wanted, frames, strict=True)), int(num_frames), float(fps))
        out["decoder"] = report["decoder"] + (f" (fallback: {report['fallback']})" if report.get("fallback") else "")
        return out

    def wanted(self, num_frames: int, fps: float) -> list[int]:
        """The clip's frame indices (presentation order, from 0) the scores are computed from: the anchors and
        their flow partners of :func:`sample_plan`, sorted, each once."""
        anchors, partners = sample_plan(num_frames, fps, self.cfg.num_samples, self.cfg.pair_gap_s)
        return sorted(set(anchors) | set(partners))

    def score_encoded(self, frames: dict[int, np.ndarray], num_frames: int, fps: float) -> dict | None:
        """Scores of a clip from the frames the cutter handed its encoder (``stages.clips.cut_clips``' ``sample``):
        ``frames`` maps output frame index -> (H, W, 3) uint8 RGB at the clip's size, converted with the clip's
        colour range and matrix as a decoder of the file would. None when they lack a frame :meth:`wanted` names
        for the clip's final ``num_frames`` and ``fps`` (the cutter predicted them otherwise): score the file then.

        The scores then measure the picture before the clip's own encode (one generation of libx264 at the run's
        CRF fewer than :meth:`score_clip` sees); ``decoder`` is ``"encoder input"`` and ``frames_decoded`` 0.
        """
        if any(i not in frames for i in self.wanted(num_frames, fps)):
            return None
        out = self._score(frames, num_frames, fps)
        out["frames_decoded"] = 0
        out["decoder"] = "encoder input"
        return out

    def _score(self, frames: dict[int, np.ndarray], num_frames: int, fps: float) -> dict:
        anchors, partners = sample_plan(num_frames, fps, self.cfg.num_samples, self.cfg.pair_gap_s)
        a = np.stack([frames[i] for i in anchors])
        p = np.stack([frames[i] for i in partners]) if partners else None
        gap_s = (partners[0] - anchors[0]) / fps if partners else 0.0
        out = score_frames(a, p, gap_s, self.cfg, self.detector, anchor_s=[i / fps for i in anchors])
        out["frames_decoded"] = len(set(anchors) | set(partners))
        return out

    def score_cut(self, row: dict[str, Any], frames: dict[int, np.ndarray]) -> dict[str, Any]:
        """:meth:`score_row` of a clip row the cutter just finished (or re-made), with the frames it kept: the
        ``on_clip`` hook of ``stages.clips.cut_clips``."""
        return self.score_row(row["clip_id"], row["clip_path"], row["num_frames"], row["fps"], frames)

    def score_row(
        self,
        clip_id: str,
        rel: str | None,
        num_frames: int | None = None,
        fps: float | None = None,
        frames: dict[int, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """One clip's scores row (SCORES_SCHEMA's columns): from ``frames`` (:meth:`score_encoded`) when given and
        sufficient, else from the file ``rel`` (relative to the root). Never raises for the clip's own faults: a
        failure is ``error_scores`` with null scores (an environment fault, a full disk, still stops the run)."""
        import time

        t0 = time.perf_counter()
        row: dict[str, Any] = {}
        if rel is not None and not (isinstance(rel, float) and math.isnan(rel)):
            path = storage.under(self.root, str(rel))
            try:
                got = None
                if frames is not None and num_frames and fps:
                    got = self.score_encoded(frames, int(num_frames), float(fps))
                row = got if got is not None else self.score_clip(path, int(num_frames) if num_frames else None, fps)
            except Exception as e:  # errors are data: one bad clip must not stop the run
                raise_if_environment(e, f"CPU scores of {path}")
                msg = str(e).replace("\n", " ")[:500]
                row = {"error_scores": f"error_scores:{type(e).__name__}: {msg}"}
        row["clip_id"] = str(clip_id)
        row["scores_s"] = time.perf_counter() - t0
        row.setdefault("frames_decoded", 0)
        return row

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Score a batch; returns a pyarrow Table with exactly SCORES_SCHEMA.

        A typed table, not a dict of numpy arrays: a batch where every clip failed would otherwise give Ray
        all-None object columns that Arrow types as ``null``, and blocks of different types. Here a missing
        score is a real null of the right type, never NaN or 0.
        """
        n = len(batch["clip_id"])
        rows: list[dict[str, Any]] = []
        for i in range(n):
            rel = batch["clip_path"][i] if "clip_path" in batch else None
            nf = _num(batch, "num_frames", i)
            rows.append(self.score_row(batch["clip_id"][i], rel, int(nf) if nf else None, _num(batch, "fps", i)))
        return pa.Table.from_pylist(rows, schema=SCORES_SCHEMA)


_SHARED: dict[str, CpuScorer] = {}


def shared(cfg: CpuScoresConfig) -> CpuScorer:
    """The process's scorer for ``cfg`` (built on first use: the OCR session loads once per worker process, not once
    per task). The caller's thread limits (``stages.resources.limit_threads``) apply when it is built."""
    key = repr(cfg)
    if key not in _SHARED:
        _SHARED[key] = CpuScorer(cfg)
    return _SHARED[key]


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
        TEXT_OVERLAY,
    )

    night_look = ("luma_highlight", ">", "filters.night_highlight")

    # order matters, first failing wins; why this order: stages/filters.py
    rules = (
        Rule(ERROR_SCORES, "error_scores", "notnull"),
        Rule(QUALITY_BLACK, "black_frac", ">", "filters.max_black_frac"),
        # a night or low-key look keeps its highlights (luma_highlight): not dark (schema 18)
        Rule(QUALITY_DARK, "luma_mean", "<", "filters.min_luma_mean", unless=night_look),
        Rule(QUALITY_DARK, "luma_under_frac", ">", "filters.max_under_frac", unless=night_look),
        Rule(QUALITY_OVEREXPOSED, "luma_mean", ">", "filters.max_luma_mean"),
        Rule(QUALITY_OVEREXPOSED, "luma_over_frac", ">", "filters.max_over_frac"),
        Rule(
            MOTION_STILL_IMAGE,
            "still_residual",
            "<",
            "filters.min_still_residual",
            also=("residual_flow", "<", "filters.min_residual_flow"),
        ),
        Rule(QUALITY_BLURRY, "focus", "<", "filters.min_focus"),
        Rule(QUALITY_BLURRY, "detail", "<", "filters.min_detail"),
        # motion blur: one direction lost its finest detail and what is left along it is spread, with the notches of a
        # smear's straight path (not depth of field over grass), or spread so far that no notch is needed
        Rule(
            QUALITY_BLURRY,
            "isotropy",
            "<",
            "filters.min_isotropy",
            also=(("streak", ">", "filters.max_streak"), ("cepstrum_dip", ">", "filters.max_cepstrum_dip")),
        ),
        Rule(
            QUALITY_BLURRY,
            "isotropy",
            "<",
            "filters.min_isotropy",
            also=(("streak", ">", "filters.max_streak"), ("streak", ">", "filters.max_streak_alone")),
        ),
        Rule(QUALITY_BLURRY, "sharpness", "<", "filters.min_sharpness"),
        Rule(MOTION_STATIC, "frozen_frac", ">", "filters.max_frozen_frac"),
        Rule(MOTION_STATIC, "motion", "<", "filters.min_motion"),
        Rule(MOTION_JITTER, "motion", ">", "filters.max_motion"),
        Rule(TEXT_BURNED_IN, "text_area", ">", "filters.max_text_area"),
        Rule(TEXT_BURNED_IN, "subtitle_area", ">", "filters.max_subtitle_area"),
        Rule(TEXT_OVERLAY, "overlay_area", ">", "filters.max_overlay_area"),
    )
    return Stage(
        name="scores",
        stage="stages.cpu_scores:CpuScorer",
        config="stages.cpu_scores:CpuScoresConfig",
        schema="stages.cpu_scores:SCORES_SCHEMA",
        rules=rules,
    )


STAGE = _stage()  # the catalogue entry (stages/catalogue.py); its thresholds live in the filters section
