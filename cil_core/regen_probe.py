"""The regeneration probe: corrupt the real video to t, *sample* back to 0, compare motion.

For each t on the grid the clean video x0 is corrupted with the model's own forward process,
x = a(σ)·x0 + b(σ)·ε at the first sigma of the schedule that starts at t, and the sampler runs
that schedule down to 0 (``steps`` model calls). A perfect model returns a plausible video
whose motion matches the real videos' at every t (exactly in distribution with a stochastic
sampler; on average over videos with an ODE sampler such as Euler, whose output from x_t has the
data's law when x_t has the forward process's); a model that copies the conditional image loses
motion as t grows. Unlike the one-step probe it needs no reference curve: its target is 1 (on
average over videos: one video's ratio at large t scatters around the motion of a plausible
future over this video's motion). It costs ``steps`` model calls per (t, sample) instead of one.

``sample(x0 [B, C, F, H, W], eps [B, C, F, H, W], sigmas [n + 1]) -> [B, C, F, H, W]`` closes over
the model and its conditioning: it forms the start state x = a(σ0)·x0 + b(σ0)·ε as the model's
own sampler does (``family.noised``; in ComfyUI the model's ``noise_scaling``, which at σ0 =
σ_max scales the noise as a start from T does) and samples down the schedule. ``schedule(t) ->
sigmas`` (float64, decreasing, last 0) is the sampler's schedule from t (e.g.
``cil_core.schedules.late_start_sigmas``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .families import DiffusionFamily, as_float64
from .motion import frame_difference_energy
from .probe import ProbeResult, check_time_grid, draw_noise
from .schedules import is_valid_schedule
from .validation import CILValueError, check_rank

Sampler = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Schedule = Callable[[float], torch.Tensor]
Progress = Callable[[int, int], None]


def regeneration_probe(
    sample: Sampler,
    x0: torch.Tensor,
    family: DiffusionFamily,
    t_grid: torch.Tensor | list[float],
    samples_per_t: int,
    schedule: Schedule,
    *,
    generator: torch.Generator | None = None,
    max_batch: int = 8,
    keep_samples: bool = False,
    progress: Progress | None = None,
    skip_frames: int = 0,
) -> ProbeResult:
    """Run the regeneration probe on one CFHW video. Noise is drawn t by t, sample by sample,
    from ``generator`` (so the numbers do not depend on ``max_batch``). ``progress(done, total)``
    counts model calls (sampling steps × videos). The result's ``sigma`` holds each t's start.
    ``skip_frames`` leading frames (a start image the sampler holds) are left out of both motions."""
    t = check_time_grid(t_grid)
    check_rank("x0", x0, (4,), "[channels, frames, height, width]")
    if samples_per_t < 1 or max_batch < 1:
        raise CILValueError(f"samples_per_t={samples_per_t} and max_batch={max_batch} must be >= 1.")
    if not 0 <= skip_frames <= x0.shape[1] - 2:
        raise CILValueError(f"skip_frames={skip_frames} leaves fewer than 2 of the video's {x0.shape[1]} frames to measure motion on.")
    motion_ref = float(frame_difference_energy(x0[:, skip_frames:], time_dim=1))
    if motion_ref <= 0:
        raise CILValueError("the reference video has identical frames (no motion): the probe needs a moving video.")
    schedules = []
    for ti in t.tolist():
        sig = as_float64(schedule(ti)).reshape(-1)
        if not is_valid_schedule(sig):
            raise CILValueError(f"the sampling schedule from t={ti:g} is not decreasing to 0: {sig.tolist()}.")
        schedules.append(sig)
    total = sum((len(s) - 1) * samples_per_t for s in schedules)
    done, motions, kept = 0, [], []
    for sig in schedules:
        eps = draw_noise(x0.shape, samples_per_t, generator).to(x0.device)
        outs = []
        for start in range(0, samples_per_t, max_batch):
            chunk = eps[start : start + max_batch]
            with torch.no_grad():
                outs.append(sample(x0.unsqueeze(0).expand(chunk.shape[0], *x0.shape).to(torch.float32), chunk, sig).detach().float().cpu())
            done += (len(sig) - 1) * chunk.shape[0]
            if progress is not None:
                progress(done, total)
        out = torch.cat(outs)
        motions.append(frame_difference_energy(out[:, :, skip_frames:], time_dim=2, batch_dims=1))
        if keep_samples:
            kept.append(out)
    sigma = torch.stack([s[0] for s in schedules])
    return ProbeResult(t=t, sigma=sigma, motion_pred=torch.stack(motions), motion_ref=motion_ref,
                       predictions=torch.stack(kept) if keep_samples else None, mode="regen", skip_frames=skip_frames)
