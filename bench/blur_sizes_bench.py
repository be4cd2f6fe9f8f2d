"""The blur measures across picture sizes (issue 12): the evidence for ``cpu_scores.blur_scores``' calibration.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/blur_sizes_bench.py [--out bench/results/blur_sizes.json]

Real shots (bikes.mp4's shots 1-4, bigbuckbunny's two halves) are downscaled (INTER_AREA) to pictures 128-208 px high
and, at each size, written as H.264 clean and as the hard set's variants (``pipeline.defects``: shallow depth of
field, night and high-key grades; Gaussian defocus of sigma 2.0 and 2.5 px at 640x360, scaled; heavy blur of sigma 5
px), then scored by the real ``CpuScorer``. Per size it writes the range of ``focus`` and ``detail`` of the clips in
focus (clean and graded) and of the defocused / heavily blurred ones, and whether ``filters.min_focus`` /
``filters.min_detail`` separate them; per clip the calibrated readings and the own-size reading the scorer used
before (``focus`` of the decoded frames at their own size). The sizes 128, 160 and 192 with shots 1 and 3 and
bigbuckbunny's first half are what the exponent was fitted on; the rest (136, 176, 208; shots 2 and 4, the second
half) checks it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch import scratch_dir  # noqa: E402

from pipeline.defects import blur, high_key, night, shallow_dof  # noqa: E402
from pipeline.footage import BIKES_CUTS, sample_video  # noqa: E402
from pipeline.testdata import decode_frames, write_frames  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig, focus, to_luma  # noqa: E402
from stages.filters import FiltersConfig  # noqa: E402

SIZES = (128, 136, 160, 176, 192, 208)
IN_FOCUS = ("clean", "shallow_dof", "night", "high_key")
DEFOCUS = ("blur2.0", "blur2.5")


def shots() -> dict[str, np.ndarray]:
    bikes = decode_frames(sample_video("bikes"))
    cuts = [0, *BIKES_CUTS, len(bikes)]
    out = {f"bikes{i}": bikes[cuts[i] : cuts[i + 1]] for i in range(1, 5)}
    bbb = decode_frames(sample_video("bigbuckbunny"))
    out["bbb_a"], out["bbb_b"] = bbb[:66], bbb[66:]
    return out


def small(frames: np.ndarray, height: int) -> np.ndarray:
    width = round(frames.shape[2] * height / frames.shape[1] / 2) * 2
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames])


def summarise(rows: list[dict], cfg: FiltersConfig) -> dict:
    """Per size: the ranges the thresholds sit between, and whether every clip gets the right verdict (in focus and
    its grades kept by both blur rules; every defocused or heavily blurred clip dropped by one of them)."""
    out = {}
    for height in SIZES:
        at = [r for r in rows if r["height"] == height]
        sharp = [r for r in at if r["kind"] in IN_FOCUS]
        soft = [r for r in at if r["kind"] in DEFOCUS]
        heavy = [r for r in at if r["kind"] == "heavy5"]

        def blurry(r: dict) -> bool:
            return r["focus"] < cfg.min_focus or r["detail"] < cfg.min_detail

        out[height] = {
            "focus_in_focus_min": round(min(r["focus"] for r in sharp), 3),
            "focus_defocus_max": round(max(r["focus"] for r in soft), 3),
            "own_size_focus_in_focus_min": round(min(r["focus_own_size"] for r in sharp), 3),
            "own_size_focus_defocus_max": round(max(r["focus_own_size"] for r in soft), 3),
            "detail_in_focus_min": round(min(r["detail"] for r in sharp), 3),
            "detail_heavy_max": round(max(r["detail"] for r in heavy), 3),
            "in_focus_kept": sum(not blurry(r) for r in sharp) / len(sharp),
            "blurred_dropped": sum(blurry(r) for r in soft + heavy) / len(soft + heavy),
            "own_size_focus_separates": max(r["focus_own_size"] for r in soft)
            < min(r["focus_own_size"] for r in sharp),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "blur_sizes.json"))
    ap.add_argument("--summarise", help="re-summarise the clips of an earlier JSON (no scoring)")
    args = ap.parse_args()
    if args.summarise:
        old = json.loads(Path(args.summarise).read_text())
        old["sizes"] = summarise(old["clips"], FiltersConfig())
        Path(args.out).write_text(json.dumps(old, indent=1) + "\n")
        print(json.dumps(old["sizes"], indent=1))
        return
    t0 = time.perf_counter()
    tmp = scratch_dir("blur-sizes-")
    scorer = CpuScorer(CpuScoresConfig())
    cfg = FiltersConfig()
    rows = []
    for name, shot in shots().items():
        for height in SIZES:
            frames = small(shot, height)
            variants = {
                "clean": frames,
                "shallow_dof": shallow_dof(frames),
                "night": night(frames),
                "high_key": high_key(frames),
                "blur2.0": blur(frames, 2.0),
                "blur2.5": blur(frames, 2.5),
                "heavy5": blur(frames, 5.0),
            }
            for kind, v in variants.items():
                path = write_frames(v, tmp / f"{name}_{height}_{kind}.mp4", fps=25)
                s = scorer.score_clip(path)
                decoded = decode_frames(path)
                own = focus(to_luma(decoded[:: max(1, len(decoded) // 8)]))
                rows.append({"shot": name, "height": height, "kind": kind, "focus": s["focus"],
                             "detail": s["detail"], "focus_own_size": own})  # fmt: skip
                print(rows[-1], flush=True)
    sizes = summarise(rows, cfg)
    result = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/blur_sizes_bench.py",
        "seconds": round(time.perf_counter() - t0, 1),
        "min_focus": cfg.min_focus,
        "min_detail": cfg.min_detail,
        "sizes": sizes,
        "clips": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(sizes, indent=1))


if __name__ == "__main__":
    main()
