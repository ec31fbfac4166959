"""The Leakage Probe's core (Sec. 3.1, Fig. 2/6): one-step x0 predictions over a grid of times.

For each t on the grid, the clean video x0 is corrupted with the model's own forward process,
x = a(σ_t)·x0 + b(σ_t)·ε, and the model's one-step prediction x̂0(x, y0, σ_t) is compared with
x0 by motion. A leaking model's ratio motion(x̂0)/motion(x0) collapses toward 0 at large t.

A denoiser here is any callable ``denoise(x [B, C, F, H, W], sigma [B]) -> x̂0`` that closes
over its conditioning (the probe does not care how the model sees the conditional image).

Two motions per t: ``motion_pred`` [T, S], the frame-difference energy of each prediction (the
paper's measure; noise left in x̂0 counts as motion, since the energy is convex), and
``motion_mean`` [T, V], the energy of the prediction averaged over the S noise draws, estimated
without that noise (``cil_core.motion.motion_of_mean``; needs S >= 2). A regeneration probe
(``cil_core.regen_probe``) fills ``motion_pred`` with the motion of videos sampled from x_t.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .families import DiffusionFamily, as_float64
from .motion import frame_difference_energy, motion_of_mean
from .validation import CILValueError, check_rank

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Progress = Callable[[int, int], None]


def check_time_grid(t_grid: torch.Tensor | list[float]) -> torch.Tensor:
    t = as_float64(t_grid).reshape(-1)
    if t.numel() == 0:
        raise CILValueError("the time grid is empty; give at least one t in (0, 1].")
    if ((t <= 0) | (t > 1) | ~torch.isfinite(t)).any():
        raise CILValueError(f"time grid values must lie in (0, 1]; got {t.tolist()}.")
    return t


@dataclass
class ProbeResult:
    t: torch.Tensor  # [T] normalised schedule times
    sigma: torch.Tensor  # [T] ComfyUI sigmas
    motion_pred: torch.Tensor  # [T, S] frame-difference energy of each one-step prediction
    motion_ref: float  # frame-difference energy of the reference video
    predictions: torch.Tensor | None = None  # [T, S, C, F, H, W] when kept
    skip_frames: int = 0  # leading frames left out of both motions (they hold the start image)
    motion_mean: torch.Tensor | None = None  # [T, V] noise-free motion of the mean prediction (one-step, S >= 2)
    mode: str = "one_step"  # "one_step" | "regen"
    inputs: torch.Tensor | None = None  # [T, S, C, F, H, W] noisy inputs x_t, when kept

    @property
    def ratio(self) -> torch.Tensor:
        """[T, S] motion(x̂0)/motion(x0)."""
        return self.motion_pred / self.motion_ref

    @property
    def mean_ratio(self) -> torch.Tensor:
        return self.ratio.mean(dim=1)

    @property
    def corrected_ratio(self) -> torch.Tensor | None:
        """[T, V] motion(mean prediction)/motion(x0), prediction noise removed (None if not measured)."""
        return None if self.motion_mean is None else self.motion_mean / self.motion_ref


def draw_noise(shape, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """[count, *shape] standard normal draws, one per sample (torch's CPU randn fills blocks of
    16, so a batched draw would change with the chunking whenever the size is not a multiple of 16)."""
    return torch.stack([torch.randn(shape, generator=generator, dtype=torch.float32) for _ in range(count)])


def one_step_predictions(
    denoise: Denoiser,
    x0: torch.Tensor,
    family: DiffusionFamily,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    max_batch: int = 8,
    progress: Progress | None = None,
    inputs: list | None = None,
) -> torch.Tensor:
    """x̂0 for every entry of ``sigmas`` (one noisy copy of x0 each), in chunks of ``max_batch``.

    ``x0`` is one CFHW video. Noise is drawn chunk by chunk from ``generator`` in order, so the
    result does not depend on ``max_batch``. Returns [len(sigmas), C, F, H, W]; ``inputs`` (a
    list) receives the noisy videos, chunk by chunk.
    """
    check_rank("x0", x0, (4,), "[channels, frames, height, width]")
    if max_batch < 1:
        raise CILValueError(f"max_batch={max_batch} must be >= 1.")
    sigmas = as_float64(sigmas).reshape(-1)
    total, out = sigmas.numel(), []
    for start in range(0, total, max_batch):
        sig = sigmas[start : start + max_batch]
        eps = draw_noise(x0.shape, sig.numel(), generator)
        x = family.noised(x0.unsqueeze(0).to(torch.float32), eps.to(x0.device), sig.to(x0.device))
        if inputs is not None:
            inputs.append(x.detach().float().cpu())
        with torch.no_grad():
            out.append(denoise(x, sig.to(torch.float32)).detach().float().cpu())
        if progress is not None:
            progress(min(start + max_batch, total), total)
    return torch.cat(out)


def probe_leakage(
    denoise: Denoiser,
    x0: torch.Tensor,
    family: DiffusionFamily,
    t_grid: torch.Tensor | list[float],
    samples_per_t: int = 4,
    *,
    generator: torch.Generator | None = None,
    max_batch: int = 8,
    keep_predictions: bool = False,
    keep_inputs: bool = False,
    progress: Progress | None = None,
    skip_frames: int = 0,
) -> ProbeResult:
    """Run the probe on one CFHW video: all (t, sample) pairs batched through ``denoise``.
    With ``samples_per_t`` >= 2 the noise-free motion of the mean prediction is measured too.
    ``skip_frames`` leading frames (a replacement model's start image, held clean by its sampler)
    are predicted but left out of both motions: the motion of frames skip_frames.. is compared."""
    t = check_time_grid(t_grid)
    if samples_per_t < 1:
        raise CILValueError(f"samples_per_t={samples_per_t} must be >= 1.")
    check_rank("x0", x0, (4,), "[channels, frames, height, width]")
    if not 0 <= skip_frames <= x0.shape[1] - 2:
        raise CILValueError(f"skip_frames={skip_frames} leaves fewer than 2 of the video's {x0.shape[1]} frames to measure motion on.")
    motion_ref = float(frame_difference_energy(x0[:, skip_frames:], time_dim=1))
    if motion_ref <= 0:
        raise CILValueError("the reference video has identical frames (no motion): the probe needs a moving video.")
    sigma = family.sigma_at(t)
    inputs: list | None = [] if keep_inputs else None
    preds = one_step_predictions(
        denoise, x0, family, sigma.repeat_interleave(samples_per_t), generator=generator, max_batch=max_batch, progress=progress,
        inputs=inputs,
    )
    motion = frame_difference_energy(preds[:, :, skip_frames:], time_dim=2, batch_dims=1).reshape(t.numel(), samples_per_t)
    grouped = preds.reshape(t.numel(), samples_per_t, *x0.shape)
    mean_motion = motion_of_mean(grouped[:, :, :, skip_frames:], time_dim=1).unsqueeze(1) if samples_per_t >= 2 else None
    return ProbeResult(t=t, sigma=sigma, motion_pred=motion, motion_ref=motion_ref, predictions=grouped if keep_predictions else None,
                       skip_frames=skip_frames, motion_mean=mean_motion,
                       inputs=torch.cat(inputs).reshape(grouped.shape) if keep_inputs else None)
