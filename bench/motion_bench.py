"""Camera motion against scene motion: the Ken Burns still-picture case of issue 12, measured.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/motion_bench.py [--out bench/results/motion.json]

Real shots (bikes.mp4 split at its cuts, bigbuckbunny's opening, carphone, eight 3 s windows of transnet_test) and
still frames of the same footage under a slow pan (1 and 3 % of the width per second) or zoom (1 and 4 %/s), all
written as H.264 clips and scored by the real CpuScorer. Writes per clip: motion, camera_pan/tilt/zoom,
scene_motion, still_residual, residual_flow; and the ranges of scene_motion, still_residual and residual_flow per
class with the gap between them: ``filters.min_still_residual`` and ``filters.min_residual_flow`` (the
``motion_still_image`` rule reads both) must fall in their gaps (stages/cpu_scores.still_scores). Also bigbuckbunny's
top-right quadrant (native pixels) under its opening's slow tilt, a real shot where little but the camera moves
(``near_still``: over three windows of the opening, a smaller crop of it, graded and under grain): still_residual puts
it with the stills, residual_flow (its parallax, mostly the sky's clouds drifting against the trees) mostly does not.
Five clips of each class are scored again at CRF 28 (``*_crf28``): heavy coding moves a still's smooth areas too
(docs/PERFORMANCE.md, "Where that residual flow lies"); two stills carry a channel logo fixed in the frame.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratch import scratch_dir  # noqa: E402

from pipeline.defects import grain, logo, night  # noqa: E402
from pipeline.footage import BIKES_CUTS, sample_video  # noqa: E402
from pipeline.testdata import decode_frames, ken_burns, write_frames  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig  # noqa: E402

GROUPS = ("real", "near_still", "still_moved")
KEYS = ("motion", "camera_pan", "camera_tilt", "camera_zoom", "scene_motion", "still_residual", "residual_flow")
RANGED = ("scene_motion", "still_residual", "residual_flow")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "motion.json"))
    args = ap.parse_args()
    tmp = scratch_dir("motion-bench-")
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
    # real shots where little but the camera moves: bigbuckbunny's top-right quadrant, native pixels, its slow tilt
    opening = real["bigbuckbunny_open"]
    corner = opening[:60, 0:360, 640:1280]
    near_still = {"bbb_tr": corner, "bbb_tr_night": night(corner), "bbb_tr_grain": grain(corner, 7.0),
                  "bbb_tr_night_grain": grain(night(corner), 7.0)}  # fmt: skip
    still_clips |= {f"bbb_tr_{m}": ken_burns(corner[30], 60, 25, **kw) for m, kw in moves.items()}
    for m in ("pan3", "zoom1"):  # grain that is not in the photo: new in every frame
        still_clips[f"bbb_tr_{m}_grain"] = grain(still_clips[f"bbb_tr_{m}"], 7.0)
        still_clips[f"carphone_{m}_grain"] = grain(still_clips[f"carphone_{m}"], 7.0)
    near_still |= {"bbb_tr_grain4": grain(corner, 4.0), "bbb_tr_grain10": grain(corner, 10.0)}
    # the same corner over later windows of the opening (no subject enters it there) and a smaller crop of it (trees
    # and sky): their parallax is the sky's low-contrast clouds drifting against the trees
    for a in (15, 40):
        near_still[f"bbb_tr_{a}-{a + 60}"] = opening[a : a + 60, 0:360, 640:1280]
    near_still["bbb_tr_small"] = opening[:75, 0:240, 880:1280]
    # a channel logo composited over a moved photo stays at its pixels: content of the frame, not of the picture
    still_clips["bigbuckbunny_pan3_logo"] = logo(still_clips["bigbuckbunny_pan3"], 0.6, "tr", "TV5", 0.16)
    still_clips["bikes_zoom4_logo"] = logo(still_clips["bikes_zoom4"], 0.6, "bl", "NEWS", 0.16)
    # heavy coding (CRF 28): x264's skipped and decimated blocks drift a coded still's parts against each other
    crf = {}
    for group, names in ((near_still, ("bbb_tr", "bbb_tr_night", "bbb_tr_grain", "bbb_tr_15-75", "bbb_tr_small")),
                         (still_clips, ("bikes_pan3", "carphone_pan3", "carphone_zoom4", "bbb_tr_pan3"))):  # fmt: skip
        for name in names:
            group[f"{name}_crf28"] = group[name]
            crf[f"{name}_crf28"] = 28
    scorer = CpuScorer(CpuScoresConfig())
    result: dict = {"real": {}, "near_still": {}, "still_moved": {}}
    for group, clips in (("real", real), ("near_still", near_still), ("still_moved", still_clips)):
        for name, frames in clips.items():
            scores = scorer.score_clip(write_frames(frames, tmp / f"{name}.mp4", fps=25, crf=crf.get(name, 18)))
            result[group][name] = {k: None if scores[k] is None else round(float(scores[k]), 5) for k in KEYS}
            print(group, name, result[group][name], flush=True)
    for key in RANGED:
        got = {g: [v[key] for v in result[g].values() if v[key] is not None] for g in GROUPS}
        top = max(got["still_moved"])
        result[f"{key}_range"] = {g: [min(v), max(v)] for g, v in got.items()}
        for g in ("real", "near_still"):  # how far each class of real shot sits above the stills
            result[f"{key}_range"][f"{g}_gap"] = round(min(got[g]) - top, 5)
            result[f"{key}_range"][f"{g}_ratio"] = round(min(got[g]) / max(top, 1e-9), 2)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.endswith("_range")}))


if __name__ == "__main__":
    main()
