"""The clean keep rate on clips the filters were not tuned on (issue 12): random windows of the shipped footage.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/clean_sweep_bench.py [--seed 1] [--clips 40] [--out FILE]

bench/filters_bench.py judges each clean shot as cut at the shot boundaries. A held-out set cut elsewhere sees other
frames: a newcomer's window of bikes.mp4 one frame later than the hard set's (frames 188-241) was flagged
``text_overlay`` (paving left behind by parallax). This bench draws ``--clips`` clean clips at random (``--seed``):
a window of one of bikes.mp4's shots (its first and last frame left out: a cut's neighbour), of bigbuckbunny (at its
1280x720 or downscaled to 640x360) or of carphone, of random start and length, under a random grade (none, film
grain, night, high key, shallow depth of field, 2.39:1 letterbox, small scene text, downscaled to 320x180), written
as H.264 at a random CRF (18, 23 or 28), and scored by the real ``CpuScorer`` and judged by the real rules at their
defaults (duration and CLIP rules off, as in the filters bench). Every clip should be kept: the JSON lists each
clip's scores and reason, and the drops with their reasons.
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

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from pipeline.defects import grain, high_key, letterbox, night, scene_text, shallow_dof  # noqa: E402
from pipeline.footage import BIKES_CUTS, sample_video  # noqa: E402
from pipeline.testdata import decode_frames, write_frames  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig  # noqa: E402
from stages.filters import FiltersConfig, apply_filters  # noqa: E402

SHOWN = ("focus", "detail", "isotropy", "streak", "still_residual", "residual_flow", "overlay_area", "text_area",
         "subtitle_area", "luma_mean", "motion")  # fmt: skip


def resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


GRADES = {
    "clean": lambda f, k: f,
    "grain": lambda f, k: grain(f, seed=k),
    "night": lambda f, k: night(f),
    "high_key": lambda f, k: high_key(f),
    "shallow_dof": lambda f, k: shallow_dof(f),
    "letterbox": lambda f, k: letterbox(f),
    "scene_text": lambda f, k: scene_text(f),
    "small": lambda f, k: resize(f, (320, 180)),
}


def draw(seed: int, n: int, grades: dict | None = None) -> list[dict]:
    """``n`` clean clips (dicts: name, frames, fps, crf), drawn with ``random.Random(seed)``, each under one of
    ``grades`` (default :data:`GRADES`; name -> f(frames, k))."""
    grades = GRADES if grades is None else grades
    rng = random.Random(seed)
    bikes = decode_frames(sample_video("bikes"))
    bbb = decode_frames(sample_video("bigbuckbunny"))
    car = decode_frames(sample_video("carphone"))
    cuts = [0, *BIKES_CUTS, len(bikes)]

    def window(frames: np.ndarray, a: int, b: int, shortest: int) -> tuple[np.ndarray, int, int]:
        length = rng.randint(min(shortest, b - a), b - a)
        start = rng.randint(a, b - length)
        return frames[start : start + length], start, start + length

    items = []
    for k in range(n):
        src = rng.choice(["bikes1", "bikes2", "bikes3", "bikes4", "bbb", "bbb", "carphone"])
        fps = 25.0
        if src.startswith("bikes"):
            i = int(src[-1])
            frames, a, b = window(bikes, cuts[i] + 1, cuts[i + 1] - 1, 40)
        elif src == "bbb":
            frames, a, b = window(bbb, 0, len(bbb), 50)
            if rng.random() < 0.5:
                frames = resize(frames, (640, 360))
        else:
            frames, a, b = window(car, 0, len(car), 60)
            fps = 30000 / 1001
        grade = rng.choice(list(grades))
        crf = rng.choice([18, 18, 23, 28])
        name = f"{k:03d}_{src}_{a}-{b}_{grade}_crf{crf}"
        items.append({"name": name, "frames": grades[grade](frames, k), "fps": fps, "crf": crf})
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--out", help="default: bench/results/clean_sweep_<seed>.json")
    args = ap.parse_args()
    out = Path(args.out or ROOT / "bench" / "results" / f"clean_sweep_{args.seed}.json")
    t0 = time.perf_counter()
    tmp = scratch_dir("clean-sweep-")
    scorer = CpuScorer(CpuScoresConfig())
    rows = []
    for it in draw(args.seed, args.clips):
        s = scorer.score_clip(write_frames(it["frames"], tmp / f"{it['name']}.mp4", fps=it["fps"], crf=it["crf"]))
        h, w = it["frames"].shape[1:3]
        rows.append({"clip_id": it["name"], "width": w, "height": h, "duration_s": len(it["frames"]) / it["fps"],
                     "error_scores": None, **{k: v for k, v in s.items() if k != "decoder"}})  # fmt: skip
        print(it["name"], {k: rows[-1].get(k) for k in SHOWN}, flush=True)
    reasons = apply_filters(pa.Table.from_pylist(rows), FiltersConfig(min_duration_s=None, min_aesthetic=None))
    reasons = reasons.to_pylist()
    dropped = {r["clip_id"]: reason for r, reason in zip(rows, reasons, strict=True) if reason}
    result = {
        "command": f"HF_HUB_OFFLINE=1 .venv/bin/python bench/clean_sweep_bench.py --seed {args.seed} "
        f"--clips {args.clips}",
        "clips": len(rows),
        "kept": len(rows) - len(dropped),
        "kept_rate": round((len(rows) - len(dropped)) / len(rows), 3),
        "dropped": dropped,
        "seconds": round(time.perf_counter() - t0, 1),
        "scores": [
            {"clip_id": r["clip_id"], "reason": reason, **{k: r.get(k) for k in SHOWN}}
            for r, reason in zip(rows, reasons, strict=True)
        ],
    }
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("clips", "kept", "kept_rate", "dropped", "seconds")}, indent=1))


if __name__ == "__main__":
    main()
