"""Opaque boards shaken with the frame over a panning scene, against logos, subtitles and tickers over the same:
the overlay test's fixed-in-frame guard (``stages.cpu_scores.in_place``).

A newcomer drew opaque logo-shaped boards into panning footage and then shook every frame (a handheld camera's
random walk, ``pipeline.defects.handheld``): the board moves with the shake, not with the pan. The overlay test's
pair test (anchor pairs, the board predicted better unmoved than moved with its ring) and its text test (a text
box at the same place, IoU >= 0.5, in every OCR frame) both took such boards for logos. A graphic is composited in
the frame's coordinates and sits at the same pixels in every anchor; the guard asks that of each anchor.

Footage: bigbuckbunny frames 0-70 and bikes.mp4's shots 30-76, 76-137 and 187-242 (cropped to 16:9), at 640x360.
Per shot:
- clean (must not be found): 12 boards, opaque (a plate and a framed word reading "BAR", a star), 10 % of the
  width, top right and bottom left, drawn into the picture and then shaken by 4 or 8 px;
- positives (must be found): 16 logos drawn over the shaken picture (plate, framed word, bare word, star; alpha 0.3
  and 0.5; top right and bottom left), and 4 text overlays over it (a constant subtitle, subtitles changing twice and
  three times, a scrolling ticker; found as ``overlay_area`` or, for subtitles, ``subtitle_area`` over 0.004).
Each clip is scored twice in the same run: as shipped, and with the guard off (``MIN_IN_PLACE`` 0), the baseline.

    HF_HUB_OFFLINE=1 python bench/board_bench.py --out bench/results/board.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

import stages.cpu_scores as cs
from pipeline.defects import handheld, icon, styled_logo, subtitle
from pipeline.footage import sample_video
from pipeline.testdata import decode_frames
from stages.cpu_scores import CpuScorer, CpuScoresConfig

SIZE = (640, 360)
LINES = ("I told you so.", "Where were you?", "Look out behind you!")


def graphic(frames: np.ndarray, style: str, alpha: float, corner: str) -> np.ndarray:
    if style == "star":
        return icon(frames, "star", alpha, corner, width=0.1)
    return styled_logo(frames, style, alpha, corner, text="BAR", width=0.1)


def ticker(frames: np.ndarray, speed: int = 4) -> np.ndarray:
    """A dark bar over the bottom 12 % with white text scrolling left by ``speed`` px a frame."""
    out = frames.copy()
    n, h, w = frames.shape[:3]
    msg = "BREAKING: markets close higher as rain moves east +++ weather: sunny spells later +++ " * 2
    for i, f in enumerate(out):
        cv2.rectangle(f, (0, int(h * 0.88)), (w, h), (20, 20, 120), -1)
        org = (w - speed * i - 200, int(h * 0.96))
        cv2.putText(f, msg, org, cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def changing(frames: np.ndarray, parts: int) -> np.ndarray:
    """Subtitles whose words change ``parts`` times over the clip."""
    n = len(frames)
    return np.concatenate([subtitle(frames[p * n // parts : (p + 1) * n // parts], LINES[p]) for p in range(parts)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/results/board.json")
    args = ap.parse_args()
    scorer = CpuScorer(CpuScoresConfig())
    bbb = decode_frames(sample_video("bigbuckbunny"))
    bikes = decode_frames(sample_video("bikes"))

    def bikes_shot(a: int, b: int) -> np.ndarray:
        return np.stack([cv2.resize(f[:, 80:560], SIZE, interpolation=cv2.INTER_AREA) for f in bikes[a:b]])

    shots = {
        "bbb_0_70": np.stack([cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in bbb[0:70]]),
        "bikes_30_76": bikes_shot(30, 76),
        "bikes_76_137": bikes_shot(76, 137),
        "bikes_187_242": bikes_shot(187, 242),
    }
    shipped = cs.MIN_IN_PLACE

    def verdict(frames: np.ndarray) -> dict:
        out = {}
        for name, guard in (("guard", shipped), ("no_guard", 0.0)):
            cs.MIN_IN_PLACE = guard
            s = scorer._score(dict(enumerate(frames)), len(frames), 25.0)
            out[name] = {"overlay_area": s["overlay_area"], "subtitle_area": s["subtitle_area"]}
        cs.MIN_IN_PLACE = shipped
        return out

    rows, t0, seed = [], time.perf_counter(), 0
    for shot, frames in shots.items():
        cases = []
        for style in ("plate", "framed", "star"):
            for corner in ("tr", "bl"):
                for amplitude in (4.0, 8.0):
                    seed += 1
                    board = handheld(graphic(frames, style, 1.0, corner), amplitude, seed=seed)
                    cases.append(("board", f"{style}_{corner}_{amplitude:.0f}px", board))
        shaken = handheld(frames, 4.0, seed=seed)
        for style in ("plate", "framed", "word", "star"):
            for corner in ("tr", "bl"):
                for alpha in (0.3, 0.5):
                    cases.append(("logo", f"{style}_{corner}_{alpha}", graphic(shaken, style, alpha, corner)))
        text = {"subtitle": subtitle(shaken), "subtitle_2": changing(shaken, 2), "subtitle_3": changing(shaken, 3)}
        cases += [("text", k, v) for k, v in text.items()] + [("text", "ticker", ticker(shaken))]
        for kind, name, clip in cases:
            row = {"shot": shot, "kind": kind, "case": name, **verdict(clip)}
            rows.append(row)
            print(json.dumps(row), flush=True)

    def found(r: dict, key: str) -> bool:
        v = r[key]
        return bool(v["overlay_area"]) or (r["kind"] == "text" and (v["subtitle_area"] or 0) > 0.004)

    summary = {
        kind: {key: sum(found(r, key) for r in rows if r["kind"] == kind) for key in ("guard", "no_guard")}
        | {"clips": sum(r["kind"] == kind for r in rows)}
        for kind in ("board", "logo", "text")
    }
    summary["overlay_found_text"] = {
        key: sum(bool(r[key]["overlay_area"]) for r in rows if r["kind"] == "text") for key in ("guard", "no_guard")
    }
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(summary))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
