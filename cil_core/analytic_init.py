"""Analytic-Init (Proposition 1 and App. A of the paper).

Minimising KL(q_M ‖ N(μ, s²I)) over μ and a scalar s² gives

    μ* = α_M·E[x0],    s*² = α_M²·tr Cov(x0)/d + σ_M²                       (paper, Eq. 6)

In ComfyUI's sigma space the sampler state is x = a·x0 + b·ε (``families``), so the same
optimum there is N(a·E[x0], a²·v + b²) with v = tr Cov(x0)/d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .families import DiffusionFamily, as_float64
from .moments import StreamingMoments
from .validation import CILValueError, check_finite, check_positive, check_rank


@dataclass
class AnalyticStats:
    """E[x0] per element (CFHW, model space) and v = tr Cov(x0)/d, with per-channel variances.

    ``m2`` (optional) is the Welford sum of squared deviations, kept so an estimate can be
    resumed or merged later.
    """

    mean: torch.Tensor
    tr_cov_d: float
    channel_var: torch.Tensor
    count: int
    meta: dict[str, str] = field(default_factory=dict)
    m2: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_rank("stats mean E[x0]", self.mean, (4,), "[channels, frames, height, width]")
        check_finite("stats mean E[x0]", self.mean)
        check_finite("stats channel variances", self.channel_var)
        if not math.isfinite(self.tr_cov_d) or self.tr_cov_d < 0:
            raise CILValueError(f"tr_cov_d={self.tr_cov_d!r} must be a finite number >= 0 (it is a variance).")
        if self.channel_var.shape != (self.mean.shape[0],):
            raise CILValueError(
                f"channel_var has shape {tuple(self.channel_var.shape)}; expected ({self.mean.shape[0]},) "
                "to match the channels of E[x0]."
            )
        if self.count < 1:
            raise CILValueError(f"count={self.count}: stats need at least one sample.")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(self.mean.shape)  # type: ignore[return-value]

    @classmethod
    def from_moments(cls, moments: StreamingMoments, meta: dict[str, str] | None = None) -> "AnalyticStats":
        var = moments.variance()
        return cls(
            mean=moments.mean.clone(),
            tr_cov_d=float(var.mean()),
            channel_var=var.reshape(var.shape[0], -1).mean(dim=1),
            count=moments.count,
            meta=dict(meta or {}),
            m2=moments.m2.clone(),
        )

    def to_moments(self) -> StreamingMoments:
        if self.m2 is None:
            raise CILValueError(
                "these stats carry no Welford state (m2), e.g. an official file; they cannot be extended "
                "with more videos. Estimate afresh instead."
            )
        return StreamingMoments(self.count, self.mean.to(torch.float64).clone(), self.m2.to(torch.float64).clone())


def optimal_gaussian(alpha: float, sigma: float, mean_x0: torch.Tensor, tr_cov_d: float) -> tuple[torch.Tensor, float]:
    """Paper Eq. 6: (α·E[x0], α²·v + σ²) — the KL-closest isotropic Gaussian to q_M."""
    check_positive("tr_cov_d", tr_cov_d, allow_zero=True)
    return alpha * mean_x0, alpha**2 * tr_cov_d + sigma**2


def initial_distribution(family: DiffusionFamily, sigma: float, mean_x0: torch.Tensor, tr_cov_d: float) -> tuple[torch.Tensor, float]:
    """The optimal N(mean, std²·I) for the *sampler state* at ComfyUI sigma ``sigma``."""
    check_positive("sigma_M", sigma)
    a, b = family.scaling(sigma)
    mean, var = optimal_gaussian(float(a), float(b), as_float64(mean_x0), tr_cov_d)
    return mean, math.sqrt(var)


def naive_initial_distribution(family: DiffusionFamily, sigma: float, like: torch.Tensor, mode: str = "paper") -> tuple[torch.Tensor, float]:
    """Late start without data statistics.

    ``"paper"``: the paper's naive baseline, N(0, I) in paper space — Analytic-Init with
    E[x0] = 0, v = 1 (std √(1 + σ²) in VP/EDM sigma space). ``"empty_latent"``: what ComfyUI's
    sampler does with an empty latent below σ_max, N(0, σ²) — E[x0] = 0, v = 0.
    """
    if mode not in ("paper", "empty_latent"):
        raise CILValueError(f"mode={mode!r}; expected 'paper' or 'empty_latent'.")
    zeros = torch.zeros_like(as_float64(like))
    return initial_distribution(family, sigma, zeros, 1.0 if mode == "paper" else 0.0)


def sample_initial_latent(
    family: DiffusionFamily,
    sigma: float,
    stats: AnalyticStats,
    *,
    batch: int = 1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Draw [batch, C, F, H, W] initial sampler states from the Analytic-Init Gaussian."""
    mean, std = initial_distribution(family, sigma, stats.mean, stats.tr_cov_d)
    eps = torch.randn((batch, *mean.shape), generator=generator, dtype=torch.float64)
    return (mean + std * eps).to(dtype)


def comfy_noise_multiplier(family: DiffusionFamily, sigma: float, tr_cov_d: float) -> float:
    """k with noise_scaling(σ, k·ε, E[x0]) = Analytic-Init draw: k = √(a²v + b²)/b.

    ComfyUI builds the first state as a·latent + b·noise; with latent = E[x0] (model space)
    and noise = k·ε this is exactly N(a·E, a²v + b²). Valid while σ < σ_max (no max_denoise).
    """
    a, b = (float(z) for z in family.scaling(sigma))
    check_positive("sigma_M", b)
    return math.sqrt(a * a * tr_cov_d + b * b) / b


def isotropic_gaussian_cross_entropy(q_mean: torch.Tensor, q_tr_cov_d: float, mu: torch.Tensor, s2: float) -> float:
    """−E_q[log N(x; μ, s²I)]/d for any q with the given mean and tr Cov/d (nats per dim).

    KL(q ‖ p) = this − H(q)/d, so for a fixed q differences of this are exact KL differences.
    """
    q_mean, mu = as_float64(q_mean), as_float64(mu)
    mse = float(((q_mean - mu) ** 2).mean())
    return 0.5 * math.log(2 * math.pi * s2) + (mse + q_tr_cov_d) / (2 * s2)


def estimate_stats(latents, meta: dict[str, str] | None = None, *, resume: AnalyticStats | None = None, progress=None) -> AnalyticStats:
    """Stream CFHW video latents (or [N, C, F, H, W] batches) into AnalyticStats, float64.

    ``resume`` continues from earlier stats that carry Welford state; ``progress(n)`` is called
    with the number of videos seen so far and may raise to cancel.
    """
    acc = resume.to_moments() if resume is not None else StreamingMoments()
    for latent in latents:
        batch = latent.unsqueeze(0) if latent.dim() == 4 else latent
        check_rank("video latent", batch, (5,), "[N, channels, frames, height, width]")
        acc.update(batch)
        if progress is not None:
            progress(acc.count)
    if acc.count == 0:
        raise CILValueError("no video latents were given: the data set is empty, so E[x0] cannot be estimated.")
    merged_meta = dict(resume.meta if resume is not None else {})
    merged_meta.update(meta or {})
    return AnalyticStats.from_moments(acc, merged_meta)
