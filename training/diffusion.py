"""Rectified flow: the forward process, the training loss, and an Euler sampler with classifier-free guidance.

Convention (as SD3 / Open-Sora): x_t = (1 - t) * x_0 + t * noise, t in [0, 1], t = 1 is pure noise; the model
predicts the velocity v = noise - x_0, and sampling integrates dx/dt = v from t = 1 down to t = 0.

Timesteps for training are logit-normal (SD3: more weight on the middle of the path, where the task is hardest),
then shifted towards noise for larger inputs: a video with more tokens keeps more of its signal at the same t, so
it needs more noise to destroy the same information. shift = sqrt(tokens / base_tokens) (Open-Sora / SD3 rule);
the same shift bends the sampler's time grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch


@dataclass
class FlowConfig:
    logit_mean: float = 0.0
    logit_std: float = 1.0
    # Tokens at which shift = 1; inputs with more latent elements (per channel) get shifted towards noise.
    base_tokens: int = 4096
    shift: float | None = None  # fixed shift; None = resolution/length-aware sqrt(tokens / base_tokens)
    max_shift: float = 6.0

    def to_dict(self) -> dict:
        return asdict(self)


def time_shift(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Map t in [0, 1] to shift*t / (1 + (shift - 1)*t): same endpoints, more time spent near noise if shift > 1."""
    return shift * t / (1 + (shift - 1) * t)


class RectifiedFlow:
    """Rectified-flow training and sampling for a velocity model ``model(x, t, y, y_mask, cond_mask, drop)``."""

    def __init__(self, config: FlowConfig | None = None):
        self.config = config or FlowConfig()

    def shift_for(self, latent_shape: tuple[int, ...]) -> float:
        """Timestep shift for a (C, T, H, W) latent: fixed if configured, else sqrt(T*H*W / base_tokens)."""
        if self.config.shift is not None:
            return float(self.config.shift)
        tokens = math.prod(latent_shape[-3:])
        return float(min(max(math.sqrt(tokens / self.config.base_tokens), 1.0), self.config.max_shift))

    def sample_t(self, batch: int, latent_shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """(B,) logit-normal timesteps, shifted for this latent size."""
        u = torch.randn(batch, generator=generator) * self.config.logit_std + self.config.logit_mean
        return time_shift(torch.sigmoid(u), self.shift_for(latent_shape))

    @staticmethod
    def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, cond_mask: torch.Tensor | None):
        """x_t for a (B, C, T, H, W) batch; frames with cond_mask = 1 stay clean (they are the given context)."""
        tb = t.view(-1, 1, 1, 1, 1).to(x0.dtype)
        xt = (1 - tb) * x0 + tb * noise
        if cond_mask is not None:
            keep = cond_mask.to(x0.dtype)[:, None, :, None, None]
            xt = keep * x0 + (1 - keep) * xt
        return xt

    def loss(
        self,
        model: Callable[..., torch.Tensor],
        x0: torch.Tensor,
        y: torch.Tensor,
        y_mask: torch.Tensor,
        generator: torch.Generator,
        cond_mask: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean-squared velocity error, averaged per sample over the frames that are NOT given clean, then over
        the batch. Returns (loss, per_sample_loss). Noise and t come from ``generator`` (on CPU, so a run is
        reproducible on any device) unless passed in."""
        b = x0.shape[0]
        if t is None:
            t = self.sample_t(b, tuple(x0.shape[1:]), generator)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32)
        t, noise = t.to(x0.device), noise.to(x0.device, x0.dtype)
        xt = self.interpolate(x0, noise, t, cond_mask)
        target = noise - x0
        pred = model(xt, t, y, y_mask, cond_mask, drop)
        err = (pred.float() - target.float()) ** 2  # (B, C, T, H, W)
        if cond_mask is None:
            per_sample = err.mean(dim=(1, 2, 3, 4))
        else:
            w = (1 - cond_mask.float())[:, None, :, None, None].expand_as(err)  # 1 on frames that carry loss
            per_sample = (err * w).sum(dim=(1, 2, 3, 4)) / w.sum(dim=(1, 2, 3, 4)).clamp(min=1.0)
        return per_sample.mean(), per_sample.detach()

    def timesteps(self, steps: int, latent_shape: tuple[int, ...]) -> torch.Tensor:
        """steps+1 times from 1 to 0 on the shifted grid the model was trained with."""
        return time_shift(torch.linspace(1.0, 0.0, steps + 1), self.shift_for(latent_shape))

    @torch.no_grad()
    def sample(
        self,
        model: Callable[..., torch.Tensor],
        noise: torch.Tensor,
        y: torch.Tensor,
        y_mask: torch.Tensor,
        steps: int = 30,
        cfg: float = 4.0,
        cond_latents: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Euler integration from noise (t=1) to data (t=0) with classifier-free guidance.

        v = v_uncond + cfg * (v_cond - v_uncond), the unconditional pass using the learned null caption.
        cfg = 1 is plain conditional sampling, cfg = 0 is unconditional. Conditioning frames (cond_mask = 1)
        are reset to ``cond_latents`` before every step, exactly as they were clean in training.
        """
        b = noise.shape[0]
        x = noise.clone()
        ts = self.timesteps(steps, tuple(noise.shape[1:])).to(noise.device)
        keep = None
        if cond_mask is not None and cond_latents is not None:
            keep = cond_mask.to(x.dtype)[:, None, :, None, None]
        for i in range(steps):
            if keep is not None:
                x = keep * cond_latents + (1 - keep) * x
            t = ts[i].expand(b)
            if cfg == 1.0:
                v = model(x, t, y, y_mask, cond_mask, None)
            else:
                drop = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(x.device)
                cm = None if cond_mask is None else torch.cat([cond_mask, cond_mask])
                v2 = model(
                    torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, y]), torch.cat([y_mask, y_mask]), cm, drop
                )
                v_cond, v_uncond = v2.chunk(2)
                v = v_uncond + cfg * (v_cond - v_uncond)
            x = x + (ts[i + 1] - ts[i]) * v
        if keep is not None:
            x = keep * cond_latents + (1 - keep) * x
        return x
