"""StreamingMoments and estimate_stats against a float64 two-pass numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cil_core.analytic_init import AnalyticStats, estimate_stats
from cil_core.moments import StreamingMoments
from cil_core.validation import CILValueError

SETTINGS = settings(max_examples=30, deadline=None)


def two_pass(x: np.ndarray):
    """float64 two-pass reference: per-element mean and population variance over axis 0."""
    x = x.astype(np.float64)
    mean = x.sum(0) / x.shape[0]
    var = ((x - mean) ** 2).sum(0) / x.shape[0]
    return mean, var


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@given(
    n=st.integers(1, 40),
    shape=shapes,
    cuts=st.lists(st.integers(0, 40), max_size=6),
    seed=st.integers(0, 2**31 - 1),
    offset=st.floats(-100, 100),
)
@SETTINGS
def test_shards_merge_equals_one_pass_and_two_pass(n, shape, cuts, seed, offset):
    rng = np.random.default_rng(seed)
    x = offset + rng.normal(size=(n, *shape)) * rng.uniform(0.1, 3.0)
    ref_mean, ref_var = two_pass(x)
    t = torch.from_numpy(x)

    one = StreamingMoments().update(t)
    bounds = sorted({0, n, *(c for c in cuts if c <= n)})
    shards = [StreamingMoments().update(t[lo:hi]) for lo, hi in zip(bounds, bounds[1:])]
    merged = StreamingMoments()
    for shard in shards:
        merged.merge(shard)
    sequential = StreamingMoments()
    for lo, hi in zip(bounds, bounds[1:]):
        sequential.update(t[lo:hi])

    scale = 1.0 + abs(offset)
    for acc in (one, merged, sequential):
        assert acc.count == n and acc.shape == shape
        np.testing.assert_allclose(acc.mean.numpy(), ref_mean, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(acc.variance().numpy(), ref_var, rtol=1e-9, atol=1e-12)
        assert acc.mean.dtype == torch.float64 and acc.m2.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_low_precision_inputs_with_large_offset(dtype):
    """mean 1e3, std 0.1: the float64 accumulator is exact for the values it is given."""
    g = torch.Generator().manual_seed(0)
    x = (1e3 + 0.1 * torch.randn(500, 3, 4, 4, generator=g, dtype=torch.float64)).to(dtype)
    acc = StreamingMoments()
    for chunk in x.split(37):
        acc.update(chunk)
    ref_mean, ref_var = two_pass(x.double().numpy())
    assert ref_var.mean() > 0
    np.testing.assert_allclose(acc.mean.numpy(), ref_mean, rtol=1e-13)
    rel = np.abs(acc.variance().numpy() - ref_var).max() / ref_var.mean()
    assert rel < 1e-8


def test_shape_mismatch_raises():
    acc = StreamingMoments().update(torch.zeros(2, 3, 4))
    with pytest.raises(CILValueError, match=r"\(3, 5\).*\(3, 4\)"):
        acc.update(torch.zeros(2, 3, 5))
    with pytest.raises(CILValueError, match="does not match"):
        acc.merge(StreamingMoments().update(torch.zeros(1, 4, 4)))
    with pytest.raises(CILValueError, match="expected"):
        acc.update(torch.zeros(3))


def test_non_finite_and_empty_raise():
    with pytest.raises(CILValueError, match="non-finite"):
        StreamingMoments().update(torch.tensor([[1.0], [float("nan")]]))
    with pytest.raises(CILValueError, match="no samples"):
        StreamingMoments().variance()
    with pytest.raises(CILValueError, match="empty"):
        estimate_stats([])
    with pytest.raises(CILValueError, match="empty"):
        estimate_stats(iter(()))


def test_merge_with_empty_is_identity():
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    acc = StreamingMoments().update(x)
    mean, m2 = acc.mean.clone(), acc.m2.clone()
    acc.merge(StreamingMoments())
    assert torch.equal(acc.mean, mean) and torch.equal(acc.m2, m2)
    fresh = StreamingMoments().merge(StreamingMoments().update(x))
    torch.testing.assert_close(fresh.mean, mean, rtol=0, atol=0)


def videos(n, shape=(2, 3, 4, 4), seed=0, offset=0.7):
    g = torch.Generator().manual_seed(seed)
    return [offset + torch.randn(shape, generator=g) for _ in range(n)]


def test_estimate_stats_matches_reference():
    vids = videos(12)
    stats = estimate_stats(vids, {"family": "edm"})
    x = torch.stack(vids).double().numpy()
    ref_mean, ref_var = two_pass(x)
    np.testing.assert_allclose(stats.mean.numpy(), ref_mean, rtol=1e-12)
    assert stats.tr_cov_d == pytest.approx(ref_var.mean(), rel=1e-12)
    np.testing.assert_allclose(stats.channel_var.numpy(), ref_var.reshape(2, -1).mean(1), rtol=1e-12)
    assert stats.count == 12 and stats.meta["family"] == "edm"


def test_estimate_stats_accepts_batches_and_reports_progress():
    vids = videos(9)
    seen = []
    batched = estimate_stats([torch.stack(vids[:4]), vids[4], torch.stack(vids[5:])], progress=seen.append)
    single = estimate_stats(vids)
    assert seen == [4, 5, 9]
    torch.testing.assert_close(batched.mean, single.mean, rtol=1e-13, atol=1e-13)
    assert batched.tr_cov_d == pytest.approx(single.tr_cov_d, rel=1e-12)
    with pytest.raises(CILValueError, match="rank"):
        estimate_stats([torch.zeros(2, 3, 4)])


@given(split=st.integers(1, 14))
@settings(max_examples=10, deadline=None)
def test_estimate_stats_resume_equals_one_pass(split):
    vids = videos(15, seed=4)
    one = estimate_stats(vids, {"a": "1"})
    part = estimate_stats(vids[:split], {"a": "1", "b": "2"})
    resumed = estimate_stats(vids[split:], {"a": "3"}, resume=part)
    assert resumed.count == 15
    torch.testing.assert_close(resumed.mean, one.mean, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(resumed.m2, one.m2, rtol=1e-10, atol=1e-12)
    assert resumed.tr_cov_d == pytest.approx(one.tr_cov_d, rel=1e-12)
    assert resumed.meta == {"a": "3", "b": "2"}
    # the resumed stats object is untouched
    assert part.count == split


def test_resume_without_m2_is_refused():
    stats = AnalyticStats(mean=torch.zeros(1, 2, 2, 2), tr_cov_d=1.0, channel_var=torch.ones(1), count=3)
    with pytest.raises(CILValueError, match="m2"):
        estimate_stats(videos(2, shape=(1, 2, 2, 2)), resume=stats)
