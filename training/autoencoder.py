"""A small spacetime autoencoder (3D convs, 4x temporal x 8x8 spatial compression) and ``train_vae`` to fit it
on curated clips. It is the codec to use when no pretrained video VAE is at hand: trained in CPU-minutes on
small clips, it cuts DiT tokens 256x against pixels.

Saved as a directory: autoencoder.json (config + latent statistics) and model.safetensors, loaded by the
``spacetime:<dir>`` codec (training/codecs.py).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class AutoencoderConfig:
    base_channels: int = 32
    latent_channels: int = 8
    # Per stage (time, space) stride; 3 stages -> 4x temporal, 8x spatial.
    strides: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (1, 2))

    @property
    def temporal_factor(self) -> int:
        return int(np.prod([s[0] for s in self.strides]))

    @property
    def spatial_factor(self) -> int:
        return int(np.prod([s[1] for s in self.strides]))


class ResBlock3D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class SpacetimeAutoencoder(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> (B, C, T/4, H/8, W/8) -> back. Plain (not variational): a small L2 penalty
    on the latents keeps their scale bounded, and the codec normalizes them with statistics measured after
    training."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        c = config.base_channels
        enc: list[nn.Module] = [nn.Conv3d(3, c, 3, padding=1)]
        for st, ss in config.strides:
            enc += [ResBlock3D(c), nn.Conv3d(c, c, kernel_size=(st, ss, ss), stride=(st, ss, ss))]
        enc += [ResBlock3D(c), nn.GroupNorm(8, c), nn.SiLU(), nn.Conv3d(c, config.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv3d(config.latent_channels, c, 3, padding=1), ResBlock3D(c)]
        for st, ss in reversed(config.strides):
            dec += [
                nn.Upsample(scale_factor=(st, ss, ss), mode="nearest"),
                nn.Conv3d(c, c, 3, padding=1),
                ResBlock3D(c),
            ]
        dec += [nn.GroupNorm(8, c), nn.SiLU(), nn.Conv3d(c, 3, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z


def save_autoencoder(model: SpacetimeAutoencoder, stats: dict, path: str | Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    cfg = asdict(model.config)
    (path / "autoencoder.json").write_text(json.dumps({"config": cfg, "stats": stats}, indent=2))
    return path


def load_autoencoder(path: str | Path) -> tuple[SpacetimeAutoencoder, dict]:
    """Model + latent stats ({'mean', 'std'} floats) from a dir written by ``train_vae``."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "autoencoder.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no trained spacetime autoencoder at {path} (need autoencoder.json + model.safetensors); "
            "train one with `clipforge train-vae` (training.autoencoder.train_vae)"
        )
    meta = json.loads((path / "autoencoder.json").read_text())
    cfg = meta["config"]
    model = SpacetimeAutoencoder(
        AutoencoderConfig(cfg["base_channels"], cfg["latent_channels"], tuple(map(tuple, cfg["strides"])))
    )
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model, meta["stats"]


def _clip_tensors(rows: list[dict], root: Path, frames: int, size: int) -> torch.Tensor:
    """Every clip's frames as consecutive windows of ``frames`` at size x size: (N, 3, frames, size, size)."""
    from training.buckets import resize_crop
    from training.codecs import to_unit
    from training.data import read_clip

    windows = []
    for row in rows:
        clip = read_clip(root, row["clip_path"], np.arange(int(row["num_frames"])))
        clip = resize_crop(clip, size, size)
        for s in range(0, len(clip) - frames + 1, frames):
            windows.append(to_unit(clip[s : s + frames]))
    if not windows:
        raise ValueError(f"no clip has {frames} frames to train the autoencoder on")
    return torch.stack(windows)


def train_vae(
    rows: list[dict],
    root: str | Path,
    dest: str | Path,
    *,
    steps: int = 2000,
    batch_size: int = 4,
    frames: int = 8,
    size: int = 64,
    lr: float = 2e-4,
    latent_channels: int = 8,
    base_channels: int = 32,
    latent_l2: float = 1e-4,
    seed: int = 0,
    log_every: int = 100,
) -> dict:
    """Fit the spacetime autoencoder on clips (rows with clip_path relative to ``root`` and num_frames).

    L1 + MSE reconstruction on random windows of the clips; saves to ``dest`` with the per-run latent mean/std
    the codec normalizes by. Returns {'psnr': reconstruction PSNR on the training windows, 'steps', 'seconds'}.
    """
    torch.manual_seed(seed)
    data = _clip_tensors(rows, Path(root), frames, size)
    cfg = AutoencoderConfig(base_channels=base_channels, latent_channels=latent_channels)
    if frames % cfg.temporal_factor or size % cfg.spatial_factor:
        raise ValueError(f"frames must be a multiple of {cfg.temporal_factor} and size of {cfg.spatial_factor}")
    model = SpacetimeAutoencoder(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        x = data[torch.randint(len(data), (batch_size,), generator=g)]
        rec, z = model(x)
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + latent_l2 * z.pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log_every and step % log_every == 0:
            print(f"train-vae step {step}/{steps} | loss {loss.item():.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        zs, mse = [], []
        for i in range(0, len(data), batch_size):
            rec, z = model(data[i : i + batch_size])
            zs.append(z)
            mse.append(((rec.clamp(-1, 1) - data[i : i + batch_size]) / 2).pow(2).mean(dim=(1, 2, 3, 4)))
        z = torch.cat(zs)
        psnr = float((-10 * torch.log10(torch.cat(mse).clamp(min=1e-10))).mean())
    stats = {"mean": float(z.mean()), "std": float(z.std().clamp(min=1e-6))}
    save_autoencoder(model, stats, dest)
    return {"psnr": psnr, "steps": steps, "seconds": time.perf_counter() - t0, "windows": len(data), **stats}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags for `clipforge train-vae OUT --where SQL --dest DIR`."""
    parser.add_argument("out", help="curated dataset dir (pipeline output, queried through pipeline.store)")
    parser.add_argument("--where", default="TRUE", help="SQL condition on the kept view")
    parser.add_argument("--dest", required=True, help="directory to save the autoencoder to")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--latent-channels", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace | list[str] | None = None) -> int:
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="clipforge train-vae")
        add_arguments(parser)
        args = parser.parse_args(args)
    from training.prepare import select_clips

    rows = select_clips(args.out, args.where)
    result = train_vae(
        rows, args.out, args.dest, steps=args.steps, batch_size=args.batch_size, frames=args.frames,
        size=args.size, lr=args.lr, latent_channels=args.latent_channels, seed=args.seed,
    )  # fmt: skip
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
