"""Blur on small letterboxed pictures: why ``blur_letterboxed`` stays under F1 0.95 (issue 12), as a bench.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/blur_letterbox_bench.py [--out bench/results/blur_letterbox.json]

The filters bench's one miss in ``blur_letterboxed`` is carphone (176x144) squeezed into a 2.39:1 band
(``pipeline.defects.letterbox``): its active picture is ~176x68 px, under ``cpu_scores.BLUR_MIN_UPSAMPLED`` (128), so
:func:`stages.cpu_scores.blur_scores` judges it at its own size. This bench asks whether any reading separates such
pictures: the six real shots of bench/blur_sizes_bench.py plus carphone, cropped to 4:3 and scaled to 176/208/240/288
px wide (frames 132-216 px high: none ``resolution_low``), in focus (clean, shallow depth of field, night, high key),
defocused (sigma 2.0 / 2.5 px at 640x360, scaled) and heavily blurred (sigma 5), then letterboxed as the hard set
does (active pictures 68-114 px high), encoded, and scored by the CPU scorer. Per width it writes the lowest focus of
an in-focus clip and the highest of a defocused one, for the scorer's reading (own size) and for a frame-scale
reading (the active picture upsampled by the factor that brings the FRAME's short side to 224, divided by
(frame short / 224) ** 0.4, as :func:`blur_scores` calibrates a picture of 128-223 px), and per shot the ratio of its
clean clip's focus to its sigma-2.0 copy's. ``separates``: every in-focus clip above every defocused one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from blur_sizes_bench import shots  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from pipeline.defects import blur, high_key, letterbox, night, shallow_dof  # noqa: E402
from pipeline.footage import sample_video  # noqa: E402
from pipeline.testdata import decode_frames, write_frames  # noqa: E402
from stages import cpu_scores  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig, focus, resize_short, to_luma  # noqa: E402

WIDTHS = (176, 208, 240, 288)
IN_FOCUS = ("clean", "shallow_dof", "night", "high_key")
DEFOCUS = ("blur2.0", "blur2.5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "blur_letterbox.json"))
    args = ap.parse_args()
    seen: dict = {}
    real = cpu_scores.blur_scores

    def spy(luma, active, size, **kw):  # the active picture the scorer measured
        seen["active"] = active.copy()
        return real(luma, active, size, **kw)

    cpu_scores.blur_scores = spy
    sources = shots()
    sources["carphone"] = decode_frames(sample_video("carphone"))[:60]
    tmp = scratch_dir("blur-letterbox-")
    scorer = CpuScorer(CpuScoresConfig())
    rows = []
    for name, shot in sources.items():
        w0 = min(shot.shape[2], shot.shape[1] * 4 // 3)
        x0 = (shot.shape[2] - w0) // 2
        for width in WIDTHS:
            height = round(width * 3 / 4 / 2) * 2
            fr = np.stack(
                [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in shot[:, :, x0 : x0 + w0]]
            )
            variants = {"clean": fr, "shallow_dof": shallow_dof(fr), "night": night(fr), "high_key": high_key(fr)}
            variants.update({"blur2.0": blur(fr, 2.0), "blur2.5": blur(fr, 2.5), "heavy5": blur(fr, 5.0)})
            for kind, v in variants.items():
                s = scorer.score_clip(write_frames(letterbox(v), tmp / f"{name}_{width}_{kind}.mp4", fps=25))
                active = seen["active"]
                short = min(active.shape[1:3])
                framed = focus(to_luma(resize_short(active, round(short * 224 / height))))
                rows.append({"shot": name, "width": width, "kind": kind, "active": list(active.shape[1:3]),
                             "focus": s["focus"], "detail": s["detail"],
                             "focus_frame_scale": framed / (height / 224) ** 0.4})  # fmt: skip
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for width in WIDTHS:
        at = [r for r in rows if r["width"] == width]
        out = {}
        for key in ("focus", "focus_frame_scale"):
            sharp = min(r[key] for r in at if r["kind"] in IN_FOCUS)
            soft = max(r[key] for r in at if r["kind"] in DEFOCUS)
            out[key] = {"in_focus_min": round(sharp, 3), "defocus_max": round(soft, 3), "separates": sharp > soft}
        by = {(r["shot"], r["kind"]): r["focus"] for r in at}
        out["clean_over_blur2_per_shot_min"] = round(min(by[s, "clean"] / by[s, "blur2.0"] for s in sources), 3)
        summary[width] = out
    Path(args.out).write_text(json.dumps({"widths": summary, "clips": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
