"""Latent codecs through the production loading code: pixel, tiny random diffusers VAEs (image AutoencoderKL and
video AutoencoderKLWan) saved to a dir, and the spacetime autoencoder trained on real clips."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch

from training.codecs import PixelCodec, load_codec
from training.demo import make_demo_clips
from training.video import read_clip_frames


@pytest.fixture(scope="module")
def frames(bikes):
    clip = read_clip_frames(bikes, np.arange(40, 49))  # 9 real frames
    from training.buckets import resize_crop

    return resize_crop(clip, 32, 32)


def test_pixel_codec_round_trips_real_frames(frames):
    codec = load_codec("pixel")
    assert isinstance(codec, PixelCodec)
    z = codec.encode(frames)
    assert z.shape == (3, 9, 32, 32) and -1 <= z.min() and z.max() <= 1
    assert np.array_equal(codec.decode(z[None])[0], frames)


def test_tiny_random_image_vae_runs_per_frame(tmp_path, frames):
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(  # tiny, random weights: tests the loading/encoding path, not quality
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4, sample_size=32,
        scaling_factor=0.5,
    )  # fmt: skip
    vae.save_pretrained(tmp_path / "tiny-random-kl")
    codec = load_codec(f"diffusers:{tmp_path / 'tiny-random-kl'}")
    assert codec.describe()["class"] == "AutoencoderKL" and codec.spatial_factor == 2 and codec.temporal_factor == 1
    z = codec.encode(frames[:3])
    assert z.shape == codec.latent_shape(3, 32, 32) == (4, 3, 16, 16)
    assert torch.equal(z, codec.encode(frames[:3]))  # posterior mode: prepared shards are reproducible
    # per-frame: frame 1 encoded alone equals frame 1 of the clip encoding; scaling factor applied
    torch.testing.assert_close(codec.encode(frames[1:2])[:, 0], z[:, 1], rtol=1e-4, atol=1e-4)
    raw = vae.encode(torch.from_numpy(frames[:1]).permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mode()
    torch.testing.assert_close(z[:, 0], raw[0].detach() * 0.5, rtol=1e-4, atol=1e-4)
    assert codec.decode(z[None]).shape == (1, 3, 32, 32, 3)


def test_tiny_random_video_vae_compresses_time(tmp_path, frames):
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLWan(  # tiny, random weights
        base_dim=8, z_dim=4, dim_mult=[1, 1, 2, 2], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.5] * 4, latents_std=[2.0] * 4,
    )  # fmt: skip
    vae.save_pretrained(tmp_path / "tiny-random-wan")
    codec = load_codec(f"diffusers:{tmp_path / 'tiny-random-wan'}")
    assert (codec.temporal_factor, codec.spatial_factor) == (4, 8)
    assert [codec.fit_frames(n) for n in (1, 4, 5, 8, 9, 16)] == [1, 1, 5, 5, 9, 13]
    z = codec.encode(frames)  # 9 frames -> 1 + 2 latent frames
    assert z.shape == codec.latent_shape(9, 32, 32) == (4, 3, 4, 4)
    assert codec.encode(frames[:1]).shape == (4, 1, 4, 4)  # an image is one latent frame
    assert codec.decode(z[None]).shape == (1, 9, 32, 32, 3)


def test_missing_vae_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="could not load the diffusers VAE"):
        load_codec(f"diffusers:{tmp_path / 'nope'}")
    with pytest.raises(FileNotFoundError, match="train-vae"):
        load_codec(f"spacetime:{tmp_path / 'nope'}")
    with pytest.raises(ValueError, match="unknown codec"):
        load_codec("jpeg")


def test_spacetime_autoencoder_learns_real_clips(tmp_path):
    from training.autoencoder import train_vae

    rows = make_demo_clips(tmp_path, names=["bikes_s1", "bikes_s2"])
    kw = dict(batch_size=2, frames=8, size=32, latent_channels=4, base_channels=8, log_every=0)
    before = train_vae(rows, tmp_path, tmp_path / "ae0", steps=0, **kw)
    after = train_vae(rows, tmp_path, tmp_path / "ae", steps=25, lr=3e-3, **kw)
    assert after["psnr"] > before["psnr"] + 3, (before, after)
    codec = load_codec(f"spacetime:{tmp_path / 'ae'}")
    assert (codec.temporal_factor, codec.spatial_factor) == (4, 8)
    clip = read_clip_frames(tmp_path / rows[0]["clip_path"], np.arange(8))
    from training.buckets import resize_crop

    clip = resize_crop(clip, 32, 32)
    z = codec.encode(clip)
    assert z.shape == codec.latent_shape(8, 32, 32) == (4, 2, 4, 4)
    assert abs(float(z.std()) - 1) < 0.5  # normalized by the measured latent statistics
    assert codec.decode(z[None]).shape == (1, 8, 32, 32, 3)
    assert codec.encode(clip[:1]).shape == (4, 1, 4, 4) and codec.decode(codec.encode(clip[:1])[None]).shape[1] == 1
