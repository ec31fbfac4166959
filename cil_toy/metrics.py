"""Metrics with ground truth for toy videos (pixels [N, 3, F, H, W] in [-1, 1]).

Sprite tracking (``track_sprites``): each ground-truth sprite is found in every frame by
*colour matching*: pixel weight w = max(0, 1 − ‖rgb − c_s‖/τ) with the sprite's known colour
c_s (τ = ``COLOR_TAU``); its area is Σw, its centre the w-weighted centroid. A sprite counts as
found in a frame when its area is ≥ ``FOUND_FRACTION`` × its area in the conditional image;
sprites hidden in the conditional image (area < 1 px) are skipped. The same tracker runs on real
and generated videos, so occlusion and anti-aliasing bias both alike.

Per-video metrics:
    speed        mean ‖Δcentre‖ over found consecutive frame pairs and sprites (px/frame)
    net_speed    ‖centre_last − centre_first‖/(F − 1) averaged over sprites (px/frame; low for jitter)
    fde          pixel frame-difference energy, cil_core.motion.frame_difference_energy
    psnr0        PSNR of frame 0 against the conditional image (data range 2), alignment
    persistence  fraction of (sprite, frame) pairs where the sprite is found, consistency
    size_cv      std/mean over found frames of each sprite's area, averaged, consistency
    hf_energy    mean squared spatial Laplacian (texture / residual noise level)

``FEATURES`` is the motion feature vector of the Fréchet distance (``frechet_distance``):
(speed, net_speed, log fde, persistence, size_cv, log hf_energy), logs clamped at 1e-5;
unstandardised, so each feature counts in its own units (px/frame, nats, fractions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cil_core.motion import first_frame_psnr, frame_difference_energy
from cil_core.validation import CILValueError, check_rank

from .data import SpriteTracks

COLOR_TAU = 0.6
FOUND_FRACTION = 0.3
FEATURES = ("speed", "net_speed", "log_fde", "persistence", "size_cv", "log_hf_energy")
@dataclass
class SpriteObservations:
    area: torch.Tensor  # [N, S, F] colour-matched area (px)
    center: torch.Tensor  # [N, S, F, 2] weighted centroid (px, pixel centres at i + 0.5)
    found: torch.Tensor  # [N, S, F] bool
    valid: torch.Tensor  # [N, S] bool: sprite exists and is visible in the conditional image


def _color_weights(video: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """[N, S, F, H, W] colour-match weights of each sprite colour [N, S, 3]."""
    diff = video.unsqueeze(1) - colors.view(*colors.shape, 1, 1, 1)
    dist = diff.pow(2).sum(dim=2).sqrt()
    return (1 - dist / COLOR_TAU).clamp(min=0)


def track_sprites(video: torch.Tensor, tracks: SpriteTracks, cond_image: torch.Tensor) -> SpriteObservations:
    """Colour-match the ground-truth sprites in ``video``; reference area from ``cond_image`` [N, 3, H, W]."""
    check_rank("video", video, (5,), "[N, 3, frames, height, width]")
    n, _, f, h, w = video.shape
    weights = _color_weights(video.float(), tracks.colors)
    area = weights.sum(dim=(-1, -2))
    ys = torch.arange(h, dtype=torch.float32).view(h, 1) + 0.5
    xs = torch.arange(w, dtype=torch.float32).view(1, w) + 0.5
    cx = (weights * xs).sum(dim=(-1, -2)) / area.clamp(min=1e-6)
    cy = (weights * ys).sum(dim=(-1, -2)) / area.clamp(min=1e-6)
    ref_area = _color_weights(cond_image.float().unsqueeze(2), tracks.colors).sum(dim=(-1, -2))[..., 0]
    valid = tracks.present & (ref_area >= 1.0)
    found = (area >= FOUND_FRACTION * ref_area.unsqueeze(-1)) & valid.unsqueeze(-1)
    return SpriteObservations(area=area, center=torch.stack([cx, cy], dim=-1), found=found, valid=valid)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor, dims) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum(dim=dims) / m.sum(dim=dims).clamp(min=1)


def sprite_motion(obs: SpriteObservations) -> dict[str, torch.Tensor]:
    """Per-video speed, net_speed, persistence and size_cv (see the module docstring)."""
    step = (obs.center[:, :, 1:] - obs.center[:, :, :-1]).norm(dim=-1)  # [N, S, F-1]
    pair_ok = obs.found[:, :, 1:] & obs.found[:, :, :-1]
    speed = _masked_mean(step, pair_ok, (1, 2))
    frames = obs.found.shape[-1]
    ends_ok = obs.found[:, :, 0] & obs.found[:, :, -1]
    net = (obs.center[:, :, -1] - obs.center[:, :, 0]).norm(dim=-1) / (frames - 1)
    net_speed = _masked_mean(net, ends_ok, (1,))
    persistence = _masked_mean(obs.found.float(), obs.valid.unsqueeze(-1).expand_as(obs.found), (1, 2))
    area_mean = _masked_mean(obs.area, obs.found, (2,))
    area_var = _masked_mean((obs.area - area_mean.unsqueeze(-1)) ** 2, obs.found, (2,))
    cv = area_var.sqrt() / area_mean.clamp(min=1e-6)
    size_cv = _masked_mean(cv, obs.valid & (obs.found.sum(-1) >= 2), (1,))
    return {"speed": speed, "net_speed": net_speed, "persistence": persistence, "size_cv": size_cv}


def high_frequency_energy(video: torch.Tensor) -> torch.Tensor:
    """[N] mean squared 3×3 Laplacian over channels, frames and interior pixels."""
    n, c, f, h, w = video.shape
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    frames = video.float().permute(0, 2, 1, 3, 4).reshape(n * f * c, 1, h, w)
    lap = F.conv2d(frames, kernel)
    return lap.pow(2).reshape(n, -1).mean(dim=1)


def video_metrics(video: torch.Tensor, tracks: SpriteTracks, cond_image: torch.Tensor) -> dict[str, torch.Tensor]:
    """All per-video metrics ([N] float64 each) of pixel videos against their ground truth."""
    video = video.clamp(-1, 1)
    out = {k: v.double() for k, v in sprite_motion(track_sprites(video, tracks, cond_image)).items()}
    out["fde"] = frame_difference_energy(video, time_dim=2, batch_dims=1)
    out["psnr0"] = first_frame_psnr(video, cond_image, data_range=2.0, time_dim=2, batch_dims=1).clamp(max=99.0)
    out["hf_energy"] = high_frequency_energy(video).double()
    return out


def feature_matrix(metrics: dict[str, torch.Tensor]) -> torch.Tensor:
    """[N, len(FEATURES)] float64 feature vectors for the Fréchet distance."""
    cols = {
        "speed": metrics["speed"],
        "net_speed": metrics["net_speed"],
        "log_fde": metrics["fde"].clamp(min=1e-5).log(),
        "persistence": metrics["persistence"],
        "size_cv": metrics["size_cv"],
        "log_hf_energy": metrics["hf_energy"].clamp(min=1e-5).log(),
    }
    return torch.stack([cols[k].double() for k in FEATURES], dim=1)


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2(Σa^½ Σb Σa^½)^½) between Gaussians fit to rows of a and b."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise CILValueError(f"need two [N >= 2, D] feature sets of equal D; got {tuple(a.shape)} and {tuple(b.shape)}.")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    value = (mu_a - mu_b).pow(2).sum() + torch.trace(cov_a + cov_b - 2 * cross)
    return float(value.clamp(min=0))


def bootstrap_frechet(a: torch.Tensor, b: torch.Tensor, resamples: int, generator: torch.Generator) -> tuple[float, float]:
    """(FD, bootstrap standard error) resampling the rows of a and b independently."""
    values = []
    for _ in range(resamples):
        ia = torch.randint(0, a.shape[0], (a.shape[0],), generator=generator)
        ib = torch.randint(0, b.shape[0], (b.shape[0],), generator=generator)
        values.append(frechet_distance(a[ia], b[ib]))
    return frechet_distance(a, b), float(torch.tensor(values).std()) if resamples > 1 else math.nan


def summarize(metrics: dict[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Mean and standard error over videos of every per-video metric."""
    out = {}
    for k, v in metrics.items():
        v = v.double()
        se = float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else math.nan
        out[k] = (float(v.mean()), se)
    return out
