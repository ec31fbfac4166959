"""Late-start schedules: shape invariants for every family and the published spacing rules.

References written here:
- DDIM "uniform_trailing" (official DynamiCrafter ``make_ddim_timesteps``):
  ``np.flip(np.round(np.arange(M, 0, -M/steps))) - 1``. np.arange's float length occasionally
  yields one extra element ≈ 0 (index −1); that artefact is dropped before comparing.
- Karras et al. (2022) Eq. 5: σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, then 0.
- Flow: linear in the unshifted time from t_M to 0, then the family's shift.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cil_core.families import EDM, RectifiedFlow, VPDiscrete, dynamicrafter_family, svd_family, wan_family
from cil_core.schedules import StartTime, is_valid_schedule, karras_sigmas, late_start_sigmas, vp_trailing_indices
from cil_core.validation import CILValueError

SETTINGS = settings(max_examples=40, deadline=None)


def official_trailing(m_index: int, steps: int) -> np.ndarray:
    idx = np.flip(np.round(np.arange(m_index, 0, -m_index / steps))) - 1
    idx = idx[idx >= 0]  # np.arange float artefact: an extra ≈0 element → index −1
    return idx.astype(np.int64)


def check_invariants(sigmas, steps, sigma_m):
    assert sigmas.dtype == torch.float64 and sigmas.shape == (steps + 1,)
    assert bool((sigmas[1:] < sigmas[:-1]).all()), sigmas
    assert float(sigmas[-1]) == 0.0
    assert float(sigmas[0]) == pytest.approx(sigma_m, rel=1e-9)
    assert is_valid_schedule(sigmas)


VP_FAMILIES = [dynamicrafter_family(), VPDiscrete(prediction="eps"), VPDiscrete(schedule="linear", beta_start=1e-4, beta_end=0.02, num_steps=500)]


@pytest.mark.parametrize("fam", VP_FAMILIES, ids=["dc", "sd-eps", "linear500"])
@given(data=st.data())
@SETTINGS
def test_vp_schedule_invariants_and_official_indices(fam, data):
    n = fam.num_steps
    k = data.draw(st.integers(1, n), label="M·N")
    steps = data.draw(st.integers(1, min(k, 250)), label="steps")
    sigmas = late_start_sigmas(fam, steps, StartTime(fraction=k / n))
    check_invariants(sigmas, steps, float(fam.sigma_at(k / n)))
    ref_idx = official_trailing(k, steps)
    assert len(ref_idx) == steps
    np.testing.assert_array_equal(vp_trailing_indices(steps, k).numpy(), ref_idx[::-1])
    np.testing.assert_allclose(sigmas[:-1].numpy(), fam.sigmas.numpy()[ref_idx[::-1]], rtol=0)


def test_trailing_indices_match_official_on_a_grid_of_m_and_steps():
    """Includes exact .5 ties (e.g. M = 940, steps = 40), where only numpy's arithmetic decides."""
    for m_index in list(range(1, 1001, 13)) + [940, 960]:
        for steps in range(1, min(m_index, 60) + 1):
            np.testing.assert_array_equal(vp_trailing_indices(steps, m_index).numpy(), official_trailing(m_index, steps)[::-1])


def test_dynamicrafter_official_default():
    fam = dynamicrafter_family()
    sigmas = late_start_sigmas(fam, 50, StartTime(fraction=0.94))
    idx = official_trailing(940, 50)
    assert idx[-1] == 939 and idx[0] == 18
    np.testing.assert_allclose(sigmas[:-1].numpy(), fam.sigmas.numpy()[idx[::-1]], rtol=0)


@given(m=st.floats(0.01, 1.0), steps=st.integers(1, 10))
@SETTINGS
def test_vp_fraction_off_the_grid_starts_at_official_ddpm_from(m, steps):
    """M·N not an integer: the schedule starts at ddpm_from = round(M·N), i.e. table index round(M·N) − 1,
    and StartTime.resolve snaps to that same entry, so Analytic-Init and the schedule agree on σ_M."""
    fam = dynamicrafter_family()
    sigmas = late_start_sigmas(fam, steps, StartTime(fraction=m))
    assert float(sigmas[0]) == float(fam.sigmas[int(round(m * 1000)) - 1])
    t_m, sigma_m = StartTime(fraction=m).resolve(fam)
    assert sigma_m == float(sigmas[0]) and t_m == int(round(m * 1000)) / 1000
    assert is_valid_schedule(sigmas) and sigmas.shape == (steps + 1,)


def test_vp_start_given_as_sigma_uses_nearest_index():
    fam = dynamicrafter_family()
    for i in (100, 939, 999):
        s = float(fam.sigmas[i])
        nudge = 1 - 1e-7 if i == 999 else 1 + 1e-6  # off the grid, but not above σ_max
        sigmas = late_start_sigmas(fam, 25, StartTime(sigma=s * nudge))
        assert float(sigmas[0]) == pytest.approx(s, rel=1e-12)
        assert is_valid_schedule(sigmas)


def karras_ref(steps, lo, hi, rho=7.0):
    i = np.arange(steps, dtype=np.float64)
    ramp = i / (steps - 1) if steps > 1 else np.zeros(1)
    s = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return np.append(s, 0.0)


@given(steps=st.integers(1, 200), m=st.floats(0.05, 1.0), rho=st.floats(1.0, 10.0))
@SETTINGS
def test_edm_karras_eq5(steps, m, rho):
    fam = svd_family()
    sigma_m = float(fam.sigma_at(m))
    assume(sigma_m > fam.sigma_min * 1.001)
    sigmas = late_start_sigmas(fam, steps, StartTime(fraction=m), rho=rho)
    check_invariants(sigmas, steps, sigma_m)
    np.testing.assert_allclose(sigmas.numpy(), karras_ref(steps, 0.002, sigma_m, rho), rtol=1e-12)
    if steps > 1:
        assert float(sigmas[-2]) == pytest.approx(0.002, rel=1e-12)


@given(steps=st.integers(1, 100), sigma_m=st.floats(0.01, 700.0))
@SETTINGS
def test_edm_start_as_sigma(steps, sigma_m):
    sigmas = late_start_sigmas(svd_family(), steps, StartTime(sigma=sigma_m))
    check_invariants(sigmas, steps, sigma_m)
    np.testing.assert_allclose(karras_sigmas(steps, 0.002, sigma_m).numpy(), karras_ref(steps, 0.002, sigma_m), rtol=1e-12)


FLOW_FAMILIES = [wan_family(), RectifiedFlow(shift=1.0), RectifiedFlow(shift=2.37, shift_kind="exponential")]


@pytest.mark.parametrize("fam", FLOW_FAMILIES, ids=["wan8", "shift1", "exp"])
@given(steps=st.integers(1, 200), m=st.floats(0.05, 1.0))
@SETTINGS
def test_flow_shifted_linear(fam, steps, m):
    sigmas = late_start_sigmas(fam, steps, StartTime(fraction=m))
    t = np.linspace(m, 0.0, steps + 1)
    if fam.shift_kind == "linear":
        ref = fam.shift * t / (1 + (fam.shift - 1) * t)
    else:
        with np.errstate(divide="ignore"):
            ref = np.where(t > 0, math.exp(fam.shift) / (math.exp(fam.shift) + 1 / t - 1), 0.0)
    check_invariants(sigmas, steps, float(ref[0]))
    np.testing.assert_allclose(sigmas.numpy(), ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fam", FLOW_FAMILIES, ids=["wan8", "shift1", "exp"])
@given(steps=st.integers(1, 100), sigma_m=st.floats(0.01, 1.0))
@SETTINGS
def test_flow_start_as_sigma(fam, steps, sigma_m):
    check_invariants(late_start_sigmas(fam, steps, StartTime(sigma=sigma_m)), steps, sigma_m)


@pytest.mark.parametrize("bad", [0.0, 1.2, -0.5, float("nan"), float("inf")])
def test_bad_fraction_raises(bad):
    with pytest.raises(CILValueError, match=r"outside \(0, 1\]"):
        StartTime(fraction=bad)


def test_bad_starts_raise():
    with pytest.raises(CILValueError, match="exactly one"):
        StartTime()
    with pytest.raises(CILValueError, match="exactly one"):
        StartTime(fraction=0.5, sigma=1.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(CILValueError, match="sigma_M"):
            StartTime(sigma=bad)
    for fam in (dynamicrafter_family(), svd_family(), wan_family()):
        with pytest.raises(CILValueError, match="exceeds"):
            late_start_sigmas(fam, 10, StartTime(sigma=fam.sigma_max * 1.01))


def test_too_many_steps_raise():
    fam = dynamicrafter_family()
    late_start_sigmas(fam, 30, StartTime(fraction=0.03))  # exactly M·N steps is fine
    with pytest.raises(CILValueError, match="at most 30"):
        late_start_sigmas(fam, 31, StartTime(fraction=0.03))
    for steps in (0, -3, 2.5):
        for f in (fam, svd_family(), wan_family()):
            with pytest.raises(CILValueError, match="steps"):
                late_start_sigmas(f, steps, StartTime(fraction=0.5))


def test_edm_start_below_sigma_min_raises():
    with pytest.raises(CILValueError, match="sigma_min"):
        late_start_sigmas(EDM(), 10, StartTime(sigma=0.001))
