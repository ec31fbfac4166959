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

from .families import DiffusionFamily, as_float64, dynamicrafter_alpha_bar
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
        if self.mean.numel() == 0:
            raise CILValueError(f"stats mean E[x0] has shape {tuple(self.mean.shape)}: every dimension must be at least 1.")
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
    if mode not in NAIVE_MODES:
        raise CILValueError(f"mode={mode!r}; expected one of {NAIVE_MODES}.")
    zeros = torch.zeros_like(as_float64(like))
    return initial_distribution(family, sigma, zeros, 1.0 if mode == "paper" else 0.0)


NAIVE_MODES = ("empty_latent", "paper")


def sample_initial_latent(
    family: DiffusionFamily,
    sigma: float,
    stats: AnalyticStats | None,
    *,
    shape: tuple[int, ...] | None = None,
    naive_mode: str = "paper",
    batch: int = 1,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Initial sampler states x_M = mean + std·ε from the Analytic-Init Gaussian (Eq. 6).

    The mean broadcasts as [C, F, H, W] against ``noise`` (any [..., C, F, H, W]); without
    ``noise`` ε ~ N(0, I) of ``[1, *shape]`` is drawn from ``generator``. Without ``stats`` it is
    the naive late start ``naive_mode`` (``naive_initial_distribution``) of the given ``shape``.
    """
    if stats is None:
        if shape is None and noise is None:
            raise CILValueError("a naive late start needs the latent shape (shape=) or the noise to use.")
        like = torch.zeros(tuple(shape) if shape is not None else noise.shape[-4:], dtype=torch.float64)
        mean, std = naive_initial_distribution(family, sigma, like, mode=naive_mode)
    else:
        mean, std = initial_distribution(family, sigma, stats.mean, stats.tr_cov_d)
    if noise is None:
        noise = torch.randn((batch, *mean.shape), generator=generator, dtype=torch.float64)
    return (mean.to(noise.device, torch.float64) + std * noise.to(torch.float64)).to(dtype)


def noise_for_state(state: torch.Tensor, offset: torch.Tensor, gain: float) -> torch.Tensor:
    """The noise n with offset + gain·n = state: a sampler that forms its first state as an
    affine map of its noise (ComfyUI's ``noise_scaling``) then starts exactly at ``state``."""
    if not math.isfinite(gain) or abs(gain) < 1e-12:
        raise CILValueError(f"the sampler's noise gain is {gain!r}: its first state does not depend on the noise, so it cannot be set.")
    return (state - offset) / gain


def dynamicrafter_init_noise(stats: AnalyticStats, m: int) -> tuple[torch.Tensor, float]:
    """(mu_p [C, F, H, W], sigma_p) of DynamiCrafter's own Analytic-Init at ``ddpm_from`` = M (VP
    space, t = M − 1): mu_p = √ᾱ_t·E[x0], sigma_p² = 1 − ᾱ_t + ᾱ_t·tr Cov/d (Eq. 6, α = √ᾱ)."""
    abar = dynamicrafter_alpha_bar(m)
    mean, var = optimal_gaussian(math.sqrt(abar), math.sqrt(1.0 - abar), stats.mean, stats.tr_cov_d)
    return mean, math.sqrt(var)


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
