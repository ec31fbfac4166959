"""diffusion_loss against an independent float64 computation, with and without TimeNoise.

Generator order inside diffusion_loss (documented here and reproduced with a twin generator):
σ (when not given) → ε for x (when not given) → β (one float64 normal per item) → condition
noise for cond["image"] (float32, its shape) → noise for cond["tokens"] (float32, its shape).
Reference formulas: x = a·x0 + b·ε with (a, b) = (1, σ) for VP/EDM, (1 − σ, σ) for flow; weight
(σ²+1)/σ² for v-prediction, 1/σ² for ε and flow; TimeNoise t = index/N (VP), σ/700 (EDM), σ (flow).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cil_core.families import EDM, RectifiedFlow, VPDiscrete, dynamicrafter_family, svd_family, wan_family
from cil_core.losses import LossConfig, diffusion_loss, sample_training_sigmas
from cil_core.timenoise import TimeNoiseConfig

Z = 5.0
FAMILIES = {
    "dc": dynamicrafter_family(),
    "vp_eps": VPDiscrete(prediction="eps"),
    "svd": svd_family(),
    "edm_eps": EDM(prediction="eps"),
    "wan": wan_family(),
}


def ref_ab(fam, s):
    if isinstance(fam, RectifiedFlow):
        return 1.0 - s, s
    return 1.0, s


def ref_weight(fam, s):
    return (s * s + 1) / (s * s) if fam.prediction == "v" else 1.0 / (s * s)


def ref_timenoise_t(fam, s):
    if isinstance(fam, VPDiscrete):
        i = int(np.argmin(np.abs(fam.sigmas.numpy() - s)))
        return i / fam.num_steps
    if isinstance(fam, EDM):
        return min(s / 700.0, 1.0)
    return s


def some_sigmas(fam):
    if isinstance(fam, VPDiscrete):
        return torch.stack([fam.sigmas[i] for i in (10, 400, 900)])
    if isinstance(fam, EDM):
        return torch.tensor([0.05, 1.0, 80.0], dtype=torch.float64)
    return torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)


class Recorder:
    """A denoiser that depends on x, σ and the condition, and records what it received."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, cond):
        self.calls.append((x.clone(), sigma.clone(), {k: (v.clone() if torch.is_tensor(v) else v) for k, v in cond.items()}))
        per_item = [1] * (x.dim() - 1)
        img = cond["image"].reshape(x.shape[0], -1).mean(dim=1).reshape(-1, *per_item)
        return torch.tanh(x) * 0.5 + 0.1 * img + 0.01 * sigma.reshape(-1, *per_item)


def batch(shape=(3, 2, 4, 3, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    cond = {"image": torch.randn(shape[0], shape[1], *shape[3:], generator=g, dtype=torch.float64)}
    return x0, cond


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_loss_without_timenoise_equals_float64_reference(name):
    fam = FAMILIES[name]
    x0, cond = batch()
    sigma = some_sigmas(fam)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    den = Recorder()
    loss, info = diffusion_loss(fam, den, x0, cond, LossConfig(timenoise=None), sigma=sigma, noise=noise)
    (x_seen, sig_seen, cond_seen), = den.calls
    for i, s in enumerate(sigma.tolist()):
        a, b = ref_ab(fam, s)
        x_ref = a * x0[i] + b * noise[i]
        torch.testing.assert_close(x_seen[i], x_ref, rtol=1e-12, atol=1e-12)
        pred = torch.tanh(x_ref) * 0.5 + 0.1 * cond["image"][i].mean() + 0.01 * s
        torch.testing.assert_close(loss[i], ref_weight(fam, s) * (pred - x0[i]) ** 2, rtol=1e-10, atol=1e-12)
    assert torch.equal(cond_seen["image"], cond["image"])
    assert torch.equal(cond_seen["noise_level"], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(info["beta"], torch.zeros(3, dtype=torch.float64)) and torch.equal(info["sigma"], sigma)
    assert loss.shape == x0.shape


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("per_sample_scalar", [False, True])
def test_timenoise_draws_follow_generator_order(name, per_sample_scalar):
    fam = FAMILIES[name]
    x0, cond = batch(seed=2)
    cond["tokens"] = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    tn = TimeNoiseConfig(beta_m=15.0, a=5.0, s=1.0)
    cfg = LossConfig(timenoise=tn, per_sample_scalar=per_sample_scalar)
    den = Recorder()
    _, info = diffusion_loss(fam, den, x0, cond, cfg, generator=torch.Generator().manual_seed(42))
    (x_seen, sig_seen, cond_seen), = den.calls

    g = torch.Generator().manual_seed(42)  # twin: replay every draw in the documented order
    sigma = sample_training_sigmas(fam, 3, cfg, g)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float32).double()
    z = torch.randn(3, generator=g, dtype=torch.float64)
    img_shape = (3,) + (1,) * (cond["image"].dim() - 1) if per_sample_scalar else cond["image"].shape
    img_noise = torch.randn(img_shape, generator=g, dtype=torch.float32).double()
    tok_noise = torch.randn(cond["tokens"].shape, generator=g, dtype=torch.float32).double()

    torch.testing.assert_close(info["sigma"], sigma, rtol=0, atol=0)
    beta = []
    for i, s in enumerate(sigma.tolist()):
        a, b = ref_ab(fam, s)
        torch.testing.assert_close(x_seen[i], a * x0[i] + b * eps[i], rtol=1e-12, atol=1e-12)
        t = ref_timenoise_t(fam, s)
        beta.append(15.0 / (1 + math.exp(-(2 * t**5 - 1 + float(z[i])))))
    beta = torch.tensor(beta, dtype=torch.float64)
    torch.testing.assert_close(info["beta"], beta, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(cond_seen["noise_level"], beta, rtol=1e-9, atol=1e-12)
    scale = beta.reshape(3, 1, 1, 1)
    torch.testing.assert_close(cond_seen["image"], cond["image"] + scale * img_noise, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(cond_seen["tokens"], cond["tokens"] + beta.reshape(3, 1, 1) * tok_noise, rtol=1e-7, atol=1e-7)


def test_tokens_untouched_when_disabled():
    fam = svd_family()
    x0, cond = batch()
    cond["tokens"] = torch.randn(3, 4, 6, dtype=torch.float64)
    den = Recorder()
    diffusion_loss(fam, den, x0, cond, LossConfig(timenoise=TimeNoiseConfig(beta_m=15.0), noise_tokens=False), generator=torch.Generator().manual_seed(0))
    assert torch.equal(den.calls[0][2]["tokens"], cond["tokens"])
    assert not torch.equal(den.calls[0][2]["image"], cond["image"])


@pytest.mark.parametrize("name", ["dc", "svd", "wan"])
def test_condition_perturbation_statistics(name):
    """With explicit σ, the cond perturbation is β·ε: (ỹ − y)/β has unit variance per element."""
    fam = FAMILIES[name]
    n = 400
    x0 = torch.zeros(n, 1, 2, 3, 3, dtype=torch.float64)
    cond = {"image": torch.zeros(n, 1, 3, 3, dtype=torch.float64)}
    sigma = some_sigmas(fam)[1].repeat(n)
    den = Recorder()
    _, info = diffusion_loss(fam, den, x0, cond, LossConfig(timenoise=TimeNoiseConfig(beta_m=25.0)), sigma=sigma, generator=torch.Generator().manual_seed(9))
    scaled = den.calls[0][2]["image"] / info["beta"].reshape(n, 1, 1, 1)
    m = scaled.numel()
    assert abs(float(scaled.var(unbiased=False)) - 1.0) < Z * math.sqrt(2.0 / m)
    # β at fixed t: its median is β_m·sigmoid(μ(t)); the sample median's SE ≈ 1/(2 f(median)√n)
    t = ref_timenoise_t(fam, float(sigma[0]))
    mu = 2 * t**5 - 1
    median = 25.0 / (1 + math.exp(-mu))
    frac_below = float((info["beta"] < median).double().mean())
    assert abs(frac_below - 0.5) < Z * 0.5 / math.sqrt(n)


def test_training_sigma_samplers():
    n = 20000
    cfg = LossConfig()
    g = torch.Generator().manual_seed(0)
    edm = sample_training_sigmas(svd_family(), n, cfg, g)
    logs = edm.log()  # lognormal(−1.2, 1.2²), clamping is negligible in [0.002, 700]
    assert abs(float(logs.mean()) + 1.2) < Z * 1.2 / math.sqrt(n)
    assert abs(float(logs.std()) - 1.2) < Z * 1.2 / math.sqrt(2 * n)
    vp = dynamicrafter_family()
    sig = sample_training_sigmas(vp, n, cfg, g)
    idx = torch.searchsorted(vp.sigmas, sig)
    torch.testing.assert_close(vp.sigmas[idx], sig, rtol=0, atol=0)  # only table values
    assert abs(float(idx.double().mean()) - 499.5) < Z * (1000 / math.sqrt(12)) / math.sqrt(n)
    flow = sample_training_sigmas(wan_family(), n, cfg, g)
    assert bool(((flow > 0) & (flow < 1)).all())


@pytest.mark.parametrize("name", ["dc", "svd", "wan"])
@pytest.mark.parametrize("per_sample_scalar", [False, True])
def test_rows_of_a_batch_draw_give_the_rows_of_the_batch_loss(name, per_sample_scalar):
    """Two processes each training items r, r + 2 of a 4-item batch, with the rows of the 4-item
    draw (``TrainingDraws.rows``), compute exactly the loss rows one process computes for all 4."""
    from cil_core.losses import draw_training_randomness

    fam = FAMILIES[name]
    x0, cond = batch((4, 2, 3, 3, 3), seed=5)
    cond["tokens"] = torch.randn(4, 5, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    cfg = LossConfig(timenoise=TimeNoiseConfig(beta_m=15.0), per_sample_scalar=per_sample_scalar)
    whole, _ = diffusion_loss(fam, Recorder(), x0, cond, cfg, generator=torch.Generator().manual_seed(8))
    draws = draw_training_randomness(fam, cfg, 4, (2, 3, 3, 3), (2, 3, 3), (5, 8), torch.Generator().manual_seed(8))
    for rank in (0, 1):
        rows = slice(rank, None, 2)
        part, info = diffusion_loss(fam, Recorder(), x0[rows], {k: v[rows] for k, v in cond.items()}, cfg, draws=draws.rows(rows))
        assert torch.equal(part, whole[rows]) and torch.equal(info["sigma"], draws.sigma[rows])
