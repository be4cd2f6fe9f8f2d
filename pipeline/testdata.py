"""Synthetic test videos and a mixed good/broken corpus, written with PyAV (there is no ffmpeg binary).

Used by the tests of every stage and by the end-to-end tests. Everything is tiny (KBs) and quick to write.

``make_mixed_corpus(root)`` returns ``{relative path: status the probe must give}``. Pipeline-level
expectations that the probe alone cannot know live in two constants next to it:

- ``MIXED_CORPUS_DUPLICATES``: ``{copy: original}`` — byte-identical copies. The probe says "ok" for both;
  the driver marks the copy "duplicate" (the copy's path sorts after the original's).
  ``expected_pipeline_status(expected)`` applies that to the probe expectations.
- ``MIXED_CORPUS_ERROR_TYPES``: ``{relative path: error_type}`` of the files the probe must reject.
- ``MIXED_CORPUS_NOTES``: ``{relative path: prefix of the probe's error note}`` of readable files that still carry a
  note (the truncated faststart MP4 and WebM, the transport stream cut mid-GOP).
"""

from __future__ import annotations

import math
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

PATTERNS = ("gradient", "shapes", "noise", "solid")

# container (from the file suffix) -> audio codec that container takes
_AUDIO_CODEC = {".webm": "libopus", ".ogg": "libopus", ".mkv": "aac", ".mp4": "aac", ".mov": "aac", ".m4a": "aac"}


def frame_pattern(pattern: str, i: int, width: int, height: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame ``i`` (H, W, 3) uint8 RGB of a synthetic pattern.

    gradient: a diagonal colour gradient that scrolls 4 px per frame (global motion, smooth texture).
    shapes:   a dim gradient with a bright square moving right and a disc moving down (local motion, edges).
    noise:    uniform random pixels (incompressible; "garbage" content for filters).
    solid:    one flat colour for the whole video (a static / blank video for filters to reject).
    """
    y, x = np.mgrid[0:height, 0:width]
    if pattern == "gradient":
        r = (x * 255 // max(width - 1, 1) + 4 * i) % 256
        g = (y * 255 // max(height - 1, 1) + 2 * i) % 256
        b = ((x + y) * 2 + 6 * i) % 256
        return np.stack([r, g, b], axis=-1).astype(np.uint8)
    if pattern == "shapes":
        img = np.stack([x * 96 // max(width, 1), y * 96 // max(height, 1), np.full_like(x, 40)], axis=-1)
        side = max(4, min(width, height) // 4)
        x0 = (3 * i) % max(width - side, 1)
        y0 = height // 4
        img[y0 : y0 + side, x0 : x0 + side] = (240, 200, 40)
        radius = max(3, min(width, height) // 6)
        cx, cy = (2 * width) // 3, (2 * i) % max(height, 1)
        img[(x - cx) ** 2 + (y - cy) ** 2 <= radius**2] = (40, 160, 250)
        return img.astype(np.uint8)
    if pattern == "noise":
        rng = rng if rng is not None else np.random.default_rng(i)
        return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if pattern == "solid":
        return np.full((height, width, 3), (90, 120, 150), dtype=np.uint8)
    raise ValueError(f"unknown pattern {pattern!r}; known: {PATTERNS}")


def make_video(
    path: str | Path,
    *,
    frames: int = 48,
    size: tuple[int, int] = (160, 90),
    fps: int | Fraction = 24,
    codec: str = "libx264",
    container: str | None = None,
    pattern: str = "gradient",
    audio: bool = False,
    rotation: int = 0,
    vfr: bool = False,
    faststart: bool = False,
    gop: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a synthetic video and return its path.

    size is (width, height) (even numbers for yuv420p codecs). container is an FFmpeg muxer name; None
    infers it from the suffix. rotation (0/90/180/270, clockwise, as the probe reports it) is stored as a
    display matrix. vfr=True writes frame intervals cycling 1, 1, 2 frame periods (so the mean rate is
    3/4 of ``fps``) on a millisecond time base. faststart=True puts the MP4 ``moov`` index before the
    media data (PyAV's default puts it at the end). audio=True adds a 440 Hz tone (AAC, Opus for WebM).
    gop sets the keyframe interval (the encoder's default otherwise: 250 for x264, so one keyframe).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rate = Fraction(fps)
    options = {"movflags": "faststart"} if faststart else {}
    rng = np.random.default_rng(seed)
    with av.open(str(path), mode="w", format=container, options=options) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if codec == "libvpx-vp9":
            stream.options = {"deadline": "realtime", "cpu-used": "8"}
        elif codec == "libx264":
            stream.options = {"preset": "veryfast"}
        elif codec == "libsvtav1":
            os.environ.setdefault("SVT_LOG", "1")  # errors only: SVT-AV1 prints a banner per encoder otherwise
        if rotation:
            stream.set_display_rotation(-rotation)  # PyAV takes counter-clockwise degrees
        if gop:
            stream.codec_context.gop_size = gop
        tb = Fraction(1, 1000) if vfr else 1 / rate
        stream.codec_context.time_base = tb
        a_stream = None
        if audio:
            a_codec = _AUDIO_CODEC.get(path.suffix.lower(), "aac")
            a_stream = out.add_stream(a_codec, rate=48000)
            a_stream.layout = "mono"
        a_pts = 0
        t = Fraction(0)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_pattern(pattern, i, width, height, rng), format="rgb24")
            frame.pts = round(t / tb)
            frame.time_base = tb
            step = (2 if i % 3 == 2 else 1) / rate if vfr else 1 / rate
            t += step
            out.mux(stream.encode(frame))
            if a_stream is not None:  # audio up to the end of this frame, interleaved with the video
                a_pts = _mux_tone(out, a_stream, a_pts, int(t * 48000))
        out.mux(stream.encode(None))
        if a_stream is not None:
            out.mux(a_stream.encode(None))
    return path


def make_audio(path: str | Path, *, seconds: float = 2.0, codec: str = "aac", container: str | None = None) -> Path:
    """Write an audio-only file (a 440 Hz tone): a "video" input that has no video stream."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=48000)
        stream.layout = "mono"
        _mux_tone(out, stream, 0, int(seconds * 48000))
        out.mux(stream.encode(None))
    return path


def _mux_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, start: int, end: int) -> int:
    """Encode samples [start, end) of a 440 Hz tone; returns the next sample index."""
    fmt = stream.codec_context.format.name  # fltp for aac and opus encoders
    chunk = 1024
    while start < end:
        n = min(chunk, end - start)
        t = (np.arange(start, start + n) / 48000.0).astype(np.float32)
        samples = (0.2 * np.sin(2 * math.pi * 440.0 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format=fmt if fmt.endswith("p") else "fltp", layout="mono")
        frame.sample_rate = 48000
        frame.pts = start
        out.mux(stream.encode(frame))
        start += n
    return start


# {copy: original}; the probe says ok for both, the driver marks the copy "duplicate".
MIXED_CORPUS_DUPLICATES: dict[str, str] = {"good/h264_copy.mp4": "good/h264.mp4"}

MIXED_CORPUS_ERROR_TYPES: dict[str, str] = {
    "broken/empty.mp4": "EmptyFile",
    "broken/random_bytes.mp4": "InvalidData",
    "broken/text_renamed.mp4": "InvalidData",
    "broken/truncated.mp4": "Truncated",  # cut in half, moov index at the end: nothing readable
    "broken/audio_only.mp4": "NoVideoStream",
    "broken/undecodable.mp4": "DecodeError",  # valid MP4 index, video payload zeroed
}

MIXED_CORPUS_NOTES: dict[str, str] = {
    "edge/truncated_faststart.mp4": "Truncated:",
    "edge/truncated.webm": "Truncated:",
    "edge/cut_mid_gop.ts": "StartsMidGOP:",
}


def make_mixed_corpus(root: Path) -> dict[str, str]:
    """Writes a corpus mixing good and broken files and returns {relative path: expected status ('ok'|'error')}.

    The statuses are what ``stages.probe.probe`` must return; see ``MIXED_CORPUS_DUPLICATES`` /
    ``expected_pipeline_status`` for the duplicate the driver marks, ``MIXED_CORPUS_ERROR_TYPES`` for the
    error types. Good: H.264 .mp4 (shapes), a byte-identical copy of it, VP9 .webm, AV1 .mkv, H.264 .mkv with AAC
    audio, MPEG-4 Part 2 .mov and .avi, "plage été 1.mp4" (spaces and non-ASCII), a copy of the real
    bikes.mp4. Edge (still ok): a 1-frame video, a video rotated 90° by its display matrix, a
    variable-frame-rate .mkv, a faststart MP4 cut at 2/3 (first frames readable; num_frames = frames
    present, note in ``error``), a VP9 .webm cut at 60 % (same), an MPEG-TS whose first GOP was cut off
    (note in ``error``). Broken: zero
    bytes, random bytes, a text file named .mp4, an MP4 cut in half with its moov index at the end, an
    AAC-only .mp4, an MP4 whose video payload is zeroed.
    """
    from pipeline.footage import sample_video  # local: keeps `import pipeline.testdata` free of package lookups

    root = Path(root)
    expected: dict[str, str] = {}

    def good(rel: str, **kw) -> Path:
        expected[rel] = "ok"
        return make_video(root / rel, **kw)

    good("good/h264.mp4", pattern="shapes")
    good("good/vp9.webm", codec="libvpx-vp9", pattern="gradient")
    good("good/av1.mkv", codec="libsvtav1", pattern="shapes")  # decord cannot open AV1: readers must fall back
    good("good/h264.mkv", pattern="shapes", audio=True)
    good("good/mpeg4.mov", codec="mpeg4", pattern="gradient")
    good("good/mpeg4.avi", codec="mpeg4", pattern="shapes", frames=24)
    good("good/plage été 1.mp4", pattern="gradient", frames=36)
    shutil.copyfile(sample_video("bikes"), root / "good/bikes.mp4")
    expected["good/bikes.mp4"] = "ok"
    for copy, original in MIXED_CORPUS_DUPLICATES.items():
        shutil.copyfile(root / original, root / copy)
        expected[copy] = "ok"

    good("edge/one_frame.mp4", frames=1, pattern="shapes")
    good("edge/rotated_90.mp4", rotation=90, pattern="shapes")
    good("edge/vfr.mkv", vfr=True, pattern="shapes")
    full = make_video(root / "edge/_faststart_full.mp4", faststart=True, frames=48, pattern="gradient")
    data = full.read_bytes()
    (root / "edge/truncated_faststart.mp4").write_bytes(data[: len(data) * 2 // 3])
    full.unlink()
    expected["edge/truncated_faststart.mp4"] = "ok"
    # A WebM cut at 60 %: Matroska needs no index to read on, the Segment size says it is cut.
    webm = make_video(root / "edge/_whole.webm", codec="libvpx-vp9", frames=48, pattern="shapes")
    data = webm.read_bytes()
    (root / "edge/truncated.webm").write_bytes(data[: len(data) * 6 // 10])
    webm.unlink()
    expected["edge/truncated.webm"] = "ok"
    # An MPEG-TS capture that starts mid-GOP: 188-byte TS packets make any multiple of 188 a clean cut.
    ts = make_video(root / "edge/_whole.ts", frames=96, gop=24, pattern="shapes")
    (root / "edge/cut_mid_gop.ts").write_bytes(ts.read_bytes()[188 * 20 :])
    ts.unlink()
    expected["edge/cut_mid_gop.ts"] = "ok"

    broken = root / "broken"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "empty.mp4").write_bytes(b"")
    (broken / "random_bytes.mp4").write_bytes(np.random.default_rng(1234).bytes(16384))
    (broken / "text_renamed.mp4").write_text("This is a plain text file, not a video.\n" * 40)
    whole = make_video(broken / "_whole.mp4", frames=48, pattern="shapes")  # PyAV writes moov at the end
    data = whole.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat"), "expected the moov index after the media data"
    (broken / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (broken / "undecodable.mp4").write_bytes(_zero_mdat_payload(data))
    whole.unlink()
    make_audio(broken / "audio_only.mp4", seconds=1.0)
    for rel in MIXED_CORPUS_ERROR_TYPES:
        expected[rel] = "error"
    return dict(sorted(expected.items()))


def expected_pipeline_status(expected: dict[str, str]) -> dict[str, str]:
    """Probe expectations -> ``videos.status`` after the driver: the byte-identical copies become "duplicate"."""
    return {rel: ("duplicate" if rel in MIXED_CORPUS_DUPLICATES else status) for rel, status in expected.items()}


def _zero_mdat_payload(mp4: bytes) -> bytes:
    """The same MP4 with its media payload zeroed: the index is intact, no packet decodes."""
    buf = bytearray(mp4)
    offset = 0
    while offset + 8 <= len(buf):
        size = int.from_bytes(buf[offset : offset + 4], "big")
        if buf[offset + 4 : offset + 8] == b"mdat":
            buf[offset + 8 : offset + size] = bytes(size - 8)
            return bytes(buf)
        if size < 8:
            break
        offset += size
    raise ValueError("no mdat box found")


# ------------------------------------------------------------------------------ videos with known frame content

INDEX_DIGITS = 5


def make_indexed_video(
    path: str | Path, n: int, *, w: int = 160, h: int = 64, codec: str = "libx264", fmt: str | None = None,
    rate: int | Fraction = 25, opts: dict | None = None, rotation: int | None = None,
) -> Path:  # fmt: skip
    """A video whose frame i shows i in base 4 as INDEX_DIGITS vertical grey bars (levels 0/85/170/255), which
    survive lossy coding twice; the rest of the frame (if w is not a multiple of INDEX_DIGITS) is black."""
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=rate, options=opts or {})
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        bw = w // INDEX_DIGITS
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            for j in range(INDEX_DIGITS):
                img[:, j * bw : (j + 1) * bw] = ((i // 4 ** (INDEX_DIGITS - 1 - j)) % 4) * 85
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return Path(path)


def decode_index(frame: np.ndarray) -> int:
    """Inverse of make_indexed_video for one upright (H, W, 3) frame."""
    h, w = frame.shape[:2]
    bw = w // INDEX_DIGITS
    value = 0
    for j in range(INDEX_DIGITS):
        block = frame[h // 4 : 3 * h // 4, j * bw + bw // 4 : (j + 1) * bw - bw // 4]
        value = value * 4 + int(np.clip(np.rint(block.mean() / 85.0), 0, 3))
    return value


def decode_frames(path: str | Path, start: int = 0, end: int | None = None) -> np.ndarray:
    """Frames [start, end) of a video as (N, H, W, 3) uint8 RGB, by a plain sequential PyAV decode."""
    with av.open(str(path)) as c:
        out = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if start <= i < (end or 1 << 30)]
    return np.stack(out)


def write_frames(
    frames: np.ndarray, path: str | Path, fps: float = 25, crf: int = 18, preset: str = "veryfast"
) -> Path:
    """(N, H, W, 3) uint8 RGB frames -> an H.264 mp4 (libx264 at ``crf`` and ``preset``; x264's own defaults are CRF
    23, preset medium)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": str(crf), "preset": preset}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
        c.mux(s.encode())
    return Path(path)


def ken_burns(still: np.ndarray, n: int, fps: float, pan: float = 0.0, zoom: float = 0.0) -> np.ndarray:
    """(n, H, W, 3) frames of a still picture under a slow camera move (the "Ken Burns" slideshow): its content
    sliding left by ``pan`` widths per second (the camera pans right), or scaled by exp(``zoom`` t) about the
    centre (zooming in), from 1.15x so no edge shows."""
    import cv2

    h, w = still.shape[:2]
    out = []
    for i in range(n):
        t = i / fps
        s = 1.15 * math.exp(zoom * t)
        dx = pan * w * (t - n / fps / 2)
        m = np.array([[s, 0, -(s - 1) * w / 2 - dx], [0, s, -(s - 1) * h / 2]], np.float32)
        out.append(cv2.warpAffine(still, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)
