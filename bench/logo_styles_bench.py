"""Channel logos of every common form and colour over the shipped footage (issue 12): the overlay test in colour
against the same test without its two-layer look and on luma alone, on the same clips in the same run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/logo_styles_bench.py [--seed 7] [--clips 40] [--out FILE]

bench/defect_sweep_bench.py's logos are all one form (a white framed word, ``pipeline.defects.logo``). Real channel
logos come as bare words in many typefaces, words on a plate or a disc (a network "bug"), in white or in the
channel's colour. This bench draws ``--clips`` clean windows as bench/clean_sweep_bench.py does (``--seed``; no grade)
and gives each a logo (``pipeline.defects.styled_logo``) of a random form (framed, word, plate, disc), alpha 0.3-0.6,
8-16 % of the width, a random corner 2-5 % of the width in from its edges, a random word and typeface, white in half
the clips and yellow, red, blue or green in the others. Each window is written twice as H.264 (without and with the
logo, the window's CRF), scored by the real ``CpuScorer`` three times: the default (gradients of the Y, Cr and Cb
planes, and the look for a layer fixed in the frame under the moving scene), ``overlay_layers`` off (the scorer of
schema 11) and ``overlay_colour`` off as well (luma alone, the scorer before schema 11), and judged by the real rules
at their defaults (duration and CLIP rules off). Per variant: the logos found (dropped as ``text_overlay`` or
``text_burned_in``), the clean windows kept, the logo class's precision / recall / F1, the misses with their logo,
and the scorer's mean time per clip (every score, of which the overlay test is one).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pyarrow as pa  # noqa: E402
from clean_sweep_bench import draw  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from pipeline.defects import LOGO_COLOURS, LOGO_FONTS, LOGO_STYLES, styled_logo  # noqa: E402
from pipeline.testdata import write_frames  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig  # noqa: E402
from stages.filters import FiltersConfig, apply_filters  # noqa: E402

WORDS = ("ARD", "MTV", "CNN", "ZDF", "BBC", "RTL", "TV5", "HD", "24", "SKY", "ESPN", "arte", "N24", "K2")
COLOURS = {k: LOGO_COLOURS[k] for k in ("yellow", "red", "blue", "green")}
BACKINGS = {"black": (0, 0, 0), "navy": (20, 40, 140), "maroon": (150, 0, 0)}
FOUND = ("text_overlay", "text_burned_in")


def draw_logo(rng: random.Random) -> dict:
    """Random parameters of :func:`pipeline.defects.styled_logo` (names for the colours, for the JSON)."""
    return {
        "style": rng.choice(LOGO_STYLES),
        "alpha": round(rng.uniform(0.3, 0.6), 2),
        "corner": rng.choice(["tl", "tr", "bl", "br"]),
        "text": rng.choice(WORDS),
        "width": round(rng.uniform(0.08, 0.16), 3),
        "colour": "white" if rng.random() < 0.5 else rng.choice(list(COLOURS)),
        "font": rng.randrange(len(LOGO_FONTS)),
        "stroke": rng.choice([1, 2, 3]),
        "margin": round(rng.uniform(0.02, 0.05), 3),
        "backing": rng.choice(list(BACKINGS)),
    }


def apply_logo(frames, p: dict):
    colour = (255, 255, 255) if p["colour"] == "white" else COLOURS[p["colour"]]
    args = {**p, "colour": colour, "font": LOGO_FONTS[p["font"]], "backing": BACKINGS[p["backing"]]}
    return styled_logo(frames, **args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--out", help="default: bench/results/logo_styles_<seed>.json")
    args = ap.parse_args()
    out = Path(args.out or ROOT / "bench" / "results" / f"logo_styles_{args.seed}.json")
    t0 = time.perf_counter()
    rng = random.Random(args.seed + 2000)
    tmp = scratch_dir("logo-styles-")
    variants = {
        "colour": CpuScorer(CpuScoresConfig()),
        "colour_no_layers": CpuScorer(CpuScoresConfig(overlay_layers=False)),
        "luma": CpuScorer(CpuScoresConfig(overlay_colour=False, overlay_layers=False)),
    }
    rows = {v: [] for v in variants}
    for it in draw(args.seed, args.clips, {"clean": lambda f, k: f}):
        p = draw_logo(rng)
        base = it["name"].rsplit("_", 2)[0]
        for kind, frames in (("clean", it["frames"]), ("logo", apply_logo(it["frames"], p))):
            path = write_frames(frames, tmp / f"{base}_{kind}.mp4", fps=it["fps"], crf=it["crf"])
            h, w = frames.shape[1:3]
            for v, scorer in variants.items():
                t = time.perf_counter()
                s = {**scorer.score_clip(path), "scores_s": time.perf_counter() - t}
                rows[v].append({"clip_id": f"{base}_{kind}", "kind": kind, "logo": p, "width": w, "height": h,
                                "error_scores": None, **{k: s[k] for k in ("text_area", "subtitle_area",
                                "overlay_area", "overlay_box", "scores_s")}})  # fmt: skip
        print(base, p, {v: rows[v][-1]["overlay_area"] for v in variants}, flush=True)
    result = {
        "command": f"HF_HUB_OFFLINE=1 .venv/bin/python bench/logo_styles_bench.py --seed {args.seed} "
        f"--clips {args.clips}",
        "clips": 2 * args.clips,
        "variants": {},
    }
    rules = FiltersConfig(min_duration_s=None, min_aesthetic=None)
    for v, rs in rows.items():
        table = pa.Table.from_pylist([{k: r[k] for k in ("clip_id", "width", "height", "error_scores", "text_area",
                                                         "subtitle_area", "overlay_area")} for r in rs])  # fmt: skip
        for r, reason in zip(rs, apply_filters(table, rules).to_pylist(), strict=True):
            r["drop_reason"] = reason
        logos = [r for r in rs if r["kind"] == "logo"]
        clean = [r for r in rs if r["kind"] == "clean"]
        tp = sum(r["drop_reason"] in FOUND for r in logos)
        fp = sum(r["drop_reason"] in FOUND for r in clean)
        precision, recall = tp / max(1, tp + fp), tp / len(logos)
        result["variants"][v] = {
            "logos_found": tp,
            "logos": len(logos),
            "clean_kept": sum(r["drop_reason"] is None for r in clean),
            "clean": len(clean),
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "f1": round(2 * precision * recall / max(1e-9, precision + recall), 3),
            "missed": {
                r["clip_id"]: {"got": r["drop_reason"], "logo": r["logo"]}
                for r in logos
                if r["drop_reason"] not in FOUND
            },  # fmt: skip
            "clean_dropped": {r["clip_id"]: r["drop_reason"] for r in clean if r["drop_reason"]},
            "scores_s_mean": round(sum(r["scores_s"] or 0 for r in rs) / len(rs), 3),
        }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["scores"] = {v: [{k: r[k] for k in ("clip_id", "overlay_area", "overlay_box", "text_area", "drop_reason")}
                            for r in rs] for v, rs in rows.items()}  # fmt: skip
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({v: {k: x[k] for k in x if k != "missed"} for v, x in result["variants"].items()}, indent=1))


if __name__ == "__main__":
    main()
