"""Diffusion families and the map between the paper's (α_t, σ_t) and ComfyUI's sigma space.

Paper notation: x_t = α_t·x0 + σ_t·ε. ComfyUI's samplers integrate a state x indexed by a
"sigma" s, with x = a(s)·x0 + b(s)·ε (``scaling``):

    VP discrete  (DynamiCrafter)  x = x_t/α_t,  s = σ_t/α_t,  a = 1,     b = s
    EDM / VE     (SVD)            x = x0 + s·ε,                a = 1,     b = s
    rect. flow   (Wan, LTX)       x = (1−s)·x0 + s·ε,         a = 1 − s, b = s

Every family also has a normalised schedule time t ∈ [0, 1] (``sigma_at`` / ``time_at``; a
start time "M = 0.96" means t = 0.96) and the time that TimeNoise uses (``timenoise_time``).
The network preconditioning (``network_input``, ``denoised``) mirrors comfy/model_sampling.py
so a model trained here runs unchanged under ComfyUI's samplers.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property

import torch

from .validation import CILValueError

Tensorish = torch.Tensor | float

def as_float64(x: Tensorish) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """Append trailing singleton dims so ``x`` broadcasts against a rank-``target_dims`` tensor."""
    missing = target_dims - x.dim()
    if missing < 0:
        raise CILValueError(f"cannot broadcast a rank-{x.dim()} tensor to rank {target_dims}")
    return x.reshape(*x.shape, *([1] * missing))


class DiffusionFamily(ABC):
    """One forward process, seen both in paper space and in ComfyUI's sigma space."""

    name: str
    prediction: str

    @property
    @abstractmethod
    def sigma_min(self) -> float: ...

    @property
    @abstractmethod
    def sigma_max(self) -> float: ...

    @abstractmethod
    def sigma_at(self, t: Tensorish) -> torch.Tensor:
        """ComfyUI sigma at normalised schedule time t ∈ [0, 1] (float64)."""

    @abstractmethod
    def time_at(self, sigma: Tensorish) -> torch.Tensor:
        """Inverse of ``sigma_at``: normalised schedule time of a ComfyUI sigma (float64)."""

    @abstractmethod
    def scaling(self, sigma: Tensorish) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) with sampler state x = a·x0 + b·ε at this sigma."""

    @abstractmethod
    def paper_alpha_sigma(self, sigma: Tensorish) -> tuple[torch.Tensor, torch.Tensor]:
        """The paper's (α_t, σ_t) at this ComfyUI sigma."""

    @abstractmethod
    def timenoise_time(self, sigma: Tensorish) -> torch.Tensor:
        """The t ∈ [0, 1] that TimeNoise's μ(t) reads, as the official code defines it."""

    def describe(self) -> dict[str, str]:
        """Small, JSON-friendly description stored in stats-file metadata."""
        return {"family": self.name, "prediction": self.prediction}

    # --- preconditioning, as comfy/model_sampling.py (σ_data = 1) ---------------------------
    def network_input(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.prediction == "flow":
            return x
        sigma = append_dims(sigma.to(x.dtype), x.dim())
        return x / (sigma**2 + 1.0).sqrt()

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """x0 prediction from the network output (ε, v or flow velocity ε − x0)."""
        s = append_dims(sigma.to(x.dtype), x.dim())
        if self.prediction == "v":
            return x / (s**2 + 1.0) - out * s / (s**2 + 1.0).sqrt()
        return x - s * out

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """Weight w(σ) with w·‖x̂0 − x0‖² equal to the native objective (ε-, v- or flow-MSE)."""
        sigma = as_float64(sigma)
        if self.prediction == "v":
            return (sigma**2 + 1.0) / sigma**2
        return 1.0 / sigma**2

    def noised(self, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Sampler state x = a(σ)·x0 + b(σ)·ε, with σ per batch item."""
        a, b = self.scaling(sigma)
        a = append_dims(a.to(x0.dtype), x0.dim())
        b = append_dims(b.to(x0.dtype), x0.dim())
        return a * x0 + b * noise


def _check_prediction(prediction: str, allowed: tuple[str, ...]) -> None:
    if prediction not in allowed:
        raise CILValueError(f"prediction={prediction!r}; expected one of {allowed}.")


@dataclass(frozen=True)
class VPDiscrete(DiffusionFamily):
    """DDPM-style discrete VP schedule (DynamiCrafter, VideoCrafter1).

    ``schedule="scaled_linear"`` is LDM's "linear": β = linspace(√β0, √β1)². The zero-terminal-
    SNR rescale follows Lin et al. (2024) and ComfyUI, which clamps the last ᾱ to 4.8973e-8
    (σ_max ≈ 4518.8) where the paper has ᾱ_T = 0. Time index i ∈ {0, …, N−1} is t = (i + 1)/N,
    so M = 0.94 is the official ``ddpm_from=940`` (α at index 939).
    """

    beta_start: float = 0.00085
    beta_end: float = 0.012
    num_steps: int = 1000
    schedule: str = "scaled_linear"
    zero_terminal_snr: bool = False
    prediction: str = "v"
    name: str = "vp_discrete"

    def __post_init__(self) -> None:
        _check_prediction(self.prediction, ("eps", "v"))
        if self.schedule not in ("scaled_linear", "linear"):
            raise CILValueError(f"schedule={self.schedule!r}; expected 'scaled_linear' or 'linear'.")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise CILValueError(
                f"betas ({self.beta_start}, {self.beta_end}) must satisfy 0 < start < end < 1."
            )
        if self.num_steps < 2:
            raise CILValueError(f"num_steps={self.num_steps} must be at least 2.")

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        n = self.num_steps
        if self.schedule == "scaled_linear":
            betas = torch.linspace(self.beta_start**0.5, self.beta_end**0.5, n, dtype=torch.float64) ** 2
        else:
            betas = torch.linspace(self.beta_start, self.beta_end, n, dtype=torch.float64)
        abar = torch.cumprod(1.0 - betas, dim=0)
        if self.zero_terminal_snr:
            root = abar.sqrt()
            r0, rT = root[0].clone(), root[-1].clone()
            root = (root - rT) * r0 / (r0 - rT)
            abar = root**2
            abar[-1] = 4.8973451890853435e-08  # ComfyUI's exact clamp (model_sampling.py)
        return abar

    @cached_property
    def sigmas(self) -> torch.Tensor:
        """ComfyUI's table, increasing with the time index."""
        return ((1.0 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def _sigma_at_index(self, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.clamp(-1.0, self.num_steps - 1.0)
        log_sigmas = self.sigmas.log()
        lo = idx.floor().clamp(min=0).long()
        hi = idx.ceil().clamp(min=0).long()
        w = idx - idx.floor()
        inside = ((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]).exp()
        below = self.sigmas[0] * (idx + 1.0)  # linear ramp to 0 between t = 0 and t = 1/N
        return torch.where(idx >= 0, inside, below)

    def sigma_at(self, t: Tensorish) -> torch.Tensor:
        return self._sigma_at_index(as_float64(t) * self.num_steps - 1.0)

    def index_at(self, sigma: Tensorish) -> torch.Tensor:
        """Continuous time index i ∈ [−1, N−1] of a sigma (log-linear between table entries)."""
        sigma = as_float64(sigma)
        log_sigmas = self.sigmas.log()
        log_s = sigma.clamp(min=1e-300).log()
        hi = torch.searchsorted(log_sigmas, log_s.reshape(-1)).clamp(1, self.num_steps - 1).reshape(sigma.shape)
        lo = hi - 1
        w = (log_s - log_sigmas[lo]) / (log_sigmas[hi] - log_sigmas[lo])
        inside = (lo + w).clamp(0.0, self.num_steps - 1.0)
        below = sigma / self.sigmas[0] - 1.0
        return torch.where(sigma >= self.sigmas[0], inside, below)

    def time_at(self, sigma: Tensorish) -> torch.Tensor:
        return (self.index_at(sigma) + 1.0) / self.num_steps

    def scaling(self, sigma: Tensorish) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = as_float64(sigma)
        return torch.ones_like(sigma), sigma

    def paper_alpha_sigma(self, sigma: Tensorish) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = as_float64(sigma)
        alpha = 1.0 / (1.0 + sigma**2).sqrt()
        return alpha, sigma * alpha

    def timenoise_time(self, sigma: Tensorish) -> torch.Tensor:
        # Official DynamiCrafter: t/1000 with the integer index t ∈ {0, …, 999}.
        return (self.index_at(sigma) / self.num_steps).clamp(0.0, 1.0)

    def describe(self) -> dict[str, str]:
        return super().describe() | {
            "schedule": self.schedule,
            "beta_start": repr(self.beta_start),
            "beta_end": repr(self.beta_end),
            "num_steps": str(self.num_steps),
            "zero_terminal_snr": str(self.zero_terminal_snr).lower(),
        }


@dataclass(frozen=True)
class EDM(DiffusionFamily):
    """EDM / VE family (SVD: σ ∈ [0.002, 700], v-prediction with EDM preconditioning).

    Normalised time is log-linear in σ: t = log(σ/σ_min)/log(σ_max/σ_min) (t = 1 ↔ σ_max),
    as ComfyUI's ``percent_to_sigma``. TimeNoise reads σ/700 as the official SVD code does.
    """

    sigma_lo: float = 0.002
    sigma_hi: float = 700.0
    prediction: str = "v"
    timenoise_sigma_ref: float = 700.0
    name: str = "edm"

    def __post_init__(self) -> None:
        _check_prediction(self.prediction, ("eps", "v"))
        if not 0.0 < self.sigma_lo < self.sigma_hi:
            raise CILValueError(f"EDM sigma range ({self.sigma_lo}, {self.sigma_hi}) must be 0 < min < max.")

    @property
    def sigma_min(self) -> float:
        return self.sigma_lo

    @property
    def sigma_max(self) -> float:
        return self.sigma_hi

    def sigma_at(self, t: Tensorish) -> torch.Tensor:
        t = as_float64(t)
        lo, hi = math.log(self.sigma_lo), math.log(self.sigma_hi)
        return (lo + t * (hi - lo)).exp()

    def time_at(self, sigma: Tensorish) -> torch.Tensor:
        sigma = as_float64(sigma)
        lo, hi = math.log(self.sigma_lo), math.log(self.sigma_hi)
        return (sigma.clamp(min=1e-300).log() - lo) / (hi - lo)

    def scaling(self, sigma: Tensorish) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = as_float64(sigma)
        return torch.ones_like(sigma), sigma

    def paper_alpha_sigma(self, sigma: Tensorish) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scaling(sigma)

    def timenoise_time(self, sigma: Tensorish) -> torch.Tensor:
        return (as_float64(sigma) / self.timenoise_sigma_ref).clamp(0.0, 1.0)

    def describe(self) -> dict[str, str]:
        return super().describe() | {"sigma_min": repr(self.sigma_lo), "sigma_max": repr(self.sigma_hi)}


@dataclass(frozen=True)
class RectifiedFlow(DiffusionFamily):
    """Rectified flow x_t = (1−σ)·x0 + σ·ε with a time shift (Wan, LTX-Video, HunyuanVideo).

    ``shift_kind="linear"``: σ = s·t/(1 + (s−1)·t) (ComfyUI ModelSamplingDiscreteFlow, Wan's
    default s = 8); ``"exponential"``: σ = e^μ/(e^μ + 1/t − 1) (ModelSamplingFlux, LTX μ = 2.37).
    t is the unshifted time; TimeNoise reads σ itself (the interpolation weight of ε).
    """

    shift: float = 8.0
    shift_kind: str = "linear"
    prediction: str = "flow"
    name: str = "rectified_flow"

    def __post_init__(self) -> None:
        _check_prediction(self.prediction, ("flow",))
        if self.shift_kind not in ("linear", "exponential"):
            raise CILValueError(f"shift_kind={self.shift_kind!r}; expected 'linear' or 'exponential'.")
        if self.shift_kind == "linear" and not self.shift > 0:
            raise CILValueError(f"shift={self.shift} must be > 0 for a linear time shift.")

    @property
    def sigma_min(self) -> float:
        return 0.0

    @property
    def sigma_max(self) -> float:
        return 1.0

    def sigma_at(self, t: Tensorish) -> torch.Tensor:
        t = as_float64(t).clamp(0.0, 1.0)
        if self.shift_kind == "linear":
            return self.shift * t / (1.0 + (self.shift - 1.0) * t)
        e = math.exp(self.shift)
        return torch.where(t > 0, e / (e + (1.0 / t.clamp(min=1e-300) - 1.0)), torch.zeros_like(t))

    def time_at(self, sigma: Tensorish) -> torch.Tensor:
        sigma = as_float64(sigma).clamp(0.0, 1.0)
        if self.shift_kind == "linear":
            return sigma / (self.shift - (self.shift - 1.0) * sigma)
        e = math.exp(self.shift)
        return torch.where(sigma > 0, 1.0 / (1.0 + e * (1.0 / sigma.clamp(min=1e-300) - 1.0)), torch.zeros_like(sigma))

    def scaling(self, sigma: Tensorish) -> tuple[torch.Tensor, torch.Tensor]:
        sigma = as_float64(sigma)
        return 1.0 - sigma, sigma

    def paper_alpha_sigma(self, sigma: Tensorish) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scaling(sigma)

    def timenoise_time(self, sigma: Tensorish) -> torch.Tensor:
        return as_float64(sigma).clamp(0.0, 1.0)

    def describe(self) -> dict[str, str]:
        return super().describe() | {"shift": repr(self.shift), "shift_kind": self.shift_kind}


def dynamicrafter_family() -> VPDiscrete:
    """DynamiCrafter's schedule: LDM linear 0.00085–0.012, 1000 steps, zero terminal SNR, v-pred."""
    return VPDiscrete(zero_terminal_snr=True, prediction="v")


def dynamicrafter_alpha_bar(m: int) -> float:
    """ᾱ at DynamiCrafter's index t = M − 1 (``ddpm_from`` = M ∈ 1..1000), as lvdm computes it:
    its zero-terminal-SNR schedule ends at ᾱ_999 = 0 exactly, where ComfyUI (and this module,
    which mirrors ComfyUI) clamps it to 4.9e-8."""
    family = dynamicrafter_family()
    if int(m) != m or not 1 <= m <= family.num_steps:
        raise CILValueError(f"M={m} is outside 1..{family.num_steps}: DynamiCrafter's ddpm_from counts timesteps (1000 = pure noise).")
    if m == family.num_steps:
        return 0.0
    return float(family.alphas_cumprod[int(m) - 1])


def svd_family() -> EDM:
    return EDM(sigma_lo=0.002, sigma_hi=700.0, prediction="v")


def wan_family(shift: float = 8.0) -> RectifiedFlow:
    return RectifiedFlow(shift=shift)


def family_from_description(desc: dict[str, str]) -> DiffusionFamily:
    """Rebuild a family from ``describe()`` output (e.g. stats-file metadata)."""
    kind = desc.get("family")
    if kind == "vp_discrete":
        return VPDiscrete(
            beta_start=float(desc["beta_start"]),
            beta_end=float(desc["beta_end"]),
            num_steps=int(desc["num_steps"]),
            schedule=desc["schedule"],
            zero_terminal_snr=desc["zero_terminal_snr"] == "true",
            prediction=desc["prediction"],
        )
    if kind == "edm":
        return EDM(float(desc["sigma_min"]), float(desc["sigma_max"]), prediction=desc["prediction"])
    if kind == "rectified_flow":
        return RectifiedFlow(shift=float(desc["shift"]), shift_kind=desc["shift_kind"])
    raise CILValueError(f"unknown diffusion family {kind!r}; expected vp_discrete, edm or rectified_flow.")
