"""The filters on a hard set (issue 12): per-class precision / recall / F1 and the clean keep rate.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/filters_bench.py [--out bench/results/filters.json] [--quick]

The hard set is built here from the shipped footage (bikes.mp4's shots, two halves of bigbuckbunny, carphone;
transnet_test's 160x90 is below any sensible minimum size), every clip written as H.264 and scored by the real
``CpuScorer`` (stages/cpu_scores.py); drop reasons come from the real rules (``stages.filters.apply_filters``,
the default thresholds with the duration and CLIP rules off: they are not what is measured) and duplicates from the
real dedup (``stages.dedup.find_duplicates``) over the clean clips and their copies.

The size rule is on, as a run has it (``filters.min_short_side`` 128 px on the *active* picture): a clip it drops as
``resolution_low`` never reaches the scores' rules in a run, so it is out of every class and of the clean keep rate
and listed under ``out_of_scope`` (carphone is 176x144: its letterboxed copies hold a 176x68 px picture, its boxed
copy 140x114). ``classes_without_size_rule`` is every clip judged with the size rule off, as this bench did until
2026-12-02: a picture under 128 px is judged at its own size, where mild defocus is not seen
(bench/blur_letterbox_bench.py), so that figure shows what a run with ``min_short_side`` lowered gets.

Defect classes (positives; what each must be dropped as):
- ``still_image``: a still frame of each source under a slow pan (1, 3 %/s) or zoom (1, 4 %/s): motion_still_image
  or motion_static;
- ``blur``: Gaussian defocus, sigma 2.0-2.5 px at 640x360 (scaled to the clip's size): quality_blurry;
- ``blur_letterboxed``: the same inside 2.39:1 letterbox bars: quality_blurry;
- ``blur_heavy``: Gaussian blur of sigma 5 or 8 px at 640x360, so strong that the focus ratio's two bands hold only
  the encoder's noise (``detail`` is the rule that sees it): quality_blurry;
- ``blur_grain``: the same defocus under film grain (``pipeline.defects.grain``, sigma 7 grey levels), whose noise
  fills the finest band a blur measure reads: quality_blurry;
- ``blur_motion``: motion blur of the whole picture (camera shake; ``pipeline.defects.smear``), a line of 10 or 16 px
  at 640x360 (scaled), at another angle for each source (0, 90, 30, 135, 60, 15, 120 degrees): quality_blurry;
- ``logo``: a channel logo in a corner (``pipeline.defects.logo``), four per source, each in another corner: the
  original (alpha 0.4-0.6, 12 % of the width), an opaque one 16 % wide, a small one 8 % wide (alpha 0.5) and a faint
  one (alpha 0.3); text_burned_in or text_overlay. A variant that changes its box by under 6 grey levels on average
  (a white logo over white sky) is invisible and left out;
- ``subtitle``: one short line of subtitle text at the bottom: text_burned_in;
- ``mirrored``, ``boxed``: a mirrored copy, a copy scaled into bars: duplicate (of the clean clip).

Hard clean negatives (must be kept): the clean clips themselves (fast action and slow real camera moves among them),
shallow depth of field (background blurred, a sharp centre), a night grade, a high-key grade, small scene text,
letterbox bars, film grain. A negative dropped for a class's reason counts as that class's false positive.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch import scratch_dir  # noqa: E402

from pipeline.defects import (  # noqa: E402
    blur,
    boxed,
    grain,
    high_key,
    letterbox,
    logo,
    night,
    scene_text,
    shallow_dof,
    smear,
    subtitle,
)
from pipeline.footage import BIKES_CUTS, sample_video  # noqa: E402
from pipeline.testdata import decode_frames, ken_burns, write_frames  # noqa: E402
from stages.clips import RESOLUTION_LOW  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig  # noqa: E402
from stages.dedup import DedupConfig, find_duplicates  # noqa: E402
from stages.dedup import columns as dedup_columns  # noqa: E402
from stages.filters import FiltersConfig, apply_filters, short_side  # noqa: E402

SHOWN = ("focus", "detail", "text_area", "still_residual", "residual_flow", "overlay_area")  # printed per clip

EXPECT = {
    "still_image": {"motion_still_image", "motion_static"},
    "blur": {"quality_blurry"},
    "blur_letterboxed": {"quality_blurry"},
    "blur_heavy": {"quality_blurry"},
    "blur_grain": {"quality_blurry"},
    "blur_motion": {"quality_blurry"},
    "logo": {"text_burned_in", "text_overlay"},
    "subtitle": {"text_burned_in"},
    "mirrored": {"duplicate"},
    "boxed": {"duplicate"},
}
COPIES = ("mirrored", "boxed")
NEGATIVES = ("clean", "shallow_dof", "night", "high_key", "scene_text", "letterbox", "grain")


def sources(quick: bool) -> dict[str, tuple[np.ndarray, float]]:
    """Clean real shots (frames, fps): the footage the hard set is made of. transnet_test (160x90) is left out: at
    90 px it is below any sensible ``min_short_side`` (``resolution_low``), so its softness says nothing about blur."""
    bikes = decode_frames(sample_video("bikes"))
    cuts = [0, *BIKES_CUTS, len(bikes)]
    out = {f"bikes{i}": (bikes[cuts[i] : cuts[i + 1]], 25.0) for i in range(1, 5)}
    bbb = decode_frames(sample_video("bigbuckbunny"))
    out["bbb_a"], out["bbb_b"] = (bbb[:66], 25.0), (bbb[66:], 25.0)
    out["carphone"] = (decode_frames(sample_video("carphone")), 30000 / 1001)
    if quick:
        out = {k: out[k] for k in ("bikes2", "bikes4", "bbb_a", "carphone")}
    return out


def build(quick: bool) -> list[dict]:
    """The hard set: dicts with name, kind, source, frames, fps."""
    items = []
    srcs = sources(quick)
    for k, (name, (fr, fps)) in enumerate(srcs.items()):
        items.append({"name": name, "kind": "clean", "source": name, "frames": fr, "fps": fps})
        variants = {
            "blur": blur(fr, 2.0 + 0.5 * (k % 2)),
            "blur_letterboxed": letterbox(blur(fr, 2.0 + 0.5 * ((k + 1) % 2))),
            "blur_heavy": blur(fr, 5.0 + 3.0 * (k % 2)),
            "blur_grain": grain(blur(fr, 2.0 + 0.5 * (k % 2)), seed=k + 100),
            "blur_motion": smear(fr, 10.0 + 6.0 * (k % 2), (0, 90, 30, 135, 60, 15, 120)[k % 7]),
            "logo": logo(fr, 0.4 + 0.1 * (k % 3), ("tr", "tl", "br", "bl")[k % 4]),
            "subtitle": subtitle(fr, ("I told you so.", "Where were you?", "Look out!")[k % 3]),
            "mirrored": np.ascontiguousarray(fr[:, :, ::-1]),
            "boxed": boxed(fr, 0.75 if k % 2 else 0.8),
            "shallow_dof": shallow_dof(fr),
            "night": night(fr),
            "high_key": high_key(fr),
            "scene_text": scene_text(fr),
            "letterbox": letterbox(fr),
            "grain": grain(fr, seed=k),
        }
        for kind, frames in variants.items():
            item = {"name": f"{name}_{kind}", "kind": kind, "source": name, "frames": frames, "fps": fps}
            items.append(item)
        corners = ("tr", "tl", "br", "bl")
        more = {
            "logo_opaque": logo(fr, 1.0, corners[(k + 1) % 4], "NEWS", width=0.16),
            "logo_small": logo(fr, 0.5, corners[(k + 2) % 4], "HD", width=0.08),
            "logo_faint": logo(fr, 0.3, corners[(k + 3) % 4], "24", width=0.12),
        }
        for variant, frames in more.items():
            if logo_contrast(frames, fr) < 6:
                continue  # invisible: the logo's pixels barely differ from the picture under them
            items.append({"name": f"{name}_{variant}", "kind": "logo", "source": name, "frames": frames, "fps": fps})
    moves = {"pan1": {"pan": 0.01}, "pan3": {"pan": 0.03}, "zoom1": {"zoom": 0.01}, "zoom4": {"zoom": 0.04}}
    for i, name in enumerate(srcs):
        fr, fps = srcs[name]
        move = list(moves)[i % len(moves)]
        frames = ken_burns(fr[len(fr) // 2], 75, fps, **moves[move])
        item = {"name": f"{name}_still_{move}", "kind": "still_image", "source": name, "frames": frames, "fps": fps}
        items.append(item)
    return items


def logo_contrast(with_logo: np.ndarray, frames: np.ndarray) -> float:
    """Mean over the logo's box (the bounding box of every pixel it changed) and the frames of the largest change of
    a colour channel, in grey levels: how visible the logo is."""
    diff = np.abs(with_logo.astype(np.int16) - frames).max(axis=-1)  # (N, H, W)
    ys, xs = np.nonzero(diff.any(axis=0))
    if not len(ys):
        return 0.0
    return float(diff[:, ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].mean())


def prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(p, 3), "recall": round(r, 3), "f1": round(f1, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "filters.json"))
    ap.add_argument("--quick", action="store_true", help="4 of the 7 sources (a smoke run)")
    ap.add_argument("--keep", help="write the hard set's clips into this directory (kept after the run)")
    args = ap.parse_args()
    tmp = Path(args.keep) if args.keep else scratch_dir("filters-bench-")
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    items = build(args.quick)
    scorer = CpuScorer(CpuScoresConfig())
    rows = []
    for it in items:
        path = write_frames(it["frames"], tmp / f"{it['name']}.mp4", fps=it["fps"])
        s = scorer.score_clip(path)
        h, w = it["frames"].shape[1:3]
        rows.append({"clip_id": it["name"], "kind": it["kind"], "source": it["source"], "width": w, "height": h,
                     "duration_s": len(it["frames"]) / it["fps"], "error_scores": None,
                     **{k: v for k, v in s.items() if k != "decoder"}})  # fmt: skip
        print(
            it["kind"],
            it["name"],
            {k: rows[-1].get(k) for k in SHOWN},
            flush=True,
        )
    table = pa.Table.from_pylist(rows)
    unsized = judge(rows, table, FiltersConfig(min_duration_s=None, min_short_side=None, min_aesthetic=None))
    sized = judge(rows, table, FiltersConfig(min_duration_s=None, min_aesthetic=None))
    for r, s in zip(rows, sized, strict=True):
        r["drop_reason"], r["duplicate_of"] = s["drop_reason"], s.get("duplicate_of")
    out = [r["clip_id"] for r in sized if r["drop_reason"] == RESOLUTION_LOW]
    classes, clean = measure([r for r in sized if r["clip_id"] not in out])
    classes_unsized, clean_unsized = measure(unsized)
    # what a run does with the graded variants: dedup sees them beside the shot they were made from
    graded = judge(rows, table, FiltersConfig(min_duration_s=None, min_aesthetic=None), (*NEGATIVES, *COPIES))
    kind_of = {r["clip_id"]: r["kind"] for r in rows}
    twins = {
        r["clip_id"]: r["duplicate_of"]
        for r in graded
        if r["kind"] in NEGATIVES and r["drop_reason"] == "duplicate" and kind_of[r["duplicate_of"]] in NEGATIVES
    }
    in_scope = [r for r in graded if r["kind"] in NEGATIVES and r["clip_id"] not in out]
    result = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/filters_bench.py" + (" --quick" if args.quick else ""),
        "clips": len(rows),
        "seconds": round(time.perf_counter() - t0, 1),
        "out_of_scope": {
            r["clip_id"]: {"kind": r["kind"], "active_short_side": side}
            for r, side in zip(rows, short_side(table).to_pylist(), strict=True)
            if r["clip_id"] in out
        },
        **clean,
        "classes": classes,
        "without_size_rule": {**clean_unsized, "classes": classes_unsized},
        "graded_variants_in_dedup": {
            "negatives": len(in_scope),
            "dropped_as_a_graded_twin": len(twins),
            "twins": twins,
        },
        "scores": [
            {
                k: (round(v, 5) if isinstance(v, float) else v)
                for k, v in r.items()
                if k not in ("phash", "phash_mirror")
            }
            for r in rows
        ],  # fmt: skip
    }
    Path(args.out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    shown = ("clips", "out_of_scope", "clean_kept", "clean_kept_by_kind", "clean_dropped")
    print(json.dumps({k: result[k] for k in shown}, indent=1))
    for title, cls in (("with the size rule (a run's)", classes), ("without it (every clip)", classes_unsized)):
        print(title)
        for kind, c in cls.items():
            print(f"  {kind:18s} P {c['precision']:.3f} R {c['recall']:.3f} F1 {c['f1']:.3f}  missed {c['missed']}")


def judge(rows: list[dict], table: pa.Table, cfg: FiltersConfig, pool_kinds: tuple = ("clean", *COPIES)) -> list[dict]:
    """Each clip's drop reason under ``cfg`` and dedup: copies of ``rows`` with drop_reason and duplicate_of.
    ``pool_kinds``: the kinds dedup sees; by default the clean clips and their copies: the graded variants of a shot
    are copies of it too (a run drops all but one of them), so they stay out of it unless named."""
    reasons = apply_filters(table.drop_columns(["kind", "source"]), cfg).to_pylist()
    rows = [{**r, "drop_reason": reason, "duplicate_of": None} for r, reason in zip(rows, reasons, strict=True)]
    pool = [r for r in rows if r["kind"] in pool_kinds and r["drop_reason"] is None]
    # what a run's dedup reads (stages.dedup.columns), each clip its own file named after it, from its start
    files = [{**r, "source_path": f"{r['clip_id']}.mp4", "start_s": 0.0} for r in pool]
    cols = dedup_columns(DedupConfig())
    dupes = find_duplicates(pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in files]), DedupConfig())
    for r in rows:
        if r["clip_id"] in dupes:
            r["drop_reason"], r["duplicate_of"] = "duplicate", dupes[r["clip_id"]]
    return rows


def measure(rows: list[dict]) -> tuple[dict, dict]:
    """(per-class precision / recall / F1 with the clips missed, the clean keep rates) of judged ``rows``."""

    # a copy and its source are the same picture: either may be the one kept (dedup's tie-break), the pair is found
    # when one of the two is dropped as the other's duplicate
    def found(copy: dict) -> bool:
        src = next(r for r in rows if r["clip_id"] == copy["source"])
        family = {r["clip_id"] for r in rows if r["source"] == src["clip_id"] and r["kind"] in ("clean", *COPIES)}
        return copy.get("duplicate_of") in family or (
            src.get("duplicate_of") == copy["clip_id"] and copy["drop_reason"] is None
        )

    def copy_of_itself(r: dict) -> bool:
        return r["kind"] == "clean" and r["drop_reason"] == "duplicate" and r["duplicate_of"].startswith(r["clip_id"])

    negatives = [r for r in rows if r["kind"] in NEGATIVES]
    dropped = [r for r in negatives if r["drop_reason"] is not None and not copy_of_itself(r)]
    classes = {}
    for kind, want in EXPECT.items():
        pos = [r for r in rows if r["kind"] == kind]
        hit = [r for r in pos if (found(r) if kind in COPIES else r["drop_reason"] in want)]
        fp = sum(r["drop_reason"] in want for r in dropped)
        classes[kind] = prf(len(hit), fp, len(pos) - len(hit))
        classes[kind]["missed"] = {r["clip_id"]: r["drop_reason"] for r in pos if r not in hit}
        if kind in COPIES:  # the stricter count: the copy itself dropped, its source kept
            classes[kind]["copy_dropped"] = sum(r["drop_reason"] == "duplicate" for r in pos)
    kept = {k: round(sum(r not in dropped for r in negatives if r["kind"] == k)
                     / max(1, sum(r["kind"] == k for r in negatives)), 3) for k in NEGATIVES}  # fmt: skip
    clean = {
        "clean_kept": round(1 - len(dropped) / len(negatives), 3),
        "clean_kept_by_kind": kept,
        "clean_dropped": {r["clip_id"]: r["drop_reason"] for r in dropped},
    }
    return classes, clean


if __name__ == "__main__":
    main()
