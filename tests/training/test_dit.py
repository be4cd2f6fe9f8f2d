"""The DiT: shapes for every bucket kind, adaLN-Zero start, caption masking, null caption, RoPE, checkpointing."""

from __future__ import annotations

import pytest
import torch

from training.dit import PRESETS, DiT, apply_rope, dit_config, rope_3d


def _model(patch=(1, 2, 2), **kw) -> DiT:
    torch.manual_seed(0)
    return DiT(dit_config("nano", in_channels=4, text_dim=16, patch=patch, **kw))


def _randomize_zero_inits(model: DiT) -> None:
    """Give the zero-initialised layers weights, so outputs depend on every path."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize(
    "shape,patch",
    [
        ((2, 4, 8, 16, 16), (1, 2, 2)),
        ((2, 4, 1, 16, 16), (2, 2, 2)),
        ((1, 4, 5, 10, 14), (2, 4, 4)),
        ((1, 4, 3, 8, 24), (1, 2, 2)),
    ],
)
def test_output_shape_matches_input_for_videos_images_and_odd_sizes(shape, patch):
    model = _model(patch)
    _randomize_zero_inits(model)
    x = torch.randn(shape)
    y, m = torch.randn(shape[0], 5, 16), torch.ones(shape[0], 5, dtype=torch.bool)
    out = model(x, torch.rand(shape[0]), y, m)
    assert out.shape == x.shape
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_adaln_zero_init_predicts_zero_and_blocks_are_identity():
    model = _model()
    x = torch.randn(2, 4, 4, 8, 8)
    y, m = torch.randn(2, 3, 16), torch.ones(2, 3, dtype=torch.bool)
    assert model(x, torch.rand(2), y, m).abs().max() == 0
    tokens = torch.randn(2, 64, model.config.hidden_size)
    c = torch.randn(2, model.config.hidden_size)
    rope = model.rope((4, 4, 4), tokens.device)
    for block in model.blocks:
        assert torch.equal(block(tokens, c, model.y_embedder.y_proj(y), m, rope), tokens)


def test_padded_caption_tokens_are_ignored_and_caption_matters():
    model = _model()
    _randomize_zero_inits(model)
    x, t = torch.randn(1, 4, 2, 8, 8), torch.tensor([0.5])
    y = torch.randn(1, 4, 16)
    base = model(x, t, y, torch.ones(1, 4, dtype=torch.bool))
    padded = torch.cat([y, 100 * torch.randn(1, 3, 16)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    torch.testing.assert_close(model(x, t, padded, mask), base, rtol=1e-5, atol=1e-5)
    other = model(x, t, torch.randn(1, 4, 16), torch.ones(1, 4, dtype=torch.bool))
    assert (other - base).abs().max() > 1e-3


def test_null_caption_ignores_the_caption_it_replaces():
    model = _model()
    _randomize_zero_inits(model)
    x, t = torch.randn(2, 4, 2, 8, 8), torch.tensor([0.3, 0.3])
    y1, y2 = torch.randn(2, 4, 16), torch.randn(2, 4, 16)
    m = torch.ones(2, 4, dtype=torch.bool)
    drop = torch.tensor([True, False])
    a, b = model(x, t, y1, m, drop=drop), model(x, t, y2, m, drop=drop)
    torch.testing.assert_close(a[0], b[0])  # dropped: both captions give the unconditional output
    assert (a[1] - b[1]).abs().max() > 1e-3  # kept: captions still matter


def test_conditioning_mask_is_an_input():
    model = _model()
    _randomize_zero_inits(model)
    x, t, y, m = (
        torch.randn(1, 4, 4, 8, 8),
        torch.tensor([0.5]),
        torch.randn(1, 3, 16),
        torch.ones(1, 3, dtype=torch.bool),
    )
    assert (model(x, t, y, m, cond_mask=torch.tensor([[1.0, 0, 0, 0]])) - model(x, t, y, m)).abs().max() > 1e-4


def test_rope_is_relative_in_every_axis():
    head_dim = 24
    grid = (3, 4, 5)
    cos, sin = rope_3d(grid, head_dim)
    assert cos.shape == (60, head_dim // 2)
    q, k = torch.randn(1, 1, 1, head_dim), torch.randn(1, 1, 1, head_dim)
    n = torch.arange(60).view(grid)

    def score(i, j):
        qi = apply_rope(q.expand(1, 1, 60, head_dim), (cos, sin))[0, 0, i]
        kj = apply_rope(k.expand(1, 1, 60, head_dim), (cos, sin))[0, 0, j]
        return (qi * kj).sum()

    # the same offset (1, 1, 2) at two different places gives the same attention logit
    torch.testing.assert_close(score(n[0, 0, 0], n[1, 1, 2]), score(n[1, 2, 1], n[2, 3, 3]), rtol=1e-5, atol=1e-5)
    assert (score(n[0, 0, 0], n[1, 1, 2]) - score(n[0, 0, 0], n[2, 1, 2])).abs() > 1e-4


def test_gradient_checkpointing_gives_the_same_gradients():
    model = _model()
    _randomize_zero_inits(model)
    x, t, y, m = torch.randn(2, 4, 2, 8, 8), torch.rand(2), torch.randn(2, 3, 16), torch.ones(2, 3, dtype=torch.bool)
    grads = []
    for ckpt in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = ckpt
        model(x, t, y, m).square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_presets_follow_dit_sizes():
    sizes = {k: (v["hidden_size"], v["depth"], v["num_heads"]) for k, v in PRESETS.items()}
    assert [sizes[k] for k in ("S", "B", "L", "XL")] == [(384, 12, 6), (768, 12, 12), (1024, 24, 16), (1152, 28, 16)]
    with pytest.raises(KeyError, match="unknown DiT preset"):
        dit_config("huge")
