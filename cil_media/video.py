"""Video clips: from an IMAGE batch or from video files (PyAV, streamed).

PyAV (``av``) is imported only when a file is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from cil_core.validation import CILValueError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v")


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
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if not files:
        raise CILValueError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found under {str(folder)!r}.")
    return files


def read_clip(path: Path, frames: int, stride: int) -> torch.Tensor | None:
    """The first ``frames`` frames taken every ``stride`` frames, [F, H, W, 3] in [0, 1]; None if shorter."""
    import av

    picked: list[torch.Tensor] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            if index % stride:
                continue
            picked.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
            if len(picked) == frames:
                break
    if len(picked) < frames:
        return None
    return torch.stack(picked).to(torch.float32) / 255.0


@dataclass
class FolderReport:
    used: list[str] = field(default_factory=list)
    too_short: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{len(self.used)} video(s) used"
        if self.too_short:
            text += f", {len(self.too_short)} too short skipped ({', '.join(self.too_short[:5])}{'…' if len(self.too_short) > 5 else ''})"
        if self.failed:
            text += f", {len(self.failed)} unreadable skipped ({', '.join(self.failed[:5])}{'…' if len(self.failed) > 5 else ''})"
        return text


def clips_from_folder(files: list[Path], frames: int, stride: int, report: FolderReport):
    """Yield one clip per readable video that is long enough; record the others in ``report``."""
    for path in files:
        try:
            clip = read_clip(path, frames, stride)
        except Exception:  # a corrupt file must not end the estimate
            report.failed.append(path.name)
            continue
        if clip is None:
            report.too_short.append(path.name)
            continue
        report.used.append(path.name)
        yield clip
