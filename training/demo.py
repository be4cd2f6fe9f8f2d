"""Demo training clips cut from the real sample footage, with hand-written captions of what each shot shows.

Used by tests, the overfit acceptance run and bench/train_bench.py, so they all train on real video. The rows
mimic the ``kept`` view of the curated store (clip_id, clip_path relative to the output dir, width, height,
num_frames, fps, captions), so they go through the same prepare code as a real selection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.footage import sample_video
from training.buckets import resize_crop
from training.video import read_clip_frames, write_mp4

# (clip_id, video, first frame, end frame (exclusive), dense caption, short caption)
DEMO_CLIPS = [
    ("bikes_s0", "bikes", 0, 30, "a white road marking on grey asphalt seen from above", "road marking"),
    ("bikes_s1", "bikes", 30, 76, "cars queue bumper to bumper in a traffic jam on a city street", "traffic jam"),
    ("bikes_s2", "bikes", 76, 137, "a cyclist in a helmet rides between cars stuck in traffic", "cyclist in traffic"),
    ("bikes_s3", "bikes", 137, 187, "a bicycle locked to a metal fence beside parked cars", "bike at a fence"),
    ("bikes_s4", "bikes", 187, 242, "a bicycle leans against a house wall on a cobblestone street", "bike by a wall"),
    (
        "bunny",
        "bigbuckbunny",
        0,
        132,
        "a big grey rabbit steps out of its burrow on a green grassy hill",
        "cartoon rabbit",
    ),
    (
        "carphone",
        "carphone",
        0,
        120,
        "a man in a suit and red bow tie talks in the back seat of a car",
        "man in a car",
    ),
]


def make_demo_clips(dest: str | Path, max_width: int = 160, names: list[str] | None = None) -> list[dict]:
    """Cut the demo shots into H.264 clips under ``dest/clips`` (downscaled to ``max_width``) and return rows
    shaped like the store's ``kept`` view. Existing clip files are reused."""
    dest = Path(dest)
    rows = []
    cache: dict[str, np.ndarray] = {}
    for clip_id, video, start, end, dense, short in DEMO_CLIPS:
        if names is not None and clip_id not in names:
            continue
        rel = f"clips/{clip_id}.mp4"
        frames = None
        if video not in cache:
            cache[video] = read_clip_frames(sample_video(video))
        src = cache[video]
        frames = src[start:end]
        h, w = frames.shape[1:3]
        if w > max_width:
            nh = int(round(h * max_width / w / 2)) * 2
            frames = resize_crop(frames, nh, max_width)
        if not (dest / rel).is_file():
            write_mp4(frames, dest / rel, fps=25.0)
        fps = 25.0 if video != "carphone" else 30000 / 1001
        n = len(frames)
        rows.append(
            {
                "clip_id": clip_id,
                "video_id": video,
                "clip_path": rel,
                "start_s": start / fps,
                "end_s": end / fps,
                "duration_s": n / fps,
                "num_frames": n,
                "fps": fps,
                "width": int(frames.shape[2]),
                "height": int(frames.shape[1]),
                "drop_reason": None,
                "original_caption": None,
                "caption_dense": dense,
                "caption_short": short,
            }
        )
    return rows


def demo_dataset(
    root: str | Path,
    names: list[str] | None = None,
    buckets: dict | None = None,
    caption_mix: dict[str, float] | None = None,
    text_encoder: str = "minilm",
    codec: str = "pixel",
) -> Path:
    """Demo clips under ``root`` encoded in-process (no Ray) into ``root/prep-<key>``; reused when present."""
    import hashlib
    import json

    from training.data import encode_clips_local

    root = Path(root)
    kw = {"buckets": buckets, "caption_mix": caption_mix or {"dense": 1.0}, "text_encoder": text_encoder}
    kw["codec"] = codec
    key = hashlib.sha1(json.dumps([names, kw], sort_keys=True).encode()).hexdigest()[:10]
    dest = root / f"prep-{key}"
    if not (dest / "manifest.json").is_file():
        rows = make_demo_clips(root, names=names)
        encode_clips_local(rows, root, dest, **kw)
    return dest


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 videos of the same shape."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def overfit_report(
    checkpoint: str | Path, shards: str | Path, steps: int = 20, cfg: float = 4.0, seed: int = 0
) -> dict:
    """How well a model trained on ``shards`` reproduces each training clip from its caption.

    For every clip: PSNR of the sample for its own caption and mean PSNR of the samples for every other clip's
    caption (the wrong-caption baseline), at ``cfg`` and at cfg=1, and of the unconditional sample (cfg=0); all
    against the training clip (decoded from its latent), all from the same noise seed.
    """
    from training.codecs import load_codec
    from training.data import ShardDataset
    from training.sample import load_pipeline, sample

    ds = ShardDataset(shards)
    codec = load_codec(ds.manifest["codec"]["spec"])
    clips = {}
    for i in range(len(ds)):
        s = ds[i]
        clips[s.clip_id] = (
            s.caption,
            codec.decode(__import__("torch").from_numpy(s.latent.astype(np.float32))[None])[0],
        )
    f, h, w = clips[next(iter(clips))][1].shape[:3]
    load_pipeline.cache_clear()
    out: dict[str, dict] = {}
    samples = {}
    for cid, (caption, _) in clips.items():
        samples[cid] = {
            "cfg": sample(checkpoint, caption, f, h, w, steps=steps, cfg=cfg, seed=seed),
            "cfg1": sample(checkpoint, caption, f, h, w, steps=steps, cfg=1.0, seed=seed),
            "uncond": sample(checkpoint, caption, f, h, w, steps=steps, cfg=0.0, seed=seed),
        }
    for cid, (_, ref) in clips.items():
        wrong = [psnr(samples[o]["cfg"], ref) for o in clips if o != cid]
        wrong1 = [psnr(samples[o]["cfg1"], ref) for o in clips if o != cid]
        out[cid] = {
            "own_caption": psnr(samples[cid]["cfg"], ref),
            "wrong_caption": float(np.mean(wrong)) if wrong else float("nan"),
            "own_caption_cfg1": psnr(samples[cid]["cfg1"], ref),
            "wrong_caption_cfg1": float(np.mean(wrong1)) if wrong1 else float("nan"),
            "unconditional": psnr(samples[cid]["uncond"], ref),
        }
    keys = next(iter(out.values())).keys()
    out["mean"] = {k: float(np.mean([v[k] for c, v in out.items() if c != "mean"])) for k in keys}
    return out
