"""Pixel motion: mean optical-flow magnitude of a video (OpenCV Farneback, pixels per frame), the
Leakage Probe's ``pixel_flow`` metric (as the official code's RAFT motion score). OpenCV (``cv2``)
is optional and imported when measured."""

from __future__ import annotations

import torch

from cil_core.validation import CILValueError, check_rank


def optical_flow_available() -> bool:
    """True when OpenCV (``cv2``) can be imported: the pixel_flow metric needs it."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def optical_flow_motion(frames: torch.Tensor) -> float:
    """Mean Farneback optical-flow magnitude (pixels/frame) of one video.

    ``frames``: [F, H, W, 3] (ComfyUI IMAGE layout), values in [0, 1]. Frames go to 8-bit grey;
    the magnitude is averaged over pixels and the F−1 consecutive pairs.
    """
    try:
        import cv2
    except ImportError as exc:
        raise CILValueError(
            "the pixel_flow metric needs OpenCV: pip install opencv-python-headless "
            "(or use the latent_energy metric, which needs nothing)."
        ) from exc
    import numpy as np

    check_rank("frames", frames, (4,), "[frames, height, width, 3]")
    if frames.shape[0] < 2:
        raise CILValueError(f"a video needs at least 2 frames to have motion; got {frames.shape[0]}.")
    grey = (frames[..., :3].float().clamp(0, 1).mean(dim=-1) * 255.0).round().to(torch.uint8).cpu().numpy()
    winsize = max(5, min(15, min(grey.shape[1:]) // 4))
    total = 0.0
    for prev, nxt in zip(grey[:-1], grey[1:]):
        flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, winsize, 3, 5, 1.2, 0)
        total += float(np.sqrt((flow.astype(np.float64) ** 2).sum(axis=-1)).mean())
    return total / (grey.shape[0] - 1)
