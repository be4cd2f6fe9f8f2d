"""Filters: turn stored scores into one drop reason per clip (or None = keep), without decoding anything.

The same rule list drives ``Filters.check`` (one row, used inside the pipeline) and ``apply_filters`` (a whole
pyarrow table, vectorised; used by ``clipforge refilter OUT --config NEW`` to re-tune thresholds from stored
scores), so the two can never disagree.

Rule order (first failing reason wins) and why it is this order:

1. ``duration_short``, ``resolution_low``: clip metadata, true whatever the scorers said.
2. ``error_scores``: the CPU scorer failed, so no score-based reason is trustworthy; the exception is in the
   ``error_scores`` column. A failure never reads as a low score.
3. ``quality_black`` before ``quality_dark`` before ``quality_overexposed``, then ``motion_still_image``, then
   ``quality_blurry``: a black or badly exposed frame also has little Laplacian energy and weak optical flow, so blur
   and motion are only meaningful once exposure is fine (a darkened copy of a sharp shot must say ``quality_dark``,
   not ``quality_blurry``; measured on bikes.mp4: darkening to 25 % cuts the Laplacian variance ~10x). A still
   picture under a pan or zoom (``motion_still_image``: nothing changes once the camera's motion is undone) is not
   video at all, whatever the photo's sharpness, so it says so before the blur rule judges that photo (a Ken Burns
   pan over a motion-blurred frame of bikes.mp4 was reported ``quality_blurry``); its measure is relative to the
   picture's contrast and a defocused copy of a moving shot reads as its source does (bikes shots 0.74 against
   0.74, bench/filters_bench.py), so blur never reads as a still picture.
4. ``motion_static`` (frozen frames or too little flow: after the blur rule, since defocus weakens the flow),
   ``motion_jitter`` (too much flow).
5. ``text_burned_in`` (text area, persistent subtitle text), then ``text_overlay`` (a graphic that stays fixed in the
   picture while the scene moves: a channel logo, a watermark, a ticker; stages/cpu_scores.overlay_scores).
6. ``error_clip_scores``, ``aesthetic_low``: the CLIP stage (optional; all-null when disabled).

Null scores (stage disabled, clip too short for a flow pair, ...) never reject. Any threshold set to None
disables its rule. ``duplicate`` is set afterwards by stages/dedup.py on the rows this module keeps.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stages.clips import DURATION_SHORT, RESOLUTION_LOW  # the clip rules' reasons (stages.clips.RULES)
from stages.settings import Settings

ERROR_SCORES = "error_scores"
QUALITY_BLACK = "quality_black"
QUALITY_DARK = "quality_dark"
QUALITY_OVEREXPOSED = "quality_overexposed"
QUALITY_BLURRY = "quality_blurry"
MOTION_STATIC = "motion_static"
MOTION_JITTER = "motion_jitter"
MOTION_STILL_IMAGE = "motion_still_image"
TEXT_BURNED_IN = "text_burned_in"
TEXT_OVERLAY = "text_overlay"
ERROR_CLIP_SCORES = "error_clip_scores"
AESTHETIC_LOW = "aesthetic_low"
DUPLICATE = "duplicate"  # set by stages/dedup.py

REASONS = (
    DURATION_SHORT,
    RESOLUTION_LOW,
    ERROR_SCORES,
    QUALITY_BLACK,
    QUALITY_DARK,
    QUALITY_OVEREXPOSED,
    MOTION_STILL_IMAGE,
    QUALITY_BLURRY,
    MOTION_STATIC,
    MOTION_JITTER,
    TEXT_BURNED_IN,
    TEXT_OVERLAY,
    ERROR_CLIP_SCORES,
    AESTHETIC_LOW,
    DUPLICATE,
)


@dataclass
class FiltersConfig(Settings):
    """Drop thresholds. None disables a rule. Scores are defined in stages/cpu_scores.py and stages/clip_scores.py.

    The "measured" figures are from the real sample footage (bikes.mp4 shots, bigbuckbunny, carphone,
    transnet_test) and synthetic defects of it, scored with the default CpuScoresConfig (224 px analysis).
    """

    # Shorter clips give the model too little motion to learn from; most T2V sets use 1-2 s. Same as
    # ClipsConfig.min_s, so re-filtering with a higher value can only drop more.
    min_duration_s: float | None = 2.0
    # Shorter side in px. 128 suits the small DiT this repo trains (<= 128 px); use 360-720 for a real model.
    # NB the transnet_test demo video is 160x90: a demo config over it needs min_short_side <= 90.
    min_short_side: int | None = 128
    # Fraction of frame diagonal per second (DIS flow). Real shots measured 0.019 (bigbuckbunny, slow) to 0.33
    # (bikes, a cyclist crossing close to the camera); a frozen copy is 0.
    # 0.004 ~ crossing 1/250 of the frame per second: only stills and near-stills fall below.
    min_motion: float | None = 0.004
    # Sustained flow faster than half the diagonal per second is shake or strobe: random +-40 px shake of a
    # bikes shot measured 0.69 (+-20 px: 0.35); a whip pan reaches this only briefly.
    max_motion: float | None = 0.5
    # A still picture under a pan or zoom: what differs between frames ~1 s apart once the camera's motion is undone,
    # relative to the picture's contrast (scores.still_residual, cpu_scores.still_scores). Stills panned/zoomed
    # measured 0.004-0.042 (the highest: grained, and transnet_test's 90 px frames), bench/filters_bench.py's real
    # shots and their night / high-key grades 0.156 and up, the whole of bigbuckbunny.mp4 (a near-still scene) 0.107:
    # 0.06 sits 1.5x above the stills, 1.8x below that clip (bench/motion_bench.py). Real shots where little but the
    # camera moves read as low as stills (bigbuckbunny's top-right quadrant: 0.015-0.042), so a clip is dropped only
    # when residual_flow is low too (next).
    min_still_residual: float | None = 0.06
    # ... and whose parts do not move against each other once the camera's motion is undone (scores.residual_flow,
    # the 90th percentile of the residual flow over ~1 s, frame diagonals): a clip is a still picture only when both
    # hold. Stills panned/zoomed measured <= 0.0029 (carphone's 176x144 upscaled, transnet_test's 90 px; 0.001 and
    # under from 224 px up), 0.0015-0.0037 under film grain new in every frame (sigma 5-8; carphone panned under grain
    # added at its 176x144: 0.0051, missed); bigbuckbunny's top-right quadrant under the opening's slow diagonal move,
    # where only parallax tells it from a photo (still_residual 0.027-0.042, under the line above), 0.0066-0.0083 bare
    # or graded, 0.0044-0.0069 under grain (sigma 4-10), 0.0036-0.0043 night-graded AND grained (under 0.004
    # dropped); other real shots of bench/motion_bench.py 0.0086 and up. A real shot can read low here and still be
    # kept by the line above (bigbuckbunny's bottom-right quadrant, grass: 0.0013, still_residual 0.126). 0.004 sits
    # 1.4x above the bare stills, between the grained stills and the grained corner (a newcomer's, sigma 10: 0.0044).
    # None: still_residual alone, as before schema 15.
    min_residual_flow: float | None = 0.004
    # Fraction of flow pairs that are identical frames: > half means frozen video or a slideshow.
    max_frozen_frac: float | None = 0.5
    # Best-focused region's fine-to-mid band energy above each band's noise floor (cpu_scores.focus; contrast-free,
    # grain-robust since schema 10; the mean over four placements of its tile grid since schema 16). At 224 px:
    # defocus of sigma 2.0-2.5 px at 640x360, bare or under grain, measured 0.27-0.455; clean shots and their
    # shallow-DoF / night / high-key / grain variants 0.59 and up (bench/grain_focus_bench.py). Pictures of 128-208
    # px, calibrated: defocus up to 0.455, in focus 0.488 and up (bench/blur_sizes_bench.py). 0.46 sits between both,
    # bounded from above by the smallest pictures in focus.
    min_focus: float | None = 0.46
    # Share of the best-detailed tiles' variance under 2 px above its noise floor (cpu_scores.detail): the guard for
    # blur so heavy that little is left in either of focus's bands. Heavy blur (sigma 5 px at 640x360), bare or under
    # grain, measured 0.019-0.039, every clean shot and graded or grained variant 0.129 and up at 224 px, 0.114 and up
    # at 128-208 px (bench/grain_focus_bench.py, bench/blur_sizes_bench.py; schema 16); 0.08 sits between them.
    min_detail: float | None = 0.08
    # Motion blur (camera shake, a smear): quality_blurry when isotropy < min_isotropy AND streak > max_streak AND
    # cepstrum_dip > max_cepstrum_dip, or isotropy < min_isotropy AND streak > max_streak_alone.
    # isotropy (cpu_scores.isotropy): the finest band's directional balance over a coarser band's; smears of 10-32 px
    # at 640x360 read mostly 0.12-0.57 (some diagonal ones up to 0.7), clean footage 0.69 and up, but so do clean
    # close-ups of grass (0.20-0.37), scenes behind blinds or stripes (0.10-0.14) and a brick wall (0.57): fine detail
    # that runs one way. streak (cpu_scores.streak): how far the derivative along that weak direction stays
    # correlated (3 px); a smear spreads it over its length, a texture's stays sharp: smears of 10 and 16 px read
    # 0.43-0.82, those textures and every clean crop with isotropy under 0.62 -0.35-0.31 (bench/motion_blur_bench.py),
    # but shallow depth of field over grass (its background Gaussian-blurred, sharp blades in front) 0.38-0.58 (two
    # newcomers' clips). cepstrum_dip (cpu_scores.cepstrum_dip): how deep the spectrum along that direction is
    # notched at one period, as a smear's straight path notches it and a Gaussian blur does not: smears of 10-16 px
    # with streak under 0.65 read 0.10 and up, those depth-of-field clips and every clean clip that the first two
    # conditions catch 0.007-0.045 (three newcomers' clips and bench/motion_blur_bench.py's); 0.07 sits 1.5x above the
    # one and 1.5x below the other (clean bigbuckbunny windows with isotropy under 0.62 and streak under 0.38, which
    # the rule never reaches, read up to 0.075). A smear along a shot's own motion blur or along a texture reads as
    # little as 0.025, and streak 0.70 and up: max_streak_alone 0.65 drops it
    # (the depth-of-field clips: 0.58 at most). max_cepstrum_dip or max_streak_alone None: isotropy and streak >
    # max_streak decide, as before schema 17; max_streak and max_streak_alone None: isotropy alone (drops those
    # textures); min_isotropy None: the rule is off.
    min_isotropy: float | None = 0.62
    max_streak: float | None = 0.38
    max_cepstrum_dip: float | None = 0.07
    max_streak_alone: float | None = 0.65
    # Laplacian variance at 224 px: off by default. It moves with contrast and content (a high-key grade of a clean
    # bikes shot measured 18.5, a defocused bigbuckbunny shot 28.5), so no threshold separates blur with it;
    # kept for catching extreme blur on top of min_focus (e.g. 5: sigma-3 blur of the bikes shots measured 5.8-11.3).
    min_sharpness: float | None = None
    # Mean luma 0..1. Originals measured 0.30-0.53; a 4x darkened copy 0.07-0.11; night grades 0.06-0.25 (a dark
    # shot's night grade is darker than a bright shot's 4x darkened copy: night_highlight tells them apart).
    min_luma_mean: float | None = 0.12
    # Fraction of crushed (< 16/255) pixels: letterboxed 2.39:1 in 16:9 is ~0.25-0.3, so 0.6 means real darkness.
    max_under_frac: float | None = 0.6
    # Both dark lines above drop a clip only when its highlights (luma_highlight, the 99.9th percentile of luma) stay
    # at or under this too (an exemption, Rule.unless: a row scored before schema 18, without the column, is judged
    # as before): a night or low-key look keeps its lights bright, an underexposed clip has none above its gain.
    # bench/night_bench.py (14 shots, H.264 at CRF 28 and 18): copies darkened 4-5x read 0.12-0.28 (grain included;
    # 0.28 a grained copy at CRF 18, which keeps more of the grain), 3.3x ones up to 0.30; night looks of four kinds
    # darker than min_luma_mean 0.32-0.62, but for two that are darkenings in effect (a 2.5x darkening under a blue
    # cast, a dark shot's crushed grade: 0.26-0.28, dropped). 0.30: 1.06x over the highest copy, 1.06x under the
    # lowest look kept (levels are 1/255 apart: 0.282 and 0.318 are 72 and 81).
    # None: the dark lines read the mean and the crushed fraction alone (schema 17 and before).
    night_highlight: float | None = 0.30
    # Brightened (x2.5 + 60) copies measured mean 0.82-0.91 and 0.39-0.68 blown pixels; snow/beach ~0.7-0.8.
    max_luma_mean: float | None = 0.88
    max_over_frac: float | None = 0.3
    # Fraction of sampled frames that are black or blank: > 1/4 means a fade/black segment dominates the clip.
    max_black_frac: float | None = 0.25
    # Fraction of frame area covered by detected text lines (in at least two of 4 frames). One subtitle line is
    # ~3-6 % of a frame, subtitles + a channel logo measured 0.09; clean originals measured 0.0, incidental scene
    # text < 1 %.
    max_text_area: float | None = 0.03
    # Text that persists bottom-centre (stages/cpu_scores.subtitle_area): one short subtitle line is ~0.8-1.2 % of
    # the frame there (bench/filters_bench.py); incidental scene text seldom stays in that zone in most frames.
    max_subtitle_area: float | None = 0.004
    # Area of the persistent overlays found (stages/cpu_scores.overlay_scores: boxes that stay put in the picture while
    # the camera moves the scene around them, or text boxes at the same place in every OCR frame, in the top or
    # bottom third). Any overlay found drops the clip: what is found was already judged by position and persistence,
    # and a model learns a 1 % logo as well as a large one. Channel logos 8-16 % of the width measured 0.0034-0.10 of
    # the frame (their boxes); clean shots and their grades 0 or null (bench/filters_bench.py).
    max_overlay_area: float | None = 0.001
    # A clip where no overlay was found, in a source where another clip has one, is matched against that clip's
    # graphic (stages/shared_overlay.py: a channel logo over a locked-off shot, where the overlay test cannot judge);
    # one that shows it takes that clip's overlay_area. Decodes those clips (their anchors) once; false: not looked.
    shared_overlay: bool = True
    # LAION improved-aesthetic-predictor scale (~1-10). 4.5 is the common T2V cut (Open-Sora used 4.5-5.0);
    # only applies when the CLIP stage ran (aesthetic column not null).
    min_aesthetic: float | None = 4.5


def rules(extra: list[str] | tuple[str, ...] = ()):
    """The rules in order (first failing wins): the clip rules, then each catalogue stage's, built-in stages first
    and the user's (``extra``: the config's ``stages`` list) after them (``stages.catalogue.rules``)."""
    from stages.catalogue import rules as catalogue_rules

    return catalogue_rules(extra)


# the columns the derived ``short_side`` reads: the clip's size and the bars the scorer measured in it
SHORT_SIDE_COLUMNS = ("width", "height", "border_top", "border_bottom", "border_left", "border_right")


def columns(extra: list[str] | tuple[str, ...] = ()) -> tuple[str, ...]:
    """The stored columns the rules read (what `refilter` loads: never the embeddings or captions). The derived
    column ``short_side`` is the active picture's shorter side (:func:`short_side`)."""
    cols = (c for r in rules(extra) for c in (SHORT_SIDE_COLUMNS if r.column == "short_side" else r.columns))
    return tuple(dict.fromkeys(cols))


def short_side(table: pa.Table) -> pa.Array | None:
    """The shorter side, in pixels, of each clip's active picture: width x (1 - border_left - border_right) and
    height x (1 - border_top - border_bottom), the bars being the scorer's (fractions; absent or null = no bars), so a
    letterboxed clip is judged by the picture it holds, not by its frame. None without width and height."""
    if "width" not in table.column_names or "height" not in table.column_names:
        return None

    def keep(a: str, b: str) -> pa.Array:
        bars = [pc.fill_null(table[c].cast(pa.float64()), 0.0) for c in (a, b) if c in table.column_names]
        total = pc.add(bars[0], bars[1]) if len(bars) == 2 else (bars[0] if bars else pa.scalar(0.0))
        return pc.subtract(pa.scalar(1.0), total)

    w = pc.multiply(table["width"].cast(pa.float64()), keep("border_left", "border_right"))
    h = pc.multiply(table["height"].cast(pa.float64()), keep("border_top", "border_bottom"))
    return pc.round(pc.min_element_wise(w, h, skip_nulls=False))


def threshold(cfg: Any, setting: str) -> Any:
    """The value of ``"section.key"`` in ``cfg``: a whole run config (``.sections``), or a FiltersConfig for the
    built-in ``filters.*`` settings."""
    section, _, key = setting.partition(".")
    sections = getattr(cfg, "sections", None)
    if sections is not None:
        return getattr(sections[section], key)
    if section == "filters":
        return getattr(cfg, key)
    raise KeyError(f"{setting}: a {type(cfg).__name__} holds only the filters section; pass the run's Config")


_OPS: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, ">": operator.gt}
_PC_OPS = {"<": pc.less, ">": pc.greater}


def filters_config_from_dict(d: dict[str, Any] | None) -> FiltersConfig:
    """FiltersConfig from a (YAML/JSON) mapping; unknown keys are an error, not silently ignored."""
    d = dict(d or {})
    known = {f.name for f in fields(FiltersConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown filter settings {unknown}; known: {sorted(known)}")
    return FiltersConfig(**d)


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


class Filters:
    """Drop reason of one clip row from its stored scores.

    Reads: duration_s, width, height, error_scores, black_frac, luma_mean, luma_highlight, luma_under_frac,
           luma_over_frac, still_residual, residual_flow, focus, detail, isotropy, streak, cepstrum_dip, sharpness,
           frozen_frac, motion, text_area, subtitle_area, overlay_area, error_clip_scores, aesthetic
           (missing or null: rule skipped)
    Writes: nothing (returns the reason; the pipeline stores it in drop_reason)
    Reasons: duration_short, resolution_low, error_scores, quality_black, quality_dark, quality_overexposed,
             motion_still_image, quality_blurry, motion_static, motion_jitter, text_burned_in, text_overlay,
             error_clip_scores, aesthetic_low
    """

    def __init__(self, cfg: Any = None, extra: list[str] | tuple[str, ...] = ()):
        self.cfg = cfg or FiltersConfig()
        self.rules = rules(extra)

    def check(self, row: dict[str, Any]) -> str | None:
        """The first failing reason, or None to keep the clip."""
        for rule in self.rules:
            reason, col, op = rule.reason, rule.column, rule.op
            if col == "short_side":
                present = {c: [row.get(c)] for c in SHORT_SIDE_COLUMNS if c in row}
                types = {c: pa.float64() for c in present}
                side = short_side(pa.table(present, schema=pa.schema(types))) if present else None
                value = None if side is None else side[0].as_py()
            else:
                value = row.get(col)
            if op == "notnull":
                if value is not None and value != "":
                    return reason
                continue
            limit = threshold(self.cfg, rule.setting)
            if limit is None or _is_null(value):
                continue
            if not _OPS[op](value, limit):
                continue
            if any(_fails(self.cfg, row, c) for c in rule.also or ()):
                continue
            if any(_holds(self.cfg, row, c) for c in rule.unless or ()):
                continue
            return reason
        return None


def _fails(cfg: Any, row: dict[str, Any], condition: tuple[str, str, str]) -> bool:
    """True when a rule's further ``condition`` (column, op, setting) does not hold for ``row``: its value is null or
    not ``op`` the threshold. A threshold set to None leaves the condition out (it never fails)."""
    column, op, setting = condition
    limit, value = threshold(cfg, setting), row.get(column)
    return limit is not None and (_is_null(value) or not _OPS[op](value, limit))


def _holds(cfg: Any, row: dict[str, Any], condition: tuple[str, str, str]) -> bool:
    """True when a rule's exemption ``condition`` (column, op, setting) holds for ``row``: its value is set and ``op``
    the threshold. A null value or a threshold of None never exempts."""
    column, op, setting = condition
    limit, value = threshold(cfg, setting), row.get(column)
    return limit is not None and not _is_null(value) and bool(_OPS[op](value, limit))


def _compare(values: pa.Array | pa.ChunkedArray, op: str, limit: Any) -> pa.Array | pa.ChunkedArray:
    """``values op limit`` element-wise (NaN as null: a null never rejects)."""
    if pa.types.is_floating(values.type):
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)
    return _PC_OPS[op](values, pa.scalar(limit).cast(pa.float64()))


def apply_filters(table: pa.Table, cfg: Any = None, extra: list[str] | tuple[str, ...] = ()) -> pa.Array:
    """Drop reasons (string, null = keep) for every row of a table of stored scores, vectorised with pyarrow.

    Reads: duration_s, width, height, error_scores, motion, frozen_frac, sharpness, luma_*, black_frac, text_area,
           subtitle_area, overlay_area, error_clip_scores, aesthetic (each optional)
    Writes: drop_reason (the returned array; the pipeline stores it in the filters table)
    Reasons: REASONS, in their order (first failing wins); null scores never reject

    Used by ``clipforge refilter`` to recompute drop_reason from stored scores without decoding. Missing
    columns count as all-null (their rules are skipped). Same rules and order as ``Filters.check``. ``cfg``: the
    run's Config (every section's thresholds) or a FiltersConfig (built-in rules only); ``extra``: the config's
    ``stages`` list (the user's stages, whose rules follow the built-in ones).
    """
    cfg = cfg or FiltersConfig()
    n = table.num_rows
    reason = pa.nulls(n, pa.string())
    for rule in rules(extra):
        r, col, op = rule.reason, rule.column, rule.op
        if col == "short_side":
            values = short_side(table)
            if values is None:
                continue
        elif col in table.column_names:
            values = table[col]
        else:
            continue
        if op == "notnull":
            values = values.cast(pa.string())
            hit = pc.and_(pc.is_valid(values), pc.not_equal(values, ""))
        else:
            limit = threshold(cfg, rule.setting)
            if limit is None:
                continue
            hit = _compare(values, op, limit)
            for col2, op2, setting2 in rule.also or ():
                limit2 = threshold(cfg, setting2)
                if limit2 is not None:
                    # a further condition's column absent or null: it cannot hold, the rule never rejects
                    other = table[col2] if col2 in table.column_names else pa.nulls(n, pa.float64())
                    hit = pc.and_kleene(hit, _compare(other, op2, limit2))
            for col2, op2, setting2 in rule.unless or ():
                limit2 = threshold(cfg, setting2)
                if limit2 is not None and col2 in table.column_names:
                    # an exemption's value null (or its column absent): it does not hold, the rule stands
                    exempt = pc.fill_null(_compare(table[col2], op2, limit2), False)
                    hit = pc.and_kleene(hit, pc.invert(exempt))
        hit = pc.fill_null(hit, False)
        reason = pc.if_else(pc.and_(pc.is_null(reason), hit), pa.scalar(r), reason)
    return reason.combine_chunks() if isinstance(reason, pa.ChunkedArray) else reason
