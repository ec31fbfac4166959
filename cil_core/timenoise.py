"""TimeNoise (Sec. 4.2): time-dependent noise on the conditional image.

    μ(t) = 2·μ_max·t^a − μ_max   (μ_max = 1; a = 1 linear, a > 1 convex, a < 1 concave)
    y ~ N(μ(t), s²),  β_s = β_m·sigmoid(y)                      (official ``logit_normal_sampler``)
    ỹ0 = y0 + β_s·ε

Official defaults: a = 5, s = 1; β_m = 15 (SVD), 100 (DynamiCrafter), 25 (VideoCrafter1).
The paper adds per-element noise ε ~ N(0, I); the official SVD code draws one scalar per sample
(``per_sample_scalar=True`` reproduces it).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import torch

from .families import append_dims, as_float64
from .validation import CILValueError, check_positive


@dataclass(frozen=True)
class TimeNoiseConfig:
    beta_m: float = 100.0
    a: float = 5.0
    s: float = 1.0
    mu_max: float = 1.0

    def __post_init__(self) -> None:
        if not self.beta_m >= 0:
            raise CILValueError(f"beta_m={self.beta_m!r} must be >= 0 (it is the largest noise std β_m).")
        check_positive("a", self.a)
        check_positive("s", self.s)

    def mu(self, t: torch.Tensor | float) -> torch.Tensor:
        t = as_float64(t)
        if ((t < 0) | (t > 1)).any():
            raise CILValueError(f"TimeNoise time t must lie in [0, 1]; got range [{float(t.min())}, {float(t.max())}].")
        return 2.0 * self.mu_max * t**self.a - self.mu_max

    def sample(self, t: torch.Tensor | float, generator: torch.Generator | None = None) -> torch.Tensor:
        """β_s = β_m·sigmoid(N(μ(t), s²)), one draw per entry of t (float64)."""
        mu = self.mu(t)
        y = mu + self.s * torch.randn(mu.shape, generator=generator, dtype=torch.float64, device=mu.device)
        return self.beta_m * torch.sigmoid(y)

    def cdf(self, beta: torch.Tensor | float, t: torch.Tensor | float) -> torch.Tensor:
        """P(β_s ≤ beta | t) = Φ((logit(beta/β_m) − μ(t))/s)."""
        u = (as_float64(beta) / self.beta_m).clamp(0.0, 1.0)
        z = (torch.logit(u) - self.mu(t)) / self.s
        return 0.5 * torch.special.erfc(-z / math.sqrt(2.0))  # erfc keeps the lower tail accurate

    def quantile(self, q: torch.Tensor | float, t: torch.Tensor | float) -> torch.Tensor:
        """Inverse CDF: β_m·sigmoid(μ(t) + s·Φ⁻¹(q)); q = 0.5 gives the median β_m·sigmoid(μ(t))."""
        q = as_float64(q)
        if ((q <= 0) | (q >= 1)).any():
            raise CILValueError(f"quantile q must lie in (0, 1); got range [{float(q.min())}, {float(q.max())}].")
        return self.beta_m * torch.sigmoid(self.mu(t) + self.s * torch.special.ndtri(q))


BETA_MODES = ("sampled", "quantile")


def beta_at(config: TimeNoiseConfig, t: float, mode: str = "sampled", quantile: float = 0.5,
            generator: torch.Generator | None = None) -> float:
    """One β_s at time t: a draw from the TimeNoise law (``sampled``, as in training) or its
    ``quantile`` (deterministic; q = 0.5 is the median β_m·sigmoid(μ(t)))."""
    if mode == "quantile":
        return float(config.quantile(quantile, t))
    if mode == "sampled":
        return float(config.sample(t, generator))
    raise CILValueError(f"mode={mode!r}; expected one of {BETA_MODES}.")


def seed_for_call(seed: int, sigma: float) -> int:
    """A seed fixed by (seed, σ): the same model call in a re-run draws the same condition noise."""
    bits = struct.unpack(">Q", struct.pack(">d", float(sigma)))[0]
    return (int(seed) * 0x9E3779B97F4A7C15 ^ bits) % (2**63 - 1)


def add_condition_noise(
    cond: torch.Tensor,
    beta: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    per_sample_scalar: bool = False,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """cond + β·ε with one β per batch item (dim 0). Works for latents and CLIP tokens alike.

    ``per_sample_scalar`` draws one ε per item (official SVD) instead of per element (paper).
    ``noise`` may be given to make the draw explicit (tests, cached noise).
    """
    beta = as_float64(beta).reshape(-1)
    if beta.numel() not in (1, cond.shape[0]):
        raise CILValueError(f"got {beta.numel()} β values for a batch of {cond.shape[0]}; give one per item or one for all.")
    if noise is None:
        shape = (cond.shape[0],) + (1,) * (cond.dim() - 1) if per_sample_scalar else cond.shape
        noise = torch.randn(shape, generator=generator, dtype=torch.float32, device="cpu")
    noise = noise.to(device=cond.device, dtype=cond.dtype)
    scale = append_dims(beta.to(device=cond.device, dtype=cond.dtype), cond.dim())
    return cond + scale * noise
