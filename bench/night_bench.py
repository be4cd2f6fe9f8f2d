"""Night grades against underexposed copies: the dark rules with and without ``filters.night_highlight`` (issue 12).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/night_bench.py [--out bench/results/night.json] [--crf 28]

A night grade is a hard clean negative (it must be kept); an underexposed copy is what ``quality_dark`` exists for.
On a dark shot the two overlap in mean luma: bikes.mp4's second shot under the default night grade reads ~0.10,
below ``filters.min_luma_mean`` (0.12), while a bright shot darkened 4x reads up to 0.13. What differs is the
highlights: a copy darkened by a gain g has no level above g, a night look keeps its lights and lit edges bright
(``scores.luma_highlight``, the 99.9th percentile of luma; ``cpu_scores.exposure_scores``).

Sources: bikes.mp4's six shots, bigbuckbunny's two halves, carphone, and five 2 s windows of transnet_test (160x90,
upscaled 2x with Lanczos to 320x180: dark scenes the others lack). Each under the four night looks of
``pipeline.defects.NIGHT_LOOKS`` (negatives) and darkened by 0.2, 0.25 and 0.3 (``pipeline.defects.darken``; 0.2 and
0.25 also under film grain of sigma 7 levels: positives, except that a 0.3 copy whose mean stays over
``min_luma_mean`` is not dark by any rule), written as H.264 (``--crf``), scored by the real ``CpuScorer`` and judged
by the real rules twice in the same run: at the defaults and with ``night_highlight`` None (schema 17's dark rules,
the baseline). Per kind it writes how many clips each rule drops as ``quality_dark`` and the range of luma_mean and
luma_highlight; the clips under ``min_luma_mean`` are the ones ``night_highlight`` decides. ``quality_black`` (more
than a quarter of the frames black: FFmpeg blackdetect's definition since schema 18, a mean luma under 0.06 before)
counts as dark too: a night look dropped as either is lost, a copy dropped as either is caught. Other reasons are
listed, not counted (the 2x-upscaled transnet windows read as defocus).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from pipeline.defects import NIGHT_LOOKS, darken, grain, night  # noqa: E402
from pipeline.footage import BIKES_CUTS, sample_video  # noqa: E402
from pipeline.testdata import decode_frames, write_frames  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig  # noqa: E402
from stages.filters import FiltersConfig, apply_filters  # noqa: E402

COPIES = {
    "x0.2": lambda f, k: darken(f, 0.2),
    "x0.25": lambda f, k: darken(f, 0.25),
    "x0.3": lambda f, k: darken(f, 0.3),
    "x0.2_grain": lambda f, k: grain(darken(f, 0.2), seed=k),
    "x0.25_grain": lambda f, k: grain(darken(f, 0.25), seed=k),
}
DARK = ("quality_dark", "quality_black")
LOOKS = {name: (lambda f, k, kw=kw: night(f, **kw)) for name, kw in NIGHT_LOOKS.items()}


def sources() -> dict[str, tuple[np.ndarray, float]]:
    """Clean real shots (frames, fps)."""
    bikes = decode_frames(sample_video("bikes"))
    cuts = [0, *BIKES_CUTS, len(bikes)]
    out = {f"bikes{i}": (bikes[cuts[i] : cuts[i + 1]], 25.0) for i in range(len(cuts) - 1)}
    bbb = decode_frames(sample_video("bigbuckbunny"))
    out["bbb_a"], out["bbb_b"] = (bbb[:66], 25.0), (bbb[66:], 25.0)
    out["carphone"] = (decode_frames(sample_video("carphone")), 30000 / 1001)
    tn = decode_frames(sample_video("transnet_test"), 0, 25 * 132)
    for s in (10, 40, 70, 100, 130):
        window = tn[s * 25 : s * 25 + 50]
        up = np.stack([cv2.resize(f, (320, 180), interpolation=cv2.INTER_LANCZOS4) for f in window])
        out[f"transnet{s}"] = (up, 25.0)
    return out


def span(rows: list[dict], key: str) -> list[float] | None:
    values = [r[key] for r in rows if r[key] is not None]
    return [round(min(values), 3), round(max(values), 3)] if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "night.json"))
    ap.add_argument("--crf", type=int, default=28)
    args = ap.parse_args()
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="night-bench-"))
    scorer = CpuScorer(CpuScoresConfig())
    rows = []
    for k, (name, (frames, fps)) in enumerate(sources().items()):
        for kind, make in {**LOOKS, **COPIES}.items():
            clip = f"{name}_{kind}"
            path = write_frames(make(frames, k), tmp / f"{clip}.mp4", fps=fps, crf=args.crf)
            s = scorer.score_clip(path)
            path.unlink()  # ~130 clips: the scratch dir stays small
            h, w = frames.shape[1:3]
            rows.append({"clip_id": clip, "kind": kind, "source": name, "width": w, "height": h,
                         "duration_s": len(frames) / fps, "error_scores": None,
                         **{c: v for c, v in s.items() if c != "decoder"}})  # fmt: skip
            print(clip, {c: rows[-1][c] for c in ("luma_mean", "luma_highlight", "luma_under_frac")}, flush=True)
    tmp.rmdir()
    table = pa.Table.from_pylist(rows)
    cfg = FiltersConfig(min_duration_s=None, min_aesthetic=None)
    now = apply_filters(table, cfg).to_pylist()
    before = apply_filters(table, FiltersConfig(min_duration_s=None, min_aesthetic=None, night_highlight=None))
    for r, a, b in zip(rows, now, before.to_pylist(), strict=True):
        r["drop_reason"], r["drop_reason_schema17"] = a, b
        r["dark"], r["dark_schema17"] = a in DARK, b in DARK
    kinds = {}
    for kind in (*LOOKS, *COPIES):
        mine = [r for r in rows if r["kind"] == kind]
        dark = [r for r in mine if r["luma_mean"] < cfg.min_luma_mean]
        kinds[kind] = {
            "clips": len(mine),
            "under_min_luma_mean": len(dark),
            "dark": sum(r["dark"] for r in mine),
            "dark_schema17": sum(r["dark_schema17"] for r in mine),
            "luma_mean": span(mine, "luma_mean"),
            "luma_highlight": span(mine, "luma_highlight"),
            "luma_highlight_under_min_luma_mean": span(dark, "luma_highlight"),
            "reasons": dict(sorted(Counter(str(r["drop_reason"]) for r in mine).items())),
        }
    looks = [r for r in rows if r["kind"] in LOOKS]
    copies = [r for r in rows if r["kind"] in COPIES and r["luma_mean"] < cfg.min_luma_mean]
    result = {
        "command": f"HF_HUB_OFFLINE=1 .venv/bin/python bench/night_bench.py --crf {args.crf}",
        "night_highlight": cfg.night_highlight,
        "min_luma_mean": cfg.min_luma_mean,
        "night_looks_not_dark": round(sum(not r["dark"] for r in looks) / len(looks), 3),
        "night_looks_not_dark_schema17": round(sum(not r["dark_schema17"] for r in looks) / len(looks), 3),
        "dark_copies": len(copies),
        "dark_copies_caught": round(sum(r["dark"] for r in copies) / len(copies), 3),
        "dark_copies_caught_schema17": round(sum(r["dark_schema17"] for r in copies) / len(copies), 3),
        "night_looks_dropped_as_dark": {r["clip_id"]: r["drop_reason"] for r in looks if r["dark"]},
        "night_looks_dropped_as_dark_schema17": {
            r["clip_id"]: r["drop_reason_schema17"] for r in looks if r["dark_schema17"]
        },
        "dark_copies_missed": {r["clip_id"]: r["drop_reason"] for r in copies if not r["dark"]},
        "kinds": kinds,
        "seconds": round(time.perf_counter() - t0, 1),
        "clips": [
            {
                k: r[k]
                for k in (
                    "clip_id",
                    "kind",
                    "luma_mean",
                    "luma_highlight",
                    "luma_under_frac",
                    "black_frac",
                    "drop_reason",
                    "drop_reason_schema17",
                )
            }
            for r in rows
        ],  # fmt: skip
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "clips"}, indent=1))


if __name__ == "__main__":
    main()
