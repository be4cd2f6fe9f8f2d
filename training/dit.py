"""A Sora-style spacetime DiT, laid out in the order of facebookresearch/DiT's models.py.

Differences from image DiT, each for a reason:
- 3D patches (pt, ph, pw) over (T, H, W) latents, so one model trains on images (T=1) and videos.
- Text conditioning: token embeddings go through a caption embedder and are read by a cross-attention
  in every block (PixArt-alpha style); their masked mean is also added to the timestep embedding so the
  adaLN path sees the caption too. A learned null embedding replaces dropped captions (classifier-free guidance).
- Positions are 3D rotary embeddings computed for whatever grid arrives, so every bucket shape works
  without interpolating a learned table.
- One extra input channel marks clean conditioning frames (image-to-video, video extension).
- Full spacetime self-attention through torch's scaled_dot_product_attention.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


#################################################################################
#               Embedding Layers for Patches, Timesteps and Captions            #
#################################################################################


class PatchEmbed3D(nn.Module):
    """(B, C, T, H, W) latents -> (B, N, D) tokens with non-overlapping (pt, ph, pw) patches.

    Inputs whose T/H/W are not multiples of the patch are padded by edge replication (an image, T=1, under
    pt=2 becomes two identical frames); ``unpatchify`` crops the padding off again.
    """

    def __init__(self, patch: tuple[int, int, int], in_channels: int, hidden: int):
        super().__init__()
        self.patch = tuple(patch)
        self.proj = nn.Conv3d(in_channels, hidden, kernel_size=self.patch, stride=self.patch)

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        pt, ph, pw = self.patch
        _, _, t, h, w = x.shape
        pad = (0, (-w) % pw, 0, (-h) % ph, 0, (-t) % pt)
        return F.pad(x, pad, mode="replicate") if any(pad) else x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x = self.proj(self.padded(x))  # (B, D, T', H', W')
        grid = tuple(x.shape[2:])
        return x.flatten(2).transpose(1, 2), grid  # (B, N, D), N = T'*H'*W'


class TimestepEmbedder(nn.Module):
    """Embeds scalar timesteps into vector representations (as in DiT)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000) -> torch.Tensor:
        """Sinusoidal embeddings of (possibly fractional) timesteps: (B,) -> (B, dim)."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        return embedding

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t_freq = self.timestep_embedding(t, self.frequency_embedding_size)  # (B, 256)
        return self.mlp(t_freq.to(self.mlp[0].weight.dtype))  # (B, D)


class CaptionEmbedder(nn.Module):
    """Projects text-encoder token embeddings to the model width; owns the learned null caption for CFG.

    A dropped caption (``drop[b]``) becomes a single learned null token, so "unconditional" is a real input
    the model learns, exactly like DiT's extra class-embedding row.
    """

    def __init__(self, text_dim: int, hidden_size: int):
        super().__init__()
        self.y_proj = nn.Sequential(
            nn.Linear(text_dim, hidden_size, bias=True),
            nn.GELU(approximate="tanh"),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )
        self.null_embedding = nn.Parameter(torch.randn(1, text_dim) / text_dim**0.5)

    def token_drop(
        self, y: torch.Tensor, mask: torch.Tensor, drop: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Always route through the null embedding (even when nothing is dropped) so every parameter takes part in
        # every step: DDP only all-reduces gradients of parameters that were used.
        if drop is None:
            drop = torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
        d = drop.view(-1, 1, 1)
        y = torch.where(d, self.null_embedding.to(y.dtype).expand_as(y), y)  # (B, L, Dt)
        null_mask = torch.zeros_like(mask)
        null_mask[:, 0] = True
        mask = torch.where(drop.view(-1, 1), null_mask, mask)  # (B, L)
        return y, mask

    def forward(
        self, y: torch.Tensor, mask: torch.Tensor, drop: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y, mask = self.token_drop(y, mask, drop)  # (B, L, Dt), (B, L)
        y = self.y_proj(y)  # (B, L, D)
        m = mask.unsqueeze(-1).to(y.dtype)  # (B, L, 1)
        pooled = (y * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, D)
        return y, mask, pooled


#################################################################################
#                                 Core DiT Model                                #
#################################################################################


class Mlp(nn.Module):
    def __init__(self, hidden: int, mlp_hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp_hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(mlp_hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SelfAttention(nn.Module):
    """Full spacetime self-attention with 3D RoPE on q/k and optional qk RMSNorm (stabilises larger models)."""

    def __init__(self, hidden: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=True)
        self.q_norm = nn.RMSNorm(hidden // heads, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(hidden // heads, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, h, N, hd)
        q, k, v = qkv.unbind(0)  # (B, h, N, hd) each
        q, k = apply_rope(self.q_norm(q), rope), apply_rope(self.k_norm(k), rope)  # (B, h, N, hd)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, hd)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))  # (B, N, D)


class CrossAttention(nn.Module):
    """Video tokens (queries) read text tokens (keys/values); padded text tokens are masked out."""

    def __init__(self, hidden: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(hidden, hidden, bias=True)
        self.kv = nn.Linear(hidden, 2 * hidden, bias=True)
        self.q_norm = nn.RMSNorm(hidden // heads, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(hidden // heads, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        hd = d // self.heads
        q = self.q_norm(self.q(x).view(b, n, self.heads, hd).transpose(1, 2))  # (B, h, N, hd)
        kv = self.kv(y).view(b, y.shape[1], 2, self.heads, hd).permute(2, 0, 3, 1, 4)  # (2, B, h, L, hd)
        k, v = self.k_norm(kv[0]), kv[1]  # (B, h, L, hd)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # (B, h, N, hd)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))  # (B, N, D)


class DiTBlock(nn.Module):
    """A DiT block with adaLN-Zero conditioning and a cross-attention to the caption tokens."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden_size, num_heads, qk_norm)
        self.norm_cross = nn.LayerNorm(hidden_size, elementwise_affine=True, eps=1e-6)
        self.cross_attn = CrossAttention(hidden_size, num_heads, qk_norm)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        y: torch.Tensor,
        mask: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope)  # (B, N, D)
        x = x + self.cross_attn(self.norm_cross(x), y, mask)  # (B, N, D)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))  # (B, N, D)
        return x


class FinalLayer(nn.Module):
    """The final layer of DiT: adaLN-modulated norm, then a linear to one patch of output channels per token."""

    def __init__(self, hidden_size: int, patch: tuple[int, int, int], out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, math.prod(patch) * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        x = modulate(self.norm_final(x), shift, scale)  # (B, N, D)
        return self.linear(x)  # (B, N, pt*ph*pw*C)


class DiT(nn.Module):
    """Diffusion transformer over (B, C, T, H, W) latents, conditioned on a timestep and caption tokens.

    ``forward`` predicts the rectified-flow velocity for every latent element (training/diffusion.py).
    """

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = config
        self.in_channels = config.in_channels
        self.out_channels = config.in_channels
        self.patch = tuple(config.patch)
        self.num_heads = config.num_heads
        self.gradient_checkpointing = False

        # +1 input channel: the conditioning mask (1 where a latent frame is given clean).
        self.x_embedder = PatchEmbed3D(self.patch, config.in_channels + 1, config.hidden_size)
        self.t_embedder = TimestepEmbedder(config.hidden_size)
        self.y_embedder = CaptionEmbedder(config.text_dim, config.hidden_size)
        self.blocks = nn.ModuleList(
            [
                DiTBlock(config.hidden_size, config.num_heads, config.mlp_ratio, config.qk_norm)
                for _ in range(config.depth)
            ]
        )
        self.final_layer = FinalLayer(config.hidden_size, self.patch, self.out_channels)
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.initialize_weights()

    def initialize_weights(self) -> None:
        # Initialize transformer layers:
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0)

        self.apply(_basic_init)

        # Initialize patch_embed like nn.Linear (instead of nn.Conv3d):
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))
        nn.init.constant_(self.x_embedder.proj.bias, 0)

        # Initialize caption and timestep embedding MLPs:
        nn.init.normal_(self.y_embedder.y_proj[0].weight, std=0.02)
        nn.init.normal_(self.y_embedder.y_proj[2].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)

        for block in self.blocks:
            # Zero-out adaLN modulation layers: every gate starts at 0, so each block starts as the identity
            # on the self-attention and MLP paths (the "-Zero" in adaLN-Zero).
            nn.init.constant_(block.adaLN_modulation[-1].weight, 0)
            nn.init.constant_(block.adaLN_modulation[-1].bias, 0)
            # Zero-out the cross-attention output projection: that residual has no gate, so this is what
            # keeps the block an identity at init (as PixArt-alpha does).
            nn.init.constant_(block.cross_attn.proj.weight, 0)
            nn.init.constant_(block.cross_attn.proj.bias, 0)

        # Zero-out output layers: the model predicts velocity 0 at init, a stable start for flow matching.
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].weight, 0)
        nn.init.constant_(self.final_layer.adaLN_modulation[-1].bias, 0)
        nn.init.constant_(self.final_layer.linear.weight, 0)
        nn.init.constant_(self.final_layer.linear.bias, 0)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int], size: tuple[int, int, int]) -> torch.Tensor:
        """(B, N, pt*ph*pw*C) tokens -> (B, C, T, H, W), cropping the patch padding back to ``size``."""
        c = self.out_channels
        pt, ph, pw = self.patch
        gt, gh, gw = grid
        b = x.shape[0]
        x = x.reshape(b, gt, gh, gw, pt, ph, pw, c)
        x = torch.einsum("nthwopqc->nctohpwq", x)
        x = x.reshape(b, c, gt * pt, gh * ph, gw * pw)
        t, h, w = size
        return x[:, :, :t, :h, :w]

    def rope(self, grid: tuple[int, int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (grid, str(device))
        if key not in self._rope_cache:
            head_dim = self.config.hidden_size // self.num_heads
            self._rope_cache[key] = rope_3d(grid, head_dim, self.config.rope_theta, device)
        return self._rope_cache[key]

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        y: torch.Tensor,
        y_mask: torch.Tensor,
        cond_mask: torch.Tensor | None = None,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity for noisy latents.

        x: (B, C, T, H, W) noisy latents (clean on conditioning frames); t: (B,) in [0, 1];
        y: (B, L, Dt) caption token embeddings; y_mask: (B, L) bool; cond_mask: (B, T) 1 on clean frames;
        drop: (B,) bool, replace the caption by the learned null caption (CFG training / unconditional pass).
        """
        b, _, T, H, W = x.shape
        if cond_mask is None:
            cond_mask = torch.zeros(b, T, device=x.device, dtype=x.dtype)
        m = cond_mask.to(x.dtype)[:, None, :, None, None].expand(b, 1, T, H, W)  # (B, 1, T, H, W)
        x, grid = self.x_embedder(torch.cat([x, m], dim=1))  # (B, N, D)
        c = self.t_embedder(t * 1000.0)  # (B, D)
        y, y_mask, pooled = self.y_embedder(y, y_mask.bool(), drop)  # (B, L, D), (B, L), (B, D)
        c = c + pooled  # (B, D)
        rope = self.rope(grid, x.device)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(block, x, c, y, y_mask, rope, use_reentrant=False)  # (B, N, D)
            else:
                x = block(x, c, y, y_mask, rope)  # (B, N, D)
        x = self.final_layer(x, c)  # (B, N, pt*ph*pw*C)
        return self.unpatchify(x, grid, (T, H, W))  # (B, C, T, H, W)


#################################################################################
#                            3D Rotary Positional Embedding                     #
#################################################################################


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Channels of each head given to (t, h, w) rotations: even sizes, spatial axes equal, time gets the rest."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def rope_1d(positions: torch.Tensor, dim: int, theta: float) -> torch.Tensor:
    """Angles (N, dim/2) for integer positions (N,)."""
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim))
    return positions.double()[:, None] * freqs[None]


def rope_3d(
    grid: tuple[int, int, int], head_dim: int, theta: float = 10000.0, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (N, head_dim/2) for a (T', H', W') token grid, token order t-major as in PatchEmbed3D.

    Computed for whatever grid arrives, so any bucket shape (and an image, T'=1) works without a learned table.
    """
    gt, gh, gw = grid
    dt, dh, dw = rope_split(head_dim)
    tt, hh, ww = torch.meshgrid(
        torch.arange(gt, device=device),
        torch.arange(gh, device=device),
        torch.arange(gw, device=device),
        indexing="ij",
    )
    angles = torch.cat(
        [rope_1d(tt.flatten(), dt, theta), rope_1d(hh.flatten(), dh, theta), rope_1d(ww.flatten(), dw, theta)], dim=-1
    )  # (N, head_dim/2)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate consecutive channel pairs of (B, h, N, hd) by the (N, hd/2) angles."""
    cos, sin = rope
    xf = x.float().unflatten(-1, (-1, 2))  # (B, h, N, hd/2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)  # (B, h, N, hd/2, 2)
    return out.flatten(-2).to(x.dtype)  # (B, h, N, hd)


#################################################################################
#                                DiT Configs                                    #
#################################################################################


@dataclass
class DiTConfig:
    """Architecture of one DiT. ``in_channels`` and ``text_dim`` come from the codec and text encoder."""

    in_channels: int = 4
    text_dim: int = 384
    patch: tuple[int, int, int] = field(default=(1, 2, 2))
    hidden_size: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    qk_norm: bool = True
    rope_theta: float = 10000.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch"] = list(self.patch)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DiTConfig:
        d = dict(d)
        d["patch"] = tuple(d.get("patch", (1, 2, 2)))
        return cls(**d)


# Named presets (width, depth, heads) following DiT-S/B/L/XL; "nano" and "tiny" are for CPU tests and demos.
PRESETS: dict[str, dict] = {
    "nano": dict(hidden_size=64, depth=2, num_heads=2),
    "tiny": dict(hidden_size=128, depth=4, num_heads=4),
    "S": dict(hidden_size=384, depth=12, num_heads=6),
    "B": dict(hidden_size=768, depth=12, num_heads=12),
    "L": dict(hidden_size=1024, depth=24, num_heads=16),
    "XL": dict(hidden_size=1152, depth=28, num_heads=16),
}


def dit_config(preset: str, **overrides) -> DiTConfig:
    """A DiTConfig from a named preset (nano, tiny, S, B, L, XL) with field overrides (in_channels, patch, ...)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown DiT preset {preset!r}; known: {sorted(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "patch" in overrides:
        overrides["patch"] = tuple(overrides["patch"])
    return replace(DiTConfig(**PRESETS[preset]), **overrides)


def DiT_models(preset: str, **overrides) -> DiT:  # noqa: N802 - mirrors DiT's DiT_models table
    return DiT(dit_config(preset, **overrides))
