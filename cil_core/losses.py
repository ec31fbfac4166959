"""Training losses with optional TimeNoise, one formula for every family.

A denoiser returns x̂0 from the sampler state (ComfyUI convention). With the family's weight
w(σ) (``DiffusionFamily.loss_weight``), w·‖x̂0 − x0‖² equals the native objective:
v-MSE (SVD/EDM, DynamiCrafter) = (σ²+1)/σ²·‖x̂0 − x0‖², ε-MSE = ‖x̂0 − x0‖²/σ², flow-matching
velocity MSE = ‖x̂0 − x0‖²/σ². Training σ: EDM lognormal(P_mean, P_std) as the official SVD
code; VP uniform over the N discrete steps; flow uniform t then shifted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .families import EDM, DiffusionFamily, RectifiedFlow, VPDiscrete, append_dims
from .timenoise import TimeNoiseConfig, add_condition_noise
from .validation import CILValueError

# denoise(x, sigma, cond) -> x̂0; cond is a dict: "image" (conditional latent), optional "tokens"
# (CLIP image tokens) and "noise_level" (β per item, e.g. SVD's augmentation level).
CondDenoiser = Callable[[torch.Tensor, torch.Tensor, dict], torch.Tensor]


@dataclass(frozen=True)
class LossConfig:
    timenoise: TimeNoiseConfig | None = field(default_factory=TimeNoiseConfig)  # None: baseline loss
    per_sample_scalar: bool = False  # official SVD draws one ε per item
    noise_tokens: bool = True  # also noise CLIP image tokens when the cond has them
    p_mean: float = -1.2  # EDM lognormal σ (official SVD CIL config)
    p_std: float = 1.2


def sample_training_sigmas(family: DiffusionFamily, batch: int, cfg: LossConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training noise levels (ComfyUI sigmas, float64) for ``batch`` items."""
    if isinstance(family, EDM):
        z = torch.randn(batch, generator=generator, dtype=torch.float64)
        return (cfg.p_mean + cfg.p_std * z).exp().clamp(family.sigma_min, family.sigma_max)
    if isinstance(family, VPDiscrete):
        idx = torch.randint(0, family.num_steps, (batch,), generator=generator)
        return family.sigmas[idx]
    if isinstance(family, RectifiedFlow):
        u = torch.rand(batch, generator=generator, dtype=torch.float64).clamp(1e-4, 1.0)
        return family.sigma_at(u).clamp(1e-4, 1.0 - 1e-4)
    raise CILValueError(f"no training-σ sampler for family {type(family).__name__}.")


def timenoise_condition(family: DiffusionFamily, sigma: torch.Tensor, cond: dict, cfg: LossConfig, generator: torch.Generator | None = None) -> tuple[dict, torch.Tensor]:
    """Apply TimeNoise to cond["image"] (and cond["tokens"]); returns (new cond, β per item)."""
    batch = sigma.shape[0]
    if cfg.timenoise is None:
        return dict(cond, noise_level=torch.zeros(batch, dtype=torch.float64)), torch.zeros(batch, dtype=torch.float64)
    beta = cfg.timenoise.sample(family.timenoise_time(sigma), generator=generator)
    out = dict(cond)
    out["image"] = add_condition_noise(cond["image"], beta, generator=generator, per_sample_scalar=cfg.per_sample_scalar)
    if cfg.noise_tokens and cond.get("tokens") is not None:
        out["tokens"] = add_condition_noise(cond["tokens"], beta, generator=generator)
    out["noise_level"] = beta
    return out, beta


def diffusion_loss(
    family: DiffusionFamily,
    denoise: CondDenoiser,
    x0: torch.Tensor,
    cond: dict,
    cfg: LossConfig,
    *,
    generator: torch.Generator | None = None,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Unreduced weighted loss w(σ)·(x̂0 − x0)² (same shape as x0) and a dict with σ and β."""
    batch = x0.shape[0]
    if sigma is None:
        sigma = sample_training_sigmas(family, batch, cfg, generator)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
    cond_noisy, beta = timenoise_condition(family, sigma, cond, cfg, generator)
    x = family.noised(x0, noise, sigma.to(x0.device))
    pred = denoise(x, sigma.to(device=x0.device, dtype=x0.dtype), cond_noisy)
    weight = append_dims(family.loss_weight(sigma).to(device=x0.device, dtype=x0.dtype), x0.dim())
    return weight * (pred - x0) ** 2, {"sigma": sigma, "beta": beta}
