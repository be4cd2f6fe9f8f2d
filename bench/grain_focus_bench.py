"""Defocus under film grain (issue 12, class blur_grain): noise-floor focus / detail (schema 10) against schema 9's.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/grain_focus_bench.py [--out bench/results/grain_focus.json]

Grain (new in every frame) fills the finest band, so until schema 9 Gaussian defocus under grain read as sharp (the
hard set's blur_grain class: F1 0). Schema 10's ``cpu_scores.focus`` and ``cpu_scores.detail`` subtract each band's
noise floor (a low percentile of its tile energies) and choose the tiles by their floor-subtracted energy; this
bench measures them against schema 9's (:func:`focus_v9`, :func:`detail_v9`, kept here) on the same decoded frames.

The set: bench/filters_bench.py's seven sources and bigbuckbunny's grass filling the frame (as shot and panned) x 15
kinds (clean, grain, shallow depth of field, night, high key, each also under grain; defocus sigma 2.0 / 2.5 px at
640x360, bare or under grain of sigma 7 or 4; heavy blur sigma 5, bare or under grain), each written as H.264 (CRF
18), decoded, and read on the scorer's anchors at 224 px (readings of pictures under 224 px divided by
``blur_scores``' size factor, as focus is). Per kind the range of each score and of :func:`noise_floor`; per score the
lowest reading of a clip that must be kept, the highest of one that must be dropped (mild defocus for focus, heavy
blur for detail) and their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from filters_bench import sources  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from pipeline.defects import blur, grain, high_key, night, shallow_dof  # noqa: E402
from pipeline.footage import sample_video  # noqa: E402
from pipeline.testdata import decode_frames, write_frames  # noqa: E402
from stages.cpu_scores import (  # noqa: E402
    BLUR_SIZE_EXPONENT,
    CpuScoresConfig,
    _tile_var,
    detail,
    focus,
    noise_floor,
    resize_short,
    sample_plan,
    to_luma,
)

MILD = ("blur2.0", "blur2.5", "grain_blur2.0", "grain_blur2.5", "grain4_blur")
HEAVY = ("blur5", "grain_blur5")


def kinds(fr: np.ndarray, k: int) -> dict:
    """The 15 variants of one source (name -> a function making its frames)."""
    b = 2.0 + 0.5 * (k % 2)
    return {
        "clean": lambda: fr,
        "grain": lambda: grain(fr, seed=k),
        "shallow_dof": lambda: shallow_dof(fr),
        "grain_shallow_dof": lambda: grain(shallow_dof(fr), seed=k + 500),
        "night": lambda: night(fr),
        "grain_night": lambda: grain(night(fr), seed=k + 400),
        "high_key": lambda: high_key(fr),
        "grain_high_key": lambda: grain(high_key(fr), seed=k + 600),
        "blur2.0": lambda: blur(fr, 2.0),
        "blur2.5": lambda: blur(fr, 2.5),
        "grain_blur2.0": lambda: grain(blur(fr, 2.0), seed=k + 100),
        "grain_blur2.5": lambda: grain(blur(fr, 2.5), seed=k + 200),
        "grain4_blur": lambda: grain(blur(fr, b), sigma=4.0, seed=k + 300),
        "blur5": lambda: blur(fr, 5.0),
        "grain_blur5": lambda: grain(blur(fr, 5.0), seed=k + 700),
    }


def focus_v9(luma: np.ndarray, *, tile: int = 32, min_std: float = 6.0, percentile: float = 90.0) -> float | None:
    """``cpu_scores.focus`` as it was until schema 9: the 90th percentile over every structured tile (luma std >=
    ``min_std``) of the finest band's energy (I - G1*I) over the next octave's (G1*I - G2*I), no noise floor. Kept
    here to measure what schema 10 changed."""
    if min(luma.shape[1:3]) < tile:
        return None
    values = []
    for f in luma:
        x = f.astype(np.float32)
        g1 = cv2.GaussianBlur(x, (0, 0), 1.0)
        g2 = cv2.GaussianBlur(x, (0, 0), 2.0)
        structured = np.sqrt(_tile_var(x, tile)) >= min_std
        if structured.any():
            ratios = _tile_var(x - g1, tile)[structured] / (_tile_var(g1 - g2, tile)[structured] + 1e-3)
            values.append(float(np.percentile(ratios, percentile)))
    return float(np.median(values)) if values else None


def detail_v9(luma: np.ndarray, *, tile: int = 32, min_std: float = 6.0, percentile: float = 99.0) -> float | None:
    """``cpu_scores.detail`` as it was until schema 9: the 99th percentile over structured tiles of the share of the
    tile's variance in I - G2*I, no noise floor. Kept here to measure what schema 10 changed."""
    if min(luma.shape[1:3]) < tile:
        return None
    values = []
    for f in luma:
        x = f.astype(np.float32)
        var = _tile_var(x, tile)
        structured = np.sqrt(var) >= min_std
        if structured.any():
            fine = _tile_var(x - cv2.GaussianBlur(x, (0, 0), 2.0), tile)
            values.append(float(np.percentile(fine[structured] / var[structured], percentile)))
    return float(np.median(values)) if values else None


SCORES = {"focus_v9": focus_v9, "focus": focus, "detail_v9": detail_v9, "detail": detail}


def grass() -> dict[str, tuple[np.ndarray, float]]:
    """Full-frame fine texture with no flat tile to take a noise floor from: bigbuckbunny's grass at its native pixels
    (640x360 of the 1280x720 frame, frames 0-69), as shot and panned 3 px a frame to the right."""
    bbb = decode_frames(sample_video("bigbuckbunny"), 0, 70)
    pan = np.stack([f[360:720, 3 * i : 3 * i + 640] for i, f in enumerate(bbb)])
    return {"grass": (np.ascontiguousarray(bbb[:, 360:720, 0:640]), 25.0), "grass_pan": (pan, 25.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "grain_focus.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = CpuScoresConfig()
    tmp = scratch_dir("grain-focus-")
    rows = []
    for k, (name, (fr, fps)) in enumerate((sources(False) | grass()).items()):
        for kind, make in kinds(fr, k).items():
            path = write_frames(make(), tmp / f"{name}_{kind}.mp4", fps=fps)
            dec = decode_frames(path)
            path.unlink()
            anchors, _ = sample_plan(len(dec), fps, cfg.num_samples, cfg.pair_gap_s)
            luma = to_luma(resize_short(dec[anchors], cfg.size))
            short = min(dec.shape[1:3])
            factor = (short / cfg.size) ** BLUR_SIZE_EXPONENT if 128 <= short < cfg.size else 1.0
            row = {"source": name, "kind": kind}
            row |= {s: (None if (v := fn(luma)) is None else round(v / factor, 4)) for s, fn in SCORES.items()}
            row["noise_floor"] = round(noise_floor(luma), 3)  # grey levels at the analysis size, not calibrated
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {"kinds": {}, "separation": {}}
    for kind in kinds(np.zeros((1, 8, 8, 3), np.uint8), 0):
        rs = [r for r in rows if r["kind"] == kind]
        summary["kinds"][kind] = {s: [min(r[s] for r in rs), max(r[s] for r in rs)] for s in (*SCORES, "noise_floor")}
    for s in SCORES:
        drop = HEAVY if s.startswith("detail") else MILD
        keep = [r[s] for r in rows if r["kind"] not in MILD + HEAVY]
        bad = [r[s] for r in rows if r["kind"] in drop]
        summary["separation"][s] = {
            "keep_min": min(keep),
            "drop_max": max(bad),
            "ratio": round(min(keep) / max(bad), 3),
        }
    result = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/grain_focus_bench.py",
              "seconds": round(time.perf_counter() - t0, 1), **summary, "clips": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
