"""Generation for the toy models: an Euler sampler in ComfyUI sigma space, from T or a late start.

Euler over k-diffusion's ODE dx/dσ = (x − x̂0)/σ on ``cil_core.schedules.late_start_sigmas``
(Karras for EDM, DDIM uniform_trailing for VP; for VP, Euler in sigma space *is* deterministic
DDIM). Initial states, all in sampler space (x = x0 + σ·ε for EDM and VP):

    "naive"     the paper's naive late start, N(0, I) in paper space = N(0, 1 + σ_M²)
                (``naive_initial_distribution(mode="paper")``); at σ_M = σ_max this is the
                standard start from T (ComfyUI's max_denoise start, SVD's init_noise_sigma)
    "analytic"  Analytic-Init, N(E[x0], v + σ_M²) (``initial_distribution``)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cil_core.analytic_init import AnalyticStats, initial_distribution, naive_initial_distribution
from cil_core.families import DiffusionFamily
from cil_core.schedules import StartTime, late_start_sigmas
from cil_core.validation import CILValueError

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x [B, ...], sigma [B]) -> x̂0
INITS = ("naive", "analytic")


@torch.no_grad()
def euler_sample(denoise: Denoise, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Integrate from sigmas[0] to sigmas[-1] = 0 with Euler steps (Karras et al. 2022, Alg. 1)."""
    batch = x.shape[0]
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        x0_hat = denoise(x, torch.full((batch,), s, dtype=torch.float32))
        if s_next == 0.0:
            return x0_hat
        x = x + (s_next - s) * (x - x0_hat) / s
    return x


def initial_state(
    family: DiffusionFamily,
    sigma_m: float,
    init: str,
    shape: tuple[int, ...],
    stats: AnalyticStats | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """[B, C, F, h, w] starting state at σ_M drawn from the chosen initial distribution."""
    if init == "analytic":
        if stats is None:
            raise CILValueError("Analytic-Init needs stats (E[x0], tr Cov/d); estimate them first.")
        mean, std = initial_distribution(family, sigma_m, stats.mean, stats.tr_cov_d)
    elif init == "naive":
        mean, std = naive_initial_distribution(family, sigma_m, torch.zeros(shape[1:]), mode="paper")
    else:
        raise CILValueError(f"init={init!r}; expected one of {INITS}.")
    eps = torch.randn(shape, generator=generator, dtype=torch.float64)
    return (mean.unsqueeze(0) + std * eps).to(torch.float32)


def generate(
    denoise: Denoise,
    family: DiffusionFamily,
    shape: tuple[int, ...],
    *,
    steps: int,
    start: StartTime,
    init: str = "naive",
    stats: AnalyticStats | None = None,
    generator: torch.Generator,
) -> torch.Tensor:
    """Sample [B, C, F, h, w] model-space latents with ``steps`` Euler steps from ``start``."""
    sigmas = late_start_sigmas(family, steps, start)
    x = initial_state(family, float(sigmas[0]), init, shape, stats, generator)
    return euler_sample(denoise, x, sigmas)
