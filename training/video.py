"""Video I/O for training: read chosen frames of a clip, write a playable H.264 mp4.

Reading goes through stages/frames.py (the project's decoder, with its decord/PyAV fallbacks) when present;
a plain PyAV decode is the fallback so training does not depend on that stage's import-time deps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_clip_frames(path: str | Path, indices: np.ndarray | list[int] | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames at ``indices`` (all frames if None) of the video at ``path``."""
    try:
        from stages.frames import read_frames, video_meta
    except ImportError:
        read_frames = video_meta = None
    if read_frames is not None:
        if indices is None:
            indices = np.arange(int(video_meta(str(path))["num_frames"]))
        return read_frames(str(path), [int(i) for i in indices])
    return _pyav_read(path, indices)


def _pyav_read(path: str | Path, indices) -> np.ndarray:
    import av

    wanted = None if indices is None else np.asarray(indices, dtype=np.int64)
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        last = None if wanted is None else int(wanted.max())
        for i, frame in enumerate(container.decode(stream)):
            frames.append(frame.to_ndarray(format="rgb24"))
            if last is not None and i >= last:
                break
    if not frames:
        raise ValueError(f"no decodable video frames in {path}")
    if wanted is None:
        return np.stack(frames)
    # A clip shorter than its metadata says: repeat its last frame rather than fail on an off-by-one.
    return np.stack([frames[min(int(i), len(frames) - 1)] for i in wanted])


def write_mp4(frames: np.ndarray, path: str | Path, fps: float = 24.0, crf: int = 18) -> Path:
    """Write (T, H, W, 3) uint8 RGB as H.264 (yuv420p, even sizes padded by edge replication) with PyAV."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames, dtype=np.uint8)
    t, h, w, _ = frames.shape
    ph, pw = h % 2, w % 2  # yuv420p needs even sizes
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    from fractions import Fraction

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = w + pw, h + ph
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
