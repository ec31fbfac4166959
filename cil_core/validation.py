"""Input checks that raise errors naming the value, what was expected and how to fix it."""

from __future__ import annotations

import math

import torch


class CILValueError(ValueError):
    """Bad user input. The message names the value, the expectation and a fix."""


def shown(value, limit: int = 60) -> str:
    """``repr(value)`` for a one-line message: ASCII only (a lone surrogate or NUL stays escaped) and
    cut to ``limit`` characters, with the full length said when cut."""
    text = ascii(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return text[: limit - 1] + "…" + size


def check_fraction(name: str, value: float, *, hint: str = "") -> float:
    """A start time M given as a fraction of T must lie in (0, 1]."""
    value = float(value)
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise CILValueError(
            f"{name}={value!r} is outside (0, 1]: it is a fraction of the diffusion time T "
            f"(e.g. 0.96 starts at 96% of T). {hint}".rstrip()
        )
    return value


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0.0 if allow_zero else value > 0.0
    if not math.isfinite(value) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise CILValueError(f"{name}={value!r} must be a finite number {bound}.")
    return value


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    if not torch.is_floating_point(tensor):
        raise CILValueError(f"{name} has dtype {tensor.dtype}; expected a floating-point tensor.")
    bad = (~torch.isfinite(tensor)).sum().item()
    if bad:
        raise CILValueError(
            f"{name} holds {bad} non-finite value(s) (NaN or inf) out of {tensor.numel()}; "
            "re-estimate it from clean latents (a NaN often comes from an fp16 VAE overflow)."
        )
    return tensor


def check_rank(name: str, tensor: torch.Tensor, ranks: tuple[int, ...], layout: str) -> torch.Tensor:
    if tensor.dim() not in ranks:
        raise CILValueError(
            f"{name} has shape {tuple(tensor.shape)} (rank {tensor.dim()}); expected rank "
            f"{' or '.join(map(str, ranks))} laid out as {layout}."
        )
    return tensor
