"""Latent layouts. The pack's canonical video latent is CFHW: [channels, frames, height, width].

ComfyUI puts SVD / DynamiCrafter frames in the batch ([T, C, H, W], "TCHW") and Wan / LTX /
Hunyuan videos in a 5-D batch ([B, C, T, H, W], "BCTHW"); the official stats files are
[1, C, T, H, W].
"""

from __future__ import annotations

import torch

from .validation import CILValueError, check_rank

LAYOUTS = ("TCHW", "BCTHW")


def latent_layout(samples: torch.Tensor) -> str:
    """'TCHW' for a 4-D latent (frames as batch), 'BCTHW' for a 5-D batch of videos."""
    if samples.dim() == 4:
        return "TCHW"
    if samples.dim() == 5:
        return "BCTHW"
    raise CILValueError(
        f"LATENT has shape {tuple(samples.shape)}; expected a 4-D frames-as-batch latent [T, C, H, W] "
        "(SVD, DynamiCrafter) or a 5-D video latent [B, C, T, H, W] (Wan, LTX, HunyuanVideo)."
    )


def video_shape(samples: torch.Tensor) -> tuple[int, int, int, int]:
    """(C, F, H, W) of one video of a ComfyUI latent."""
    if latent_layout(samples) == "TCHW":
        t, c, h, w = samples.shape
        return (c, t, h, w)
    return tuple(samples.shape[1:])  # type: ignore[return-value]


def to_cfhw(latent: torch.Tensor, layout: str) -> torch.Tensor:
    """One video from a ComfyUI latent tensor, as CFHW (the first video of a BCTHW batch)."""
    if layout == "TCHW":
        check_rank("latent", latent, (4,), "[frames, channels, height, width]")
        return latent.permute(1, 0, 2, 3)
    if layout == "BCTHW":
        check_rank("latent", latent, (5,), "[batch, channels, frames, height, width]")
        return latent[0]
    raise CILValueError(f"layout={layout!r}; expected one of {LAYOUTS}.")


def from_cfhw(video: torch.Tensor, layout: str, batch: int = 1) -> torch.Tensor:
    """CFHW (or [N, C, F, H, W]) back to a ComfyUI layout; TCHW takes exactly one video."""
    if video.dim() == 4:
        video = video.unsqueeze(0).expand(batch, *video.shape)
    check_rank("video", video, (5,), "[N, channels, frames, height, width]")
    if layout == "TCHW":
        if video.shape[0] != 1:
            raise CILValueError(
                f"a TCHW latent holds one video, got {video.shape[0]}; use batch=1 for frames-as-batch models."
            )
        return video[0].permute(1, 0, 2, 3).contiguous()
    if layout == "BCTHW":
        return video.contiguous()
    raise CILValueError(f"layout={layout!r}; expected one of {LAYOUTS}.")
