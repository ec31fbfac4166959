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


@dataclass(frozen=True)
class TrainingDraws:
    """Every random draw of one ``diffusion_loss`` call, for a batch (dim 0 = item).

    Drawn by ``draw_training_randomness`` in the generator order documented there; ``rows``
    takes some items, so a process that trains a slice of a larger batch uses exactly the
    numbers one process drawing the whole batch would give those items.
    """

    sigma: torch.Tensor  # [B] float64, ComfyUI sigmas
    noise: torch.Tensor  # ε for x, x0's shape, float32 on the CPU
    beta: torch.Tensor  # [B] float64 TimeNoise levels (zeros without TimeNoise)
    image_noise: torch.Tensor | None = None  # ε for cond["image"] (one per item when per_sample_scalar)
    token_noise: torch.Tensor | None = None  # ε for cond["tokens"]

    def rows(self, index) -> "TrainingDraws":
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return TrainingDraws(pick(self.sigma), pick(self.noise), pick(self.beta), pick(self.image_noise), pick(self.token_noise))


def draw_training_randomness(family: DiffusionFamily, cfg: LossConfig, batch: int, x_shape: tuple[int, ...],
                             image_shape: tuple[int, ...], tokens_shape: tuple[int, ...] | None = None,
                             generator: torch.Generator | None = None, *, sigma: torch.Tensor | None = None,
                             noise: torch.Tensor | None = None) -> TrainingDraws:
    """The draws of ``batch`` items whose x0, condition image and (optional) image tokens have the
    per-item shapes given. Generator order: σ (unless given) → ε for x (unless given) → β (one
    float64 normal per item) → ε for the image → ε for the tokens (when TimeNoise noises them)."""
    if sigma is None:
        sigma = sample_training_sigmas(family, batch, cfg, generator)
    if noise is None:
        noise = torch.randn((batch, *x_shape), generator=generator, dtype=torch.float32)
    if cfg.timenoise is None:
        return TrainingDraws(sigma, noise, torch.zeros(batch, dtype=torch.float64))
    beta = cfg.timenoise.sample(family.timenoise_time(sigma), generator=generator)
    shape = (batch,) + (1,) * len(image_shape) if cfg.per_sample_scalar else (batch, *image_shape)
    image_noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    token_noise = None
    if cfg.noise_tokens and tokens_shape is not None:
        token_noise = torch.randn((batch, *tokens_shape), generator=generator, dtype=torch.float32)
    return TrainingDraws(sigma, noise, beta, image_noise, token_noise)


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


def item_shapes(cond: dict) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """Per-item shapes of cond["image"] and cond["tokens"] (None when absent)."""
    image, tokens = cond.get("image"), cond.get("tokens")
    return (() if image is None else tuple(image.shape[1:])), (None if tokens is None else tuple(tokens.shape[1:]))


def apply_timenoise(cond: dict, draws: TrainingDraws) -> dict:
    """cond with TimeNoise from ``draws``: image + β·ε (tokens too when drawn) and noise_level β."""
    out = dict(cond, noise_level=draws.beta)
    if draws.image_noise is not None:
        out["image"] = add_condition_noise(cond["image"], draws.beta, noise=draws.image_noise)
    if draws.token_noise is not None and cond.get("tokens") is not None:
        out["tokens"] = add_condition_noise(cond["tokens"], draws.beta, noise=draws.token_noise)
    return out


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
    draws: TrainingDraws | None = None,
) -> tuple[torch.Tensor, dict]:
    """Unreduced weighted loss w(σ)·(x̂0 − x0)² (same shape as x0) and a dict with σ and β.

    The randomness comes from ``draws`` when given, else from ``generator`` (σ and ε for x may
    be given; the order is ``draw_training_randomness``'s)."""
    if draws is None:
        draws = draw_training_randomness(family, cfg, x0.shape[0], tuple(x0.shape[1:]), *item_shapes(cond), generator,
                                         sigma=sigma, noise=noise)
    sigma = draws.sigma
    cond_noisy = apply_timenoise(cond, draws)
    x = family.noised(x0, draws.noise.to(x0.device, x0.dtype), sigma.to(x0.device))
    pred = denoise(x, sigma.to(device=x0.device, dtype=x0.dtype), cond_noisy)
    weight = append_dims(family.loss_weight(sigma).to(device=x0.device, dtype=x0.dtype), x0.dim())
    return weight * (pred - x0) ** 2, {"sigma": sigma, "beta": draws.beta}
