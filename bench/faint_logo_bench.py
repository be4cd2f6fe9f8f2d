"""Faint logos over texture that moves with the camera (issue 12, schema 12): the overlay test with and without its
two-layer look, on the same clips in the same run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/faint_logo_bench.py [--out FILE]

bigbuckbunny's opening shot pans over grass; its bottom corners are grass throughout. Five windows of 60 frames
(starting at 0, 15, 30, 45 and 60; the camera moves ~14 px over the first windows at the analysis size and ~3 px
over the last), scaled to 640x360, each without a logo and with a white word (``pipeline.defects.styled_logo``, style
"word", 10 % of the width, 3 % in) at alpha 0.25, 0.3 and 0.35 in the bottom-left and bottom-right corners: 5 clean
and 30 logo clips, H.264 CRF 23. Each is scored by the real ``CpuScorer`` with the default settings and with
``overlay_layers`` off (the scorer of schema 11) and judged by the real rules (duration and CLIP rules off). Per
variant: logos found (``text_overlay`` or ``text_burned_in``), clean kept, precision / recall / F1, the misses, the
scorer's mean seconds per clip.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
from scratch import scratch_dir  # noqa: E402

from pipeline.defects import LOGO_FONTS, styled_logo  # noqa: E402
from pipeline.footage import sample_video  # noqa: E402
from pipeline.testdata import decode_frames, write_frames  # noqa: E402
from stages.cpu_scores import CpuScorer, CpuScoresConfig, resize_short  # noqa: E402
from stages.filters import FiltersConfig, apply_filters  # noqa: E402

FOUND = ("text_overlay", "text_burned_in")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "faint_logo.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    tmp = scratch_dir("faint-logo-")
    bbb = decode_frames(sample_video("bigbuckbunny"))
    variants = {"layers": CpuScorer(CpuScoresConfig()), "no_layers": CpuScorer(CpuScoresConfig(overlay_layers=False))}
    rows: dict[str, list[dict]] = {v: [] for v in variants}
    for start in (0, 15, 30, 45, 60):
        window = resize_short(bbb[start : start + 60], 360)
        clips = [(f"bbb_{start}_clean", "clean", None, None, window)]
        for alpha in (0.25, 0.3, 0.35):
            for corner in ("bl", "br"):
                word = dict(style="word", text="ARD", width=0.1, font=LOGO_FONTS[0], margin=0.03)
                marked = styled_logo(window, alpha=alpha, corner=corner, **word)
                clips.append((f"bbb_{start}_{corner}_{alpha}", "logo", alpha, corner, marked))
        for name, kind, alpha, corner, frames in clips:
            path = write_frames(frames, tmp / f"{name}.mp4", fps=25, crf=23)
            for v, scorer in variants.items():
                t = time.perf_counter()
                s = scorer.score_clip(path)
                row = {"clip_id": name, "kind": kind, "alpha": alpha, "corner": corner, "start": start, "width": 640,
                       "height": 360, "error_scores": None, "scores_s": time.perf_counter() - t}  # fmt: skip
                row.update({k: s[k] for k in ("text_area", "subtitle_area", "overlay_area", "overlay_box")})
                rows[v].append(row)
            print(name, {v: rows[v][-1]["overlay_area"] for v in variants}, flush=True)
    rules = FiltersConfig(min_duration_s=None, min_aesthetic=None)
    result = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/faint_logo_bench.py", "variants": {}}
    for v, rs in rows.items():
        cols = ("clip_id", "width", "height", "error_scores", "text_area", "subtitle_area", "overlay_area")
        table = pa.Table.from_pylist([{k: r[k] for k in cols} for r in rs])
        for r, reason in zip(rs, apply_filters(table, rules).to_pylist(), strict=True):
            r["drop_reason"] = reason
        logos = [r for r in rs if r["kind"] == "logo"]
        clean = [r for r in rs if r["kind"] == "clean"]
        tp = sum(r["drop_reason"] in FOUND for r in logos)
        fp = sum(r["drop_reason"] in FOUND for r in clean)
        precision, recall = tp / max(1, tp + fp), tp / len(logos)
        result["variants"][v] = {
            "logos_found": tp,
            "logos": len(logos),
            "found_by_window": {
                s: sum(r["drop_reason"] in FOUND for r in logos if r["start"] == s) for s in range(0, 61, 15)
            },
            "clean_kept": sum(r["drop_reason"] is None for r in clean),
            "clean": len(clean),
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "f1": round(2 * precision * recall / max(1e-9, precision + recall), 3),
            "missed": [r["clip_id"] for r in logos if r["drop_reason"] not in FOUND],
            "scores_s_mean": round(sum(r["scores_s"] for r in rs) / len(rs), 3),
        }  # fmt: skip
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["scores"] = {v: [{k: r[k] for k in ("clip_id", "overlay_area", "overlay_box", "drop_reason")} for r in rs]
                        for v, rs in rows.items()}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({v: {k: x[k] for k in x if k != "missed"} for v, x in result["variants"].items()}, indent=1))


if __name__ == "__main__":
    main()
