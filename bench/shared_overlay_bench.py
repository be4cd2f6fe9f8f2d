"""The shared-overlay look (stages/shared_overlay.py) on real footage: a logo the overlay test finds in a source's
panning shot, looked for in the same source's locked-off shot.

Seed: bigbuckbunny's panning frames 0-70 (1280x720) with a logo; the overlay test (``CpuScorer``) must find it
(a seed it misses is counted apart). Targets, each with the same logo (positives) and without it (negatives):
bigbuckbunny's locked-off frames 70-132 mirrored, bikes.mp4's shots 76-137 and 187-242 cropped to 16:9 and brought
to 1280x720. Logos: a play icon and a star (no text), a framed word, a bare word and a plate
(``pipeline.defects.styled_logo``); white, alpha 0.3 / 0.4 / 0.5, 8 % of the width, in the four corners. Counts
the positives shown (recall) and the negatives shown (false positives) at ``MIN_MATCH`` / ``NULL_RATIO``, and the
correlations' ranges, so the thresholds' margins are seen.

    python bench/shared_overlay_bench.py --out bench/results/shared_overlay.json [--quick]
    python bench/shared_overlay_bench.py --faint-only --out bench/results/shared_overlay_faint.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from pipeline.defects import LOGO_FONTS, handheld, icon, styled_logo
from pipeline.footage import sample_video
from pipeline.testdata import decode_frames
from stages.cpu_scores import CpuScorer, CpuScoresConfig, resize_short, sample_plan
from stages.shared_overlay import (
    MAX_SURROUND,
    MIN_FIXED,
    MIN_MATCH,
    NULL_RATIO,
    anchor_gradients,
    fixed_share,
    match,
    median_gradients,
    shows,
)

SIGNS = ("sign_handheld_6px", "sign_handheld_12px")


def draw(frames: np.ndarray, style: str, alpha: float, corner: str) -> np.ndarray:
    if style in ("play", "star"):
        return icon(frames, style, alpha, corner)
    return styled_logo(frames, style, alpha, corner, text="TV5", width=0.08)


def faint_targets(bbb, scorer, cfg, look, verdict, judged) -> list[dict]:
    """Faint words over grass the camera pans slowly across (bench/faint_logo_bench.py's windows at 640x360): the seed
    is the window starting at frame 0 (the camera moves ~14 px at the analysis size: the overlay test finds the word),
    the targets the windows starting at 45 and 60 (~3 px: the overlay test judges them, overlay_area 0, and misses
    the word), each with the word and without it."""
    out = []
    for alpha in (0.3, 0.35):
        for corner in ("bl", "br"):
            word = dict(style="word", text="ARD", width=0.1, font=LOGO_FONTS[0], margin=0.03)
            seed = styled_logo(resize_short(bbb[0:60], 360), alpha=alpha, corner=corner, **word)
            found = scorer._score(dict(enumerate(seed)), len(seed), 25.0)
            if not found["overlay_area"]:
                out.append({"alpha": alpha, "corner": corner, "seed_found": False})
                continue
            template = median_gradients(seed[sample_plan(len(seed), 25.0, cfg.num_samples, cfg.pair_gap_s)[0]], cfg)
            for start in (45, 60):
                clean = resize_short(bbb[start : start + 60], 360)
                marked = styled_logo(clean, alpha=alpha, corner=corner, **word)
                w, wo = look(template, found["overlay_box"], marked), look(template, found["overlay_box"], clean)
                row = {"alpha": alpha, "corner": corner, "start": start, "with": w, "without": wo,
                       "shown_with": shows(*w), "shown_without": shows(*wo),
                       "judged_with": judged(verdict(marked))}  # fmt: skip
                out.append(row)
                print(json.dumps(row), flush=True)
    return [r for r in out if "start" in r]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/shared_overlay.json")
    ap.add_argument("--quick", action="store_true", help="two corners, alpha 0.4 only")
    ap.add_argument("--faint-only", action="store_true", help="the faint targets alone, into --out")
    args = ap.parse_args()
    cfg = CpuScoresConfig()
    scorer = CpuScorer(cfg)
    bbb = decode_frames(sample_video("bigbuckbunny"))
    bikes = decode_frames(sample_video("bikes"))

    def up(a: int, b: int) -> np.ndarray:
        return np.stack([cv2.resize(f[:, 80:560], (1280, 720), interpolation=cv2.INTER_CUBIC) for f in bikes[a:b]])

    seed_frames = bbb[0:70]
    targets = {"bbb_locked_mirrored": bbb[70:132, :, ::-1], "bikes_76_137": up(76, 137), "bikes_187_242": up(187, 242)}

    def anchors(f: np.ndarray) -> np.ndarray:
        return f[sample_plan(len(f), 25.0, cfg.num_samples, cfg.pair_gap_s)[0]]

    def look(template: np.ndarray, box: list[float], frames: np.ndarray) -> list[float]:
        """match()'s three values and fixed_share() of a target."""
        stack = anchor_gradients(anchors(frames), cfg)
        c = match(template, box, median_gradients(None, stack=stack))
        return [round(v, 3) for v in (*c, fixed_share(template, box, stack))]

    # a handheld shot of a still scene with a sign shaped like the logo at its place, opaque, moving with the picture
    # (a newcomer's boards and plates in handheld shots matched plate logos): the overlay test sees it move
    # (overlay_area 0); the look must not override that
    still = bbb[70:132, :, ::-1]

    def verdict(frames: np.ndarray) -> float | None:
        return scorer._score(dict(enumerate(frames)), len(frames), 25.0)["overlay_area"]

    def judged(area: float | None) -> str:
        return "null" if area is None else ("found" if area > 0 else "zero")

    if args.faint_only:
        faint = faint_targets(bbb, scorer, cfg, look, verdict, judged)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"faint": faint}, indent=1) + "\n")
        return
    styles = ("play", "star", "framed", "word", "plate")
    alphas = (0.4,) if args.quick else (0.3, 0.4, 0.5)
    corners = ("tr", "bl") if args.quick else ("tl", "tr", "bl", "br")
    rows, t0 = [], time.perf_counter()
    for style in styles:
        for alpha in alphas:
            for corner in corners:
                seed = draw(seed_frames, style, alpha, corner)
                found = scorer._score(dict(enumerate(seed)), len(seed), 25.0)
                row = {"style": style, "alpha": alpha, "corner": corner, "seed_found": bool(found["overlay_area"])}
                if row["seed_found"]:
                    template = median_gradients(anchors(seed), cfg)
                    for name, frames in targets.items():
                        pos = look(template, found["overlay_box"], draw(frames, style, alpha, corner))
                        neg = look(template, found["overlay_box"], frames)
                        row[name] = {"with": pos, "without": neg,
                                     "shown_with": shows(*pos), "shown_without": shows(*neg),
                                     "judged_with": judged(verdict(draw(frames, style, alpha, corner)))}  # fmt: skip
                    for amplitude in (6.0, 12.0):
                        sign = handheld(draw(still, style, 0.9, corner), amplitude, seed=len(rows))
                        sm = look(template, found["overlay_box"], sign)
                        row[f"sign_handheld_{amplitude:.0f}px"] = {"match": sm, "shown": shows(*sm),
                                                                   "judged": judged(verdict(sign))}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    faint = faint_targets(bbb, scorer, cfg, look, verdict, judged)
    seeded = [r for r in rows if r["seed_found"]]
    pos = [r[n] for r in seeded for n in targets]
    summary = {
        "thresholds": {
            "MIN_MATCH": MIN_MATCH,
            "NULL_RATIO": NULL_RATIO,
            "MAX_SURROUND": MAX_SURROUND,
            "MIN_FIXED": MIN_FIXED,
        },  # fmt: skip
        "logos": len(rows),
        "seeds_found": len(seeded),
        "positives": len(pos),
        "positives_shown": sum(p["shown_with"] for p in pos),
        "negatives_shown": sum(p["shown_without"] for p in pos),
        "with_correlation_min": min((p["with"][0] for p in pos), default=None),
        "with_ratio_min": min((p["with"][0] / max(p["with"][1], 1e-6) for p in pos), default=None),
        "without_correlation_max": max((p["without"][0] for p in pos), default=None),
        "without_ratio_max": max((p["without"][0] / max(p["without"][1], 1e-6) for p in pos), default=None),
        "with_surround_max": max((p["with"][2] for p in pos), default=None),
        "without_surround_max": max((p["without"][2] for p in pos), default=None),
        "targets_judged": {j: sum(p["judged_with"] == j for p in pos) for j in ("null", "zero", "found")},
        "shown_by_judged": {
            j: sum(p["shown_with"] for p in pos if p["judged_with"] == j) for j in ("null", "zero", "found")
        },  # fmt: skip
        "signs": 2 * len(seeded),
        "signs_judged": {
            j: sum(r[k]["judged"] == j for r in seeded for k in SIGNS) for j in ("null", "zero", "found")
        },
        "signs_matched": sum(shows(*r[k]["match"][:3]) for r in seeded for k in SIGNS),
        "signs_shown": sum(r[k]["shown"] for r in seeded for k in SIGNS),
        "signs_fixed_max": max((r[k]["match"][3] for r in seeded for k in SIGNS), default=None),
        "with_fixed_min": min((p["with"][3] for p in pos), default=None),
        "faint_targets": len(faint),
        "faint_targets_judged": {j: sum(f["judged_with"] == j for f in faint) for j in ("null", "zero", "found")},
        "faint_shown_with": sum(f["shown_with"] for f in faint),
        "faint_shown_without": sum(f["shown_without"] for f in faint),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows, "faint": faint}, indent=1) + "\n")


if __name__ == "__main__":
    main()
