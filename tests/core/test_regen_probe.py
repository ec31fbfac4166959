"""The regeneration probe (cil_core.regen_probe) on samplers whose answer is known."""

from __future__ import annotations

import pytest
import torch

from cil_core.families import svd_family, wan_family
from cil_core.regen_probe import regeneration_probe
from cil_core.schedules import StartTime, late_start_sigmas
from cil_core.validation import CILValueError


def _video(seed=0):
    return torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", [svd_family(), wan_family()], ids=["edm", "flow"])
def test_oracle_keeps_all_motion_and_copier_none(family):
    x0 = _video()
    sched = lambda t: late_start_sigmas(family, 3, StartTime(fraction=t))  # noqa: E731
    seen = []

    def oracle(x0b, eps, sigmas):
        seen.append((family.noised(x0b, eps, sigmas[:1].expand(eps.shape[0])), sigmas.clone()))
        return x0b

    def copier(x0b, eps, sigmas):
        return x0b[:, :, :1].expand_as(x0b)

    res = regeneration_probe(oracle, x0, family, [0.3, 1.0], 3, sched, generator=torch.Generator().manual_seed(1), max_batch=2)
    assert res.mode == "regen" and res.ratio.shape == (2, 3) and torch.allclose(res.ratio, torch.ones(2, 3, dtype=torch.float64))
    assert torch.allclose(res.sigma, torch.stack([sched(0.3)[0], sched(1.0)[0]]))
    # the sampler gets x0 and ε (it forms x = a(σ0)·x0 + b(σ0)·ε itself), in chunks of max_batch
    assert [x.shape[0] for x, _ in seen] == [2, 1, 2, 1]
    g = torch.Generator().manual_seed(1)
    eps = torch.stack([torch.randn(x0.shape, generator=g) for _ in range(3)])
    want = family.noised(x0.unsqueeze(0), eps, sched(0.3)[:1].expand(3))
    torch.testing.assert_close(torch.cat([seen[0][0], seen[1][0]]), want)
    still = regeneration_probe(copier, x0, family, [0.3, 1.0], 2, sched, generator=torch.Generator().manual_seed(1))
    assert bool((still.ratio == 0).all())


def test_progress_counts_model_calls_and_batching_does_not_change_numbers():
    family, x0 = svd_family(), _video(2)
    sched = lambda t: late_start_sigmas(family, 4, StartTime(fraction=t))  # noqa: E731
    noisy = lambda x0b, e, s: (x0b + float(s[0]) * e) / (1 + float(s[0]))  # noqa: E731  depends on the noise draws
    calls = []
    a = regeneration_probe(noisy, x0, family, [0.5, 0.9], 3, sched, generator=torch.Generator().manual_seed(3), max_batch=1,
                           progress=lambda d, n: calls.append((d, n)))
    b = regeneration_probe(noisy, x0, family, [0.5, 0.9], 3, sched, generator=torch.Generator().manual_seed(3), max_batch=5)
    assert torch.equal(a.motion_pred, b.motion_pred)
    assert calls[-1] == (24, 24) and len(calls) == 6  # 2 t × 3 samples × 4 steps


def test_bad_schedule_and_inputs_are_refused():
    family, x0 = svd_family(), _video()
    with pytest.raises(CILValueError, match="not decreasing"):
        regeneration_probe(lambda x, e, s: x, x0, family, [0.5], 1, lambda t: torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(CILValueError, match="samples_per_t"):
        regeneration_probe(lambda x, e, s: x, x0, family, [0.5], 0, lambda t: torch.tensor([1.0, 0.0]))
    with pytest.raises(CILValueError, match="identical frames"):
        regeneration_probe(lambda x, e, s: x, torch.ones(2, 4, 3, 3), family, [0.5], 1, lambda t: torch.tensor([1.0, 0.0]))
