"""Clip sets for estimates: consecutive clips of an IMAGE batch, or one clip per video of a folder
(read by ``cil_media.video``) with a report of the videos skipped. Clips are float [F, H, W, 3]
in [0, 1] (ComfyUI's IMAGE layout)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cil_core.validation import CILValueError
from cil_media.video import (
    VIDEO_EXTENSIONS,
    ClipSpec,
    VideoDecodeError,
    decode_clip,
    video_files,
)


def clips_from_images(images: torch.Tensor, frames: int) -> list[torch.Tensor]:
    """Consecutive non-overlapping clips [frames, H, W, 3] of an IMAGE batch [N, H, W, C]."""
    if images.dim() != 4:
        raise CILValueError(f"IMAGE has shape {tuple(images.shape)}; expected [frames, height, width, channels].")
    if images.shape[0] < frames:
        raise CILValueError(
            f"the IMAGE batch holds {images.shape[0]} frame(s) but frames={frames}: give at least one clip of "
            f"{frames} frames (frames are consecutive images of the batch), or lower frames."
        )
    n = images.shape[0] // frames
    return [images[i * frames:(i + 1) * frames, :, :, :3] for i in range(n)]


def list_videos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise CILValueError(f"folder {str(folder)!r} does not exist or is not a folder of videos.")
    files = video_files(folder)
    if not files:
        raise CILValueError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found under {str(folder)!r}.")
    return files


@dataclass
class FolderReport:
    used: list[str] = field(default_factory=list)  # file names
    too_short: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    used_paths: list[str] = field(default_factory=list)  # the same videos, as the paths given
    reasons: dict[str, str] = field(default_factory=dict)  # path of each skipped video → why

    def summary(self) -> str:
        text = f"{len(self.used)} video(s) used"
        if self.too_short:
            text += f", {len(self.too_short)} too short skipped ({', '.join(self.too_short[:5])}{'…' if len(self.too_short) > 5 else ''})"
        if self.failed:
            text += f", {len(self.failed)} unreadable skipped ({', '.join(self.failed[:5])}{'…' if len(self.failed) > 5 else ''})"
        return text


def clips_from_folder(files: list[Path], frames: int, stride: int, report: FolderReport, width: int = 0,
                      height: int = 0, fps: float = 0.0) -> Iterator[torch.Tensor]:
    """One clip per readable video that is long enough: its first ``frames`` frames, every
    ``stride``-th (after resampling to ``fps``; 0 keeps the video's rate), at width × height (0 × 0:
    the first used video's size for all); the others are recorded in ``report``."""
    for path in files:
        try:
            clip = decode_clip(path, ClipSpec(frames, height, width, fps=fps, stride=stride, clip_start="first"))["pixels"]
        except VideoDecodeError as exc:  # a bad file must not end the estimate
            (report.too_short if exc.too_short else report.failed).append(Path(path).name)
            report.reasons[str(path)] = str(exc)
            continue
        height, width = clip.shape[1:3]
        report.used.append(Path(path).name)
        report.used_paths.append(str(path))
        yield clip.to(torch.float32) / 255.0
