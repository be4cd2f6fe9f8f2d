"""Recall of each defect class on clips the filters were not tuned on (issue 12): random windows, random strengths.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/defect_sweep_bench.py [--seed 1] [--clips 48] [--wide] [--preset P]
        [--out FILE]

bench/filters_bench.py builds each defect once per shot, at fixed strengths, on the shots as cut; the issue's
held-out set is "of the same kinds" but unseen. This bench draws ``--clips`` clean windows as
bench/clean_sweep_bench.py does (``--seed``; every grade left out) and gives each one defect of a class taken in turn,
at a random strength inside the issue's description:

- ``still_image``: a random frame of the window under a pan of 0.5-4 %/s or a zoom of 0.5-5 %/s (``ken_burns``);
- ``blur``: Gaussian defocus, sigma 2.0-2.5 px at 640x360; ``blur_letterboxed``: the same in 2.39:1 bars;
  ``blur_grain``: the same under film grain of sigma 3-10 grey levels (``pipeline.defects.grain``, new every frame);
- ``blur_motion``: a line smear of 10-16 px at 640x360 at a random angle;
- ``logo``: a semi-transparent logo (alpha 0.3-0.6, 8-16 % of the width, a random word) in a random corner;
- ``subtitle``: one short line of subtitle text;
- ``mirrored`` / ``boxed``: a mirrored copy / a copy scaled by 0.7-0.85 into bars, judged by dedup against its
  clean window (which is scored too).

``--wide`` draws wider than that, as a held-out set of the same kinds may: each clip written at its window's random
CRF (18, 23 or 28) instead of 18; the still under a pan (either way), a zoom or both at once; the logo in any of
``pipeline.defects.LOGO_STYLES`` or an icon without letters (a play sign, a star; ``pipeline.defects.icon``), white,
yellow, cyan or red. Its results go to ``defect_sweep_wide_<seed>.json``. ``--preset`` writes the clips with another
x264 preset than veryfast (``medium``: x264's own default, what a user's encoder writes when told nothing; results then
go to ``..._<preset>_<seed>.json``).

Each is written as H.264 (CRF 18 unless ``--wide``), scored by the real ``CpuScorer`` and judged by the real rules at
their defaults and the real dedup (bench/filters_bench.py's ``judge``: duration and CLIP rules off). Per class: the
clips, those found (dropped for the class's reason, bench/filters_bench.py's ``EXPECT``), the recall and what the
missed ones got instead. Clips the size rule drops (carphone in bars) are out of scope, as in the filters bench.
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
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from clean_sweep_bench import draw  # noqa: E402
from filters_bench import EXPECT, judge  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from pipeline.defects import (  # noqa: E402
    LOGO_COLOURS,
    LOGO_STYLES,
    blur,
    boxed,
    grain,
    icon,
    letterbox,
    logo,
    smear,
    styled_logo,
    subtitle,
)
from pipeline.testdata import ken_burns, write_frames  # noqa: E402
from stages.clips import RESOLUTION_LOW  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig  # noqa: E402
from stages.filters import FiltersConfig  # noqa: E402

CLASSES = (
    "still_image",
    "blur",
    "blur_letterboxed",
    "blur_motion",
    "logo",
    "subtitle",
    "mirrored",
    "boxed",
    "blur_grain",
)
WORDS = ("TV5", "NEWS", "HD", "24", "SPORT", "K2")
LINES = ("I told you so.", "Where were you?", "Look out!", "Not now.", "Who's there?")
COLOURS = {k: LOGO_COLOURS[k] for k in ("white", "yellow", "cyan", "red")}


def defect(
    kind: str, frames: np.ndarray, fps: float, rng: random.Random, wide: bool = False
) -> tuple[np.ndarray, dict]:
    """The window with one defect of ``kind``, and the parameters drawn (``wide``: see the module's text)."""
    if kind == "still_image":
        moves = rng.choice([["pan"], ["zoom"], ["pan", "zoom"]] if wide else [["pan"], ["zoom"]])
        speeds = {m: rng.uniform(0.005, 0.04) if m == "pan" else rng.uniform(0.005, 0.05) for m in moves}
        if wide and "pan" in speeds and rng.random() < 0.5:
            speeds["pan"] = -speeds["pan"]  # the camera panning left
        still = frames[rng.randrange(len(frames))]
        return ken_burns(still, len(frames), fps, **speeds), {m: round(v, 4) for m, v in speeds.items()}
    if kind in ("blur", "blur_letterboxed"):
        sigma = rng.uniform(2.0, 2.5)
        out = blur(frames, sigma)
        return (letterbox(out) if kind == "blur_letterboxed" else out), {"sigma": round(sigma, 2)}
    if kind == "blur_grain":
        sigma, noise = rng.uniform(2.0, 2.5), rng.uniform(3.0, 10.0)
        out = grain(blur(frames, sigma), sigma=noise, seed=rng.randrange(1 << 30))
        return out, {"sigma": round(sigma, 2), "grain": round(noise, 1)}
    if kind == "blur_motion":
        length, angle = rng.uniform(10, 16), rng.uniform(0, 180)
        return smear(frames, length, angle), {"length": round(length, 1), "angle": round(angle)}
    if kind == "logo" and wide:
        style = rng.choice([*LOGO_STYLES, "play", "star"])
        p = {"style": style, "alpha": round(rng.uniform(0.3, 0.6), 2), "corner": rng.choice(["tl", "tr", "bl", "br"]),
             "width": round(rng.uniform(0.08, 0.16), 3)}  # fmt: skip
        if style in ("play", "star"):
            return icon(frames, style, p["alpha"], p["corner"], p["width"]), p
        p.update(text=rng.choice(WORDS), colour=rng.choice(list(COLOURS)))
        return styled_logo(frames, style, p["alpha"], p["corner"], p["text"], p["width"], COLOURS[p["colour"]]), p
    if kind == "logo":
        p = {"alpha": round(rng.uniform(0.3, 0.6), 2), "corner": rng.choice(["tl", "tr", "bl", "br"]),
             "text": rng.choice(WORDS), "width": round(rng.uniform(0.08, 0.16), 3)}  # fmt: skip
        return logo(frames, **p), p
    if kind == "subtitle":
        text = rng.choice(LINES)
        return subtitle(frames, text), {"text": text}
    if kind == "mirrored":
        return np.ascontiguousarray(frames[:, :, ::-1]), {}
    scale = rng.uniform(0.7, 0.85)
    return boxed(frames, scale), {"scale": round(scale, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--wide", action="store_true", help="wider draws: the window's CRF, more moves and logos")
    ap.add_argument("--preset", default="veryfast", help="x264 preset the clips are written with (x264's own: medium)")
    ap.add_argument("--out", help="default: bench/results/defect_sweep[_wide][_<preset>]_<seed>.json")
    args = ap.parse_args()
    preset = "" if args.preset == "veryfast" else args.preset  # named in the output and command only when not veryfast
    stem = ("defect_sweep_wide" if args.wide else "defect_sweep") + (f"_{preset}" if preset else "")
    out = Path(args.out or ROOT / "bench" / "results" / f"{stem}_{args.seed}.json")
    t0 = time.perf_counter()
    rng = random.Random(args.seed + 1000)
    tmp = scratch_dir("defect-sweep-")
    scorer = CpuScorer(CpuScoresConfig())
    rows = []

    def score(name: str, kind: str, source: str, frames: np.ndarray, fps: float, params: dict, crf: int) -> None:
        s = scorer.score_clip(write_frames(frames, tmp / f"{name}.mp4", fps=fps, crf=crf, preset=args.preset))
        h, w = frames.shape[1:3]
        rows.append({"clip_id": name, "kind": kind, "source": source, "params": params, "width": w, "height": h,
                     "duration_s": len(frames) / fps, "error_scores": None,
                     **{k: v for k, v in s.items() if k != "decoder"}})  # fmt: skip
        print(kind, name, params, flush=True)

    for k, it in enumerate(draw(args.seed, args.clips, {"clean": lambda f, k: f})):
        kind = CLASSES[k % len(CLASSES)]
        base = it["name"].rsplit("_", 2)[0]  # the window, without the grade and CRF in its name
        frames, params = defect(kind, it["frames"], it["fps"], rng, args.wide)
        crf = it["crf"] if args.wide else 18
        if args.wide:
            params["crf"] = crf
        if kind in ("mirrored", "boxed"):
            score(base, "clean", base, it["frames"], it["fps"], {}, crf)
        score(f"{base}_{kind}", kind, base, frames, it["fps"], params, crf)
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "params"} for r in rows])
    judged = judge(rows, table, FiltersConfig(min_duration_s=None, min_aesthetic=None))
    classes = {}
    for kind in CLASSES:
        rs = [r for r in judged if r["kind"] == kind and r["drop_reason"] != RESOLUTION_LOW]
        if kind in ("mirrored", "boxed"):
            # dropped as a duplicate (of its window, or of another window of the same shot that overlaps it), or
            # kept while its window was dropped as its duplicate
            hit = [r for r in rs if r["drop_reason"] == "duplicate" or _kept_copy(r, judged)]
        else:
            hit = [r for r in rs if r["drop_reason"] in EXPECT[kind]]
        missed = {r["clip_id"]: {"got": r["drop_reason"], "params": r["params"]} for r in rs if r not in hit}
        classes[kind] = {"clips": len(rs), "found": len(hit), "recall": round(len(hit) / len(rs), 3) if rs else None,
                         "missed": missed}  # fmt: skip
        if kind in ("mirrored", "boxed"):  # the stricter count: the copy itself dropped, its window kept
            classes[kind]["copy_dropped"] = sum(r["drop_reason"] == "duplicate" for r in rs)
    result = {
        "command": f"HF_HUB_OFFLINE=1 .venv/bin/python bench/defect_sweep_bench.py --seed {args.seed} "
        f"--clips {args.clips}" + (" --wide" if args.wide else "") + (f" --preset {preset}" if preset else ""),
        "clips": len(rows),
        "seconds": round(time.perf_counter() - t0, 1),
        "out_of_scope": [r["clip_id"] for r in judged if r["drop_reason"] == RESOLUTION_LOW],
        "classes": classes,
        "clean_windows_dropped": {
            r["clip_id"]: r["drop_reason"]
            for r in judged
            if r["kind"] == "clean" and r["drop_reason"] not in (None, "duplicate")
        },  # fmt: skip
        "scores": [
            {
                k: (round(v, 5) if isinstance(v, float) else v)
                for k, v in r.items()
                if k not in ("phash", "phash_mirror")
            }
            for r in judged
        ],  # fmt: skip
    }
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("clips", "seconds", "out_of_scope", "classes")}, indent=1))


def _kept_copy(copy: dict, rows: list[dict]) -> bool:
    """The copy kept and its clean window dropped as the copy's duplicate (dedup's tie-break may keep either)."""
    src = next(r for r in rows if r["clip_id"] == copy["source"])
    return copy["drop_reason"] is None and src.get("duplicate_of") == copy["clip_id"]


if __name__ == "__main__":
    main()
