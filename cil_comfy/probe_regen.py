"""The Leakage Probe's regeneration mode inside ComfyUI (cil_core.regen_probe): x_t sampled back
to 0 by ComfyUI's own KSAMPLER (``comfy.samplers.sampler_object``: its noise scaling, its inpaint
rule for held frames, its step function) with the guider the probe prepared (``cil_comfy.probe``).
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.samplers
import torch

OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


@dataclass(frozen=True)
class RegenPlan:
    """The regeneration probe's settings: ``samples`` per t, ``steps`` model calls each, ComfyUI
    sampler ``sampler_name``; its noise comes from seed + 1."""

    samples: int = 2
    steps: int = 10
    sampler_name: str = "euler"


def to_model_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """cil_core's [B, C, F, H, W] → the model's batch ([B·F, C, H, W] for frames-as-batch models)."""
    return x if layout == "BCTHW" else x.permute(0, 2, 1, 3, 4).reshape(-1, *x.shape[1:2], *x.shape[3:])


def from_model_layout(y: torch.Tensor, layout: str, b: int) -> torch.Tensor:
    if layout == "BCTHW":
        return y
    return y.reshape(b, -1, *y.shape[1:]).permute(0, 2, 1, 3, 4)


def regen_sampler(model_wrap, extra_args: dict, latent_image: torch.Tensor, denoise_mask, layout: str, sampler_name: str,
                  calls: list[int] | None = None, step=None):
    """``sample(x0, eps, sigmas)`` for cil_core.regen_probe: ComfyUI's KSAMPLER forms the start
    state (its noise_scaling) and runs its step function with the prepared guider; held frames of a
    replacement model stay clean (its inpaint rule). Cancel is checked after every step (``step(b)``
    is told each step of b videos); a batch that runs out of GPU memory is split in halves."""
    import comfy.model_management as mm

    ksampler = comfy.samplers.sampler_object(sampler_name)
    one = latent_image.shape[0]  # frames (TCHW) or 1 (BCTHW) per video

    def run(x0: torch.Tensor, eps: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        b = eps.shape[0]
        dev = latent_image.device
        mask = None if denoise_mask is None else denoise_mask.repeat(b, *([1] * (denoise_mask.dim() - 1)))

        def callback(i, denoised, x, total):
            mm.throw_exception_if_processing_interrupted()
            if step is not None:
                step(b)

        try:
            out = ksampler.sample(model_wrap, sigmas.to(dev, torch.float32), dict(extra_args), callback,
                                  to_model_layout(eps, layout).to(dev, latent_image.dtype), latent_image=latent_image.repeat(b, *([1] * (latent_image.dim() - 1))),
                                  denoise_mask=mask, disable_pbar=True)
        except OUT_OF_MEMORY:
            if b == 1:
                raise
            mm.soft_empty_cache()
            half = b // 2
            return torch.cat([run(x0[:half], eps[:half], sigmas), run(x0[half:], eps[half:], sigmas)])
        if calls is not None:
            calls.extend([b] * (len(sigmas) - 1))
        assert out.shape[0] == b * one
        return from_model_layout(out.float(), layout, b)

    return run


