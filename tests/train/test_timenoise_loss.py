"""The trainer's TimeNoise loss against independent float64 re-computations of the official
formulas (SVD EDMLossTimeNoise, DynamiCrafter's DDPM v-loss, flow matching), for fixed noise.

"Fixed noise": σ and the video noise are passed in; the draws the loss makes itself (TimeNoise's
y ~ N(μ(t), s²) and the condition noise) come from a seeded generator that the reference replays
in the documented order (y for every item, then the condition noise).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from cil_core.families import dynamicrafter_family, svd_family, wan_family
from cil_core.losses import LossConfig
from cil_core.timenoise import TimeNoiseConfig
from cil_train.adapters import Batch
from cil_train.loop import training_loss
from cil_train.toy import TinyAdapter, TinyVideoNet, init_tiny

B, C, F, H, W = 3, 3, 4, 4, 4


def make_batch(seed: int = 1) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(B, C, F, H, W, generator=gen)
    image = x0[:, :, 0] * 1.5 + 0.3
    return Batch(x0, {"image": image})


def net64(adapter: TinyAdapter) -> TinyVideoNet:
    return copy.deepcopy(adapter.net).double()


def official_beta(t: torch.Tensor, z: torch.Tensor, beta_m: float, a: float = 5.0, s: float = 1.0) -> torch.Tensor:
    """logit_normal_sampler(mu_t(t)): β_m · sigmoid(2 t^a − 1 + s·z)."""
    return beta_m / (1.0 + torch.exp(-(2.0 * t**a - 1.0 + s * z)))


def replay(seed: int, batch: int, cond_shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, generator=gen, dtype=torch.float64)
    eps = torch.randn(cond_shape, generator=gen, dtype=torch.float32).double()
    return z, eps


def test_svd_edm_timenoise_loss_equals_official_float64():
    """EDMLossTimeNoise: σ lognormal, weight (σ²+1)/σ², VScalingWithEDMcNoise, t = σ/700,
    β_m 15, one condition ε per sample, β fed to the network as the augmentation level."""
    adapter = TinyAdapter(init_tiny(TinyVideoNet(C, 16, 2), 0), svd_family(), "svd")
    batch = make_batch()
    sigma = torch.tensor([0.05, 3.0, 650.0], dtype=torch.float64)
    noise = torch.randn(batch.x0.shape, generator=torch.Generator().manual_seed(2))
    cfg = LossConfig(timenoise=TimeNoiseConfig(beta_m=15.0, a=5.0, s=1.0), per_sample_scalar=True)
    ours, info = training_loss(adapter, batch, cfg, 0.0, torch.Generator().manual_seed(7), sigma=sigma, noise=noise)

    z, eps = replay(7, B, (B, 1, 1, 1))
    s = sigma.reshape(B, 1, 1, 1, 1)
    beta = official_beta(sigma / 700.0, z, 15.0)
    cond = batch.cond["image"].double() + beta.reshape(B, 1, 1, 1) * eps
    y = batch.x0.double()
    x = y + noise.double() * s
    c_skip, c_out, c_in = 1.0 / (s**2 + 1.0), -s / (s**2 + 1.0).sqrt(), 1.0 / (s**2 + 1.0).sqrt()
    t_net = (sigma.log() - math.log(0.002)) / (math.log(700.0) - math.log(0.002))
    with torch.no_grad():
        D = c_skip * x + c_out * net64(adapter)(c_in * x, cond, t_net, beta)
    reference = (s**2 + 1.0) / s**2 * (D - y) ** 2

    assert torch.allclose(info["beta"], beta, rtol=1e-12, atol=0)
    assert torch.allclose(ours.double(), reference, rtol=2e-4, atol=2e-5 * float(reference.abs().max()))


def dc_alphas_cumprod() -> torch.Tensor:
    """DynamiCrafter: LDM 'linear' betas (sqrt-spaced), 1000 steps, rescaled to zero terminal SNR."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    root = torch.cumprod(1.0 - betas, 0).sqrt()
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])
    return root**2


def test_dynamicrafter_vp_v_loss_equals_official_float64():
    """ddpm3d v-prediction: x_t = √ᾱ x0 + √(1−ᾱ) ε, target v = √ᾱ ε − √(1−ᾱ) x0, loss (v̂ − v)²;
    TimeNoise t = index/1000, β_m 100, i.i.d. condition noise (per element)."""
    adapter = TinyAdapter(init_tiny(TinyVideoNet(C, 16, 2), 1), dynamicrafter_family(), "dynamicrafter")
    batch = make_batch(3)
    index = torch.tensor([10, 500, 940])
    abar = dc_alphas_cumprod()[index]
    sigma = ((1.0 - abar) / abar).sqrt()
    noise = torch.randn(batch.x0.shape, generator=torch.Generator().manual_seed(4))
    cfg = LossConfig(timenoise=TimeNoiseConfig(beta_m=100.0), per_sample_scalar=False)
    ours, info = training_loss(adapter, batch, cfg, 0.0, torch.Generator().manual_seed(8), sigma=sigma, noise=noise)

    z, eps = replay(8, B, tuple(batch.cond["image"].shape))
    beta = official_beta(index.double() / 1000.0, z, 100.0)
    cond = batch.cond["image"].double() + beta.reshape(B, 1, 1, 1) * eps
    a = abar.sqrt().reshape(B, 1, 1, 1, 1)
    b = (1.0 - abar).sqrt().reshape(B, 1, 1, 1, 1)
    x0, e = batch.x0.double(), noise.double()
    x_t = a * x0 + b * e
    with torch.no_grad():
        v_hat = net64(adapter)(x_t, cond, (index.double() + 1.0) / 1000.0, beta)
    reference = (v_hat - (a * e - b * x0)) ** 2

    assert torch.allclose(info["beta"], beta, rtol=1e-12, atol=0)
    assert torch.allclose(ours.double(), reference, rtol=2e-4, atol=2e-5 * float(reference.abs().max()))


def test_wan_flow_matching_loss_equals_official_float64():
    """Flow matching: x_t = (1−σ) x0 + σ ε, velocity target ε − x0, loss (v̂ − v)²; TimeNoise t = σ."""
    shift = 8.0
    adapter = TinyAdapter(init_tiny(TinyVideoNet(C, 16, 2), 2), wan_family(shift), "wan")
    batch = make_batch(5)
    sigma = torch.tensor([0.1, 0.6, 0.97], dtype=torch.float64)
    noise = torch.randn(batch.x0.shape, generator=torch.Generator().manual_seed(6))
    cfg = LossConfig(timenoise=TimeNoiseConfig(beta_m=100.0), per_sample_scalar=False)
    ours, info = training_loss(adapter, batch, cfg, 0.0, torch.Generator().manual_seed(9), sigma=sigma, noise=noise)

    z, eps = replay(9, B, tuple(batch.cond["image"].shape))
    beta = official_beta(sigma, z, 100.0)
    cond = batch.cond["image"].double() + beta.reshape(B, 1, 1, 1) * eps
    s = sigma.reshape(B, 1, 1, 1, 1)
    x0, e = batch.x0.double(), noise.double()
    t_unshifted = sigma / (shift - (shift - 1.0) * sigma)
    with torch.no_grad():
        v_hat = net64(adapter)((1.0 - s) * x0 + s * e, cond, t_unshifted, beta)
    reference = (v_hat - (e - x0)) ** 2

    assert torch.allclose(ours.double(), reference, rtol=2e-4, atol=2e-5 * float(reference.abs().max()))


def test_baseline_loss_leaves_the_condition_clean_and_dropout_zeroes_it():
    seen = []

    class Spy(TinyAdapter):
        def denoise(self, x, sigma, cond):
            seen.append(cond)
            return super().denoise(x, sigma, cond)

    adapter = Spy(init_tiny(TinyVideoNet(C, 16, 1), 0), svd_family(), "svd")
    batch = make_batch()
    sigma = torch.full((B,), 2.0, dtype=torch.float64)
    training_loss(adapter, batch, LossConfig(timenoise=None), 0.0, torch.Generator().manual_seed(0), sigma=sigma)
    assert torch.equal(seen[-1]["image"], batch.cond["image"])
    assert torch.equal(seen[-1]["noise_level"], torch.zeros(B, dtype=torch.float64))
    # dropout p = 0.999…: every item's image is zeroed inside the denoiser
    gen = torch.Generator().manual_seed(0)
    training_loss(adapter, batch, LossConfig(timenoise=None), 0.999999, gen, sigma=sigma)
    assert seen[-1]["drop"].all()


# --- β_s statistics ---------------------------------------------------------------------------------

def beta_cdf(b: torch.Tensor, t: float, beta_m: float, a: float = 5.0, s: float = 1.0) -> torch.Tensor:
    """P(β_s ≤ b | t) = Φ((logit(b/β_m) − (2t^a − 1))/s), from the official sampler's definition."""
    u = (b / beta_m).double()
    logit = torch.log(u) - torch.log1p(-u)
    return 0.5 * (1.0 + torch.erf((logit - (2.0 * t**a - 1.0)) / (s * math.sqrt(2.0))))


class ZeroAdapter(TinyAdapter):
    """Only the conditioning path matters for β statistics: a denoiser returning zeros."""

    def denoise(self, x, sigma, cond):
        self.last = cond
        return torch.zeros_like(x)


@pytest.mark.parametrize(
    "family_name,make_family,sigma_of_t,beta_m",
    [
        ("svd", svd_family, lambda t: 700.0 * t, 15.0),
        ("dynamicrafter", dynamicrafter_family, None, 100.0),
    ],
)
@pytest.mark.parametrize("t", [0.05, 0.5, 0.94])
def test_beta_s_matches_its_distribution(family_name, make_family, sigma_of_t, beta_m, t):
    """Kolmogorov–Smirnov on n = 20000 draws at a fixed t (α = 0.001: critical D = 1.95/√n)."""
    family = make_family()
    if sigma_of_t is None:  # VP: t = index/1000, σ from the DC table
        sigma_value = float(((1.0 - dc_alphas_cumprod()) / dc_alphas_cumprod()).sqrt()[round(t * 1000)])
    else:
        sigma_value = sigma_of_t(t)
    n = 20000
    adapter = ZeroAdapter(init_tiny(TinyVideoNet(C, 4, 1), 0), family, family_name)
    batch = Batch(torch.zeros(n, C, 1, 1, 1), {"image": torch.zeros(n, C, 1, 1)})
    cfg = LossConfig(timenoise=TimeNoiseConfig(beta_m=beta_m), per_sample_scalar=family_name == "svd")
    _, info = training_loss(adapter, batch, cfg, 0.0, torch.Generator().manual_seed(11),
                            sigma=torch.full((n,), sigma_value, dtype=torch.float64))
    beta = info["beta"].sort().values
    ecdf_hi = torch.arange(1, n + 1, dtype=torch.float64) / n
    ecdf_lo = torch.arange(0, n, dtype=torch.float64) / n
    model = beta_cdf(beta, t, beta_m)
    d = float(torch.maximum((ecdf_hi - model).abs(), (model - ecdf_lo).abs()).max())
    assert d < 1.95 / math.sqrt(n), f"KS distance {d:.4f} at t={t}"
    median = beta_m / (1.0 + math.exp(-(2.0 * t**5 - 1.0)))
    assert abs(float(beta.median()) - median) < 0.03 * beta_m
    # the image noise is β·ε: per item one ε for SVD (official), i.i.d. per element otherwise
    delta = adapter.last["image"] / beta_sorted_back(info["beta"], adapter.last["image"])
    per_item_spread = delta.flatten(1).std(dim=1)
    if family_name == "svd":
        assert float(per_item_spread.max()) < 1e-4
    else:
        assert float(per_item_spread.mean()) > 0.5


def beta_sorted_back(beta: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return beta.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))


def test_svd_marginal_beta_mean_matches_quadrature():
    """With σ ~ lognormal(−1.2, 1.2) (official), E[β_s] from 200 000 draws vs a float64
    quadrature of β_m·E[sigmoid(2(σ/700)^5 − 1 + z)] over σ and z (4σ_MC tolerance)."""
    n = 200_000
    family = svd_family()
    adapter = ZeroAdapter(init_tiny(TinyVideoNet(C, 4, 1), 0), family, "svd")
    batch = Batch(torch.zeros(n, 1, 1, 1, 1), {"image": torch.zeros(n, 1, 1, 1)})
    cfg = LossConfig(timenoise=TimeNoiseConfig(beta_m=15.0), per_sample_scalar=True)
    _, info = training_loss(adapter, batch, cfg, 0.0, torch.Generator().manual_seed(12))
    beta = info["beta"]
    u = torch.linspace(-8, 8, 1601, dtype=torch.float64)
    w = torch.exp(-u**2 / 2)
    w = w / w.sum()
    sigma = torch.exp(-1.2 + 1.2 * u).clamp(0.002, 700.0)
    mu = 2.0 * (sigma / 700.0) ** 5 - 1.0
    expected = float((w[:, None] * w[None, :] * 15.0 * torch.sigmoid(mu[:, None] + u[None, :])).sum())
    assert abs(float(beta.mean()) - expected) < 4 * float(beta.std()) / math.sqrt(n)
