"""ComfyUI kernels that autograd cannot differentiate, swapped for equivalent torch while training."""

from __future__ import annotations

import contextlib
import sys

import torch


def rope1(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """RoPE on one tensor, the formula of ComfyUI's own fallback (comfy/ldm/flux/math.py)."""
    x_ = x.to(dtype=freqs_cis.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    out = freqs_cis[..., 0] * x_[..., 0] + freqs_cis[..., 1] * x_[..., 1]
    return out.reshape(*x.shape).type_as(x)


def rope2(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor):
    return rope1(xq, freqs_cis), rope1(xk, freqs_cis)


@contextlib.contextmanager
def differentiable_rope():
    """ComfyUI ≥ 0.7 computes RoPE (Wan, Flux, Qwen …) with comfy_kitchen kernels that have no
    autograd formula; while training, the model modules use the equivalent torch formula."""
    swapped = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("comfy.ldm.") or module is None:
            continue
        for attr, replacement in (("apply_rope1", rope1), ("apply_rope", rope2)):
            fn = getattr(module, attr, None)
            if fn is not None and getattr(fn, "__module__", "").startswith("comfy_kitchen"):
                swapped.append((module, attr, fn))
                setattr(module, attr, replacement)
    try:
        yield
    finally:
        for module, attr, fn in swapped:
            setattr(module, attr, fn)
