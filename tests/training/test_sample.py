"""Sampling from a checkpoint: text-to-video to a playable mp4, image-to-video keeps the given first frame,
video extension continues a real clip, CFG changes the output."""

from __future__ import annotations

import av
import numpy as np
import pytest

from training.demo import demo_dataset
from training.sample import sample
from training.train import TrainConfig, train
from training.video import read_clip_frames


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "training-demo"
    shards = demo_dataset(root, names=["bikes_s0", "bikes_s1", "bikes_s2", "bikes_s3", "bikes_s4"])
    out = tmp_path_factory.mktemp("sample-run")
    train(TrainConfig(data=str(shards), out=str(out), model="nano", patch=[1, 4, 4], batch_size=4, max_steps=6,
                      lr=1e-3, ema_decay=0.5, ckpt_every=6, tensorboard=False, threads=1))  # fmt: skip
    return out, root


def test_text_to_video_writes_a_playable_mp4(run, tmp_path):
    out, _ = run
    video = sample(out, "a cyclist rides between cars", steps=4, cfg=3.0, seed=1, out=tmp_path / "s.mp4", upsample=2)
    assert video.shape == (8, 64, 64, 3) and video.dtype == np.uint8  # default shape: largest bucket, x2
    with av.open(str(tmp_path / "s.mp4")) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in c.decode(stream)) == 8
    again = sample(out, "a cyclist rides between cars", steps=4, cfg=3.0, seed=1, upsample=2)
    assert np.array_equal(video, again)  # seeded
    no_cfg = sample(out, "a cyclist rides between cars", steps=4, cfg=1.0, seed=1, upsample=2)
    assert not np.array_equal(video, no_cfg)


def test_image_to_video_keeps_the_first_frame(run, bikes):
    out, _ = run
    image = read_clip_frames(bikes, [100])[0]  # a real frame, 640x272
    video = sample(out, "a cyclist rides between cars", frames=8, height=32, width=32, steps=4, cfg=2.0, image=image)
    from training.buckets import resize_crop

    want = resize_crop(image[None], 32, 32)[0]
    assert np.abs(video[0].astype(int) - want.astype(int)).max() <= 1  # pixel codec: given frame stays clean
    assert np.abs(video[5].astype(int) - want.astype(int)).mean() > 2  # later frames are generated


def test_video_extension_starts_with_the_clip_end(run):
    out, root = run
    clip = root / "clips" / "bikes_s2.mp4"
    src = read_clip_frames(clip)
    video = sample(out, "a cyclist rides between cars", frames=8, height=32, width=32, steps=4, extend=clip)
    from training.buckets import resize_crop

    ctx = resize_crop(src[-4:], 32, 32)  # frames // 2 context frames from the end of the clip
    assert np.abs(video[:4].astype(int) - ctx.astype(int)).max() <= 1
    assert video.shape == (8, 32, 32, 3)


def test_cli_with_checkpoint_flag_and_prompt_upsampling_tiny_random_llm(run, tmp_path):
    """`clipforge sample --checkpoint RUN --upsample-prompt LLM`: the prompt goes through the captioner's rewriter
    (a tiny RANDOM chat LM built here, loaded from its directory like a user's model) before sampling."""
    import subprocess
    import sys

    from captioner.tiny_random import build_tiny_random_chat_lm

    out, _ = run
    llm = build_tiny_random_chat_lm(tmp_path / "tiny_random_chat_lm")
    video = tmp_path / "cli.mp4"
    r = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "sample", "--checkpoint", str(out), "--prompt", "a cyclist",
         "--upsample-prompt", str(llm), "--frames", "8", "--height", "32", "--width", "32", "--steps", "2",
         "--out", str(video)],
        capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "prompt upsampled:" in r.stdout
    with av.open(str(video)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8
