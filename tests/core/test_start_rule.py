"""The late-start rules (cil_core.start_rule): each against an independent brute-force reading of
its documented definition, on hand-made curves, and end to end on a denoiser whose copying time
is known."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cil_core.families import svd_family
from cil_core.probe import probe_leakage
from cil_core.start_rule import StartRule, recommend_start, recommendation_stability
from cil_core.validation import CILValueError


def brute_threshold(ts, rs, threshold):
    """Largest t with ratio >= threshold at every t' <= t; else the smallest t."""
    passing = [t for t in ts if all(r >= threshold for tt, r in zip(ts, rs) if tt <= t)]
    return max(passing) if passing else min(ts)


def brute_plateau(ts, rs, threshold, tol):
    """Sort by t. Floor = the lowest ratio (the largest t on ties). Not leaking (floor >= threshold):
    the largest t. No faithful end (ratio at the smallest t < threshold): the smallest t. Else the
    smallest t such that every t' from t up to the floor's t has ratio <= floor + tol·(bottom − floor)."""
    pairs = sorted(zip(ts, rs))
    ts, rs = [p[0] for p in pairs], [p[1] for p in pairs]
    low = min(rs)
    t_floor = max(t for t, r in pairs if r == low)
    if low >= threshold:
        return ts[-1]
    if rs[0] < threshold:
        return ts[0]
    level = low + tol * (rs[0] - low)
    return min(t for t in ts if t <= t_floor and all(r <= level for tt, r in pairs if t <= tt <= t_floor))


TOY_LIKE_T = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0]
TOY_LIKE_R = [0.998, 0.981, 0.899, 0.726, 0.526, 0.425, 0.243, 0.107, 0.091, 0.097, 0.114]


@pytest.mark.parametrize(
    "t, r, rule, expected_m, verdict",
    [
        (TOY_LIKE_T, TOY_LIKE_R, StartRule(), 0.8, "late_start"),  # the plateau starts where the ratio settles
        (TOY_LIKE_T, TOY_LIKE_R, StartRule("plateau", plateau_tolerance=0.2), 0.7, "late_start"),
        (TOY_LIKE_T, TOY_LIKE_R, StartRule("threshold"), 0.5, "late_start"),  # the half-collapse point
        ([0.2, 0.6, 1.0], [1.0, 0.9, 0.7], StartRule(), 1.0, "no_leakage"),
        ([0.2, 0.6, 1.0], [1.0, 0.7, 1.3], StartRule(), 1.0, "no_leakage"),
        ([0.2, 0.6, 1.0], [1.0, 0.9, 0.7], StartRule("threshold"), 1.0, "no_leakage"),
        ([0.2, 0.6, 1.0], [0.1, 0.12, 0.1], StartRule(), 0.2, "leaks_everywhere"),
        ([0.2, 0.6, 1.0], [0.4, 0.9, 0.9], StartRule("threshold"), 0.2, "leaks_everywhere"),
        ([0.2, 0.6, 1.0], [1.0, 0.9, 0.1], StartRule(), 1.0, "plateau_at_top"),
        ([0.2, 0.6, 0.8, 0.9, 1.0], [1.0, 0.6, 0.1, 0.12, 2.0], StartRule(), 0.8, "late_start"),  # an outlier at t = 1 is skipped
        ([1.0, 0.6, 0.2, 0.8, 0.4], [0.1, 0.6, 1.0, 0.12, 0.9], StartRule(), 0.8, "late_start"),  # unsorted grid
        ([0.5], [0.7], StartRule("threshold", threshold=0.8), 0.5, "leaks_everywhere"),
        ([0.2, 0.4, 0.6], [0.8, 0.5, 0.4], StartRule("threshold"), 0.4, "late_start"),  # ratio == threshold passes
    ],
)
def test_rules_on_hand_made_curves(t, r, rule, expected_m, verdict):
    rec = recommend_start(torch.tensor(t, dtype=torch.float64), torch.tensor(r, dtype=torch.float64), rule)
    assert rec.m == pytest.approx(expected_m) and rec.verdict == verdict and rec.rule == rule.rule
    assert rec.found is (verdict in ("late_start", "no_leakage"))


curves = st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.0, 1.5, allow_nan=False), min_size=n, max_size=n),
    st.permutations(list(range(n)))))


@given(curve=curves, threshold=st.floats(0.05, 1.2), tol=st.floats(0.0, 0.95))
@settings(max_examples=150, deadline=None)
def test_rules_follow_their_definitions(curve, threshold, tol):
    rs, order = curve
    ts = [0.05 + 0.95 * i / max(len(rs) - 1, 1) for i in range(len(rs))]
    ts, rs = [ts[i] for i in order], [rs[i] for i in order]  # any grid order
    t, r = torch.tensor(ts, dtype=torch.float64), torch.tensor(rs, dtype=torch.float64)
    plateau = recommend_start(t, r, StartRule("plateau", threshold, tol))
    assert plateau.m == brute_plateau(ts, rs, threshold, tol)
    assert recommend_start(t, r, StartRule("threshold", threshold)).m == brute_threshold(ts, rs, threshold)
    # a larger tolerance widens the plateau: M never moves later
    wider = recommend_start(t, r, StartRule("plateau", threshold, min(tol + 0.04, 0.99)))
    assert wider.m <= plateau.m


def test_a_rise_after_the_plateau_is_reported():
    rec = recommend_start(torch.tensor([0.2, 0.6, 0.8, 0.9, 1.0]), torch.tensor([1.0, 0.6, 0.1, 0.12, 2.0]))
    assert rec.rises_after_plateau == pytest.approx([1.0]) and "rises above the plateau again at t = 1" in rec.message
    assert recommend_start(torch.tensor(TOY_LIKE_T), torch.tensor(TOY_LIKE_R)).rises_after_plateau == []


def copying_denoiser(x0: torch.Tensor, sigma_switch: float):
    """Returns x0 exactly below sigma_switch and a still copy of its first frame from there on."""
    still = x0[:, :1].expand_as(x0)

    def denoise(x, sigma):
        copy = (sigma >= sigma_switch).view(-1, 1, 1, 1, 1)
        return torch.where(copy, still.expand_as(x), x0.expand_as(x))

    return denoise


def test_plateau_rule_starts_where_the_model_starts_copying():
    """Ratio 1 below the switch, 0 from it: the plateau's edge is the first copying grid time,
    the threshold rule's M the last faithful one."""
    fam = svd_family()
    x0 = torch.randn(4, 6, 5, 5, generator=torch.Generator().manual_seed(1))
    ts = [0.1 * i for i in range(1, 11)]
    switch = float(fam.sigma_at(0.65))
    res = probe_leakage(copying_denoiser(x0, switch), x0, fam, ts, samples_per_t=2, max_batch=8)
    assert res.mean_ratio.tolist() == pytest.approx([1.0] * 6 + [0.0] * 4)
    assert recommend_start(res.t, res.mean_ratio).m == pytest.approx(0.7)
    assert recommend_start(res.t, res.mean_ratio, StartRule("threshold")).m == pytest.approx(0.6)


def test_stability_of_a_clean_curve_is_total_and_of_a_noisy_one_is_partial():
    t = torch.tensor(TOY_LIKE_T, dtype=torch.float64)
    clean = torch.tensor(TOY_LIKE_R, dtype=torch.float64).unsqueeze(1).repeat(1, 4)
    stab = recommendation_stability(t, clean, StartRule(), resamples=50)
    assert stab == {"resamples": 50, "agreement": 1.0, "m_min": 0.8, "m_max": 0.8}
    # samples that disagree near the plateau's edge: some resamples move M
    noisy = clean.clone()
    noisy[7] = torch.tensor([0.05, 0.30, 0.05, 0.05], dtype=torch.float64)  # t = 0.8: mean 0.1125, on the plateau
    stab = recommendation_stability(t, noisy, StartRule(), resamples=200, seed=3)
    assert 0.0 < stab["agreement"] < 1.0 and stab["m_min"] == 0.8 and stab["m_max"] == 0.9
    assert recommendation_stability(t, noisy, StartRule(), resamples=200, seed=3) == stab  # seeded


def test_bad_rules_and_curves_are_refused():
    with pytest.raises(CILValueError, match="rule='knee' is not a start rule"):
        StartRule("knee")
    with pytest.raises(CILValueError, match="threshold=0.0"):
        StartRule(threshold=0.0)
    with pytest.raises(CILValueError, match="plateau_tolerance=1.0"):
        StartRule(plateau_tolerance=1.0)
    with pytest.raises(CILValueError, match="one ratio per grid time"):
        recommend_start(torch.tensor([0.1, 0.2]), torch.tensor([1.0]))
    with pytest.raises(CILValueError, match="one ratio per grid time"):
        recommend_start(torch.tensor([]), torch.tensor([]))
    with pytest.raises(CILValueError, match="NaN"):
        recommend_start(torch.tensor([0.1, 0.2]), torch.tensor([1.0, float("nan")]))
    with pytest.raises(CILValueError, match="grid times, samples"):
        recommendation_stability(torch.tensor([0.1]), torch.tensor([1.0]), StartRule())
