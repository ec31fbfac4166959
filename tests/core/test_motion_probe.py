"""Motion statistics and the Leakage Probe, checked on denoisers whose answer is known.

The Gaussian test: for x0 ~ N(m, Σ) and x = a·x0 + b·ε, the exact posterior-mean denoiser is
E[x0|x] = m + K(x − a·m) with K = a·Σ(a²Σ + b²I)⁻¹. For the probe's fixed video x0 that gives
x̂0 = m + a·K(x0 − m) + b·K·ε, so with the frame-difference operator D (n_D rows)
E[motion(x̂0)] = (‖D(m + aK(x0 − m))‖² + b²·tr(DKKᵀDᵀ))/n_D exactly. The probe's Monte-Carlo
mean ratio must match it within 5 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cil_core.families import RectifiedFlow, dynamicrafter_family, svd_family, wan_family
from cil_core.motion import first_frame_psnr, frame_difference_energy, motion_of_mean, motion_ratio
from cil_core.probe import one_step_predictions, probe_leakage
from cil_core.validation import CILValueError

Z = 5.0


def loop_energy(video: np.ndarray, time_dim: int, batch_dims: int) -> np.ndarray:
    """Direct loop: mean over frame pairs of the mean squared difference, per batch entry."""
    v = np.moveaxis(video.astype(np.float64), time_dim, batch_dims)
    batch_shape = v.shape[:batch_dims]
    v = v.reshape(int(np.prod(batch_shape, dtype=np.int64)), v.shape[batch_dims], -1)
    out = np.zeros(v.shape[0])
    for i in range(v.shape[0]):
        pairs = [np.mean((v[i, f + 1] - v[i, f]) ** 2) for f in range(v.shape[1] - 1)]
        out[i] = np.mean(pairs)
    return out.reshape(batch_shape)


@given(data=st.data(), seed=st.integers(0, 1000))
@settings(max_examples=40, deadline=None)
def test_frame_difference_energy_matches_loop(data, seed):
    rank = data.draw(st.integers(2, 5))
    batch_dims = data.draw(st.integers(0, rank - 1))
    shape = data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank))
    time_axis = data.draw(st.integers(batch_dims, rank - 1))
    shape[time_axis] = max(shape[time_axis], 2)
    time_dim = data.draw(st.sampled_from([time_axis, time_axis - rank]))
    video = torch.from_numpy(np.random.default_rng(seed).normal(size=shape)).float()
    got = frame_difference_energy(video, time_dim=time_dim, batch_dims=batch_dims)
    np.testing.assert_allclose(got.numpy(), loop_energy(video.numpy(), time_axis, batch_dims), rtol=1e-12)


def test_static_video_and_bad_shapes():
    static = torch.randn(4, 1, 5, 6).expand(4, 7, 5, 6)  # CFHW with identical frames
    assert float(frame_difference_energy(static, time_dim=1)) == 0.0
    with pytest.raises(CILValueError, match="no motion"):
        motion_ratio(torch.randn(4, 7, 5, 6), static, time_dim=1)
    with pytest.raises(CILValueError, match="at least 2 frames"):
        frame_difference_energy(torch.randn(4, 1, 5, 6), time_dim=1)
    with pytest.raises(CILValueError, match="batch dim"):
        frame_difference_energy(torch.randn(3, 4, 5), time_dim=0, batch_dims=1)


def test_motion_of_mean_is_unbiased_and_needs_two_draws():
    """Draws = a fixed video + noise: the estimate's mean over 2000 repeats is the fixed video's
    energy within 5 SE, while the plain energy of one draw is biased up by 2·var."""
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 4, 5, 6, dtype=torch.float64, generator=g)
    true = float(frame_difference_energy(mean, time_dim=1))
    draws = mean + 0.7 * torch.randn(2000, 3, 3, 4, 5, 6, dtype=torch.float64, generator=g)
    est = motion_of_mean(draws, time_dim=1)
    assert abs(float(est.mean()) - true) < 5 * float(est.std()) / math.sqrt(2000)
    plain = frame_difference_energy(draws[:, 0], time_dim=1)
    assert float(plain.mean()) > true + 2 * 0.49 * 0.9
    with pytest.raises(CILValueError, match="at least 2 draws"):
        motion_of_mean(draws[:, :1], time_dim=1)


def test_motion_ratio_and_psnr():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 3, 4, 6, 5, generator=g)
    assert torch.allclose(motion_ratio(2 * ref, ref, time_dim=2, batch_dims=1), torch.full((2,), 4.0, dtype=torch.float64))
    img = ref[:, :, 0]
    assert bool(torch.isinf(first_frame_psnr(ref, img, time_dim=2, batch_dims=1)).logical_not().all())
    psnr = first_frame_psnr(ref, img + 0.1, time_dim=2, batch_dims=1)
    torch.testing.assert_close(psnr, torch.full((2,), 20.0, dtype=torch.float64), rtol=1e-5, atol=1e-5)


# --- probe ---------------------------------------------------------------------------------------
def moving_video(shape=(2, 5, 3, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g)


FAMILIES = {"dc": dynamicrafter_family(), "svd": svd_family(), "wan": wan_family()}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_copy_condition_denoiser_has_ratio_zero_and_oracle_one(name):
    fam = FAMILIES[name]
    x0 = moving_video()
    grid = [0.1, 0.5, 0.9, 1.0]

    def copy_condition(x, sigma):  # a perfect leak: the conditional frame repeated over time
        return x0[:, :1].expand_as(x0).unsqueeze(0).expand(x.shape[0], *x0.shape)

    def oracle(x, sigma):
        return x0.unsqueeze(0).expand(x.shape[0], *x0.shape)

    leak = probe_leakage(copy_condition, x0, fam, grid, samples_per_t=3, generator=torch.Generator().manual_seed(0))
    assert leak.ratio.shape == (4, 3) and bool((leak.ratio == 0).all())
    good = probe_leakage(oracle, x0, fam, grid, samples_per_t=3, generator=torch.Generator().manual_seed(0))
    assert bool((good.ratio == 1).all()) and torch.equal(good.mean_ratio, torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(good.sigma, fam.sigma_at(torch.tensor(grid, dtype=torch.float64)))
    assert good.motion_ref == pytest.approx(float(frame_difference_energy(x0, time_dim=1)))



def test_skip_frames_leaves_the_held_start_frame_out_of_both_motions():
    """A denoiser that gets frames 1.. right and frame 0 wrong has ratio 1 with skip_frames=1; the
    reference motion is the energy of frames 1.. alone (computed here with numpy, float64)."""
    fam = FAMILIES["wan"]
    x0 = moving_video()

    def right_after_frame_0(x, sigma):
        out = x0.unsqueeze(0).expand(x.shape[0], *x0.shape).clone()
        out[:, :, 0] = 100.0
        return out

    res = probe_leakage(right_after_frame_0, x0, fam, [0.5, 1.0], samples_per_t=2, skip_frames=1,
                        generator=torch.Generator().manual_seed(0))
    assert bool((res.ratio == 1).all()) and res.skip_frames == 1
    ref = x0.double().numpy()[:, 1:]
    assert res.motion_ref == pytest.approx(float(((ref[:, 1:] - ref[:, :-1]) ** 2).mean()), rel=1e-12)
    whole = probe_leakage(right_after_frame_0, x0, fam, [0.5, 1.0], samples_per_t=2, generator=torch.Generator().manual_seed(0))
    assert bool((whole.ratio > 1).all()), "with frame 0 measured the wrong frame shows as motion"
    with pytest.raises(CILValueError, match="skip_frames"):
        probe_leakage(right_after_frame_0, x0, fam, [0.5], skip_frames=x0.shape[1] - 1)

def ref_ab(fam, sigma):
    if isinstance(fam, RectifiedFlow):
        return 1.0 - sigma, sigma
    return 1.0, sigma


def frame_diff_matrix(c, f, h, w):
    """D with (D·vec(x)) = x[:, f+1] − x[:, f] for every channel, frame pair and pixel (CFHW order)."""
    idx = np.arange(c * f * h * w).reshape(c, f, h, w)
    rows = []
    for fi in range(f - 1):
        for ci in range(c):
            for hi in range(h):
                for wi in range(w):
                    r = np.zeros(c * f * h * w)
                    r[idx[ci, fi + 1, hi, wi]] += 1
                    r[idx[ci, fi, hi, wi]] -= 1
                    rows.append(r)
    return np.array(rows)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_probe_on_exact_gaussian_posterior_mean(name):
    fam = FAMILIES[name]
    shape = (1, 4, 2, 2)
    d = int(np.prod(shape))
    rng = np.random.default_rng(4)
    # a prior whose frames are strongly correlated: the posterior mean loses motion as σ grows
    base = rng.normal(size=(d, d)) * 0.3
    frame_common = np.kron(np.ones((4, 4)), np.eye(4))  # same pixel across frames
    cov = base @ base.T + 1.5 * frame_common + 0.05 * np.eye(d)
    m = rng.normal(size=d) * 0.5
    x0 = torch.from_numpy(m + np.linalg.cholesky(cov) @ rng.normal(size=d)).float().reshape(shape)
    x0_np = x0.double().numpy().reshape(-1)

    def posterior_mean(x, sigma):
        xs = x.double().reshape(x.shape[0], d).numpy()
        out = []
        for xi, s in zip(xs, sigma.double().numpy()):
            a, b = ref_ab(fam, float(s))
            k = a * cov @ np.linalg.inv(a * a * cov + b * b * np.eye(d))
            out.append(m + k @ (xi - a * m))
        return torch.from_numpy(np.array(out)).reshape(x.shape)

    grid = [0.3, 0.6, 0.9, 0.97]
    samples = 600
    res = probe_leakage(posterior_mean, x0, fam, grid, samples_per_t=samples, generator=torch.Generator().manual_seed(5), max_batch=300)
    dmat = frame_diff_matrix(*shape)
    n_d = dmat.shape[0]
    motion_ref = float(np.sum((dmat @ x0_np) ** 2) / n_d)
    assert res.motion_ref == pytest.approx(motion_ref, rel=1e-6)
    ratios = []
    for i, s in enumerate(res.sigma.numpy()):
        a, b = ref_ab(fam, float(s))
        k = a * cov @ np.linalg.inv(a * a * cov + b * b * np.eye(d))
        mean_part = dmat @ (m + a * k @ (x0_np - m))
        expected = (np.sum(mean_part**2) + b * b * np.trace(dmat @ k @ k.T @ dmat.T)) / n_d
        se = float(res.motion_pred[i].std()) / math.sqrt(samples)
        assert abs(float(res.motion_pred[i].mean()) - expected) < Z * se + 1e-6 * expected
        ratios.append(expected / motion_ref)
    # the exact ratio falls with t for this prior (the probe's premise)
    assert ratios[0] > ratios[-1]
    # corrected motion: E_ε[x̂0] = m + aK(x0 − m), its energy ‖D(m + aK(x0 − m))‖²/n_D exactly; the
    # tolerance uses the spread of the unbiased estimate over 10 groups of 60 draws (conservative)
    kept = probe_leakage(posterior_mean, x0, fam, grid, samples_per_t=samples, generator=torch.Generator().manual_seed(5),
                         max_batch=300, keep_predictions=True)
    assert torch.allclose(kept.motion_mean, res.motion_mean)
    for i, s in enumerate(res.sigma.numpy()):
        a, b = ref_ab(fam, float(s))
        k = a * cov @ np.linalg.inv(a * a * cov + b * b * np.eye(d))
        expected = float(np.sum((dmat @ (m + a * k @ (x0_np - m))) ** 2) / n_d)
        groups = motion_of_mean(kept.predictions[i].reshape(10, 60, *shape), time_dim=1)
        se = float(groups.std()) / math.sqrt(10)
        assert abs(float(res.motion_mean[i, 0]) - expected) < Z * se + 1e-9, (float(res.motion_mean[i, 0]), expected, se)
        assert float(res.motion_mean[i, 0]) <= float(res.motion_pred[i].mean())  # noise removed: never more motion


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(2, 4), st.integers(1, 3), st.integers(1, 3)),
    n_t=st.integers(1, 4),
    samples=st.integers(1, 3),
    max_batch=st.integers(1, 7),
    seed=st.integers(0, 1000),
)
@settings(max_examples=25, deadline=None)
def test_probe_independent_of_max_batch(shape, n_t, samples, max_batch, seed):
    x0 = moving_video(shape, seed)
    grid = torch.linspace(0.2, 1.0, n_t, dtype=torch.float64)
    fam = svd_family()

    def noisy_identity(x, sigma):  # depends on the noise, so any change in the draws shows
        return x / (1 + sigma.reshape(-1, 1, 1, 1, 1))

    kwargs = dict(samples_per_t=samples, keep_predictions=True)
    one = probe_leakage(noisy_identity, x0, fam, grid, generator=torch.Generator().manual_seed(seed), max_batch=1, **kwargs)
    other = probe_leakage(noisy_identity, x0, fam, grid, generator=torch.Generator().manual_seed(seed), max_batch=max_batch, **kwargs)
    assert torch.equal(one.predictions, other.predictions)
    assert torch.equal(one.motion_pred, other.motion_pred)
    assert one.predictions.shape == (n_t, samples, *shape)


def test_one_step_predictions_progress_and_noise_model():
    x0 = moving_video((2, 3, 2, 2))
    fam = wan_family()
    sig = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
    calls = []
    got = one_step_predictions(lambda x, s: x, x0, fam, sig, generator=torch.Generator().manual_seed(1), max_batch=2, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(2, 3), (3, 3)]
    g = torch.Generator().manual_seed(1)
    eps = torch.stack([torch.randn(x0.shape, generator=g) for _ in range(3)])
    ref = (1 - sig.float()).reshape(-1, 1, 1, 1, 1) * x0 + sig.float().reshape(-1, 1, 1, 1, 1) * eps
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("grid", [[0.0, 0.5], [0.5, 1.1], [float("nan")], [], [-0.2]])
def test_probe_bad_grid_raises(grid):
    with pytest.raises(CILValueError, match="grid"):
        probe_leakage(lambda x, s: x, moving_video(), svd_family(), grid)


def test_probe_bad_inputs_raise():
    fam = svd_family()
    with pytest.raises(CILValueError, match="samples_per_t"):
        probe_leakage(lambda x, s: x, moving_video(), fam, [0.5], samples_per_t=0)
    with pytest.raises(CILValueError, match="identical frames"):
        probe_leakage(lambda x, s: x, torch.ones(2, 4, 3, 3), fam, [0.5])
    with pytest.raises(CILValueError, match="rank"):
        probe_leakage(lambda x, s: x, torch.randn(1, 2, 4, 3, 3), fam, [0.5])
    with pytest.raises(CILValueError, match="max_batch"):
        probe_leakage(lambda x, s: x, moving_video(), fam, [0.5], max_batch=0)
