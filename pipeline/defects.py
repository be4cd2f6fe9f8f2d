"""Hard cases for the filters (issue 12), made from real frames: defects a filter must catch and clean variants it
must keep. (N, H, W, 3) uint8 RGB in, the same shape out; sizes scale with the frame (``sigma360``: a blur sigma in
pixels at 640x360). Used by bench/filters_bench.py and the tests of stages/cpu_scores.py.
"""

from __future__ import annotations

import cv2
import numpy as np


def _scale(frames: np.ndarray) -> float:
    return min(frames.shape[1:3]) / 360.0


def blur(frames: np.ndarray, sigma360: float) -> np.ndarray:
    """Gaussian defocus: ``sigma360`` px at 640x360, scaled to the frame's shorter side."""
    s = max(0.3, sigma360 * _scale(frames))
    return np.stack([cv2.GaussianBlur(f, (0, 0), s) for f in frames])


def line_kernel(length: float, angle: float) -> np.ndarray:
    """A motion-blur point spread function: a line ``length`` px long through the centre at ``angle`` degrees
    (counter-clockwise from the x axis), anti-aliased (each of 8 samples a px spread bilinearly), summing to 1;
    (n, n) float32, n the odd size holding it."""
    n = int(np.ceil(length)) | 1
    c = n // 2
    k = np.zeros((n, n), np.float32)
    ux, uy = np.cos(np.radians(angle)), -np.sin(np.radians(angle))
    for t in np.linspace(-length / 2, length / 2, int(length * 8) + 1):
        x, y = c + t * ux, c + t * uy
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= x0 + dx < n and 0 <= y0 + dy < n:
                k[y0 + dy, x0 + dx] += w
    return k / k.sum()


def smear(frames: np.ndarray, length360: float, angle: float) -> np.ndarray:
    """Motion blur of the whole picture (camera shake during the exposure): a line ``length360`` px long at 640x360
    (scaled to the frame's shorter side) at ``angle`` degrees, the same in every frame."""
    k = line_kernel(max(2.0, length360 * _scale(frames)), angle)
    return np.stack([cv2.filter2D(f, -1, k, borderType=cv2.BORDER_REFLECT) for f in frames])


def letterbox(frames: np.ndarray, ratio: float = 2.39) -> np.ndarray:
    """Letterboxed as real footage is: a picture wider than 16:9 padded with black bars to 16:9 (bars only, no
    resampling); a narrower one squeezed to ``ratio`` inside its own frame size, bars above and below."""
    n, h, w = frames.shape[:3]
    if w / h > 16 / 9 + 0.01:
        fh = int(round(w * 9 / 16 / 2)) * 2
        top = (fh - h) // 2
        out = np.zeros((n, fh, w, 3), frames.dtype)
        out[:, top : top + h] = frames
        return out
    ih = int(round(w / ratio / 2)) * 2
    if ih >= h:
        return frames.copy()
    top = (h - ih) // 2
    out = np.zeros_like(frames)
    out[:, top : top + ih] = np.stack([cv2.resize(f, (w, ih), interpolation=cv2.INTER_AREA) for f in frames])
    return out


def boxed(frames: np.ndarray, scale: float = 0.75) -> np.ndarray:
    """The same footage scaled down and centred in black bars (pillarbox and letterbox)."""
    n, h, w = frames.shape[:3]
    bw, bh = int(w * scale) // 2 * 2, int(h * scale) // 2 * 2
    out = np.zeros_like(frames)
    y, x = (h - bh) // 2, (w - bw) // 2
    out[:, y : y + bh, x : x + bw] = np.stack([cv2.resize(f, (bw, bh), interpolation=cv2.INTER_AREA) for f in frames])
    return out


def shallow_dof(
    frames: np.ndarray,
    centre: tuple[float, float] = (0.5, 0.5),
    radii: tuple[float, float] = (0.36, 0.36),
    sigma360: float = 5.0,
) -> np.ndarray:
    """A sharp ellipse (``centre`` and ``radii`` as fractions of the width and height; by default the centre, ~40 % of
    the frame) and a background defocused by a Gaussian of ``sigma360`` px at 640x360 (:func:`blur`)."""
    n, h, w = frames.shape[:3]
    mask = np.zeros((h, w), np.float32)
    at, axes = (int(w * centre[0]), int(h * centre[1])), (int(w * radii[0]), int(h * radii[1]))
    cv2.ellipse(mask, at, axes, 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.05 * min(h, w)))[..., None]
    back = blur(frames, sigma360).astype(np.float32)
    return (frames.astype(np.float32) * mask + back * (1 - mask)).round().astype(np.uint8)


def night(
    frames: np.ndarray,
    gamma: float = 1.5,
    gain: float = 0.55,
    blue: float = 1.25,
    lift: float = 0.02,
    red: float = 1.0,
    desaturate: float = 0.0,
) -> np.ndarray:
    """A night grade (day for night): each RGB level x (0..1) mixed toward the pixel's grey by ``desaturate``, then
    ``gain * x ** gamma`` (darker, shadows crushed when gamma > 1, highlights kept brighter than the mean), red scaled
    by ``red``, blue by ``blue`` plus ``lift`` (the cast toward blue). The defaults: mean luma ~0.1-0.25 on the shipped
    shots. (N, H, W, 3) uint8 in and out."""
    x = frames.astype(np.float32) / 255.0
    if desaturate:
        x = (1 - desaturate) * x + desaturate * x.mean(axis=-1, keepdims=True)
    y = np.power(x, gamma) * gain
    y[..., 0] *= red
    y[..., 2] = np.minimum(1.0, y[..., 2] * blue + lift)
    return (y * 255).round().astype(np.uint8)


# Night looks bench/night_bench.py and the tests grade with (``night`` keyword arguments): the default, one with
# shadows crushed harder, one that is a plain 2.5x darkening under a blue cast (gamma 1: no level brighter than 0.4),
# one desaturated.
NIGHT_LOOKS = {
    "night": {},
    "night_crushed": {"gamma": 2.0, "gain": 0.6, "blue": 1.3},
    "night_linear": {"gamma": 1.0, "gain": 0.4, "red": 0.8, "blue": 1.2, "lift": 0.03},
    "night_desaturated": {"gamma": 1.8, "gain": 0.7, "blue": 1.15, "lift": 0.03, "desaturate": 0.6},
}


def darken(frames: np.ndarray, gain: float) -> np.ndarray:
    """Underexposure: every RGB level times ``gain`` (< 1), so nothing is brighter than ``gain``. (N, H, W, 3) uint8 in
    and out."""
    return np.clip(frames.astype(np.float32) * gain, 0, 255).round().astype(np.uint8)


def high_key(frames: np.ndarray) -> np.ndarray:
    """A high-key grade: every level lifted toward white (x -> 255 - 0.55 (255 - x))."""
    x = frames.astype(np.float32)
    return (255 - (255 - x) * 0.55).round().astype(np.uint8)


def grain(frames: np.ndarray, sigma: float = 7.0, seed: int = 0) -> np.ndarray:
    """Film grain: Gaussian noise of ``sigma`` levels, new in every frame, the same on the three channels."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, sigma, size=frames.shape[:3] + (1,)).astype(np.float32)
    return np.clip(frames.astype(np.float32) + noise, 0, 255).round().astype(np.uint8)


def handheld(frames: np.ndarray, amplitude: float, seed: int = 0) -> np.ndarray:
    """The frames moved as a handheld camera moves them: a random walk of translations (Gaussian steps of 1 px,
    centred, scaled so its largest excursion is ``amplitude`` px on either axis; the edges reflected), so everything in
    the picture moves together, a sign drawn into it first included. (N, H, W, 3) uint8 in and out."""
    rng = np.random.default_rng(seed)
    n, h, w = frames.shape[:3]
    walk = np.cumsum(rng.normal(0, 1, (n, 2)), axis=0)
    walk = walk - walk.mean(axis=0)
    walk = walk / max(1e-6, float(np.abs(walk).max())) * amplitude
    shift = [np.float32([[1, 0, dx], [0, 1, dy]]) for dx, dy in walk]
    moved = [cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REFLECT) for f, m in zip(frames, shift, strict=True)]
    return np.stack(moved)


def _text(frame: np.ndarray, text: str, org: tuple[int, int], height: float, colour, outline: bool) -> None:
    scale = height / 22.0
    thick = max(1, int(round(scale * 2)))
    if outline:
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)


def subtitle(frames: np.ndarray, text: str = "I told you so.") -> np.ndarray:
    """One short line of white, black-outlined subtitle text, centred near the bottom (~5 % of the height)."""
    out = frames.copy()
    n, h, w = frames.shape[:3]
    size = max(8.0, 0.055 * h)
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size / 22.0, max(1, int(round(size / 11))))
    for f in out:
        _text(f, text, ((w - tw) // 2, int(h * 0.92)), size, (255, 255, 255), True)
    return out


def scene_text(frames: np.ndarray, text: str = "OPEN 24h") -> np.ndarray:
    """Small text on a sign inside the picture (~2.5 % of the height): scene text, not a burned-in caption."""
    out = frames.copy()
    n, h, w = frames.shape[:3]
    size = max(6.0, 0.025 * h)
    x, y = int(w * 0.18), int(h * 0.4)
    for f in out:
        _text(f, text, (x, y), size, (235, 220, 90), False)
    return out


def _corner_origin(h: int, w: int, lh: int, lw: int, margin: int, corner: str) -> tuple[int, int]:
    """(y0, x0) of an lh x lw mark ``margin`` px in from the edges of ``corner`` (tl, tr, bl, br) of an h x w frame."""
    return (margin if corner[0] == "t" else h - lh - margin), (w - lw - margin if corner[1] == "r" else margin)


def logo(
    frames: np.ndarray,
    alpha: float,
    corner: str,
    text: str = "TV5",
    width: float = 0.12,
    colour: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """A semi-transparent (``alpha`` 1: opaque) channel logo of RGB ``colour`` (default white), a framed word
    ``width`` of the frame's width wide (at least 24 px), half as high, 3 % of the width in from the edges of
    ``corner`` (tl, tr, bl, br)."""
    out = frames.astype(np.float32)
    n, h, w = frames.shape[:3]
    lw = max(24, int(w * width))
    lh = max(12, lw // 2)
    mask = np.zeros((lh, lw), np.uint8)
    cv2.rectangle(mask, (0, 0), (lw - 1, lh - 1), 255, max(1, lh // 12))
    _text(mask, text, (int(lw * 0.12), int(lh * 0.72)), lh * 0.55, 255, False)
    a = mask.astype(np.float32)[..., None] / 255.0 * alpha
    y0, x0 = _corner_origin(h, w, lh, lw, int(0.03 * w), corner)
    region = out[:, y0 : y0 + lh, x0 : x0 + lw]
    out[:, y0 : y0 + lh, x0 : x0 + lw] = region * (1 - a) + np.float32(colour) * a
    return out.round().astype(np.uint8)


LOGO_STYLES = ("framed", "word", "plate", "disc")
LOGO_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX)
# the channel colours the benches draw logos in (RGB), by name
LOGO_COLOURS = {
    "white": (255, 255, 255),
    "yellow": (255, 220, 0),
    "red": (230, 30, 30),
    "blue": (40, 120, 255),
    "green": (0, 220, 120),
    "cyan": (0, 220, 255),
}


def styled_logo(
    frames: np.ndarray,
    style: str,
    alpha: float,
    corner: str,
    text: str = "TV5",
    width: float = 0.12,
    colour: tuple[int, int, int] = (255, 255, 255),
    font: int = cv2.FONT_HERSHEY_SIMPLEX,
    stroke: int = 2,
    margin: float = 0.03,
    backing: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """A channel logo in one of the forms broadcasters and uploaders use, semi-transparent (``alpha``), ``width`` of
    the frame's width wide (at least 24 px), ``margin`` of the width in from the edges of ``corner`` (tl, tr, bl, br):

    - ``framed``: :func:`logo` (a word in a thin frame);
    - ``word``: the bare word in ``font`` (an OpenCV Hershey font), ``stroke`` px thick at a 1.0 scale;
    - ``plate``: the word over a rectangle of ``backing`` colour at ``alpha``, the word itself at ``alpha`` + 0.3;
    - ``disc``: the same over a disc (a round network bug).

    The word is ``colour`` (RGB). (N, H, W, 3) uint8 in and out."""
    if style == "framed":
        return logo(frames, alpha, corner, text, width, colour)
    if style not in LOGO_STYLES:
        raise ValueError(f"unknown logo style {style!r}: one of {LOGO_STYLES}")
    n, h, w = frames.shape[:3]
    lw = max(24, int(w * width))
    fill = 0.6 if style == "disc" else 0.9  # the word's share of the logo's width
    tw = cv2.getTextSize(text, font, 1.0, stroke)[0][0]
    scale = lw * fill / tw
    thick = max(1, round(stroke * scale))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    lh = lw if style == "disc" else int(th + base + 0.3 * th)
    y0, x0 = _corner_origin(h, w, lh, lw, int(margin * w), corner)
    word = np.zeros((lh, lw), np.uint8)
    cv2.putText(word, text, ((lw - tw) // 2, (lh + th) // 2), font, scale, 255, thick, cv2.LINE_AA)
    out = frames.astype(np.float32)
    region = out[:, y0 : y0 + lh, x0 : x0 + lw]
    word_alpha = alpha
    if style in ("plate", "disc"):
        back = np.full((lh, lw), 255, np.uint8)
        if style == "disc":
            back[:] = 0
            cv2.circle(back, (lw // 2, lh // 2), lw // 2 - 1, 255, -1, cv2.LINE_AA)
        b = back.astype(np.float32)[..., None] / 255.0 * alpha
        region = region * (1 - b) + np.float32(backing) * b
        word_alpha = min(1.0, alpha + 0.3)
    a = word.astype(np.float32)[..., None] / 255.0 * word_alpha
    out[:, y0 : y0 + lh, x0 : x0 + lw] = region * (1 - a) + np.float32(colour) * a
    return out.round().astype(np.uint8)


def icon(frames: np.ndarray, kind: str, alpha: float, corner: str, width: float = 0.08) -> np.ndarray:
    """A white play icon (ring and triangle, ``kind`` "play") or five-pointed star (any other ``kind``), ``width``
    of the frame wide, 3 % in from ``corner`` ("tl", "tr", "bl", "br"), blended at ``alpha``: a logo without letters
    (the shared-overlay and board benches). (N, H, W, 3) uint8 in and out."""
    n, h, w = frames.shape[:3]
    s = int(w * width)
    m = np.zeros((s, s), np.uint8)
    if kind == "play":
        cv2.circle(m, (s // 2, s // 2), s // 2 - 2, 255, max(2, s // 14), cv2.LINE_AA)
        cv2.fillPoly(m, [np.array([[s * 0.38, s * 0.28], [s * 0.38, s * 0.72], [s * 0.74, s * 0.5]], np.int32)], 255)
    else:
        c = np.array([s / 2, s / 2])
        pts = [c + (s / 2 - 2 if k % 2 == 0 else s / 5) * np.array([np.cos(a), -np.sin(a)])
               for k, a in enumerate(np.pi / 2 + np.arange(10) * np.pi / 5)]  # fmt: skip
        cv2.fillPoly(m, [np.array(pts, np.int32)], 255, cv2.LINE_AA)
    a = m.astype(np.float32)[..., None] / 255 * alpha
    mg = int(0.03 * w)
    y0 = mg if corner[0] == "t" else h - s - mg
    x0 = w - s - mg if corner[1] == "r" else mg
    out = frames.astype(np.float32)
    out[:, y0 : y0 + s, x0 : x0 + s] = out[:, y0 : y0 + s, x0 : x0 + s] * (1 - a) + 255 * a
    return out.round().astype(np.uint8)
