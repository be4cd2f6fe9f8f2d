"""Camera motion against scene motion: the Ken Burns still-picture case of issue 12, measured.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/motion_bench.py [--out bench/results/motion.json]

Real shots (bikes.mp4 split at its cuts, bigbuckbunny's opening, carphone, eight 3 s windows of transnet_test) and
still frames of the same footage under a slow pan (1 and 3 % of the width per second) or zoom (1 and 4 %/s), all
written as H.264 clips and scored by the real CpuScorer. Writes per clip: motion, camera_pan/tilt/zoom,
scene_motion, still_residual; and the ranges of scene_motion and still_residual per class with the gap between
them: ``filters.min_still_residual`` (the ``motion_still_image`` rule) must fall in still_residual's gap
(stages/cpu_scores.still_residual).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.footage import BIKES_CUTS, sample_video  # noqa: E402
from pipeline.testdata import decode_frames, ken_burns, write_frames  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig  # noqa: E402

KEYS = ("motion", "camera_pan", "camera_tilt", "camera_zoom", "scene_motion", "still_residual")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "motion.json"))
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="motion-bench-"))
    bikes = decode_frames(sample_video("bikes"))
    tn = decode_frames(sample_video("transnet_test"), 0, 1200)
    real = {}
    cuts = [0, *BIKES_CUTS, len(bikes)]
    for i in range(len(cuts) - 1):
        real[f"bikes_shot{i}"] = bikes[cuts[i] : cuts[i + 1]]
    real["bigbuckbunny_open"] = decode_frames(sample_video("bigbuckbunny"), 0, 100)
    real["carphone"] = decode_frames(sample_video("carphone"))
    for k, s0 in enumerate(range(0, 1200, 150)):
        real[f"transnet_{k}"] = tn[s0 : s0 + 75]
    stills = {"bikes": bikes[100], "bigbuckbunny": real["bigbuckbunny_open"][50], "carphone": real["carphone"][10],
              "transnet_a": tn[400], "transnet_b": tn[900]}  # fmt: skip
    moves = {"pan1": {"pan": 0.01}, "pan3": {"pan": 0.03}, "zoom1": {"zoom": 0.01}, "zoom4": {"zoom": 0.04}}
    still_clips = {f"{n}_{m}": ken_burns(s, 75, 25, **kw) for n, s in stills.items() for m, kw in moves.items()}
    scorer = CpuScorer(CpuScoresConfig())
    result: dict = {"real": {}, "still_moved": {}}
    for group, clips in (("real", real), ("still_moved", still_clips)):
        for name, frames in clips.items():
            scores = scorer.score_clip(write_frames(frames, tmp / f"{name}.mp4", fps=25))
            result[group][name] = {k: None if scores[k] is None else round(float(scores[k]), 5) for k in KEYS}
            print(group, name, result[group][name], flush=True)
    for key in ("scene_motion", "still_residual"):
        real_v = [v[key] for v in result["real"].values() if v[key] is not None]
        still_v = [v[key] for v in result["still_moved"].values() if v[key] is not None]
        result[f"{key}_range"] = {
            "real": [min(real_v), max(real_v)],
            "still_moved": [min(still_v), max(still_v)],
            "gap": round(min(real_v) - max(still_v), 5),
            "ratio": round(min(real_v) / max(max(still_v), 1e-9), 2),
        }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.endswith("_range")}))


if __name__ == "__main__":
    main()
