"""Pixel motion (cil_media.flow): OpenCV Farneback optical flow, optional."""

from __future__ import annotations

import sys

import pytest
import torch

from cil_core.validation import CILValueError
from cil_media import flow


def textured_video(frames: int, shift: int, size: int = 48) -> torch.Tensor:
    """[F, H, W, 3] smooth texture translated by ``shift`` pixels per frame (x direction)."""
    gen = torch.Generator().manual_seed(3)
    noise = torch.rand(1, 1, size // 4, (size + frames * shift) // 4 + 1, generator=gen)
    texture = torch.nn.functional.interpolate(noise, scale_factor=4, mode="bicubic", align_corners=False)[0, 0].clamp(0, 1)
    return torch.stack([texture[:size, f * shift : f * shift + size] for f in range(frames)]).unsqueeze(-1).expand(-1, -1, -1, 3)



def test_optical_flow_needs_opencv(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # makes `import cv2` raise ImportError
    assert flow.optical_flow_available() is False
    with pytest.raises(CILValueError, match="opencv-python-headless"):
        flow.optical_flow_motion(textured_video(3, 1))



def test_optical_flow_measures_a_known_translation():
    pytest.importorskip("cv2", reason="OpenCV not installed: the pixel_flow metric is optional")
    static = flow.optical_flow_motion(textured_video(4, 0))
    moving = flow.optical_flow_motion(textured_video(4, 2))
    assert static < 0.05
    # a 2 px/frame translation of a smooth texture: Farneback's mean magnitude within 25%
    assert moving == pytest.approx(2.0, rel=0.25)



def test_optical_flow_refuses_a_single_frame():
    with pytest.raises(CILValueError):
        flow.optical_flow_motion(torch.zeros(1, 8, 8, 3))
