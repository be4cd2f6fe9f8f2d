"""Latent codecs: pixels <-> normalized latents (C, t, h, w) that the DiT is trained on.

One spec string selects a codec, the same in prepare, training and sampling (the manifest records it):

- ``pixel``: identity on [-1, 1] pixels; for tiny runs and tests.
- ``diffusers:<hf_id_or_dir>[#subfolder]``: a pretrained diffusers VAE. ``AutoencoderKL`` (an image VAE) is
  applied frame by frame; a true video VAE (``AutoencoderKLWan``, ``AutoencoderKLCogVideoX``,
  ``AutoencoderKLHunyuanVideo``) compresses time too (causal: 1 + 4k frames -> 1 + k latent frames).
- ``spacetime:<dir>``: the small 3D-conv autoencoder trained by ``training.autoencoder.train_vae`` (4x8x8).

Latents are normalized the way each model's pipelines do it (scaling/shift factors or per-channel
mean/std) so the DiT sees roughly unit-variance inputs whatever the codec.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch


class Codec(Protocol):
    spec: str
    latent_channels: int
    temporal_factor: int
    spatial_factor: int

    def fit_frames(self, n: int) -> int: ...
    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]: ...
    def encode(self, frames: np.ndarray) -> torch.Tensor: ...
    def decode(self, latents: torch.Tensor) -> np.ndarray: ...
    def describe(self) -> dict: ...


def to_unit(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32 in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)
    return x.permute(3, 0, 1, 2).contiguous()


def from_unit(x: torch.Tensor) -> np.ndarray:
    """(B, 3, T, H, W) float in [-1, 1] -> (B, T, H, W, 3) uint8."""
    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 4, 1).cpu().numpy()


class PixelCodec:
    """Identity codec: latents are the RGB pixels scaled to [-1, 1]. No compression, no weights."""

    spec = "pixel"
    latent_channels = 3
    temporal_factor = 1
    spatial_factor = 1

    def fit_frames(self, n: int) -> int:
        return n

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (3, frames, height, width)

    def encode(self, frames: np.ndarray) -> torch.Tensor:
        return to_unit(frames)

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        return from_unit(latents)

    def describe(self) -> dict:
        return {"spec": self.spec, "latent_channels": 3, "temporal_factor": 1, "spatial_factor": 1}


class DiffusersVAECodec:
    """A pretrained diffusers autoencoder loaded by Hugging Face id or local directory.

    ``AutoencoderKL`` runs per frame (images and videos alike); video VAEs get the whole clip. Encoding uses the
    posterior mode (deterministic, so prepared shards are reproducible).
    """

    VIDEO_CLASSES = ("AutoencoderKLWan", "AutoencoderKLCogVideoX", "AutoencoderKLHunyuanVideo")

    def __init__(self, spec: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
        import diffusers

        self.spec = spec
        path, _, subfolder = spec.split(":", 1)[1].partition("#")
        kwargs = {"subfolder": subfolder} if subfolder else {}
        try:
            vae = diffusers.AutoModel.from_pretrained(path, torch_dtype=dtype, **kwargs)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(
                f"could not load the diffusers VAE {path!r}{' (subfolder ' + subfolder + ')' if subfolder else ''}: "
                f"{e}. Pass a local directory saved with save_pretrained(), or download the model into the "
                "Hugging Face cache first (HF_HUB_OFFLINE=1 blocks downloads)."
            ) from e
        self.vae = vae.to(device).eval().requires_grad_(False)
        self.device, self.dtype = device, dtype
        cfg = self.vae.config
        self.kind = type(self.vae).__name__
        self.video = self.kind in self.VIDEO_CLASSES
        if not self.video and self.kind != "AutoencoderKL":
            raise ValueError(f"{path!r} is a {self.kind}; supported: AutoencoderKL, {', '.join(self.VIDEO_CLASSES)}")
        self.latent_channels = int(cfg.get("z_dim") or cfg.get("latent_channels"))
        if self.kind == "AutoencoderKLWan":
            self.temporal_factor = int(cfg.get("scale_factor_temporal") or 2 ** sum(cfg["temperal_downsample"]))
            self.spatial_factor = int(cfg.get("scale_factor_spatial") or 2 ** len(cfg["temperal_downsample"]))
        elif self.video:
            self.temporal_factor = int(cfg.get("temporal_compression_ratio", 4))
            self.spatial_factor = int(
                cfg.get("spatial_compression_ratio") or 2 ** (len(cfg["block_out_channels"]) - 1)
            )
        else:
            self.temporal_factor = 1
            self.spatial_factor = 2 ** (len(cfg["block_out_channels"]) - 1)
        mean, std = cfg.get("latents_mean"), cfg.get("latents_std")
        if mean is not None and std is not None and self.kind == "AutoencoderKLWan":
            self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
            self.scale = 1.0 / torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
        else:
            self.mean = torch.tensor(float(cfg.get("shift_factor") or 0.0))
            self.scale = torch.tensor(float(cfg.get("scaling_factor") or 1.0))

    def fit_frames(self, n: int) -> int:
        tf = self.temporal_factor
        return n if tf == 1 else 1 + tf * ((n - 1) // tf)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        t = frames if self.temporal_factor == 1 else 1 + (frames - 1) // self.temporal_factor
        return (self.latent_channels, t, height // self.spatial_factor, width // self.spatial_factor)

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        x = to_unit(frames).to(self.device, self.dtype)  # (3, T, H, W)
        if self.video:
            z = self.vae.encode(x.unsqueeze(0)).latent_dist.mode()[0]  # (C, t, h, w)
        else:
            z = self.vae.encode(x.permute(1, 0, 2, 3)).latent_dist.mode().permute(1, 0, 2, 3)  # (C, T, h, w)
        return (z.float().cpu() - self.mean) * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        z = latents.float().cpu() / self.scale + self.mean  # (B, C, t, h, w)
        z = z.to(self.device, self.dtype)
        if self.video:
            x = self.vae.decode(z).sample  # (B, 3, T, H, W)
        else:
            b, c, t, h, w = z.shape
            x = self.vae.decode(z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)).sample  # (B*T, 3, H, W)
            x = x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)
        return from_unit(x)

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "class": self.kind,
            "latent_channels": self.latent_channels,
            "temporal_factor": self.temporal_factor,
            "spatial_factor": self.spatial_factor,
        }


class SpacetimeCodec:
    """The small 3D-conv autoencoder of training/autoencoder.py (4x temporal, 8x spatial), loaded from a dir.

    Non-causal: clips are encoded in groups of 4 frames; an image (1 frame) is repeated to 4 frames and decoded
    back to 1, so images and videos share the codec.
    """

    def __init__(self, spec: str, device: str = "cpu"):
        from training.autoencoder import load_autoencoder

        self.spec = spec
        self.model, self.stats = load_autoencoder(spec.split(":", 1)[1])
        self.model = self.model.to(device).eval().requires_grad_(False)
        self.device = device
        self.latent_channels = self.model.config.latent_channels
        self.temporal_factor = self.model.config.temporal_factor
        self.spatial_factor = self.model.config.spatial_factor

    def fit_frames(self, n: int) -> int:
        return 1 if n < self.temporal_factor else self.temporal_factor * (n // self.temporal_factor)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        t = max(1, frames // self.temporal_factor)
        return (self.latent_channels, t, height // self.spatial_factor, width // self.spatial_factor)

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        if len(frames) == 1:
            frames = np.repeat(frames, self.temporal_factor, axis=0)
        z = self.model.encode(to_unit(frames).unsqueeze(0).to(self.device))[0].cpu()  # (C, t, h, w)
        return (z - self.stats["mean"]) / self.stats["std"]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        z = latents.float() * self.stats["std"] + self.stats["mean"]
        x = self.model.decode(z.to(self.device))  # (B, 3, T, H, W)
        if latents.shape[2] == 1:
            x = x[:, :, :1]
        return from_unit(x)

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "class": "SpacetimeAutoencoder",
            "latent_channels": self.latent_channels,
            "temporal_factor": self.temporal_factor,
            "spatial_factor": self.spatial_factor,
        }


def load_codec(spec: str, device: str = "cpu") -> Codec:
    """Build a codec from its spec: ``pixel``, ``diffusers:<id_or_dir>[#subfolder]`` or ``spacetime:<dir>``."""
    if spec == "pixel":
        return PixelCodec()
    if spec.startswith("diffusers:"):
        return DiffusersVAECodec(spec, device=device)
    if spec.startswith("spacetime:"):
        return SpacetimeCodec(spec, device=device)
    if os.path.isdir(spec) and (Path(spec) / "autoencoder.json").is_file():
        return SpacetimeCodec("spacetime:" + spec, device=device)
    raise ValueError(f"unknown codec {spec!r}; use pixel, diffusers:<hf_id_or_dir>[#subfolder] or spacetime:<dir>")
