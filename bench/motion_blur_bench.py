"""Motion blur against the blur rules (issue 12): what ``isotropy`` catches that ``focus`` and ``detail`` pass.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/motion_blur_bench.py [--out bench/results/motion_blur.json]

The seven clean shots of bench/filters_bench.py (bikes.mp4's shots 2-5, the two halves of bigbuckbunny, carphone),
each smeared by a line of 6, 10 and 16 px at 640x360 (scaled to the shot's shorter side; ``pipeline.defects.smear``)
at 0, 30, 60, 90 and 135 degrees, defocused (Gaussian sigma 2.0 and 2.5 px at 640x360), and its clean, shallow
depth-of-field, night, high-key, scene-text, subtitle, letterbox and grain variants: 196 clips; and nine clean clips
whose finest detail runs one way (:func:`textures`: grass close-ups, blinds, stripes, and three of grass under a
shallow depth of field, the background Gaussian-blurred), each also smeared 16 px at 0 and 90 degrees: 27 more. Each
is written as H.264 and scored by the real ``CpuScorer``.

Per kind it writes the range of isotropy / streak / cepstrum_dip / focus / detail, and per smear length how many
clips each rule catches at the default thresholds (stages/filters.py): focus or detail, isotropy alone (under
``min_isotropy``), the motion-blur rules (``Filters.check`` on isotropy, streak and cepstrum_dip: isotropy under
``min_isotropy`` and streak over ``max_streak`` with cepstrum_dip over ``max_cepstrum_dip``, or streak over
``max_streak_alone``), any blur rule. ``separates``: every smear of 10 px or more dropped by a blur rule, and no
in-focus clip or texture dropped by the motion-blur rules (a smear along the direction a shot's own motion blur
already runs, e.g. bikes.mp4's panned second shot smeared at 30-90 degrees, turns about evenly blurred: focus or
detail catch it); ``separates_by_isotropy_alone``: the same with isotropy alone, false because of the textures.
``--rows FILE`` summarises the clips of an earlier run's JSON instead of scoring again (rows without streak or
cepstrum_dip count as not caught by the rule that reads it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from filters_bench import sources  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from pipeline.defects import blur, grain, high_key, letterbox, night, scene_text, shallow_dof, smear, subtitle  # noqa: E402
from pipeline.footage import BIKES_CUTS, sample_video  # noqa: E402
from pipeline.testdata import decode_frames, write_frames  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig  # noqa: E402
from stages.filters import Filters, FiltersConfig  # noqa: E402

LENGTHS = (6, 10, 16)
ANGLES = (0, 30, 60, 90, 135)
SCORES = ("isotropy", "streak", "cepstrum_dip", "focus", "detail")
IN_FOCUS = ("clean", "shallow_dof", "night", "high_key", "scene_text", "subtitle", "letterbox", "grain")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "motion_blur.json"))
    ap.add_argument("--rows", help="a JSON this bench wrote: summarise its clips without scoring again")
    args = ap.parse_args()
    cfg = FiltersConfig()
    rows = json.loads(Path(args.rows).read_text())["clips"] if args.rows else score()
    summary = summarise(rows, cfg)
    Path(args.out).write_text(json.dumps({"summary": summary, "clips": rows}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


def score() -> list[dict]:
    """Every clip's isotropy, streak, focus and detail: dicts with shot, kind and the four."""
    tmp = scratch_dir("motion-blur-")
    scorer = CpuScorer(CpuScoresConfig())
    rows = []
    for k, (name, (fr, fps)) in enumerate(sources(False).items()):
        variants = {"clean": fr, "shallow_dof": shallow_dof(fr), "night": night(fr), "high_key": high_key(fr),
                    "scene_text": scene_text(fr), "subtitle": subtitle(fr), "letterbox": letterbox(fr),
                    "grain": grain(fr, seed=k), "defocus2.0": blur(fr, 2.0), "defocus2.5": blur(fr, 2.5)}  # fmt: skip
        variants |= {f"smear{n}_{a}": smear(fr, n, a) for n in LENGTHS for a in ANGLES}
        for kind, frames in variants.items():
            s = scorer.score_clip(write_frames(frames, tmp / f"{name}_{kind}.mp4", fps=fps))
            row = {"shot": name, "kind": kind, **{c: s[c] for c in SCORES}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for name, (fr, fps) in textures().items():
        for kind, frames in {
            "texture": fr,
            "texture_smear16_0": smear(fr, 16, 0),
            "texture_smear16_90": smear(fr, 16, 90),
        }.items():
            s = scorer.score_clip(write_frames(frames, tmp / f"{name}_{kind}.mp4", fps=fps))
            row = {"shot": name, "kind": kind, **{c: s[c] for c in SCORES}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def textures() -> dict[str, tuple[np.ndarray, float]]:
    """Clean footage whose finest detail runs one way, the kind a second newcomer found dropped by the rule: close-ups
    of bigbuckbunny's grass (native pixels, the left and right halves of the bottom, downscaled to 320x180, rotated
    90 degrees), bigbuckbunny at 640x360 behind drifting vertical blinds (10 px period), bikes.mp4's last shot under
    horizontal sine stripes (6 px period), and three of grass under a shallow depth of field (a sharp ellipse over
    the bunny or the rocks, the rest blurred by a Gaussian of sigma 4 or 2 px: two newcomers' clips, rebuilt)."""
    bbb = decode_frames(sample_video("bigbuckbunny"))[:126]
    later = bbb[66:126, 360:720, 0:640]  # the bunny over grass, bottom left
    bbb = bbb[:70]
    grass = bbb[:, 360:720, 0:640]
    small = np.stack([cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in bbb])
    xx = np.arange(640)[None, :, None]
    blinds = np.stack([f * (0.25 + 0.75 * (((xx + 2 * i) // 5) % 2)) for i, f in enumerate(small.astype(np.float32))])
    walk = decode_frames(sample_video("bikes"))[BIKES_CUTS[3] : BIKES_CUTS[4]].astype(np.float32)
    stripes = (
        walk * (0.4 + 0.6 * (0.5 + 0.5 * np.sin(2 * np.pi * np.arange(walk.shape[1]) / 6.0)))[None, :, None, None]
    )
    return {
        "grass": (grass, 25.0),
        "grass_right": (bbb[:, 360:720, 640:1280], 25.0),
        "grass_320": (np.stack([cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA) for f in grass]), 25.0),
        "grass_rot90": (np.ascontiguousarray(np.rot90(grass, k=-1, axes=(1, 2))), 25.0),
        "blinds": (blinds.round().astype(np.uint8), 25.0),
        "stripes": (stripes.round().clip(0, 255).astype(np.uint8), 25.0),
        # shallow depth of field over grass (two newcomers' clips, rebuilt): a sharp ellipse over the bunny or the
        # rocks, the rest Gaussian-blurred; isotropy and streak read them like a smear (cpu_scores.cepstrum_dip)
        "grass_dof_bunny": (shallow_dof(later, (0.72, 0.45), (0.25, 0.5), 4.0), 25.0),
        "grass_dof_bunny_s2": (shallow_dof(later, (0.72, 0.45), (0.25, 0.5), 2.0), 25.0),
        "grass_dof_rocks": (shallow_dof(grass[:60], (0.3, 0.3), (0.25, 0.35), 4.0), 25.0),
    }


def summarise(rows: list[dict], cfg: FiltersConfig) -> dict:
    """Ranges per kind, what each rule catches per smear length, and whether the rules separate (module doc)."""

    def old(r: dict) -> bool:
        return r["focus"] < cfg.min_focus or r["detail"] < cfg.min_detail

    def iso(r: dict) -> bool:
        return r["isotropy"] < cfg.min_isotropy

    def motion(r: dict) -> bool:  # the motion-blur rules (stages/filters.py), on these scores alone
        return Filters(cfg).check({c: r.get(c) for c in ("isotropy", "streak", "cepstrum_dip")}) == "quality_blurry"

    def span(rs: list[dict], c: str) -> list[float] | None:
        vs = [r[c] for r in rs if r.get(c) is not None]
        return [round(min(vs), 3), round(max(vs), 3)] if vs else None

    kinds = {"in_focus": [r for r in rows if r["kind"] in IN_FOCUS],
             "defocus": [r for r in rows if r["kind"].startswith("defocus")]}  # fmt: skip
    kinds |= {f"smear{n}": [r for r in rows if r["kind"].startswith(f"smear{n}_")] for n in LENGTHS}
    kinds["textures"] = [r for r in rows if r["kind"] == "texture"]
    kinds["texture_smears"] = [r for r in rows if r["kind"].startswith("texture_smear")]
    kinds = {k: v for k, v in kinds.items() if v}  # a JSON from before the textures were added has none
    summary = {k: {c: span(rs, c) for c in SCORES} for k, rs in kinds.items()}
    for n in LENGTHS:
        rs = kinds[f"smear{n}"]
        passed = [r for r in rs if not old(r)]
        summary[f"smear{n}"] |= {
            "clips": len(rs),
            "caught_by_focus_or_detail": sum(map(old, rs)),
            "caught_by_isotropy_alone": sum(map(iso, rs)),
            "caught_by_motion_rule": sum(map(motion, rs)),
            "caught_by_any_blur_rule": sum(old(r) or motion(r) for r in rs),
            "isotropy_of_those_focus_and_detail_pass": span(passed, "isotropy") if passed else None,
            "streak_of_those_focus_and_detail_pass": span(passed, "streak") if passed else None,
            "cepstrum_dip_of_those_focus_and_detail_pass": span(passed, "cepstrum_dip") if passed else None,
        }
    for k in ("in_focus", "textures", "texture_smears"):
        if k in kinds:
            summary[k]["dropped_by_isotropy_alone"] = [f"{r['shot']}_{r['kind']}" for r in kinds[k] if iso(r)]
            summary[k]["dropped_by_motion_rule"] = [f"{r['shot']}_{r['kind']}" for r in kinds[k] if motion(r)]
    long_smears = [r for n in LENGTHS if n >= 10 for r in kinds[f"smear{n}"]]
    clean = kinds["in_focus"] + kinds.get("textures", [])
    summary["separates"] = all(old(r) or motion(r) for r in long_smears) and not any(map(motion, clean))
    summary["separates_by_isotropy_alone"] = all(old(r) or iso(r) for r in long_smears) and not any(map(iso, clean))
    for k in ("min_isotropy", "max_streak", "max_cepstrum_dip", "max_streak_alone"):
        summary[k] = getattr(cfg, k)
    return summary


if __name__ == "__main__":
    main()
