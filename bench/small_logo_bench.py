"""Logos on small locked-off sources (issue 12): the corners' closer look at several detector sides, on the same
clips in the same run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/small_logo_bench.py [--sides 320 480 640] [--out FILE]

In a locked-off shot only the text detector can find a logo (``stages.cpu_scores.overlay_scores``: the corners'
closer look, :func:`stages.cpu_scores.corner_text_boxes`). On a small source its corners' mosaic is far under the
detector's side and upscaled to it, so the side decides how many pixels a logo's strokes get. Two small locked-off
sources: carphone (176x144, frames 10-90) and bikes.mp4's first shot (a locked-off street, frames 1-29) downscaled
to 320x180. Each gets a logo (``pipeline.defects.styled_logo``: "K2" in every corner, alpha 0.3 and 0.45, 10 % and
13 % of the width, white and green, framed, bare word and on a plate: 96 per source) and is kept clean in six
windows, written as H.264 (CRF 23) and scored by the real ``CpuScorer`` once per detector side
(``CORNER_DET_SIDE_SMALL``, the side for a small source's mosaic, set for the variant), judged by the real rules
(duration and CLIP rules off). Per side: logos found (``text_overlay`` or ``text_burned_in``), clean kept, precision
/ recall / F1 per source, the scorer's mean seconds per clip.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
from scratch import scratch_dir  # noqa: E402

import stages.cpu_scores as cpu_scores  # noqa: E402
from pipeline.defects import LOGO_COLOURS, LOGO_FONTS, styled_logo  # noqa: E402
from pipeline.footage import sample_video  # noqa: E402
from pipeline.testdata import decode_frames, write_frames  # noqa: E402
from stages.filters import FiltersConfig, apply_filters  # noqa: E402

FOUND = ("text_overlay", "text_burned_in")
SHOWN = ("text_area", "subtitle_area", "overlay_area", "overlay_box")
STYLES = ("framed", "word", "plate")
COLOURS = {k: LOGO_COLOURS[k] for k in ("white", "green")}


def clips(tmp: Path) -> list[dict]:
    """Every clip of the bench, written: dicts of name, source, kind, logo parameters (or None), path, (H, W)."""
    car = decode_frames(sample_video("carphone"))
    street = cpu_scores.resize_short(decode_frames(sample_video("bikes"), 1, 29), 180)
    sources = {"carphone": (car[10:90], 30000 / 1001), "bikes0_320": (street, 25.0)}
    windows = {"carphone": [(0, 60), (20, 80), (40, 100), (60, 120), (0, 120), (30, 90)],
               "bikes0_320": [(0, 28), (0, 20), (4, 24), (8, 28), (2, 26), (6, 22)]}  # fmt: skip
    out = []
    for src, (frames, fps) in sources.items():
        full = decode_frames(sample_video("carphone")) if src == "carphone" else street
        for a, b in windows[src]:
            path = write_frames(full[a:b], tmp / f"{src}_clean_{a}-{b}.mp4", fps=fps, crf=23)
            out.append(
                {
                    "name": f"{src}_clean_{a}-{b}",
                    "source": src,
                    "kind": "clean",
                    "logo": None,
                    "path": path,
                    "size": full.shape[1:3],
                }
            )
        grid = itertools.product(("tl", "tr", "bl", "br"), (0.3, 0.45), (0.1, 0.13), COLOURS, STYLES)
        for corner, alpha, width, colour, style in grid:
            logo = {"corner": corner, "alpha": alpha, "width": width, "colour": colour, "style": style}
            name = f"{src}_{style}_{colour}_{corner}_{alpha}_{width}"
            marked = styled_logo(frames, style, alpha, corner, "K2", width, COLOURS[colour], LOGO_FONTS[0])
            path = write_frames(marked, tmp / f"{name}.mp4", fps=fps, crf=23)
            size = frames.shape[1:3]
            out.append({"name": name, "source": src, "kind": "logo", "logo": logo, "path": path, "size": size})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", type=int, nargs="+", default=[320, 480, 640])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "small_logo.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    items = clips(scratch_dir("small-logo-"))
    scorer = cpu_scores.CpuScorer(cpu_scores.CpuScoresConfig())
    default = cpu_scores.CORNER_DET_SIDE_SMALL
    rows: dict[int, list[dict]] = {s: [] for s in args.sides}
    for it in items:  # the sides interleaved clip by clip: the machine's load weighs on each alike
        for side in args.sides:
            cpu_scores.CORNER_DET_SIDE_SMALL = side
            t = time.perf_counter()
            s = scorer.score_clip(it["path"])
            rows[side].append({"clip_id": it["name"], "source": it["source"], "kind": it["kind"], "logo": it["logo"],
                               "width": it["size"][1], "height": it["size"][0], "error_scores": None,
                               "scores_s": time.perf_counter() - t,
                               **{k: s[k] for k in SHOWN}})  # fmt: skip
        print(it["name"], {side: rows[side][-1]["overlay_area"] for side in args.sides}, flush=True)
    cpu_scores.CORNER_DET_SIDE_SMALL = default
    rules = FiltersConfig(min_duration_s=None, min_aesthetic=None)
    cmd = "HF_HUB_OFFLINE=1 .venv/bin/python bench/small_logo_bench.py --sides " + " ".join(map(str, args.sides))
    result = {"command": cmd, "default_side": default, "sides": {}}
    for side, rs in rows.items():
        cols = ("clip_id", "width", "height", "error_scores", "text_area", "subtitle_area", "overlay_area")
        table = pa.Table.from_pylist([{k: r[k] for k in cols} for r in rs])
        for r, reason in zip(rs, apply_filters(table, rules).to_pylist(), strict=True):
            r["drop_reason"] = reason
        per = {}
        for src in sorted({r["source"] for r in rs}):
            logos = [r for r in rs if r["source"] == src and r["kind"] == "logo"]
            clean = [r for r in rs if r["source"] == src and r["kind"] == "clean"]
            tp = sum(r["drop_reason"] in FOUND for r in logos)
            fp = sum(r["drop_reason"] in FOUND for r in clean)
            precision, recall = tp / max(1, tp + fp), tp / len(logos)
            per[src] = {"logos_found": tp, "logos": len(logos), "clean_kept": len(clean) - fp, "clean": len(clean),
                        "precision": round(precision, 3), "recall": round(recall, 3),
                        "f1": round(2 * precision * recall / max(1e-9, precision + recall), 3),
                        "found_by_style": {st: sum(r["drop_reason"] in FOUND for r in logos
                                                   if r["logo"]["style"] == st) for st in STYLES}}  # fmt: skip
        result["sides"][str(side)] = {
            "per_source": per,
            "scores_s_mean": round(sum(r["scores_s"] for r in rs) / len(rs), 3),
            "clean_dropped": {r["clip_id"]: r["drop_reason"] for r in rs if r["kind"] == "clean" and r["drop_reason"]},
            "rows": rs,
        }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    summary = {s: {k: v for k, v in r.items() if k != "rows"} for s, r in result["sides"].items()}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
