"""Late-start schedules: ``steps`` sigmas from σ_M down to 0 (k-diffusion convention: ends in 0).

    EDM / SVD      Karras et al. (2022) ρ-spacing with σ_max replaced by σ_M (official SVD CIL).
    VP discrete    DDIM "uniform_trailing" over [0, M] (official DynamiCrafter ``ddpm_from=M``):
                   indices round(M·N − i·M·N/steps) − 1, i = 0…steps−1.
    flow           linear in the unshifted time from t_M to 0, then shifted (Wan / LTX).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .families import EDM, DiffusionFamily, RectifiedFlow, VPDiscrete, as_float64
from .validation import CILValueError, check_fraction, check_positive


@dataclass(frozen=True)
class StartTime:
    """Where sampling starts: a fraction M of T (``fraction``) or a ComfyUI sigma (``sigma``)."""

    fraction: float | None = None
    sigma: float | None = None

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.sigma is None):
            raise CILValueError("give exactly one of fraction (M as a fraction of T) or sigma (σ_M directly).")
        if self.fraction is not None:
            check_fraction("M", self.fraction)
        else:
            check_positive("sigma_M", self.sigma)

    def resolve(self, family: DiffusionFamily) -> tuple[float, float]:
        """(t_M, σ_M) for this family; σ_M may not exceed the family's σ_max.

        For a discrete VP family a fraction snaps to the grid, M·N → round(M·N), so σ_M is the
        table entry the trailing schedule starts at (index round(M·N) − 1, as ``ddpm_from``).
        """
        if self.fraction is not None:
            if isinstance(family, VPDiscrete):
                m_index = max(1, int(round(self.fraction * family.num_steps)))
                return m_index / family.num_steps, float(family.sigmas[m_index - 1])
            return self.fraction, float(family.sigma_at(self.fraction))
        if self.sigma > family.sigma_max * (1 + 1e-9):
            raise CILValueError(
                f"sigma_M={self.sigma} exceeds this model's sigma_max={family.sigma_max:.6g}; pick a smaller start."
            )
        return float(family.time_at(self.sigma)), float(self.sigma)


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022), Eq. 5, plus a final 0. float64, length steps + 1."""
    _check_steps(steps)
    if not 0 < sigma_min < sigma_max:
        raise CILValueError(f"need 0 < sigma_min ({sigma_min}) < sigma_max ({sigma_max}) for a Karras schedule.")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def vp_trailing_indices(steps: int, m_index: int) -> torch.Tensor:
    """DDIM 'uniform_trailing' over [0, M): round(M − i·M/steps) − 1, i = 0…steps−1."""
    _check_steps(steps)
    if steps > m_index:
        raise CILValueError(
            f"steps={steps} is more than the {m_index} discrete timesteps below M; use at most {m_index} steps."
        )
    # Same float arithmetic as the official np.arange(M, 0, -M/steps) (numpy fills start + i·delta
    # with delta = (start + step) − start), so exact .5 ties round the same way as the official code.
    step = -m_index / steps
    values = m_index + torch.arange(steps, dtype=torch.float64) * ((m_index + step) - m_index)
    if steps >= 2:
        values[1] = m_index + step
    return (torch.round(values) - 1).long()


def vp_trailing_sigmas(family: VPDiscrete, steps: int, m_fraction: float) -> torch.Tensor:
    m_index = int(round(check_fraction("M", m_fraction) * family.num_steps))
    idx = vp_trailing_indices(steps, m_index)
    return torch.cat([family.sigmas[idx], torch.zeros(1, dtype=torch.float64)])


def flow_sigmas(family: RectifiedFlow, steps: int, t_start: float) -> torch.Tensor:
    _check_steps(steps)
    t = torch.linspace(t_start, 0.0, steps + 1, dtype=torch.float64)
    sigmas = family.sigma_at(t)
    sigmas[-1] = 0.0
    return sigmas


def late_start_sigmas(family: DiffusionFamily, steps: int, start: StartTime, *, sigma_min: float | None = None, rho: float = 7.0) -> torch.Tensor:
    """``steps`` sigmas from σ_M to 0 for ``family`` (float64, strictly decreasing, last = 0)."""
    t_m, sigma_m = start.resolve(family)
    if isinstance(family, EDM):
        lo = family.sigma_min if sigma_min is None else sigma_min
        if sigma_m <= lo:
            raise CILValueError(f"sigma_M={sigma_m} must be above sigma_min={lo} for a Karras schedule.")
        return karras_sigmas(steps, lo, sigma_m, rho)
    if isinstance(family, VPDiscrete):
        if start.sigma is not None:  # σ given directly: use the nearest discrete index as M
            t_m = (round(float(family.index_at(sigma_m))) + 1) / family.num_steps
        return vp_trailing_sigmas(family, steps, t_m)
    if isinstance(family, RectifiedFlow):
        sigmas = flow_sigmas(family, steps, t_m)
        sigmas[0] = sigma_m
        return sigmas
    raise CILValueError(f"no late-start schedule for family {type(family).__name__}.")


def denoise_rule_length(steps: int, m: float) -> int:
    """Schedule length of ComfyUI's ``denoise = M`` rule (KSampler.set_steps, BasicScheduler):
    a scheduler builds int(steps/M) steps over the whole range and the last ``steps`` are kept,
    so the start lies near, not at, σ(M)."""
    _check_steps(steps)
    m = check_fraction("M", m)
    return int(steps) if m > 0.9999 else int(steps / m)


MAX_STEPS = 100_000  # far beyond any sampler's use; a longer schedule is a typo (or 2**40 through a link)


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, (int, float)) or int(steps) != steps or steps < 1:
        raise CILValueError(f"steps={steps!r} must be a whole number >= 1.")
    if steps > MAX_STEPS:
        raise CILValueError(f"steps={steps!r} is more than {MAX_STEPS}; use at most {MAX_STEPS} sampling steps.")


def is_valid_schedule(sigmas: torch.Tensor) -> bool:
    """Strictly decreasing and ending in 0."""
    s = as_float64(sigmas)
    return bool(s.dim() == 1 and s.numel() >= 2 and s[-1] == 0 and (s[1:] < s[:-1]).all())
