"""An overlay one clip of a source shows, looked for in the source's other clips: the channel logo of a programme
over its locked-off shots.

Why. The overlay test (``stages.cpu_scores.overlay_scores``) finds a graphic by what it is, a pattern that stays
fixed while the camera moves the scene around it. In a locked-off shot nothing moves around a logo sitting over a
still part of the picture, so the test cannot judge (``overlay_area`` null), and only a logo the text detector reads
is found there: an icon, or a word the detector does not read, is kept. But a broadcast or an uploader's channel puts
the same graphic at the same place over every shot of a source, and in its shots where the camera moves (or the
picture around the logo changes) the overlay test finds it. So the source's other clips are looked at for *that*
graphic: this is the persistence of a logo over a whole programme, the cue of TV-logo detectors (Özay and Sankur,
"Automatic TV logo detection and classification in broadcast videos", EUSIPCO 2009: the logo's edges are what stays
over many frames of different content), taken across shots.

How (:func:`check_video`). The clips of one source (``video_id``) whose overlay was found (``overlay_area`` > 0, its
box inside the picture) are the *seeds*; those whose overlay test found nothing or could not judge (``overlay_area``
0 or null) are the *targets*. Each clip's anchors are decoded from its file (the scorer's anchors,
``stages.cpu_scores.sample_plan``), its bars cut and brought to the analysis size as the scorer does
(``stages.cpu_scores.bars_cut``), and the per-pixel median over the anchors of the Sobel gradients of its Y, Cr and
Cb planes is taken (:func:`median_gradients`; the median of gradients over frames is the watermark estimator of
Dekel et al., "On the effectiveness of visible watermarks", CVPR 2017: the content's gradients vary and cancel, the
graphic's stay). In a seed the content moved, so in its box what the median keeps is the graphic: the template. A
target's median holds the graphic too when it is there, plus whatever of its picture stood still. The match is the
normalised correlation of the seed's median gradients in its box (padded by ``pad`` px) with the target's at the same
place, plane by plane in absolute value (:func:`_corr`: a coloured graphic's luma edges flip sign with the picture
under it), against two guards (:func:`match`): the chance level of that picture (the same correlation at offsets of 4
to 8 px, less what the graphic's own shape explains there: a busy still picture correlates with anything a little at
any offset), and the surround (the same correlation over a ring around the box: where the target's surroundings
repeat the seed's, the same camera angle back later, a match says nothing about the graphic). A target whose
correlation is at least ``MIN_MATCH`` and ``NULL_RATIO`` times its chance level, with a surround under
``MAX_SURROUND``, and whose graphic sits at the seed's very pixels in at least ``MIN_FIXED`` of its anchors
(:func:`fixed_share`: a board or plate of the scene shaped like the logo moves with a handheld camera, which the
median over the anchors hides), shows the seed's overlay (:func:`shows`); otherwise :func:`refusal` says which guard
refused it.

Measured (bench/shared_overlay_bench.py, 2026-12-03): seeds, bigbuckbunny's panning frames 0-70 at 1280x720 with a
logo 8 % of the width (a play icon, a star, a framed word, a bare word, a plate; white; alpha 0.3, 0.4, 0.5; four
corners: 60, of which the overlay test found 58); targets, bigbuckbunny's locked-off frames 70-132 mirrored and
bikes.mp4's shots 76-137 and 187-242 brought to 1280x720, each with the same logo and without it. With it 169 of 174
shown (correlation 0.78 at the median; the five misses, 0.16-0.38, are alpha-0.3/0.4 stars, a play icon and a framed
word, four in the bottom-right corner, where the seed's median keeps some of the panning grass and the template is
part scene); without it none (correlation at most 0.35, at most 1.15 times its chance level). Surrounds: at most 0.40
in these targets (other pictures); a newcomer's clean return of the seed's own locked-off street angle, 1.00 (it
matched 0.64 at 1.74 times its chance level: dropped before the surround test, kept now). ``MIN_MATCH`` 0.35,
``NULL_RATIO`` 1.5, ``MAX_SURROUND`` 0.5. A newcomer's 20 sources of 3-5 shots (62 logo clips, 19 clean; icons,
words, plates, white and coloured, alpha 0.25-0.6): 19 of the 24 logo clips the overlay test left null or 0 shown
(the five others in sources with no seed), no clean clip. Schema 14's guard (``MIN_FIXED`` 0.75), the same bench:
168 of 174 shown (one alpha-0.3 word, 0.73 correlated, sits at the seed's pixels in 2 anchors of 8; the overlay test
finds it itself); signs shaped like the logo drawn opaque into a still shot shaken handheld by up to 6 or 12 px,
116: 109 pass the median's tests, none is shown (at the seed's place in at most 4 anchors of 8; logos 6 of 8 or more
but for that word); faint words over slowly panning grass that the overlay test judges absent, 5 of 5 shown.

The result is the seed (``overlay_seen_in``: its clip_id) and the correlation (``overlay_match``); the filters
treat a target that shows a seed's overlay as having that seed's ``overlay_area`` (``pipeline.steps.filter_clips``):
the ``text_overlay`` rule then judges it as it judges the seed. Known limits: only a source with at least one clip
where the overlay test found the graphic; a logo that changes between shots (an animated bug, a programme's own
logo over the channel's) matches only where it is the same; the target's box is the seed's, and its frame geometry
must be the seed's (the same analysis size once the bars are cut).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# what the run and refilter say when the look is turned off
DISABLED_NOTE = (
    "shared-overlay look off (filters.shared_overlay = false): a clip whose overlay test found nothing is not matched "
    "against the overlay found in its source's other clips"
)
# the look's version: stored with the seeds a clip was matched against (filters.overlay_seeds), so that a refilter
# after the method changed decodes and matches again rather than reusing what an older method found
METHOD = "3"
MIN_MATCH = 0.35  # a target's correlation with the seed's graphic, at least ...
NULL_RATIO = 1.5  # ... and at least this many times the chance level at the offsets (its picture's own texture)
MAX_SURROUND = 0.5  # ... in surroundings whose correlation with the seed's is under this (another picture around it)
MIN_FIXED = 0.75  # ... and whose best place in at least this share of its anchors is the seed's, to the pixel
FIXED_REACH = 3  # px (analysis size): the offsets, every direction, an anchor's best place is looked for within
PAD = 3  # px (analysis size) around the seed's box: the graphic's outer edges
# offsets (analysis px) of the chance level: 4-8 px, every direction; a graphic's strokes are thinner than that
OFFSETS = tuple((dx, dy) for dx in range(-8, 9, 2) for dy in range(-8, 9, 2) if max(abs(dx), abs(dy)) >= 4)


def anchor_gradients(anchors: np.ndarray, cfg) -> np.ndarray:
    """(N, H, W, 6) float32: the Sobel d/dx (channels 0-2) and d/dy (3-5) of the Y, Cr, Cb planes
    (``stages.cpu_scores.gradients`` of ``colour_planes``) of each anchor, at the analysis size.

    anchors: (N, H', W', 3) RGB uint8 as decoded; their bars are cut (``stages.cpu_scores.bars_cut``) and the active
    picture brought to ``cfg.size`` px on its shorter side, as the scorer does, so boxes in fractions of the active
    picture (``overlay_box``) address the same pixels. cfg: a ``stages.cpu_scores.CpuScoresConfig``."""
    from stages.cpu_scores import bars_cut, colour_planes, crop_box, gradients, resize_short

    box = bars_cut(anchors, cfg)[3]
    planes = colour_planes(resize_short(crop_box(anchors, box), cfg.size))
    gx, gy = gradients(planes)
    return np.concatenate([gx, gy], axis=-1).astype(np.float32)


def median_gradients(anchors: np.ndarray, cfg=None, *, stack: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 6) float32: the per-pixel median over the anchors of :func:`anchor_gradients` (the anchors as decoded,
    with ``cfg``; or ``stack``, their gradients already taken)."""
    from stages.cpu_scores import _median0

    g = anchor_gradients(anchors, cfg) if stack is None else stack
    return _median0(g).astype(np.float32)


def _pixels(box: list[float], h: int, w: int, pad: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (
        max(0, math.floor(x0 * w) - pad),
        max(0, math.floor(y0 * h) - pad),
        min(w, math.ceil(x1 * w) + pad),
        min(h, math.ceil(y1 * h) + pad),
    )


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two (..., 6) median-gradient fields, plane by plane in absolute value
    (``stages.cpu_scores.plane_corr``: a green logo over a brighter background in one shot and a darker one in another
    flips its Y gradients and keeps its Cr)."""
    from stages.cpu_scores import plane_corr

    return plane_corr(a, b)


def match(seed: np.ndarray, box: list[float], target: np.ndarray, pad: int = PAD) -> tuple[float, float, float]:
    """(correlation at the seed's place, the chance level, the surround's correlation) of the seed's median gradients
    in ``box`` ([x0, y0, x1, y1], fractions of the active picture; padded by ``pad`` px) with the target's. seed,
    target: :func:`median_gradients` of two clips, the same shape (ValueError otherwise). The correlation is
    :func:`_corr` over the box's pixels (1: the same gradients up to a gain in each plane, as a semi-transparent
    graphic over another picture gives; ~0: unrelated).

    The chance level: at each offset d of :data:`OFFSETS` the correlation c(d) is taken again, less what the graphic's
    own shape makes of it, c(0) times the seed's correlation with itself at d (a framed logo's long straight edges
    still meet when shifted along them; a target showing the graphic then reads c(d) ~ c(0) a(d)); the largest
    remainder is the target's own texture correlating with the graphic by chance. Offsets that leave the picture are
    skipped.

    The surround: the same correlation over a ring around the padded box, a quarter of the box's larger side (at
    least 6 px) out from it and half that side (at least 8 px) wide: with the ring touching the box, a faint
    graphic's outer edges the tightened box left out correlated up to 0.49 in the bench's targets that show it; a
    quarter out, 0.31 at most. A graphic is told from the picture by the picture changing around it; where the target's
    surroundings repeat the seed's (the same camera angle back later in the source: a newcomer's locked-off street,
    its logo found while a passer-by moved around it, came back clean and matched 0.64 through the still background
    the seed's box held), a match says nothing about the graphic, and :func:`shows` refuses it.
    (0.0, 0.0, 0.0) for a box without gradients."""
    if seed.shape != target.shape:
        raise ValueError(f"median gradients of different shapes: {seed.shape} and {target.shape}")
    h, w = seed.shape[:2]
    x0, y0, x1, y1 = _pixels(box, h, w, pad)
    t = seed[y0:y1, x0:x1]
    if x1 <= x0 or y1 <= y0 or float(np.square(t).sum()) <= 0:
        return 0.0, 0.0, 0.0

    def corr(field: np.ndarray, dx: int, dy: int) -> float | None:
        if x0 + dx < 0 or y0 + dy < 0 or x1 + dx > w or y1 + dy > h:
            return None
        return _corr(t, field[y0 + dy : y1 + dy, x0 + dx : x1 + dx])

    c0 = corr(target, 0, 0) or 0.0
    chance = 0.0
    for dx, dy in OFFSETS:
        c, a = corr(target, dx, dy), corr(seed, dx, dy)
        if c is not None and a is not None:
            chance = max(chance, abs(c - c0 * a))
    side = max(x1 - x0, y1 - y0)
    m = max(6, side // 4)  # a tightened box can leave a faint graphic's outer edges just outside it: kept out
    ix0, iy0, ix1, iy1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
    r = max(8, side // 2)
    rx0, ry0, rx1, ry1 = max(0, ix0 - r), max(0, iy0 - r), min(w, ix1 + r), min(h, iy1 + r)
    ring = np.ones((ry1 - ry0, rx1 - rx0), bool)
    ring[iy0 - ry0 : iy1 - ry0, ix0 - rx0 : ix1 - rx0] = False
    surround = _corr(seed[ry0:ry1, rx0:rx1][ring], target[ry0:ry1, rx0:rx1][ring])
    return c0, chance, surround


def fixed_share(
    seed: np.ndarray, box: list[float], stack: np.ndarray, reach: int = FIXED_REACH, pad: int = PAD
) -> float:
    """The share of a target's anchors in which the seed's graphic sits exactly where the seed has it: for each
    anchor's gradients (``stack``, (N, H, W, 6), :func:`anchor_gradients`), the offset within ``reach`` px (every
    direction) where :func:`_corr` with the seed's median gradients in ``box`` is highest; the anchors whose best
    offset is (0, 0). A graphic is fixed in the frame, so every anchor that shows it shows it at the seed's pixels;
    a thing of the scene shaped like it (a board, a sign, a plate in the picture) moves with the camera. Measured
    (bench/shared_overlay_bench.py): logos over the targets, alpha 0.3-0.5, faint ones included, 1.0 in 164 of 169,
    0.75-0.875 in 4; signs shaped like the seed's logo, drawn into a still scene shot handheld (a random walk of up to
    6 or 12 px at 1280x720, about 2 or 4 px at the analysis size), 0-0.5. The median over the anchors (:func:`match`)
    cannot tell them apart: it keeps a sign that moves 1-2 px as sharply as a graphic. 0.0 for an empty box;
    ValueError for no anchors, or anchors of another shape than the seed's."""
    if stack.shape[1:] != seed.shape or not len(stack):
        raise ValueError(f"anchor gradients {stack.shape} do not match the seed's {seed.shape}")
    h, w = seed.shape[:2]
    x0, y0, x1, y1 = _pixels(box, h, w, pad)
    t = seed[y0:y1, x0:x1]
    if x1 <= x0 or y1 <= y0 or float(np.square(t).sum()) <= 0:
        return 0.0
    offsets = [
        (dx, dy)
        for dx in range(-reach, reach + 1)
        for dy in range(-reach, reach + 1)
        if x0 + dx >= 0 and y0 + dy >= 0 and x1 + dx <= w and y1 + dy <= h
    ]
    at_place = 0
    for g in stack:
        scores = {d: _corr(t, g[y0 + d[1] : y1 + d[1], x0 + d[0] : x1 + d[0]]) for d in offsets}
        at_place += max(scores, key=lambda d: (scores[d], d == (0, 0))) == (0, 0)
    return at_place / len(stack)


def refusal(correlation: float, chance: float, surround: float = 0.0, fixed: float = 1.0) -> str | None:
    """Why a target that correlates with the seed's graphic (at least :data:`MIN_MATCH`) is not taken to show it:
    ``"chance"`` (under :data:`NULL_RATIO` times its picture's chance level), ``"surround"`` (its surroundings repeat
    the seed's: :data:`MAX_SURROUND`), ``"moves"`` (its best place is the seed's in under :data:`MIN_FIXED` of its
    anchors: a thing of the scene, :func:`fixed_share`), the first that holds; None when it shows it, or correlates
    under :data:`MIN_MATCH` (nothing to refuse)."""
    if correlation < MIN_MATCH:
        return None
    if correlation < NULL_RATIO * chance:
        return "chance"
    if surround >= MAX_SURROUND:
        return "surround"
    if fixed < MIN_FIXED:
        return "moves"
    return None


def shows(correlation: float, chance: float, surround: float = 0.0, fixed: float = 1.0) -> bool:
    """Whether a target shows the seed's graphic, from :func:`match`'s three values and :func:`fixed_share`: a
    correlation of at least :data:`MIN_MATCH` and :data:`NULL_RATIO` times the chance level, in surroundings that do
    not repeat the seed's (their correlation under :data:`MAX_SURROUND`), at the seed's place in at least
    :data:`MIN_FIXED` of its anchors."""
    return correlation >= MIN_MATCH and refusal(correlation, chance, surround, fixed) is None


def refused_note(refused: dict[str, int]) -> str:
    """What the run and refilter say of the matches refused, {reason: clips} (:func:`refusal`)."""
    why = {"chance": "no better than its picture's chance level", "surround": "its surroundings repeat the seed's",
           "moves": "it moves with the picture"}  # fmt: skip
    parts = [f"{n} because {why.get(k, k)} ({k})" for k, n in refused.items()]
    return (
        f"{sum(refused.values())} clip(s) resemble an overlay found in another clip of their source but were not "
        f"taken to show it (overlay_refused): {'; '.join(parts)}"
    )


def is_seed(row: dict[str, Any]) -> bool:
    """A clip whose overlay was found in the picture: ``overlay_area`` > 0 and an ``overlay_box`` inside [0, 1] (a
    graphic on the bars alone, whose box reaches outside, is not looked for in the picture)."""
    area, box = row.get("overlay_area"), row.get("overlay_box")
    if area is None or (isinstance(area, float) and math.isnan(area)) or area <= 0 or not box or len(box) != 4:
        return False
    return min(box) >= 0.0 and max(box) <= 1.0 and box[2] > box[0] and box[3] > box[1]


def is_target(row: dict[str, Any]) -> bool:
    """A clip where no overlay was found: ``overlay_area`` 0 (looked, found nothing) or null (could not judge), and
    scored without an error."""
    area = row.get("overlay_area")
    if row.get("error_scores"):
        return False
    return area is None or (isinstance(area, float) and math.isnan(area)) or area == 0


def check_video(rows: list[dict[str, Any]], root, cfg) -> dict[str, dict[str, Any]]:
    """The clips of one source (rows with clip_id, clip_path, num_frames, fps, overlay_area, overlay_box,
    error_scores) -> {target clip_id: {"overlay_seen_in": seed clip_id or None, "overlay_match": the best
    correlation (float) or None}} for every target (:func:`is_target`) when the source has a seed (:func:`is_seed`);
    {} otherwise. A target showing several seeds' graphics names the one it matches best. root: the dataset's
    location (clip_path is relative to it); cfg: the run's ``CpuScoresConfig`` (analysis size, anchors, decoder).

    Each clip involved is decoded once (its anchors). A clip whose file cannot be read gets ``overlay_match`` null
    and ``overlay_error`` (the exception): never a crash, never a silent "no overlay"; a seed that cannot be read is
    left out (its targets are matched against the others)."""
    from stages import storage
    from stages.cpu_scores import sample_plan
    from stages.errors import raise_if_environment
    from stages.frames import read_frames

    seeds = [r for r in rows if is_seed(r)]
    targets = [r for r in rows if is_target(r) and r.get("clip_path")]
    if not seeds or not targets:
        return {}

    def grads(r: dict[str, Any]) -> np.ndarray:
        anchors, _ = sample_plan(int(r["num_frames"]), float(r["fps"]), cfg.num_samples, cfg.pair_gap_s)
        path = storage.under(root, str(r["clip_path"]))
        return anchor_gradients(read_frames(path, anchors, backend=cfg.backend), cfg)

    templates = []
    for s in sorted(seeds, key=lambda r: str(r["clip_id"])):
        try:
            templates.append((str(s["clip_id"]), list(s["overlay_box"]), median_gradients(None, stack=grads(s))))
        except Exception as e:  # noqa: BLE001 - a seed that cannot be read is left out
            raise_if_environment(e, f"shared overlay of {s.get('clip_path')}")
    out: dict[str, dict[str, Any]] = {}
    for r in targets:
        cid = str(r["clip_id"])
        try:
            stack = grads(r)
        except Exception as e:  # noqa: BLE001 - errors are data
            raise_if_environment(e, f"shared overlay of {r.get('clip_path')}")
            msg = str(e).replace("\n", " ")[:300]
            out[cid] = {
                "overlay_seen_in": None,
                "overlay_match": None,
                "overlay_refused": None,
                "overlay_error": f"{type(e).__name__}: {msg}",
            }
            continue
        g = median_gradients(None, stack=stack)
        shown: tuple[float, str | None] = (-1.0, None)
        refused: tuple[float, str | None] = (-1.0, None)  # the best match refused, and why
        for sid, box, seed in templates:
            if seed.shape != g.shape:
                continue  # another frame geometry (other bars): not the same place
            c, chance, surround = match(seed, box, g)
            why = refusal(c, chance, surround)
            if c >= MIN_MATCH and why is None:
                why = refusal(c, chance, surround, fixed_share(seed, box, stack))
            if c >= MIN_MATCH and why is None:
                shown = max(shown, (c, sid), key=lambda v: v[0])
            else:
                refused = max(refused, (c, why), key=lambda v: v[0])
        best = shown if shown[1] is not None else refused
        out[cid] = {
            "overlay_seen_in": shown[1],
            "overlay_match": None if best[0] < -0.5 else best[0],
            "overlay_refused": None if shown[1] is not None else refused[1],
            "overlay_error": None,
        }
    return out
