"""Diffusion families against independent float64 (numpy) formulas.

References written here, not taken from cil_core:
- DDPM betas: "scaled_linear" = linspace(√β0, √β1)², "linear" = linspace(β0, β1); ᾱ = cumprod(1 − β).
- Zero terminal SNR: Lin et al. (2024), Algorithm 1, applied to ComfyUI's sigma table as ComfyUI does
  (comfy/model_sampling.py ``rescale_zero_terminal_snr_sigmas``), with ComfyUI's final ᾱ clamp.
- Flow shifts: ComfyUI ``time_snr_shift`` (linear) and ``flux_time_shift`` (exponential).
- Preconditioning of a perfect model: ε-, v- (v = α'ε − σ'x0 with α' = 1/√(1+s²), σ' = s/√(1+s²))
  and flow (velocity ε − x0) targets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cil_core.families import (
    EDM,
    RectifiedFlow,
    VPDiscrete,
    dynamicrafter_family,
    family_from_description,
    svd_family,
    wan_family,
)

SETTINGS = settings(max_examples=30, deadline=None)
COMFY_ZSNR_LAST_ALPHA_BAR = 4.8973451890853435e-08  # comfy/model_sampling.py


def ref_alphas_cumprod(beta_start, beta_end, n, schedule):
    if schedule == "scaled_linear":
        betas = np.linspace(beta_start**0.5, beta_end**0.5, n, dtype=np.float64) ** 2
    else:
        betas = np.linspace(beta_start, beta_end, n, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def ref_sigmas(beta_start=0.00085, beta_end=0.012, n=1000, schedule="scaled_linear", zsnr=False):
    abar = ref_alphas_cumprod(beta_start, beta_end, n, schedule)
    sigmas = np.sqrt((1.0 - abar) / abar)
    if zsnr:  # Lin et al. Alg. 1 on the sigma table (ComfyUI's route)
        root = np.sqrt(1.0 / (sigmas * sigmas + 1.0))
        r0, rT = root[0], root[-1]
        root = (root - rT) * (r0 / (r0 - rT))
        abar = root**2
        abar[-1] = COMFY_ZSNR_LAST_ALPHA_BAR
        sigmas = np.sqrt((1.0 - abar) / abar)
    return sigmas


def all_families():
    return [
        dynamicrafter_family(),
        VPDiscrete(prediction="eps"),
        VPDiscrete(schedule="linear", beta_start=1e-4, beta_end=0.02, prediction="eps"),
        svd_family(),
        EDM(prediction="eps"),
        wan_family(),
        RectifiedFlow(shift=3.0),
        RectifiedFlow(shift=2.37, shift_kind="exponential"),
    ]


FAMILY_IDS = [f"{f.name}-{f.prediction}-{i}" for i, f in enumerate(all_families())]


# --- VP table ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(schedule="scaled_linear"),
        dict(schedule="linear", beta_start=1e-4, beta_end=0.02),
        dict(schedule="scaled_linear", zero_terminal_snr=True),
        dict(schedule="linear", beta_start=1e-4, beta_end=0.02, num_steps=500, zero_terminal_snr=True),
    ],
)
def test_vp_sigma_table_matches_numpy_reference(kwargs):
    fam = VPDiscrete(**kwargs)
    ref = ref_sigmas(
        kwargs.get("beta_start", 0.00085),
        kwargs.get("beta_end", 0.012),
        kwargs.get("num_steps", 1000),
        kwargs["schedule"],
        kwargs.get("zero_terminal_snr", False),
    )
    np.testing.assert_allclose(fam.sigmas.numpy(), ref, rtol=1e-10, atol=0)
    assert fam.sigmas.dtype == torch.float64
    assert fam.sigma_min == pytest.approx(ref[0], rel=1e-12)
    assert fam.sigma_max == pytest.approx(ref[-1], rel=1e-10)


def test_zsnr_sigma_max_is_comfyui_clamp():
    fam = dynamicrafter_family()
    expected = math.sqrt((1 - COMFY_ZSNR_LAST_ALPHA_BAR) / COMFY_ZSNR_LAST_ALPHA_BAR)
    assert fam.sigma_max == pytest.approx(expected, rel=1e-12)
    assert abs(fam.sigma_max - 4518.8) < 0.05  # the value quoted in design/math.md


def test_dynamicrafter_sigma_at_094_is_index_939_entry():
    fam = dynamicrafter_family()
    ref = ref_sigmas(zsnr=True)[939]  # official ddpm_from=940 reads α at index 939
    assert float(fam.sigma_at(0.94)) == pytest.approx(ref, rel=1e-9)
    assert abs(ref - 32.93) < 0.01  # design/math.md quotes σ'_M ≈ 32.9 for M = 940


@given(i=st.integers(0, 999))
@SETTINGS
def test_vp_sigma_at_grid_times_is_table(i):
    fam = dynamicrafter_family()
    ref = ref_sigmas(zsnr=True)
    assert float(fam.sigma_at((i + 1) / 1000)) == pytest.approx(ref[i], rel=1e-9)
    assert float(fam.time_at(ref[i])) == pytest.approx((i + 1) / 1000, abs=1e-9)
    assert float(fam.index_at(ref[i])) == pytest.approx(i, abs=1e-6)


# --- time <-> sigma -------------------------------------------------------------------------
@pytest.mark.parametrize("fam", all_families(), ids=FAMILY_IDS)
@given(t=st.floats(0.0, 1.0))
@SETTINGS
def test_time_sigma_round_trip(fam, t):
    sigma = fam.sigma_at(t)
    assert sigma.dtype == torch.float64
    assert float(fam.time_at(sigma)) == pytest.approx(t, abs=1e-9)


@pytest.mark.parametrize("fam", all_families(), ids=FAMILY_IDS)
def test_sigma_at_is_increasing_and_spans_range(fam):
    t = torch.linspace(0.0, 1.0, 2001, dtype=torch.float64)
    s = fam.sigma_at(t)
    assert (s[1:] > s[:-1]).all()
    assert float(s[-1]) == pytest.approx(fam.sigma_max, rel=1e-9)
    back = fam.sigma_at(fam.time_at(s[1:]))
    np.testing.assert_allclose(back.numpy(), s[1:].numpy(), rtol=1e-9)


@given(t=st.floats(0.0, 1.0), shift=st.floats(0.5, 10.0))
@SETTINGS
def test_flow_shifts_match_comfyui_formulas(t, shift):
    lin = RectifiedFlow(shift=shift)
    assert float(lin.sigma_at(t)) == pytest.approx(shift * t / (1 + (shift - 1) * t), abs=1e-12)
    exp = RectifiedFlow(shift=shift, shift_kind="exponential")
    ref = 0.0 if t == 0 else math.exp(shift) / (math.exp(shift) + (1 / t - 1))
    assert float(exp.sigma_at(t)) == pytest.approx(ref, abs=1e-12)


@given(t=st.floats(0.0, 1.0))
@SETTINGS
def test_edm_time_is_log_linear(t):
    fam = svd_family()
    ref = math.exp(math.log(0.002) + t * (math.log(700.0) - math.log(0.002)))
    assert float(fam.sigma_at(t)) == pytest.approx(ref, rel=1e-12)


# --- paper (α, σ) vs sampler scaling ---------------------------------------------------------
@given(i=st.integers(0, 999))
@SETTINGS
def test_vp_paper_alpha_sigma_is_sqrt_alpha_bar(i):
    fam = dynamicrafter_family()
    sigma = ref_sigmas(zsnr=True)[i]
    abar = 1.0 / (1.0 + sigma**2)
    alpha, sig_p = (float(z) for z in fam.paper_alpha_sigma(sigma))
    assert alpha == pytest.approx(math.sqrt(abar), rel=1e-12)
    assert sig_p == pytest.approx(math.sqrt(1 - abar), rel=1e-9)


@pytest.mark.parametrize("fam", all_families(), ids=FAMILY_IDS)
@given(t=st.floats(0.02, 0.98), seed=st.integers(0, 2**31 - 1))
@SETTINGS
def test_paper_state_is_sampler_state_rescaled(fam, t, seed):
    """x_t = α·x0 + σ_p·ε (paper) and x = a·x0 + b·ε (sampler) are one state: x = x_t·a/α."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(3, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 5, generator=g, dtype=torch.float64)
    sigma = fam.sigma_at(t)
    alpha, sig_p = fam.paper_alpha_sigma(sigma)
    a, b = fam.scaling(sigma)
    x_paper = alpha * x0 + sig_p * eps
    x = fam.noised(x0, eps, sigma.reshape(1))
    torch.testing.assert_close(x, a * x0 + b * eps, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_paper * (a / alpha), x, rtol=1e-10, atol=1e-10)
    if isinstance(fam, VPDiscrete):  # VP: α² + σ_p² = 1 and x_t/α = x0 + σ'·ε
        assert float(alpha**2 + sig_p**2) == pytest.approx(1.0, abs=1e-12)
        torch.testing.assert_close(x_paper / alpha, x0 + sigma * eps, rtol=1e-10, atol=1e-10)


def test_timenoise_time_per_family():
    vp = dynamicrafter_family()
    ref = ref_sigmas(zsnr=True)
    for i in (0, 1, 500, 939, 999):  # official DynamiCrafter: integer index / 1000
        assert float(vp.timenoise_time(ref[i])) == pytest.approx(i / 1000, abs=1e-9)
    svd = svd_family()  # official SVD: σ/700, clamped
    assert float(svd.timenoise_time(100.0)) == pytest.approx(100 / 700)
    assert float(svd.timenoise_time(700.0)) == 1.0
    wan = wan_family()
    assert float(wan.timenoise_time(0.3)) == pytest.approx(0.3)


# --- preconditioning and loss weights --------------------------------------------------------
def perfect_output(fam, x0, eps, s):
    """The network output that reproduces x0 exactly, written from the definitions."""
    if fam.prediction == "eps":
        return eps
    if fam.prediction == "v":
        return (eps - s * x0) / math.sqrt(1 + s * s)
    return eps - x0  # flow velocity


def sigma_strategy(fam):
    lo = max(fam.sigma_min, 1e-3)
    hi = min(fam.sigma_max, 1.0 - 1e-3) if isinstance(fam, RectifiedFlow) else fam.sigma_max
    return st.floats(lo, hi)


@pytest.mark.parametrize("fam", all_families(), ids=FAMILY_IDS)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
@SETTINGS
def test_denoised_inverts_a_perfect_model(fam, data, seed):
    s = data.draw(sigma_strategy(fam))
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    sigma = torch.full((2,), s, dtype=torch.float64)
    x = fam.noised(x0, eps, sigma)
    out = perfect_output(fam, x0, eps, s)
    scale = 1.0 + s
    torch.testing.assert_close(fam.denoised(x, sigma, out), x0, rtol=0, atol=1e-10 * scale)
    # the network input: ComfyUI's c_in = 1/√(σ²+1) for ε/v models, identity for flow
    expected_in = x if fam.prediction == "flow" else x / math.sqrt(s * s + 1)
    torch.testing.assert_close(fam.network_input(x, sigma), expected_in, rtol=1e-12, atol=0)
    if isinstance(fam, VPDiscrete):  # VP input = the paper's x_t = α·x0 + σ_p·ε
        alpha, sig_p = 1 / math.sqrt(1 + s * s), s / math.sqrt(1 + s * s)
        torch.testing.assert_close(fam.network_input(x, sigma), alpha * x0 + sig_p * eps, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fam", all_families(), ids=FAMILY_IDS)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
@SETTINGS
def test_loss_weight_is_native_objective_ratio(fam, data, seed):
    """w(σ)·MSE(x̂0, x0) equals the native MSE on the network output (ε, v or velocity)."""
    s = data.draw(sigma_strategy(fam))
    g = torch.Generator().manual_seed(seed)
    x0, eps, out_pred = (torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(3))
    sigma = torch.full((4,), s, dtype=torch.float64)
    x = fam.noised(x0, eps, sigma)
    target = perfect_output(fam, x0, eps, s)
    native = float(((out_pred - target) ** 2).mean())
    x0_mse = float(((fam.denoised(x, sigma, out_pred) - x0) ** 2).mean())
    assert float(fam.loss_weight(torch.tensor(s, dtype=torch.float64))) * x0_mse == pytest.approx(native, rel=1e-8)


@pytest.mark.parametrize("fam", all_families(), ids=FAMILY_IDS)
def test_describe_round_trip(fam):
    back = family_from_description(fam.describe())
    assert back == fam
