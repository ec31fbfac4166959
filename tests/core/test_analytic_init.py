"""Analytic-Init (paper Prop. 1 / Eq. 6) by Monte-Carlo and on an exact Gaussian-mixture data set.

Sampler-space reference written here: x = a·x0 + b·ε with (a, b) = (1, σ) for VP and EDM and
(1 − σ, σ) for flow, so the optimum is N(a·E[x0], a²·v + b²) with v = tr Cov(x0)/d.
Monte-Carlo tolerances: 5 standard errors (fixed seeds). For a mean over n draws of std s the SE
is s/√n; for a variance estimate from N Gaussian draws it is var·√(2/N).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cil_core.analytic_init import (
    AnalyticStats,
    initial_distribution,
    isotropic_gaussian_cross_entropy,
    naive_initial_distribution,
    optimal_gaussian,
    noise_for_state,
    sample_initial_latent,
)
from cil_core.families import EDM, RectifiedFlow, VPDiscrete, dynamicrafter_family, svd_family, wan_family
from cil_core.validation import CILValueError

SETTINGS = settings(max_examples=15, deadline=None)
Z = 5.0  # Monte-Carlo tolerance in standard errors

FAMILIES = {
    "dynamicrafter": (dynamicrafter_family(), 32.9),
    "vp_eps": (VPDiscrete(prediction="eps"), 3.0),
    "svd": (svd_family(), 100.0),
    "edm_small": (EDM(), 0.7),
    "wan": (wan_family(), 0.9),
    "flow_exp": (RectifiedFlow(shift=2.37, shift_kind="exponential"), 0.5),
}


def ref_ab(fam, sigma):
    """(a, b) with sampler state a·x0 + b·ε — written from the design, independent of cil_core."""
    if isinstance(fam, RectifiedFlow):
        return 1.0 - sigma, sigma
    return 1.0, sigma


def make_stats(shape, v, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = 0.5 + torch.randn(shape, generator=g, dtype=torch.float64)
    return AnalyticStats(mean=mean, tr_cov_d=v, channel_var=torch.full((shape[0],), v, dtype=torch.float64), count=10)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_initial_distribution_formula(name):
    fam, sigma = FAMILIES[name]
    stats = make_stats((2, 3, 4, 4), v=0.7)
    mean, std = initial_distribution(fam, sigma, stats.mean, stats.tr_cov_d)
    a, b = ref_ab(fam, sigma)
    torch.testing.assert_close(mean, a * stats.mean, rtol=1e-12, atol=0)
    assert std == pytest.approx(math.sqrt(a * a * 0.7 + b * b), rel=1e-12)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_sample_initial_latent_moments_monte_carlo(name):
    fam, sigma = FAMILIES[name]
    shape, v, n = (2, 3, 4, 4), 0.6, 4000
    stats = make_stats(shape, v, seed=1)
    a, b = ref_ab(fam, sigma)
    mu, var = a * stats.mean, a * a * v + b * b
    x = sample_initial_latent(fam, sigma, stats, batch=n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    assert x.shape == (n, *shape) and x.dtype == torch.float64
    # per-element means: each has SE √(var/n)
    z = (x.mean(0) - mu) / math.sqrt(var / n)
    assert float(z.abs().max()) < Z
    # pooled variance around the known mean: SE = var·√(2/N), N = n·d
    resid_var = float(((x - mu) ** 2).mean())
    assert abs(resid_var - var) < Z * var * math.sqrt(2.0 / x.numel())


def test_sample_initial_latent_is_seeded_and_typed():
    fam, sigma = FAMILIES["svd"]
    stats = make_stats((2, 2, 3, 3), 0.5)
    x1 = sample_initial_latent(fam, sigma, stats, batch=3, generator=torch.Generator().manual_seed(3))
    x2 = sample_initial_latent(fam, sigma, stats, batch=3, generator=torch.Generator().manual_seed(3))
    assert x1.dtype == torch.float32 and x1.shape == (3, 2, 2, 3, 3)
    assert torch.equal(x1, x2)


def comfy_noise_scaling(fam, sigma, noise, latent):
    """ComfyUI's noise_scaling (EPS/V: σ·n + latent; CONST/flow: σ·n + (1 − σ)·latent), no max_denoise."""
    if isinstance(fam, RectifiedFlow):
        return sigma * noise + (1.0 - sigma) * latent
    return sigma * noise + latent


def ref_offset_gain(fam, sigma, latent):
    """ComfyUI's noise_scaling(σ, n, latent) = offset + gain·n, from the reference formula."""
    zero = comfy_noise_scaling(fam, sigma, torch.zeros_like(latent), latent)
    gain = float(comfy_noise_scaling(fam, sigma, torch.ones((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)))
    return zero, gain


@pytest.mark.parametrize("name", sorted(FAMILIES))
@given(v=st.floats(0.0, 5.0), seed=st.integers(0, 2**16))
@SETTINGS
def test_noise_for_state_inverts_the_samplers_noise_scaling(name, v, seed):
    fam, sigma = FAMILIES[name]
    stats = make_stats((2, 2, 3, 3), v, seed=seed % 7)
    latent = torch.randn((1, 2, 2, 3, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x_m = sample_initial_latent(fam, sigma, stats, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    offset, gain = ref_offset_gain(fam, sigma, latent)
    noise = noise_for_state(x_m, offset, gain)
    assert torch.allclose(comfy_noise_scaling(fam, sigma, noise, latent), x_m, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["dynamicrafter", "svd", "wan", "flow_exp"])
def test_noise_for_state_through_noise_scaling_monte_carlo(name):
    fam, sigma = FAMILIES[name]
    shape, v, n = (2, 2, 3, 3), 0.8, 4000
    stats = make_stats(shape, v, seed=2)
    eps = torch.randn((n, *shape), generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    x_m = sample_initial_latent(fam, sigma, stats, noise=eps, dtype=torch.float64)
    offset, gain = ref_offset_gain(fam, sigma, torch.zeros(shape, dtype=torch.float64))
    x = comfy_noise_scaling(fam, sigma, noise_for_state(x_m, offset, gain), torch.zeros(shape, dtype=torch.float64))
    mean, std = initial_distribution(fam, sigma, stats.mean, v)
    z = (x.mean(0) - mean) / (std / math.sqrt(n))
    assert float(z.abs().max()) < Z
    var = float(((x - mean) ** 2).mean())
    assert abs(var - std**2) < Z * std**2 * math.sqrt(2.0 / x.numel())


def test_noise_for_state_refuses_a_sampler_that_ignores_its_noise():
    with pytest.raises(CILValueError, match="gain"):
        noise_for_state(torch.zeros(2), torch.zeros(2), 0.0)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_naive_modes(name):
    fam, sigma = FAMILIES[name]
    like = torch.zeros(2, 3, 4, 5)
    a, b = ref_ab(fam, sigma)
    mean, std = naive_initial_distribution(fam, sigma, like, mode="paper")
    assert mean.shape == like.shape and float(mean.abs().max()) == 0.0
    assert std == pytest.approx(math.sqrt(a * a + b * b), rel=1e-12)  # N(0, I) in paper space
    if not isinstance(fam, RectifiedFlow):
        assert std == pytest.approx(math.sqrt(1 + sigma**2), rel=1e-12)
    _, std0 = naive_initial_distribution(fam, sigma, like, mode="empty_latent")
    assert std0 == pytest.approx(sigma, rel=1e-12)
    with pytest.raises(CILValueError, match="mode"):
        naive_initial_distribution(fam, sigma, like, mode="zeros")


def test_bad_inputs_raise():
    fam = svd_family()
    with pytest.raises(CILValueError, match="tr_cov_d"):
        optimal_gaussian(1.0, 1.0, torch.zeros(3), -0.1)
    with pytest.raises(CILValueError, match="sigma_M"):
        initial_distribution(fam, 0.0, torch.zeros(1, 2, 2, 2), 1.0)
    with pytest.raises(CILValueError, match="non-finite"):
        make_stats((1, 2, 2, 2), float("nan"))
    with pytest.raises(CILValueError, match="rank"):
        AnalyticStats(mean=torch.zeros(2, 2, 2), tr_cov_d=1.0, channel_var=torch.ones(2), count=1)
    with pytest.raises(CILValueError, match="non-finite"):
        AnalyticStats(mean=torch.full((1, 2, 2, 2), float("nan")), tr_cov_d=1.0, channel_var=torch.ones(1), count=1)


# --- KL optimality on a Gaussian mixture ----------------------------------------------------
def gmm_points(k, d, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(0.3, 1.0, size=(k, d)) * rng.uniform(0.5, 2.0, size=(1, d))


def cross_entropy_ref(q_mean, q_cov_trace_d, mu, s2):
    """−E_q[log N(x; μ, s²I)]/d for any q with mean q_mean and tr Cov(q)/d — closed form."""
    return 0.5 * math.log(2 * math.pi * s2) + (float(np.mean((q_mean - mu) ** 2)) + q_cov_trace_d) / (2 * s2)


def mixture_moments(points, a, b):
    """Exact mean and tr Cov/d of q = (1/K) Σ N(a·p_k, b²I)."""
    mean = a * points.mean(0)
    v = float(points.var(0).mean())  # population variance of the finite data set, averaged over dims
    return mean, a * a * v + b * b, v


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_optimum_minimises_cross_entropy_to_mixture(name):
    fam, sigma = FAMILIES[name]
    k, d = 7, 12
    pts = gmm_points(k, d, seed=5)
    a, b = ref_ab(fam, sigma)
    q_mean, q_tr, v = mixture_moments(pts, a, b)
    mean, std = initial_distribution(fam, sigma, torch.from_numpy(pts.mean(0)).reshape(1, 1, 3, 4), v)
    mu_star, s2_star = mean.reshape(-1).numpy(), std**2
    best = cross_entropy_ref(q_mean, q_tr, mu_star, s2_star)
    # the library's cross entropy agrees with the reference formula
    assert isotropic_gaussian_cross_entropy(torch.from_numpy(q_mean), q_tr, mean.reshape(-1), s2_star) == pytest.approx(best, rel=1e-12)
    rng = np.random.default_rng(9)
    for _ in range(20):  # random mean directions
        direction = rng.normal(size=d)
        direction /= np.linalg.norm(direction)
        for step in (1e-3, 0.1, 1.0):
            assert cross_entropy_ref(q_mean, q_tr, mu_star + step * math.sqrt(s2_star) * direction, s2_star) > best
    for factor in (0.5, 0.9, 0.999, 1.001, 1.1, 2.0):  # variance ±
        assert cross_entropy_ref(q_mean, q_tr, mu_star, s2_star * factor) > best


def log_gmm(x, centres, b):
    """log q(x) for q = (1/K) Σ N(c_k, b²I), exact via logsumexp. x [n, d], centres [K, d]."""
    d = x.shape[1]
    sq = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    logc = -0.5 * sq / b**2 - 0.5 * d * math.log(2 * math.pi * b**2)
    m = logc.max(1, keepdims=True)
    return (m + np.log(np.exp(logc - m).mean(1, keepdims=True)))[:, 0]


def log_iso_gauss(x, mu, s2):
    d = x.shape[1]
    return -0.5 * ((x - mu) ** 2).sum(1) / s2 - 0.5 * d * math.log(2 * math.pi * s2)


@pytest.mark.parametrize("name", ["dynamicrafter", "vp_eps", "edm_small", "flow_exp"])
def test_monte_carlo_kl_matches_closed_form_difference(name):
    """KL(q‖p) by MC with exact log q; KL(q‖p_pert) − KL(q‖p*) equals the closed-form difference."""
    fam, sigma = FAMILIES[name]
    k, d, n = 6, 8, 20000
    pts = gmm_points(k, d, seed=3)
    a, b = ref_ab(fam, sigma)
    q_mean, q_tr, v = mixture_moments(pts, a, b)
    mean, std = initial_distribution(fam, sigma, torch.from_numpy(pts.mean(0)).reshape(1, 1, 2, 4), v)
    mu_star, s2_star = mean.reshape(-1).numpy(), std**2
    rng = np.random.default_rng(21)
    comp = rng.integers(0, k, size=n)
    x = a * pts[comp] + b * rng.normal(size=(n, d))
    log_q = log_gmm(x, a * pts, b)
    kl_star_samples = (log_q - log_iso_gauss(x, mu_star, s2_star)) / d
    kl_star = kl_star_samples.mean()
    assert kl_star > -Z * kl_star_samples.std() / math.sqrt(n)  # KL ≥ 0
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    perturbations = [
        (mu_star + 0.3 * math.sqrt(s2_star) * direction, s2_star),
        (mu_star, 1.3 * s2_star),
        (mu_star, 0.7 * s2_star),
    ]
    base = cross_entropy_ref(q_mean, q_tr, mu_star, s2_star)
    for mu, s2 in perturbations:
        kl_samples = (log_q - log_iso_gauss(x, mu, s2)) / d
        diff = kl_samples - kl_star_samples  # paired: log q cancels per sample
        exact = cross_entropy_ref(q_mean, q_tr, mu, s2) - base
        se = diff.std() / math.sqrt(n)
        assert exact > 0
        assert abs(diff.mean() - exact) < Z * se + 1e-12
        assert kl_samples.mean() > kl_star
