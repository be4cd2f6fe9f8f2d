"""Video I/O for training: read chosen frames of a clip, write a playable H.264 mp4.

Reading goes through stages/frames.py (the project's decoder, with its decord/PyAV fallbacks), so training sees
the same frames, colours and aspect as curation did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_clip_frames(path: str | Path, indices: np.ndarray | list[int] | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames at ``indices`` (all frames if None) of the video at ``path``, through
    ``stages.frames.read_frames``: the same stream, frame numbering, colour and aspect as every other reader."""
    from stages.frames import read_frames, video_meta

    if indices is None:
        indices = np.arange(int(video_meta(str(path))["num_frames"]))
    return read_frames(str(path), [int(i) for i in indices])


def write_mp4(frames: np.ndarray, path: str | Path, fps: float = 24.0, crf: int = 18) -> Path:
    """Write (T, H, W, 3) uint8 RGB as H.264 (limited-range yuv420p, BT.709 tagged, even sizes padded by edge
    replication) with PyAV."""
    import av

    from stages.media import Colour, for_encoder, tag_encoder

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
        bt709 = Colour(range=1, matrix=1, primaries=1, transfer=1)
        tag_encoder(stream.codec_context, bt709)
        for frame in frames:
            rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in stream.encode(for_encoder(rgb, w + pw, h + ph, bt709)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
