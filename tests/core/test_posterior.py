"""cil_core.posterior: the SNIS posterior mean against exact answers (float64 formula, a finite
prior, a Gaussian prior, 2-D quadrature) and its proposal's density against quadrature."""

from __future__ import annotations

import math

import pytest
import torch

from cil_core.posterior import SNISAccumulator, TruncNormalMixture, log_likelihoods
from cil_core.validation import CILValueError

F64 = torch.float64


def _snis(x, a, b, cands, log_ratio, chunk=None, scalars=None):
    acc = SNISAccumulator()
    chunk = chunk or cands.shape[0]
    for i in range(0, cands.shape[0], chunk):
        c = cands[i : i + chunk]
        lw = log_likelihoods(x, a, b, c) + log_ratio[i : i + chunk].unsqueeze(0)
        acc.add(lw, c, None if scalars is None else scalars[i : i + chunk])
    return acc


def test_log_likelihoods_equal_the_direct_formula():
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(3, 7, generator=g, dtype=F64), torch.randn(5, 7, generator=g, dtype=F64)
    a, b = torch.tensor([1.0, 0.5, 0.9], dtype=F64), torch.tensor([0.1, 2.0, 30.0], dtype=F64)
    want = torch.stack([-((x[i] - a[i] * c).pow(2).sum(1)) / (2 * b[i] ** 2) for i in range(3)])
    assert torch.allclose(log_likelihoods(x, a, b, c), want, rtol=1e-10, atol=1e-10)


def test_a_finite_prior_with_every_future_as_a_candidate_is_exact():
    """SNIS over the whole support of a finite prior, streamed in chunks, is Bayes' rule."""
    g = torch.Generator().manual_seed(1)
    futures = torch.randn(40, 12, generator=g, dtype=F64)
    log_prior = torch.log_softmax(torch.randn(40, generator=g, dtype=F64), 0)
    x = 0.8 * futures[3:5] + 0.9 * torch.randn(2, 12, generator=g, dtype=F64)
    a, b = torch.full((2,), 0.8, dtype=F64), torch.full((2,), 0.9, dtype=F64)
    post = torch.softmax(log_prior + torch.stack([-(xi - 0.8 * futures).pow(2).sum(1) / (2 * 0.81) for xi in x]), 1)
    scal = futures.pow(2).sum(1, keepdim=True)
    acc = _snis(x, a, b, futures, log_prior, chunk=7, scalars=scal)
    assert torch.allclose(acc.mean(), post @ futures, atol=1e-12)
    assert torch.allclose(acc.scalar_mean(), post @ scal, atol=1e-12)
    assert torch.allclose(acc.ess(), 1 / post.pow(2).sum(1), rtol=1e-10)


def test_gaussian_prior_posterior_mean_by_monte_carlo():
    """x0 ~ N(μ, s²I), x = a·x0 + b·ε: E[x0|x] = μ + a s²/(a²s² + b²)·(x − aμ). Proposal: a wider,
    shifted Gaussian. Tolerance: 5 delta-method standard errors per coordinate."""
    g = torch.Generator().manual_seed(2)
    d, s, a, b = 3, 1.5, 0.7, 0.8
    mu = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    x = (a * (mu + s * torch.randn(d, generator=g, dtype=F64)) + b * torch.randn(d, generator=g, dtype=F64)).unsqueeze(0)
    exact = mu + a * s**2 / (a**2 * s**2 + b**2) * (x[0] - a * mu)
    mq, sq = mu + 0.5, 2.5
    cands = mq + sq * torch.randn(40_000, d, generator=g, dtype=F64)
    log_ratio = (-(cands - mu).pow(2).sum(1) / (2 * s**2)) - (-(cands - mq).pow(2).sum(1) / (2 * sq**2))
    lw = log_likelihoods(x, torch.tensor([a], dtype=F64), torch.tensor([b], dtype=F64), cands) + log_ratio
    w = torch.softmax(lw[0], 0)
    est = w @ cands
    se = (w.unsqueeze(1).pow(2) * (cands - est).pow(2)).sum(0).sqrt()
    assert ((est - exact).abs() < 5 * se).all(), (est, exact, se)
    assert (se < 0.05).all()  # the check has teeth: the error bar is small against the posterior spread


def _quad_grid(n=801):
    g = torch.linspace(0, 1, n, dtype=F64)
    w = torch.full((n,), 1.0 / (n - 1), dtype=F64)
    w[0] = w[-1] = 0.5 / (n - 1)
    u = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return u, (w[:, None] * w[None, :]).reshape(-1)


def test_trunc_normal_mixture_is_a_density_and_samples_follow_it():
    mix = TruncNormalMixture(torch.tensor([[0.3, 0.97], [0.5, 0.5]]), torch.tensor([[0.05, 0.1], [0.2, math.inf]]), 0.3)
    u, w = _quad_grid(1601)
    dens = mix.log_prob(u).exp()
    assert abs(float((w * dens).sum()) - 1) < 1e-4
    mean = (w.unsqueeze(1) * dens.unsqueeze(1) * u).sum(0)
    draws = mix.sample(100_000, torch.Generator().manual_seed(3))
    assert ((draws >= 0) & (draws <= 1)).all()
    se = draws.std(0) / math.sqrt(draws.shape[0])
    assert ((draws.mean(0) - mean).abs() < 4 * se).all()
    assert mix.counts(10) == [3, 4, 3]


def test_snis_with_the_mixture_matches_quadrature_on_a_uniform_prior():
    """u ~ U[0,1]², x0 = g(u) nonlinear in R^5; posterior mean by 2-D quadrature vs SNIS with a
    truncated-normal mixture around the true u (16 replicate estimates: |mean − exact| < 5 SE)."""
    basis = torch.randn(4, 5, generator=torch.Generator().manual_seed(4), dtype=F64)

    def render(u):
        feats = torch.stack([u[:, 0], u[:, 1], torch.sin(6 * u[:, 0]), (u[:, 0] - u[:, 1]) ** 2], 1)
        return 3 * feats @ basis

    u_true = torch.tensor([[0.62, 0.2]], dtype=F64)
    a, b = torch.tensor([1.0], dtype=F64), torch.tensor([0.3], dtype=F64)
    x = render(u_true) + 0.3 * torch.randn(1, 5, generator=torch.Generator().manual_seed(5), dtype=F64)
    grid, w = _quad_grid(1201)
    post = log_likelihoods(x, a, b, render(grid))[0]
    post = w * (post - post.max()).exp()
    exact = post @ render(grid) / post.sum()
    mix = TruncNormalMixture(u_true.repeat(2, 1), torch.tensor([[0.05, 0.05], [0.2, 0.2]]), 0.2)
    reps = []
    for r in range(16):
        cand_u = mix.sample(2000, torch.Generator().manual_seed(10 + r))
        reps.append(_snis(x, a, b, render(cand_u), -mix.log_prob(cand_u, 2000), chunk=500).mean()[0])
    reps = torch.stack(reps)
    est, se = reps.mean(0), reps.std(0) / 4
    assert ((est - exact).abs() < 5 * se + 1e-9).all(), (est, exact, se)
    assert (se < 0.05 * exact.abs().max()).all()


def test_bad_inputs_are_refused():
    with pytest.raises(CILValueError, match="centres"):
        TruncNormalMixture(torch.tensor([[1.5]]), torch.tensor([[0.1]]))
    with pytest.raises(CILValueError, match="prior_weight"):
        TruncNormalMixture(torch.zeros(0, 2), torch.zeros(0, 2), 0.5)
    with pytest.raises(CILValueError, match="no candidates"):
        SNISAccumulator().mean()
    with pytest.raises(CILValueError, match="do not match"):
        SNISAccumulator().add(torch.zeros(2, 3), torch.zeros(4, 5))
