"""Toy network, denoiser wrapper and Euler sampler."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from cil_core.families import EDM, dynamicrafter_family
from cil_core.schedules import StartTime
from cil_core.validation import CILValueError
from cil_toy.model import ToyDenoiser, ToyNetConfig, ToyVideoNet, comfy_timestep
from cil_toy.sampling import euler_sample, generate, initial_state

TINY = ToyNetConfig(latent_channels=12, frames=4, outer_width=8, width=16, mid_width=32, embed_dim=16, groups=4,
                    attn_heads=2, latent_size=4)


def _randomised(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Zero-initialised output layers make a fresh net constant; give every weight a value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return net.eval()


def test_output_shape_and_time_conditioning():
    net = _randomised(ToyVideoNet(TINY, EDM()))
    x = torch.randn(2, 12, 4, 4, 4)
    cond = torch.randn(2, 12, 4, 4)
    out1 = net(x, cond, torch.tensor([0.1, 0.1]), torch.zeros(2))
    out2 = net(x, cond, torch.tensor([1.5, 1.5]), torch.zeros(2))
    assert out1.shape == x.shape
    assert (out1 - out2).abs().max() > 1e-3  # the timestep changes the output
    out3 = net(x, cond, torch.tensor([0.1, 0.1]), torch.full((2,), 5.0))
    assert (out1 - out3).abs().max() > 1e-3  # and so does β when beta_conditioning = 1


def test_beta_is_ignored_without_beta_conditioning():
    cfg = dataclasses.replace(TINY, beta_conditioning=0)
    net = _randomised(ToyVideoNet(cfg, EDM()))
    x, cond, t = torch.randn(1, 12, 4, 4, 4), torch.randn(1, 12, 4, 4), torch.tensor([0.3])
    assert torch.equal(net(x, cond, t, torch.zeros(1)), net(x, cond, t, torch.full((1,), 9.0)))


def test_vp_and_edm_nets_share_one_function_of_sigma():
    """A VP net reads 0.25·ln σ from its table, so with equal weights it equals the EDM net at that σ."""
    vp = dynamicrafter_family()
    edm_net = _randomised(ToyVideoNet(TINY, EDM()))
    vp_net = ToyVideoNet(TINY, vp).eval()
    vp_net.load_state_dict(edm_net.state_dict())
    idx = torch.tensor([10.0, 500.0, 940.0])
    sigma = vp.sigmas[idx.long()]
    x, cond, beta = torch.randn(3, 12, 4, 4, 4), torch.randn(3, 12, 4, 4), torch.zeros(3)
    a = vp_net(x, cond, comfy_timestep(vp, sigma).float(), beta)
    b = edm_net(x, cond, (0.25 * sigma.log()).float(), beta)
    assert torch.allclose(a, b, atol=1e-5)


def test_wrong_latent_size_is_refused():
    net = _randomised(ToyVideoNet(TINY, EDM()))
    with pytest.raises(CILValueError, match="latent_size"):
        net(torch.randn(1, 12, 4, 8, 8), torch.randn(1, 12, 8, 8), torch.zeros(1), torch.zeros(1))


def test_denoiser_applies_v_prediction_preconditioning():
    family = EDM()
    net = _randomised(ToyVideoNet(TINY, family))
    x, cond = torch.randn(2, 12, 4, 4, 4, dtype=torch.float64), torch.randn(2, 12, 4, 4)
    sigma = torch.tensor([0.5, 20.0], dtype=torch.float64)
    den = ToyDenoiser(net, family)
    got = den(x.float(), sigma.float(), {"image": cond, "noise_level": torch.zeros(2)}).double()
    s = sigma.view(-1, 1, 1, 1, 1)
    out = net((x / (s**2 + 1).sqrt()).float(), cond, (0.25 * sigma.log()).float(), torch.zeros(2)).double()
    expected = x / (s**2 + 1) - out * s / (s**2 + 1).sqrt()  # independent v-prediction formula, σ_data = 1
    assert torch.allclose(got, expected, atol=1e-4)


def _gaussian_denoiser(mu: float, s2: float):
    """Exact x̂0 for x0 ~ N(mu, s2) per element, x = x0 + σ·ε."""
    return lambda x, sigma: mu + s2 / (s2 + sigma.view(-1, *[1] * (x.dim() - 1)) ** 2) * (x - mu)


def _euler_gain(sigmas: torch.Tensor, s2: float) -> float:
    """Independent float64 recursion: Euler on the linear Gaussian flow maps x − μ to gain·(x − μ)."""
    gain, sig = 1.0, sigmas.tolist()
    for s, s_next in zip(sig[:-1], sig[1:]):
        if s_next == 0.0:
            return gain * s2 / (s2 + s * s)
        gain *= 1.0 + (s_next - s) * s / (s2 + s * s)
    return gain


@pytest.mark.parametrize("init", ["analytic", "naive"])
def test_euler_on_gaussian_data_matches_the_exact_recursion(init):
    """x0 ~ N(mu, s2): the output mean/std follow from the start distribution and the Euler gain;
    with exact stats the Analytic-Init start is the exact marginal, so the output is ≈ N(mu, s2)."""
    from cil_core.analytic_init import AnalyticStats
    from cil_core.schedules import late_start_sigmas

    mu, s2, sigma_m, steps = 0.7, 0.3, 2.0, 40
    shape = (4000, 2, 2, 2, 2)
    stats = AnalyticStats(mean=torch.full(shape[1:], mu, dtype=torch.float64), tr_cov_d=s2,
                          channel_var=torch.full((2,), s2, dtype=torch.float64), count=10)
    g = torch.Generator().manual_seed(0)
    out = generate(_gaussian_denoiser(mu, s2), EDM(), shape, steps=steps, start=StartTime(sigma=sigma_m), init=init, stats=stats, generator=g)
    gain = _euler_gain(late_start_sigmas(EDM(), steps, StartTime(sigma=sigma_m)), s2)
    start_mean, start_var = (mu, s2 + sigma_m**2) if init == "analytic" else (0.0, 1.0 + sigma_m**2)
    n = out.numel()
    exp_mean, exp_std = mu + gain * (start_mean - mu), gain * math.sqrt(start_var)
    assert float(out.mean()) == pytest.approx(exp_mean, abs=5 * exp_std / math.sqrt(n))
    assert float(out.std()) == pytest.approx(exp_std, rel=5 / math.sqrt(2 * n))
    if init == "analytic":
        assert exp_std == pytest.approx(math.sqrt(s2), rel=0.05)  # Euler with 40 steps is close to exact


def test_initial_state_naive_at_sigma_max_is_the_standard_start():
    g = torch.Generator().manual_seed(2)
    x = initial_state(EDM(), 700.0, "naive", (2000, 1, 1, 2, 2), None, g)
    assert float(x.std()) == pytest.approx(math.sqrt(1 + 700.0**2), rel=0.05)


def test_euler_returns_the_last_denoised_value():
    sigmas = torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64)
    out = euler_sample(lambda x, s: torch.full_like(x, 3.0), torch.zeros(1, 2), sigmas)
    assert torch.equal(out, torch.full((1, 2), 3.0))
