"""Blur read under an overlay (issue 12): a channel logo, an icon or a subtitle line over a defocused shot, scored
with the blur scores leaving out the overlays' tiles (the default since 2026-12-04) and counting them (as before), on
the same clips in the same run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/overlay_blur_bench.py [--out bench/results/overlay_blur.json]

The seven clean sources of bench/filters_bench.py, each defocused (Gaussian sigma 2.0 or 2.5 px at 640x360, as the
hard set's ``blur`` class) and kept sharp, each bare and under a graphic: a framed "TV5" at alpha 0.5 (top right),
an opaque "NEWS" 16 % wide (bottom left), a white star icon at alpha 0.8 (top left), a subtitle line. 56 clips,
H.264 CRF 18, scored by the real ``CpuScorer`` with ``blur_without_overlays`` on and off and judged by the real
rules (duration and CLIP rules off), once as they are and once with the text rules off (``max_text_area``,
``max_subtitle_area``, ``max_overlay_area`` None: a user who keeps clips with logos, to crop or mask them later).
Per variant: the blurred clips judged ``quality_blurry`` with the text rules off, the sharp clips kept with the text
rules off, and per clip focus, detail, overlay_area and both verdicts.
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

import pyarrow as pa  # noqa: E402
from filters_bench import sources  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from pipeline.defects import blur, icon, logo, subtitle  # noqa: E402
from pipeline.testdata import write_frames  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig  # noqa: E402
from stages.filters import FiltersConfig, apply_filters  # noqa: E402

GRAPHICS = {
    "bare": lambda f: f,
    "logo": lambda f: logo(f, 0.5, "tr"),
    "logo_opaque": lambda f: logo(f, 1.0, "bl", "NEWS", width=0.16),
    "icon": lambda f: icon(f, "star", 0.8, "tl"),
    "subtitle": subtitle,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "overlay_blur.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    tmp = scratch_dir("overlay-blur-")
    variants = {
        "without_overlays": CpuScorer(CpuScoresConfig()),
        "with_overlays": CpuScorer(CpuScoresConfig(blur_without_overlays=False)),
    }
    rows: dict[str, list[dict]] = {v: [] for v in variants}
    for k, (name, (frames, fps)) in enumerate(sources(False).items()):
        for state, picture in (("blurred", blur(frames, 2.0 + 0.5 * (k % 2))), ("sharp", frames)):
            for graphic, draw in GRAPHICS.items():
                clip = f"{name}_{state}_{graphic}"
                path = write_frames(draw(picture), tmp / f"{clip}.mp4", fps=fps)
                for v, scorer in variants.items():
                    s = scorer.score_clip(path)
                    rows[v].append({"clip_id": clip, "source": name, "state": state, "graphic": graphic,
                                    "width": picture.shape[2], "height": picture.shape[1], "error_scores": None,
                                    **{c: s[c] for c in ("focus", "detail", "isotropy", "streak", "noise_floor",
                                                         "text_area", "subtitle_area", "overlay_area")}})  # fmt: skip
                print(clip, {v: round(rows[v][-1]["focus"], 3) for v in variants}, flush=True)
    rules = {
        "default": FiltersConfig(min_duration_s=None, min_aesthetic=None),
        "text_rules_off": FiltersConfig(
            min_duration_s=None, min_aesthetic=None, max_text_area=None, max_subtitle_area=None, max_overlay_area=None
        ),
    }
    result: dict = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/overlay_blur_bench.py", "variants": {}}
    for v, rs in rows.items():
        table = pa.Table.from_pylist([{c: r[c] for c in r if c not in ("source", "state", "graphic")} for r in rs])
        for rule, cfg in rules.items():
            for r, reason in zip(rs, apply_filters(table, cfg).to_pylist(), strict=True):
                r[rule] = reason
        summary = {}

        def span(rows: list[dict]) -> list[float]:
            return [round(min(r["focus"] for r in rows), 3), round(max(r["focus"] for r in rows), 3)]

        for graphic in GRAPHICS:
            blurred = [r for r in rs if r["state"] == "blurred" and r["graphic"] == graphic]
            sharp = [r for r in rs if r["state"] == "sharp" and r["graphic"] == graphic]
            summary[graphic] = {
                "blurred_judged_blurry": sum(r["text_rules_off"] == "quality_blurry" for r in blurred),
                "blurred": len(blurred),
                "blurred_focus": span(blurred),
                "sharp_kept": sum(r["text_rules_off"] is None for r in sharp),
                "sharp": len(sharp),
                "sharp_focus": span(sharp),
                "overlay_found": sum(bool(r["overlay_area"]) for r in blurred + sharp),
            }  # fmt: skip
        result["variants"][v] = summary
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["clips"] = {
        v: [{c: (round(x, 4) if isinstance(x, float) else x) for c, x in r.items() if c not in ("width", "height",
            "error_scores")} for r in rs]
        for v, rs in rows.items()
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["variants"], indent=1))


if __name__ == "__main__":
    main()
