"""Filters on real footage with synthetic defects: real decode, real CPU scores, real PP-OCR, exact reasons.

Clean originals (bikes.mp4 shots, bigbuckbunny, carphone) must be kept with the DEFAULT thresholds; each defect
copy must be dropped with exactly its reason; a resized re-encode of a kept clip must come out of dedup as a
duplicate of it.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pytest

from pipeline.testdata import decode_frames, write_frames
from stages.cpu_scores import CpuScorer, CpuScoresConfig
from stages.dedup import DedupConfig, find_duplicates
from stages.filters import (
    REASONS,
    Filters,
    FiltersConfig,
    apply_filters,
    columns,
    filters_config_from_dict,
)
from stages.frames import video_meta


def burn_text(img: np.ndarray) -> np.ndarray:
    """Burned-in subtitle line + channel-logo watermark, sized relative to the frame."""
    img = img.copy()
    h, w = img.shape[:2]
    fs, th = h / 300, max(2, round(h / 150))
    cv2.putText(img, "I never thought we would get here", (int(w * 0.08), int(h * 0.9)), 0, fs, (255,) * 3, th, 16)
    cv2.putText(img, "NEWS24", (int(w * 0.75), int(h * 0.12)), 2, fs * 1.2, (255, 255, 0), th, 16)
    return img


def resize(frames: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


# clip name -> expected drop reason (None = kept by the filters; dedup is asserted separately)
EXPECTED = {
    "bikes_76": None,
    "bikes_187": None,
    "bbb": None,
    "carphone": None,
    "bbb_360p_copy": None,  # passes the filters, then dedup marks it a duplicate of "bbb"
    "bikes_30_short": "duration_short",
    "carphone_tiny": "resolution_low",
    "missing": "error_scores",
    "bikes_137_black": "quality_black",
    "bikes_187_dark": "quality_dark",
    "bikes_137_overexposed": "quality_overexposed",
    "bikes_76_blurred": "quality_blurry",
    "bikes_137_frozen": "motion_static",
    "bikes_137_shaky": "motion_jitter",
    "bikes_137_text": "text_burned_in",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, bikes, bigbuckbunny, carphone) -> tuple[Path, pa.Table]:
    """OUT dir with real clips + synthetic defects, scored by the real CpuScorer; returns (OUT, clips+scores)."""
    out = tmp_path_factory.mktemp("out")
    (out / "clips").mkdir()
    b = decode_frames(bikes)
    s76, s137, s187 = b[76:137], b[137:187], b[187:242]
    s137 = np.concatenate([s137, s137[::-1][:10]])  # 60 frames = 2.4 s, over the 2 s minimum
    bbb, cp = (
        decode_frames(bigbuckbunny, 0, 64),
        decode_frames(carphone),
    )  # 64 frames of 720p: 2.56 s, keeps encoding quick
    rng = np.random.default_rng(0)
    shifts = rng.uniform(-40, 40, (len(s137), 2))
    shaky = np.stack(
        [
            cv2.warpAffine(f, np.float32([[1, 0, dx], [0, 1, dy]]), (f.shape[1], f.shape[0]), borderMode=4)
            for f, (dx, dy) in zip(s137, shifts, strict=True)
        ]
    )
    black = s137.copy()
    black[: len(black) * 2 // 3] = 0  # a long fade-to-black segment: 2/3 of the clip
    clips = {
        "bikes_76": (s76, 25),
        "bikes_187": (s187, 25),
        "bbb": (bbb, 25),
        "carphone": (cp, 30000 / 1001),
        "bbb_360p_copy": (resize(bbb, 640, 360), 25),
        "bikes_30_short": (b[30:76], 25),
        "carphone_tiny": (resize(cp, 88, 72), 30000 / 1001),
        "bikes_137_black": (black, 25),
        "bikes_187_dark": ((s187 * 0.2).astype(np.uint8), 25),
        "bikes_137_overexposed": (np.clip(s137.astype(np.int16) * 2.5 + 60, 0, 255).astype(np.uint8), 25),
        "bikes_76_blurred": (np.stack([cv2.GaussianBlur(f, (0, 0), 3) for f in s76]), 25),
        "bikes_137_frozen": (np.repeat(s137[:1], len(s137), 0), 25),
        "bikes_137_shaky": (shaky, 25),
        "bikes_137_text": (np.stack([burn_text(f) for f in s137]), 25),
    }
    rows = []
    for name, (frames, fps) in clips.items():
        rel = f"clips/{name}.mp4"
        write_frames(frames, out / rel, fps, crf=28 if name == "bbb_360p_copy" else 18)
        meta = video_meta(out / rel)
        rows.append(
            {
                "clip_id": name,
                "clip_path": rel,
                "num_frames": meta["num_frames"],
                "fps": meta["fps"],
                "width": meta["width"],
                "height": meta["height"],
                "duration_s": meta["num_frames"] / meta["fps"],
            }
        )
    rows.append(dict(rows[0], clip_id="missing", clip_path="clips/missing.mp4"))
    random.Random(1).shuffle(rows)  # nothing may depend on row order
    clips_table = pa.Table.from_pylist(rows)
    batch = {c: np.array(clips_table[c].to_pylist(), dtype=object) for c in clips_table.column_names}
    scores = CpuScorer(CpuScoresConfig(root=str(out)))(batch)
    assert scores["clip_id"].to_pylist() == clips_table["clip_id"].to_pylist()
    table = clips_table
    for name in scores.column_names[1:]:
        table = table.append_column(name, scores[name])
    return out, table


def test_every_defect_gets_exactly_its_reason_and_originals_are_kept(dataset):
    _, table = dataset
    f = Filters()
    got = {r["clip_id"]: f.check(r) for r in table.to_pylist()}
    assert got == EXPECTED, {k: (got[k], table.filter(pa.compute.equal(table["clip_id"], k)).to_pylist()) for k in got}


def test_resized_reencoded_copy_is_a_duplicate_of_the_kept_original(dataset):
    _, table = dataset
    reasons = apply_filters(table)
    kept = table.filter(pa.compute.is_null(reasons))
    assert find_duplicates(kept, DedupConfig()) == {"bbb_360p_copy": "bbb"}  # higher resolution copy is kept


def test_apply_filters_matches_check_row_by_row(dataset):
    _, table = dataset
    assert apply_filters(table).to_pylist() == [Filters().check(r) for r in table.to_pylist()]


def test_refilter_from_stored_scores_without_decoding(dataset, tmp_path):
    """Re-tuning thresholds only needs the stored table: the clip files can be gone."""
    import pyarrow.parquet as pq

    _, table = dataset
    pq.write_table(table, tmp_path / "scores.parquet")
    stored = pq.read_table(tmp_path / "scores.parquet")
    lenient = filters_config_from_dict(
        {
            "min_focus": None,
            "min_detail": None,
            "max_text_area": 0.5,
            "max_subtitle_area": None,
            "max_overlay_area": None,
        }
    )
    got = dict(zip(stored["clip_id"].to_pylist(), apply_filters(stored, lenient).to_pylist(), strict=True))
    assert got["bikes_76_blurred"] is None and got["bikes_137_text"] is None
    assert got["bikes_187_dark"] == "quality_dark"
    # the now-kept blurred copy is a near duplicate of its sharp original, which wins on sharpness
    kept = stored.filter(pa.compute.is_null(apply_filters(stored, lenient)))
    assert find_duplicates(kept)["bikes_76_blurred"] == "bikes_76"


# ---------------------------------------------------------------------------------------------- unit rules


def row(**kw):
    base = {
        "clip_id": "x",
        "duration_s": 4.0,
        "width": 640,
        "height": 360,
        "error_scores": None,
        "motion": 0.05,
        "frozen_frac": 0.0,
        "sharpness": 100.0,
        "focus": 1.5,
        "detail": 0.3,
        "isotropy": 1.0,
        "streak": 0.1,
        "cepstrum_dip": 0.02,
        "still_residual": 0.4,
        "residual_flow": 0.02,
        "subtitle_area": 0.0,
        "overlay_area": 0.0,
        "luma_mean": 0.45,
        "luma_highlight": 0.9,
        "luma_under_frac": 0.01,
        "luma_over_frac": 0.01,
        "black_frac": 0.0,
        "text_area": 0.0,
        "aesthetic": None,
        "error_clip_scores": None,
        "border_top": 0.0,
        "border_bottom": 0.0,
        "border_left": 0.0,
        "border_right": 0.0,
    }
    return base | kw


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({}, None),
        ({"duration_s": 1.0, "motion": 0.0}, "duration_short"),  # metadata first
        ({"height": 100, "error_scores": "error_scores:X: y"}, "resolution_low"),
        # the active picture's short side: 360 x (1 - 0.34 - 0.34) = 115 px of picture inside a 640x360 frame
        ({"border_top": 0.34, "border_bottom": 0.34}, "resolution_low"),
        ({"border_top": 0.12, "border_bottom": 0.12}, None),  # a 2.39:1 letterbox: 274 px of picture
        ({"border_top": 0.34, "border_bottom": None}, None),  # one bar unknown counts as none: 238 px
        ({"error_scores": "error_scores:ValueError: bad", "motion": None, "sharpness": None}, "error_scores"),
        ({"black_frac": 0.5, "luma_mean": 0.05, "sharpness": 1.0}, "quality_black"),
        # dark, and no highlight above what a 4x darkening leaves: underexposed, not blurry / static
        ({"luma_mean": 0.05, "luma_highlight": 0.2, "sharpness": 1.0, "motion": 0.001}, "quality_dark"),
        ({"luma_under_frac": 0.7, "luma_highlight": 0.2}, "quality_dark"),
        ({"luma_mean": 0.09, "luma_highlight": 0.4}, None),  # as dark, its lights bright: a night look, kept
        ({"luma_under_frac": 0.7, "luma_highlight": 0.4}, None),  # crushed shadows under lights: low key, kept
        ({"luma_mean": 0.09, "luma_highlight": None}, "quality_dark"),  # scored before schema 18: judged as then
        ({"luma_over_frac": 0.5, "sharpness": 1.0}, "quality_overexposed"),
        ({"focus": 0.3, "motion": 0.0}, "quality_blurry"),  # the blur rule reads focus
        ({"sharpness": 2.0, "focus": 1.5}, None),  # the Laplacian rule is off unless min_sharpness is set
        ({"detail": 0.02, "focus": 2.5}, "quality_blurry"),  # heavy blur: focus reads noise, detail is ~0
        # motion blur: one direction lost it, the rest spread, the spectrum notched along it by the smear's path
        ({"isotropy": 0.3, "streak": 0.6, "cepstrum_dip": 0.2}, "quality_blurry"),
        ({"isotropy": 0.3, "streak": 0.6}, None),  # depth of field over grass: spread, but a Gaussian has no notch
        ({"isotropy": 0.3, "streak": 0.7}, "quality_blurry"),  # spread so far that no notch is asked for
        ({"isotropy": 0.3}, None),  # clean grass, blinds: detail that runs one way, sharp along it (streak 0.1)
        ({"streak": 0.6}, None),  # defocus and upsampling spread every direction: isotropy ~1, focus's case
        ({"isotropy": 0.3, "streak": None}, None),  # a row scored before streak: the rule cannot tell
        ({"frozen_frac": 1.0, "motion": 0.0}, "motion_static"),
        ({"motion": 0.001}, "motion_static"),
        ({"still_residual": 0.01, "residual_flow": 0.001}, "motion_still_image"),
        ({"still_residual": 0.01, "residual_flow": 0.001, "focus": 0.3}, "motion_still_image"),  # a soft photo, first
        # little changes but near and far things move against each other (parallax): a real camera move, kept
        ({"still_residual": 0.02, "residual_flow": 0.008}, None),
        ({"still_residual": 0.01, "residual_flow": None}, None),  # a row scored before schema 15 (a run rescores it)
        ({"motion": 3.0}, "motion_jitter"),
        ({"text_area": 0.2, "aesthetic": 1.0}, "text_burned_in"),
        ({"subtitle_area": 0.01}, "text_burned_in"),  # one persistent subtitle line, under max_text_area
        ({"overlay_area": 0.01, "aesthetic": 1.0}, "text_overlay"),  # a channel logo: after the text rules
        ({"overlay_area": 0.01, "text_area": 0.2}, "text_burned_in"),
        ({"aesthetic": 3.0}, "aesthetic_low"),
        ({"error_clip_scores": "error_clip_scores:RuntimeError: x", "aesthetic": None}, "error_clip_scores"),
        # null / NaN scores never reject
        (
            {
                "motion": None,
                "frozen_frac": None,
                "focus": float("nan"),
                "detail": None,
                "isotropy": None,
                "streak": None,
                "still_residual": None,
                "text_area": None,
                "overlay_area": None,
            },  # fmt: skip
            None,
        ),
    ],
)
def test_first_failing_reason_wins(overrides, reason):
    assert Filters().check(row(**overrides)) == reason
    if reason is not None:
        assert reason in REASONS


def test_the_motion_blur_rule_needs_every_condition_unless_one_is_turned_off():
    """quality_blurry for motion blur: isotropy < min_isotropy AND streak > max_streak AND cepstrum_dip >
    max_cepstrum_dip, or isotropy < min_isotropy AND streak > max_streak_alone (two Rules with ``also``), the same in
    Filters.check and apply_filters. max_cepstrum_dip or max_streak_alone None: isotropy and streak as before schema
    17; max_streak and max_streak_alone None: isotropy alone; min_isotropy None turns it off."""
    iso_alone = FiltersConfig(max_streak=None, max_streak_alone=None)
    cases = [
        (FiltersConfig(), row(isotropy=0.4, streak=0.6, cepstrum_dip=0.2), "quality_blurry"),  # a smear
        (FiltersConfig(), row(isotropy=0.4, streak=0.6, cepstrum_dip=0.02), None),  # depth of field over grass
        (FiltersConfig(), row(isotropy=0.4, streak=0.6, cepstrum_dip=None), None),  # scored before schema 17
        (FiltersConfig(), row(isotropy=0.4, streak=0.7, cepstrum_dip=0.02), "quality_blurry"),  # a strong streak
        (FiltersConfig(), row(isotropy=0.4, streak=0.2, cepstrum_dip=0.3), None),  # a texture, notched or not
        (FiltersConfig(max_cepstrum_dip=None), row(isotropy=0.4, streak=0.6, cepstrum_dip=0.02), "quality_blurry"),
        (FiltersConfig(max_streak_alone=None), row(isotropy=0.4, streak=0.6, cepstrum_dip=None), "quality_blurry"),
        (FiltersConfig(), row(isotropy=0.4, streak=0.6, still_residual=0.01, residual_flow=0.0), "motion_still_image"),
        (FiltersConfig(min_residual_flow=None), row(still_residual=0.01, residual_flow=0.008), "motion_still_image"),
        (iso_alone, row(isotropy=0.4, streak=0.2), "quality_blurry"),  # isotropy alone
        (iso_alone, row(isotropy=0.4, streak=None, cepstrum_dip=None), "quality_blurry"),
        (FiltersConfig(max_streak=None), row(isotropy=0.4, streak=0.2), None),  # still the strong-streak line
        (FiltersConfig(min_isotropy=None), row(isotropy=0.1, streak=0.9, cepstrum_dip=0.5), None),  # off
        (FiltersConfig(), row(isotropy=0.9, streak=0.9, cepstrum_dip=0.5), None),
    ]
    for cfg, r, reason in cases:
        assert Filters(cfg).check(r) == reason, (cfg, r)
        assert apply_filters(pa.Table.from_pylist([r]), cfg).to_pylist() == [reason], (cfg, r)
    # a table without the streak column (an OUT scored before schema 9): the rule skips its clips
    table = pa.Table.from_pylist([row(isotropy=0.4)]).drop_columns(["streak"])
    assert apply_filters(table, FiltersConfig()).to_pylist() == [None]
    assert "streak" in columns() and "isotropy" in columns()


def test_the_dark_rules_spare_a_clip_whose_highlights_stay_bright():
    """quality_dark (luma_mean < min_luma_mean, or luma_under_frac > max_under_frac) unless luma_highlight >
    night_highlight (Rule.unless): the same in Filters.check and apply_filters. An exemption never comes from a null or
    an absent column (a row scored before schema 18 is judged as it was then); night_highlight None: schema 17's
    rules."""
    from stages.catalogue import Rule

    dark, night = row(luma_mean=0.09, luma_highlight=0.2), row(luma_mean=0.09, luma_highlight=0.4)
    crushed = row(luma_under_frac=0.7, luma_highlight=0.4)
    cases = [
        (FiltersConfig(), dark, "quality_dark"),
        (FiltersConfig(), night, None),
        (FiltersConfig(), crushed, None),
        (FiltersConfig(), row(luma_mean=0.09, luma_highlight=0.30), "quality_dark"),  # at the line: not above it
        (FiltersConfig(), row(luma_mean=0.09, luma_highlight=None), "quality_dark"),
        (FiltersConfig(), row(luma_mean=0.09, luma_highlight=float("nan")), "quality_dark"),
        (FiltersConfig(), row(luma_highlight=0.05), None),  # the exemption alone never drops: bright enough
        (FiltersConfig(night_highlight=None), night, "quality_dark"),
        (FiltersConfig(night_highlight=None), crushed, "quality_dark"),
        (FiltersConfig(night_highlight=0.5), night, "quality_dark"),
        (FiltersConfig(min_luma_mean=None), night | {"luma_highlight": 0.1}, None),
    ]
    for cfg, r, reason in cases:
        assert Filters(cfg).check(r) == reason, (cfg, r)
        assert apply_filters(pa.Table.from_pylist([r]), cfg).to_pylist() == [reason], (cfg, r)
    table = pa.Table.from_pylist([night, row()]).drop_columns(["luma_highlight"])  # an OUT scored before schema 18
    assert apply_filters(table, FiltersConfig()).to_pylist() == ["quality_dark", None]
    assert "luma_highlight" in columns()
    with pytest.raises(ValueError, match="unless must be"):
        Rule("quality_dark", "luma_mean", "<", "filters.min_luma_mean", unless=("luma_highlight", "=", "x.y"))
    rule = Rule("quality_dark", "luma_mean", "<", "filters.min_luma_mean", unless=("luma_highlight", ">", "f.n"))
    assert rule.unless == (("luma_highlight", ">", "f.n"),) and rule.columns == ("luma_mean", "luma_highlight")
    assert rule.settings == ("filters.min_luma_mean", "f.n")


def test_none_threshold_disables_a_rule_and_unknown_keys_are_rejected():
    assert Filters(FiltersConfig(min_motion=None)).check(row(motion=0.0)) is None
    assert Filters(FiltersConfig(min_aesthetic=6.0)).check(row(aesthetic=5.0)) == "aesthetic_low"
    with pytest.raises(ValueError, match="min_sharpnes"):
        filters_config_from_dict({"min_sharpnes": 3})


def test_apply_filters_equals_check_on_random_rows_with_nulls_and_missing_columns():
    rng = random.Random(0)
    rows = []
    for _ in range(400):
        r = row()
        for k in list(r):
            if k in ("clip_id",):
                continue
            roll = rng.random()
            if roll < 0.15:
                r[k] = None
            elif roll < 0.2 and isinstance(r[k], float):
                r[k] = math.nan
            elif roll < 0.5 and k.startswith("error"):
                r[k] = f"{k}:E: m"
            elif roll < 0.6 and isinstance(r[k], (int, float)) and not isinstance(r[k], bool):
                r[k] = type(r[k])(r[k] * rng.uniform(0, 4)) if isinstance(r[k], float) else int(r[k] * rng.random())
        if isinstance(r["error_scores"], float):
            r["error_scores"] = None
        rows.append(r)
    schema = (
        pa.schema(
            [
                (k, pa.string() if k in ("clip_id", "error_scores", "error_clip_scores") else pa.float64())
                for k in row()
            ]
        )
        .set(2, pa.field("width", pa.int32()))
        .set(3, pa.field("height", pa.int32()))
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    expected = [Filters().check(r) for r in table.to_pylist()]
    assert len(set(expected)) >= 8  # the random rows exercise most rules
    assert apply_filters(table).to_pylist() == expected
    # a table without the CLIP columns (stage disabled) simply skips those rules
    no_clip = table.drop_columns(["aesthetic", "error_clip_scores"])
    assert apply_filters(no_clip).to_pylist() == [Filters().check(r) for r in no_clip.to_pylist()]
