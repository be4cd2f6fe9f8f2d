"""Which copy dedup keeps inside a duplicate group (issue 12): the clean copy of a shot against its noisy, compressed
and blurred copies, under each candidate tie-break.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/dedup_keep_bench.py [--out bench/results/dedup_keep.json]

bench/filters_bench.py's seven sources, each written as H.264 clean at CRF 18 (the copy to keep) and as five worse
copies of the same size and length: film grain of sigma 7 and 3 grey levels (``pipeline.defects.grain``), CRF 28 and
35, a Gaussian blur of sigma 1 px at 640x360. Each is scored by the real ``CpuScorer``; per key, the pairs (clean
against one worse copy: 35) in which the clean copy ranks higher, and those it loses. The keys: ``sharpness`` (the
tie-break until schema 10), ``focus``, ``detail``, and ``stages.dedup.clean_detail`` at several ``NOISE_HALF``.
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

from filters_bench import sources  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from pipeline.defects import blur, grain  # noqa: E402
from pipeline.testdata import write_frames  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig  # noqa: E402

COLUMNS = ("sharpness", "focus", "detail", "noise_floor")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dedup_keep.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    scorer = CpuScorer(CpuScoresConfig())
    tmp = scratch_dir("dedup-keep-")
    rows = []
    for name, (fr, fps) in sources(False).items():
        copies = {
            "clean18": (fr, 18),
            "grain7": (grain(fr, seed=1), 18),
            "grain3": (grain(fr, sigma=3.0, seed=2), 18),
            "clean28": (fr, 28),
            "clean35": (fr, 35),
            "blur1": (blur(fr, 1.0), 18),
        }
        for kind, (frames, crf) in copies.items():
            s = scorer.score_clip(write_frames(frames, tmp / f"{name}_{kind}.mp4", fps=fps, crf=crf))
            rows.append({"shot": name, "copy": kind, **{c: round(s[c], 4) for c in COLUMNS}})
            print(json.dumps(rows[-1]), flush=True)

    def clean_detail(half: float):
        return lambda r: r["detail"] / (1 + r["noise_floor"] / half)

    keys = {c: (lambda r, c=c: r[c]) for c in ("sharpness", "focus", "detail")}
    keys |= {f"clean_detail_{h:g}": clean_detail(h) for h in (5.0, 10.0, 20.0, 40.0)}
    result = {}
    for label, key in keys.items():
        lost = []
        for shot in dict.fromkeys(r["shot"] for r in rows):
            by = {r["copy"]: r for r in rows if r["shot"] == shot}
            lost += [f"{shot}:{k}" for k, r in by.items() if k != "clean18" and key(r) >= key(by["clean18"])]
        pairs = sum(1 for r in rows if r["copy"] != "clean18")
        result[label] = {"clean_kept": pairs - len(lost), "pairs": pairs, "lost_to": lost}
    out = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/dedup_keep_bench.py",
           "seconds": round(time.perf_counter() - t0, 1), "keys": result, "clips": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
