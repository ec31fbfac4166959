"""The one video reader: a clip of uint8 frames [F, H, W, 3] from a video file, an animated image
or a folder of frames.

Sources:
    video files      decoded by PyAV (``av``, imported when such a file is read), streamed: only
                     the frames up to the clip's end are decoded, and a far start is sought to.
    animated images  ANIMATED_SUFFIXES (GIF, WebP, APNG) decoded by PIL; frame times come from the
                     frame durations (a GIF delay under 20 ms counts as 100 ms, as in FFmpeg).
    frame folders    the still images (FRAME_SUFFIXES) of a folder in name order, at FOLDER_FPS.

Clip sampling (``ClipSpec``): the source is resampled to ``fps`` (0 keeps its own rate), then
every ``stride``-th frame is taken, ``frames`` in all, from a start chosen by ``clip_start``
(random — a function of ``rng_key`` —, first, or centre). Frames are resized (bicubic) to cover
``height × width`` and centre-cropped; width = height = 0 keeps the size of the first frame.
Every failure (missing, corrupt, truncated, too short) raises ``VideoDecodeError``.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from cil_core.validation import CILValueError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v")  # what a folder of videos lists
ANIMATED_SUFFIXES = (".gif", ".webp", ".png", ".apng")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CLIP_STARTS = ("random", "first", "center")
FOLDER_FPS = 25.0  # a folder of frames has no rate of its own; FFmpeg's image2 reader assumes 25
GIF_MIN_DELAY_MS, GIF_DEFAULT_DELAY_MS = 20, 100


class VideoDecodeError(CILValueError):
    """A source that cannot give the clip (reason in the message); ``too_short`` tells a video that
    ends too early (or is cut) from one that cannot be read at all."""

    def __init__(self, message: str, too_short: bool = False) -> None:
        super().__init__(message)
        self.too_short = too_short

    def __reduce__(self):
        return type(self), (str(self), self.too_short)


@dataclass(frozen=True)
class ClipSpec:
    frames: int
    height: int = 0
    width: int = 0
    fps: float = 0.0
    stride: int = 1
    clip_start: str = "random"

    def __post_init__(self) -> None:
        if self.frames < 1 or self.stride < 1:
            raise CILValueError(f"frames={self.frames}, stride={self.stride}: a clip needs frames >= 1 and stride >= 1.")
        if self.fps < 0 or not math.isfinite(self.fps):
            raise CILValueError(f"fps={self.fps!r} must be >= 0 (0 keeps the video's own frame rate).")
        if self.clip_start not in CLIP_STARTS:
            raise CILValueError(f"clip_start={self.clip_start!r}; expected one of {CLIP_STARTS}.")
        if min(self.width, self.height) < 0 or (self.width == 0) != (self.height == 0):
            raise CILValueError(f"width={self.width}, height={self.height}: give both (resize and centre-crop) "
                                "or both 0 (keep the source size).")

    @classmethod
    def from_config(cls, data) -> ClipSpec:
        """From any object with frames, height, width, fps, stride and clip_start (the trainer's data section)."""
        return cls(data.frames, data.height, data.width, data.fps, data.stride, data.clip_start)


def video_files(folder: str | os.PathLike) -> list[Path]:
    """Video files (VIDEO_EXTENSIONS) under ``folder``, recursively, sorted; [] when there are none."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())


# --- resize ----------------------------------------------------------------------------------------

def cover_crop(image, width: int, height: int) -> torch.Tensor:
    """A PIL image resized (bicubic) to cover width × height, centre-cropped; uint8 [H, W, 3].
    width = height = 0 keeps its size."""
    from PIL import Image

    image = image.convert("RGB")
    if width and height:
        scale = max(width / image.width, height / image.height)
        size = (max(width, math.ceil(image.width * scale - 1e-6)), max(height, math.ceil(image.height * scale - 1e-6)))
        image = image.resize(size, Image.BICUBIC)
        left, top = (size[0] - width) // 2, (size[1] - height) // 2
        image = image.crop((left, top, left + width, top + height))
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(image.height, image.width, 3)


def resize_frames(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``cover_crop`` on every frame of [F, H, W, 3] (uint8, or float in [0, 1], which goes through
    8 bits like a decoded video); uint8 [F, height, width, 3]."""
    from PIL import Image

    if frames.dtype != torch.uint8:
        frames = (frames[..., :3].float().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return torch.stack([cover_crop(Image.fromarray(f.cpu().numpy()), width, height) for f in frames])


# --- sources: (native fps, duration in s or None, timed frames from a start time) ------------------

LazyImage = Callable[[], object]  # returns a PIL image; called only for the frames a clip uses


@dataclass
class _Source:
    native: float
    duration: float | None
    frames_from: Callable[[float], Iterator[tuple[float, LazyImage]]]


def source_kind(path: Path) -> str:
    if path.is_dir():
        return "frames"
    return "image" if path.suffix.lower() in ANIMATED_SUFFIXES else "video"


def _import_av(path: Path):
    try:
        import av
    except ModuleNotFoundError:
        raise CILValueError(f"reading {path.suffix or 'video'} files needs PyAV: pip install av (or the pack's [video] "
                            "extra); GIF/WebP/APNG files and folders of frames need only PIL.") from None
    return av


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


@contextmanager
def _video_file(av, path: Path) -> Iterator[_Source]:
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        native = float(stream.average_rate or stream.guessed_rate or 0) or 25.0

        def frames_from(start: float):
            if start > 2.0:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for index, frame in enumerate(container.decode(stream)):
                yield (frame.time if frame.time is not None else index / native), frame.to_image

        yield _Source(native, _duration(container, stream), frames_from)


@contextmanager
def _animated_image(path: Path) -> Iterator[_Source]:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        delays = []
        for frame in ImageSequence.Iterator(im):
            ms = frame.info.get("duration") or 0
            delays.append((GIF_DEFAULT_DELAY_MS if ms < GIF_MIN_DELAY_MS else ms) / 1000.0)
        duration = sum(delays)

        def frames_from(start: float):
            t = 0.0
            for frame, delay in zip(ImageSequence.Iterator(im), delays):
                yield t, lambda f=frame: f.convert("RGB")
                t += delay

        yield _Source(len(delays) / duration, duration, frames_from)


@contextmanager
def _frame_folder(path: Path) -> Iterator[_Source]:
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file())
    if not files:
        raise VideoDecodeError(f"no frame images ({', '.join(FRAME_SUFFIXES)}) in the folder")

    def load(file: Path):
        with Image.open(file) as im:
            return im.convert("RGB")

    def frames_from(start: float):
        for i, file in enumerate(files):
            yield i / FOLDER_FPS, lambda f=file: load(f)

    yield _Source(FOLDER_FPS, len(files) / FOLDER_FPS, frames_from)


# --- the clip --------------------------------------------------------------------------------------

def clip_start_time(spec: ClipSpec, duration: float | None, span: float, rng_key: str, frame_period: float = 0.0) -> float:
    """Start time in seconds for this clip (random ones are a function of ``rng_key``).
    ``duration`` counts the last frame's display time, hence ``frame_period``."""
    if duration is None or spec.clip_start == "first":
        return 0.0
    room = max(duration - frame_period - span, 0.0)
    if spec.clip_start == "center":
        return room / 2
    return random.Random(rng_key).uniform(0.0, room * 0.999)


def decode_clip(path: str | os.PathLike, spec: ClipSpec, rng_key: str = "") -> dict:
    """One clip: ``{"pixels": uint8 [F, H, W, 3], "fps": effective rate (fps / stride), "start": s}``."""
    path = Path(path)
    kind = source_kind(path)
    av = _import_av(path) if kind == "video" else None  # a missing PyAV is the caller's problem, not the file's
    if not path.exists():
        raise VideoDecodeError("file not found")
    opener = {"video": lambda: _video_file(av, path), "image": lambda: _animated_image(path), "frames": lambda: _frame_folder(path)}[kind]
    try:
        with opener() as source:
            fps = spec.fps or source.native
            step = spec.stride / fps
            span = (spec.frames - 1) * step
            if source.duration is not None and source.duration - 0.5 / source.native < span:
                raise VideoDecodeError(f"too short: {source.duration:.2f} s < {span:.2f} s needed for {spec.frames} frames", too_short=True)
            start = clip_start_time(spec, source.duration, span, rng_key, 1.0 / source.native)
            frames = _pick_frames(source.frames_from(start), start, step, spec, source.native)
    except VideoDecodeError:
        raise
    except Exception as exc:  # PyAV and PIL raise many error types for broken files
        raise VideoDecodeError(f"{type(exc).__name__}: {exc}") from None
    return {"pixels": torch.stack(frames), "fps": fps / spec.stride, "start": start}


def _pick_frames(timed: Iterator[tuple[float, LazyImage]], start: float, step: float, spec: ClipSpec, native: float) -> list[torch.Tensor]:
    """The frame shown at start + k·step for each k (a frame repeats when fps is above the source's)."""
    tolerance = 0.5 / native
    width, height = spec.width, spec.height
    out: list[torch.Tensor] = []
    for t, image in timed:
        pixels = None
        while len(out) < spec.frames and t >= start + len(out) * step - tolerance:
            if pixels is None:
                pixels = cover_crop(image(), width, height)
                height, width = pixels.shape[:2]  # width = height = 0: the first frame's size for all
            out.append(pixels)
        if len(out) == spec.frames:
            return out
    raise VideoDecodeError(f"truncated or too short: got {len(out)} of {spec.frames} frames", too_short=True)
