"""Rectified flow: schedule, loss masking, and the Euler/CFG sampler against an exact velocity field."""

from __future__ import annotations

import torch

from training.diffusion import FlowConfig, RectifiedFlow, time_shift


def test_time_shift_keeps_endpoints_and_moves_towards_noise():
    t = torch.linspace(0, 1, 11)
    s = time_shift(t, 3.0)
    assert s[0] == 0 and s[-1] == 1
    assert (s[1:-1] > t[1:-1]).all() and (s.diff() > 0).all()


def test_shift_grows_with_resolution_and_length():
    flow = RectifiedFlow(FlowConfig(base_tokens=1024))
    small, tall, long = flow.shift_for((4, 1, 32, 32)), flow.shift_for((4, 1, 64, 64)), flow.shift_for((4, 16, 64, 64))
    assert small == 1.0 and tall == 2.0 and long == FlowConfig().max_shift
    g = torch.Generator().manual_seed(0)
    assert flow.sample_t(4000, (4, 16, 64, 64), g).mean() > flow.sample_t(4000, (4, 1, 32, 32), g).mean() + 0.2


def test_logit_normal_timesteps_concentrate_mid_path():
    t = RectifiedFlow(FlowConfig(shift=1.0)).sample_t(20000, (3, 1, 8, 8), torch.Generator().manual_seed(0))
    assert 0 < t.min() and t.max() < 1
    assert abs(t.mean().item() - 0.5) < 0.02
    assert ((t > 0.25) & (t < 0.75)).float().mean() > 0.6  # uniform would give 0.5


def test_loss_ignores_conditioning_frames_and_keeps_them_clean():
    flow = RectifiedFlow()
    x0 = torch.randn(2, 3, 4, 4, 4)
    cond = torch.tensor([[1.0, 0, 0, 0], [1.0, 1.0, 0, 0]])
    seen = {}

    def model(xt, t, y, m, c, d, bias=0.0):
        seen["xt"] = xt
        out = torch.zeros_like(xt)
        out[:, :, :1] += bias  # only frame 0 (conditioning in both samples) is perturbed
        return out

    g = torch.Generator().manual_seed(0)
    kw = dict(noise=torch.randn_like(x0), t=torch.tensor([0.7, 0.7]), cond_mask=cond)
    a, _ = flow.loss(model, x0, None, None, g, **kw)
    torch.testing.assert_close(seen["xt"][:, :, 0], x0[:, :, 0])  # conditioning frame handed over clean
    assert not torch.allclose(seen["xt"][:, :, 3], x0[:, :, 3])
    b, _ = flow.loss(lambda *a_: model(*a_, bias=5.0), x0, None, None, g, **kw)
    torch.testing.assert_close(a, b)
    c, _ = flow.loss(lambda *a_: model(*a_, bias=5.0), x0, None, None, g, noise=kw["noise"], t=kw["t"])
    assert c > a + 1


def test_euler_sampler_recovers_the_data_point_of_an_exact_velocity_field():
    # For data concentrated at x0, x_t = (1-t) x0 + t eps and the true velocity is (x_t - x0) / t.
    x0 = torch.randn(1, 3, 2, 4, 4)
    flow = RectifiedFlow(FlowConfig(shift=3.0))

    def model(x, t, y, m, c, d):
        return (x - x0.expand_as(x)) / t.view(-1, 1, 1, 1, 1)

    out = flow.sample(model, torch.randn(1, 3, 2, 4, 4), torch.zeros(1, 1, 1), torch.ones(1, 1), steps=8, cfg=1.0)
    torch.testing.assert_close(out, x0, rtol=1e-4, atol=1e-4)


def test_cfg_combines_conditional_and_null_passes_and_resets_conditioning_frames():
    flow = RectifiedFlow(FlowConfig(shift=1.0))
    calls = []

    def model(x, t, y, m, c, drop):
        calls.append(drop.clone())
        return torch.where(drop.view(-1, 1, 1, 1, 1), torch.full_like(x, 1.0), torch.full_like(x, 2.0))

    noise = torch.zeros(1, 1, 3, 2, 2)
    cond_lat = torch.full_like(noise, 7.0)
    cond = torch.tensor([[1.0, 0.0, 0.0]])
    out = flow.sample(
        model, noise, torch.zeros(1, 1, 1), torch.ones(1, 1), steps=4, cfg=3.0, cond_latents=cond_lat, cond_mask=cond
    )
    assert all(d.tolist() == [False, True] for d in calls)
    # v = 1 + 3 * (2 - 1) = 4 integrated from t=1 to 0: x = 0 + (0 - 1) * 4
    torch.testing.assert_close(out[:, :, 1:], torch.full_like(out[:, :, 1:], -4.0))
    torch.testing.assert_close(out[:, :, :1], cond_lat[:, :, :1])
