"""TimeNoise (Sec. 4.2): μ(t) = 2t^a − 1, β = β_m·sigmoid(N(μ(t), s²)), and the condition noise.

Monte-Carlo CDF check: the Dvoretzky–Kiefer–Wolfowitz inequality (Massart's constant) gives
P(sup_b |F_n(b) − F(b)| > ε) ≤ 2·exp(−2nε²), so ε = √(ln(2/α)/(2n)) is a valid Kolmogorov–Smirnov
bound at level α = 1e-3 for every n. Variance checks: 5 standard errors, SE = var·√(2/N).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cil_core.timenoise import TimeNoiseConfig, add_condition_noise
from cil_core.validation import CILValueError

SETTINGS = settings(max_examples=40, deadline=None)
ALPHA = 1e-3
Z = 5.0


def ref_mu(t, a):
    return 2.0 * np.asarray(t, dtype=np.float64) ** a - 1.0


def ref_cdf(b, t, beta_m, a, s):
    """P(β ≤ b) = Φ((logit(b/β_m) − μ(t))/s), with Φ from math.erf."""
    u = b / beta_m
    z = (math.log(u / (1 - u)) - float(ref_mu(t, a))) / s
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@given(t=st.floats(0, 1), a=st.floats(0.1, 10))
@SETTINGS
def test_mu_formula(t, a):
    assert float(TimeNoiseConfig(a=a).mu(t)) == pytest.approx(float(ref_mu(t, a)), abs=1e-12)


def test_mu_endpoints_and_shapes():
    for a in (0.5, 1.0, 5.0):
        cfg = TimeNoiseConfig(a=a)
        assert float(cfg.mu(0.0)) == -1.0 and float(cfg.mu(1.0)) == 1.0
    # a = 1 linear, a > 1 convex (below the chord), a < 1 concave (above it)
    t = torch.tensor(0.5, dtype=torch.float64)
    assert float(TimeNoiseConfig(a=1).mu(t)) == pytest.approx(0.0)
    assert float(TimeNoiseConfig(a=5).mu(t)) < 0 < float(TimeNoiseConfig(a=0.5).mu(t))


@given(
    u=st.floats(1e-6, 1 - 1e-6),
    t=st.floats(0, 1),
    beta_m=st.floats(0.1, 200),
    a=st.floats(0.2, 8),
    s=st.floats(0.2, 3),
)
@SETTINGS
def test_quantile_inverts_cdf(u, t, beta_m, a, s):
    cfg = TimeNoiseConfig(beta_m=beta_m, a=a, s=s)
    b = u * beta_m
    q = float(cfg.cdf(b, t))
    assert q == pytest.approx(ref_cdf(b, t, beta_m, a, s), abs=1e-12)
    if 1e-12 < q < 1 - 1e-12:
        assert float(cfg.quantile(q, t)) == pytest.approx(b, rel=1e-6)


@given(q=st.floats(1e-6, 1 - 1e-6), t=st.floats(0, 1), beta_m=st.floats(0.1, 200), a=st.floats(0.2, 8))
@SETTINGS
def test_cdf_inverts_quantile(q, t, beta_m, a):
    cfg = TimeNoiseConfig(beta_m=beta_m, a=a)
    assert float(cfg.cdf(cfg.quantile(q, t), t)) == pytest.approx(q, abs=1e-9)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.7, 0.96, 1.0])
@pytest.mark.parametrize("a,beta_m,s", [(5.0, 100.0, 1.0), (1.0, 15.0, 1.0), (0.5, 25.0, 0.5)])
def test_sample_matches_cdf_kolmogorov_smirnov(t, a, beta_m, s):
    n = 4000
    cfg = TimeNoiseConfig(beta_m=beta_m, a=a, s=s)
    draws = cfg.sample(torch.full((n,), t, dtype=torch.float64), generator=torch.Generator().manual_seed(13))
    assert draws.dtype == torch.float64 and draws.shape == (n,)
    assert bool(((draws > 0) & (draws < beta_m)).all())
    x = np.sort(draws.numpy())
    f = np.array([ref_cdf(b, t, beta_m, a, s) for b in x])
    ks = max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(0, n) / n))
    assert ks < math.sqrt(math.log(2 / ALPHA) / (2 * n))


@given(t=st.floats(0, 1), beta_m=st.floats(0.1, 200), a=st.floats(0.2, 8))
@SETTINGS
def test_median(t, beta_m, a):
    cfg = TimeNoiseConfig(beta_m=beta_m, a=a)
    ref = beta_m / (1 + math.exp(-float(ref_mu(t, a))))
    assert float(cfg.quantile(0.5, t)) == pytest.approx(ref, rel=1e-12)


def test_monotone_in_t_for_official_a():
    cfg = TimeNoiseConfig(beta_m=100.0, a=5.0)
    t = torch.linspace(0.01, 1.0, 100, dtype=torch.float64)
    for q in (0.1, 0.5, 0.9):
        qs = cfg.quantile(torch.full_like(t, q), t)
        assert bool((qs[1:] > qs[:-1]).all())
    cdf = cfg.cdf(torch.full_like(t, 30.0), t)  # stochastically larger β at larger t
    assert bool((cdf[1:] < cdf[:-1]).all())


def test_bad_inputs_raise():
    for bad in (-1.0, float("nan")):
        with pytest.raises(CILValueError, match="beta_m"):
            TimeNoiseConfig(beta_m=bad)
    with pytest.raises(CILValueError, match="a="):
        TimeNoiseConfig(a=0.0)
    with pytest.raises(CILValueError, match="s="):
        TimeNoiseConfig(s=-1.0)
    cfg = TimeNoiseConfig()
    for bad_t in (-0.1, 1.5, [0.2, 1.01]):
        with pytest.raises(CILValueError, match=r"\[0, 1\]"):
            cfg.mu(torch.tensor(bad_t, dtype=torch.float64))
        with pytest.raises(CILValueError):
            cfg.sample(torch.tensor(bad_t, dtype=torch.float64))
    for bad_q in (0.0, 1.0, -0.2, 1.3):
        with pytest.raises(CILValueError, match=r"\(0, 1\)"):
            cfg.quantile(bad_q, 0.5)


# --- add_condition_noise --------------------------------------------------------------------
COND_SHAPES = {"latent4d": (4, 3, 5, 6), "video5d": (3, 4, 2, 5, 6), "tokens": (3, 7, 16)}


@pytest.mark.parametrize("kind", sorted(COND_SHAPES))
def test_condition_noise_per_element(kind):
    shape = COND_SHAPES[kind]
    cond = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    beta = torch.linspace(0.5, 3.0, shape[0], dtype=torch.float64)
    out = add_condition_noise(cond, beta, generator=torch.Generator().manual_seed(1))
    assert out.shape == cond.shape and out.dtype == cond.dtype
    eps = (out - cond).double() / beta.reshape(-1, *[1] * (len(shape) - 1))
    for item in eps:  # per-element N(0, 1): mean 0, variance 1 within each item
        m = item.numel()
        assert abs(float(item.mean())) < Z / math.sqrt(m)
        assert abs(float(item.var(unbiased=False)) - 1.0) < Z * math.sqrt(2.0 / m)
    assert float(eps[0].std()) > 0 and not torch.equal(eps[0], eps[1])


@pytest.mark.parametrize("kind", sorted(COND_SHAPES))
def test_condition_noise_per_sample_scalar(kind):
    n = 4000
    shape = (n, *COND_SHAPES[kind][1:])
    cond = torch.zeros(shape)
    beta = torch.full((n,), 2.0, dtype=torch.float64)
    out = add_condition_noise(cond, beta, generator=torch.Generator().manual_seed(2), per_sample_scalar=True)
    flat = out.reshape(n, -1)
    assert bool((flat == flat[:, :1]).all())  # one ε per item
    eps = flat[:, 0].double() / 2.0
    assert abs(float(eps.mean())) < Z / math.sqrt(n)
    assert abs(float(eps.var(unbiased=False)) - 1.0) < Z * math.sqrt(2.0 / n)


@given(b=st.integers(1, 4), rest=st.lists(st.integers(1, 5), min_size=1, max_size=4), seed=st.integers(0, 1000))
@settings(max_examples=25, deadline=None)
def test_condition_noise_explicit_noise_and_broadcast(b, rest, seed):
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn((b, *rest), generator=g, dtype=torch.float64)
    noise = torch.randn((b, *rest), generator=g, dtype=torch.float64)
    beta = torch.rand(b, generator=g, dtype=torch.float64) * 10
    out = add_condition_noise(cond, beta, noise=noise)
    ref = cond + beta.reshape(b, *[1] * len(rest)) * noise
    torch.testing.assert_close(out, ref, rtol=1e-14, atol=1e-14)
    one = add_condition_noise(cond, torch.tensor(1.5, dtype=torch.float64), noise=noise)  # one β for all
    torch.testing.assert_close(one, cond + 1.5 * noise, rtol=1e-14, atol=1e-14)


def test_condition_noise_beta_count_mismatch_raises():
    with pytest.raises(CILValueError, match="3 β values for a batch of 2"):
        add_condition_noise(torch.zeros(2, 4), torch.ones(3))
