"""Latent layouts. The pack's canonical video latent is CFHW: [channels, frames, height, width].

ComfyUI puts SVD / DynamiCrafter frames in the batch ([T, C, H, W], "TCHW") and Wan / LTX /
Hunyuan videos in a 5-D batch ([B, C, T, H, W], "BCTHW"); the official stats files are
[1, C, T, H, W].
"""

from __future__ import annotations

import torch

from .validation import CILValueError, check_rank

LAYOUTS = ("TCHW", "BCTHW")


def to_cfhw(latent: torch.Tensor, layout: str) -> torch.Tensor:
    """One video from a ComfyUI latent tensor, as CFHW (the first video of a BCTHW batch)."""
    if layout == "TCHW":
        check_rank("latent", latent, (4,), "[frames, channels, height, width]")
        return latent.permute(1, 0, 2, 3)
    if layout == "BCTHW":
        check_rank("latent", latent, (5,), "[batch, channels, frames, height, width]")
        return latent[0]
    raise CILValueError(f"layout={layout!r}; expected one of {LAYOUTS}.")


def batch_to_cfhw(latent: torch.Tensor, layout: str) -> torch.Tensor:
    """All videos of a ComfyUI latent tensor as [N, C, F, H, W] (TCHW holds one video)."""
    if layout == "TCHW":
        return to_cfhw(latent, layout).unsqueeze(0)
    if layout == "BCTHW":
        check_rank("latent", latent, (5,), "[batch, channels, frames, height, width]")
        return latent
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
