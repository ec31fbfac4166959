"""Motion statistics of video tensors, for the Leakage Probe and the toy metrics.

Frame-difference energy: mean over consecutive frame pairs of the mean squared difference,
    E(x) = 1/(F−1) Σ_f mean((x_{f+1} − x_f)²).
It works on latents (CFHW, NCFHW) and on pixels alike; ``time_dim`` says which axis is time.
"""

from __future__ import annotations

import torch

from .validation import CILValueError


def frame_difference_energy(video: torch.Tensor, time_dim: int = -3, batch_dims: int = 0) -> torch.Tensor:
    """Motion energy per video. Time is at ``time_dim``; the first ``batch_dims`` dims are kept
    and every other dim is averaged (so [N, C, F, H, W] with batch_dims=1 gives [N])."""
    t = time_dim % video.dim()
    if t < batch_dims:
        raise CILValueError(f"time_dim={time_dim} falls inside the {batch_dims} batch dim(s) of shape {tuple(video.shape)}.")
    frames = video.shape[t]
    if frames < 2:
        raise CILValueError(f"a video needs at least 2 frames to have motion; got {frames} along dim {t}.")
    diff = video.narrow(t, 1, frames - 1).to(torch.float64) - video.narrow(t, 0, frames - 1).to(torch.float64)
    return diff.pow(2).mean(dim=tuple(range(batch_dims, video.dim())))


def motion_ratio(predicted: torch.Tensor, reference: torch.Tensor, time_dim: int = -3, batch_dims: int = 0) -> torch.Tensor:
    """motion(predicted) / motion(reference): ~1 for a faithful model, → 0 when it leaks."""
    ref = frame_difference_energy(reference, time_dim, batch_dims)
    if (ref <= 0).any():
        raise CILValueError("the reference video has no motion (identical frames): the ratio is undefined.")
    return frame_difference_energy(predicted, time_dim, batch_dims) / ref


def first_frame_psnr(video: torch.Tensor, image: torch.Tensor, data_range: float = 1.0, time_dim: int = -3, batch_dims: int = 0) -> torch.Tensor:
    """PSNR between frame 0 of ``video`` and the conditional ``image`` (alignment metric)."""
    frame0 = video.select(time_dim % video.dim(), 0).to(torch.float64)
    err = (frame0 - image.to(torch.float64)).pow(2)
    mse = err.mean(dim=tuple(range(batch_dims, err.dim())))
    return 10.0 * torch.log10(data_range**2 / mse.clamp(min=1e-20))


def motion_of_mean(draws: torch.Tensor, time_dim: int = -3) -> torch.Tensor:
    """Unbiased estimate of the frame-difference energy of E[x] from S >= 2 independent draws.

    ``draws`` is [B, S, *video] (time at ``time_dim`` of the video); returns [B]. The energy of a
    single draw counts its noise as motion (E‖Δx‖² = ‖ΔE[x]‖² + E‖Δ(x − E[x])‖²: the energy is
    convex); the mean over pairs s ≠ s' of ⟨Δx_s, Δx_s'⟩ has expectation ‖ΔE[x]‖² exactly, so
    prediction noise that varies between draws does not count. It can be slightly negative when
    E[x] barely moves."""
    if draws.dim() < 3:
        raise CILValueError(f"draws must be [batch, samples, *video]; got shape {tuple(draws.shape)}.")
    b, s = draws.shape[:2]
    if s < 2:
        raise CILValueError(f"motion_of_mean needs at least 2 draws per item to remove their noise; got {s}.")
    t = (time_dim % (draws.dim() - 2)) + 2
    frames = draws.shape[t]
    if frames < 2:
        raise CILValueError(f"a video needs at least 2 frames to have motion; got {frames}.")
    diff = draws.narrow(t, 1, frames - 1).to(torch.float64) - draws.narrow(t, 0, frames - 1).to(torch.float64)
    diff = diff.reshape(b, s, -1)
    total = diff.sum(1).pow(2).mean(1)
    own = diff.pow(2).mean(2).sum(1)
    return (total - own) / (s * (s - 1))
