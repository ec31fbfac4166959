"""Analytic-Init stats through ComfyUI's own objects: estimate E[x0] and tr Cov/d through the graph's
VAE, load and save them in ``models/cil_stats``.

Stats live in the MODEL's latent space: ``latent_format.process_in(vae.encode(frames))`` (for SD
VAEs ×0.18215, for Wan a per-channel normalisation), the space the sampler and the official
DynamiCrafter files use. Official files with ``Expectation_X0`` / ``Tr_Cov_d`` load as they are.

Clips come from the pack's one video reader (``cil_media.video``). Frames that differ from the
requested width × height are resized with its filter (bicubic cover + centre crop, through 8
bits), for a folder of videos and an IMAGE batch alike, so the same frames give the same stats
either way; before, ComfyUI's bilinear ``common_upscale`` did this.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import torch

from cil_core.analytic_init import AnalyticStats, estimate_stats
from cil_core.memory import check_fits
from cil_core.stats_io import load_stats, save_stats
from cil_core.validation import CILValueError, shown
from cil_media.clips import FolderReport, clips_from_folder, clips_from_images, list_videos
from cil_media.video import resize_frames

from .image_slots import START_FRAMES, find_slot
from .models import detect_family, latent_format_name
from .paths import STATS_FOLDER, check_name, first_folder, folder_file, inside


def stats_info(stats: AnalyticStats) -> str:
    c, f, h, w = stats.shape
    src = stats.meta.get("source", "")
    kind = "official file" if src == "official" else "stats"
    return (
        f"{kind} [C,F,H,W]=[{c},{f},{h},{w}], tr Cov/d={stats.tr_cov_d:.6g}, count={stats.count}, "
        f"mean of E[x0]={float(stats.mean.mean()):.4g}"
    )


# --- load / save ---------------------------------------------------------------------------------

def stats_path(name: str) -> Path:
    return folder_file(STATS_FOLDER, name, "stats_name: stats file")


def load_named_stats(stats_name: str) -> tuple[AnalyticStats, str]:
    """The stats file ``stats_name`` of models/cil_stats, tagged with its name, and a line of text."""
    stats = load_stats(stats_path(stats_name))
    stats.meta["file"] = stats_name
    return stats, f"{stats_name}: {stats_info(stats)}"


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-/]*$")


def check_filename(filename: str) -> str:
    """A relative name inside the stats folder (subfolders allowed), with .safetensors added."""
    name = filename.strip() if isinstance(filename, str) else ""
    parts = Path(name).parts
    if not name or not _SAFE_NAME.match(name) or ".." in parts or Path(name).is_absolute():
        raise CILValueError(
            f"filename={shown(filename)}: use a relative name of letters, digits, ' ', '_', '-', '.' and '/' "
            "(subfolders) inside models/cil_stats, e.g. 'svd/webvid_320x512'."
        )
    name = name if name.endswith(".safetensors") else name + ".safetensors"
    check_name("filename", name)
    return name


def _free_path(path: Path) -> Path:
    if not path.exists():
        return path
    stem = path.name[: -len(".safetensors")]
    for i in range(1, 100000):
        candidate = path.with_name(f"{stem}_{i:05d}.safetensors")
        if not candidate.exists():
            return candidate
    raise CILValueError(f"too many files named {stem}_*.safetensors in {path.parent}.")


def stats_target(filename: str) -> Path:
    """Where Save Analytic Stats writes ``filename``: checked as a name, and its real folder
    (a symlinked subfolder resolved) inside models/cil_stats."""
    root = first_folder(STATS_FOLDER)
    path = root / check_filename(filename)
    inside(root, path.parent, "filename")
    return path


def save_named_stats(stats: AnalyticStats, filename: str, overwrite: bool) -> Path:
    """Write ``stats`` as ``filename`` in models/cil_stats (a numbered name unless ``overwrite``)."""
    path = stats_target(filename)
    if not overwrite:
        path = _free_path(path)
    return save_stats(stats, path)


# --- estimation ----------------------------------------------------------------------------------

def encode_to_model_space(vae, model, clip: torch.Tensor, latent_format=None) -> torch.Tensor:
    """CFHW model-space latent of one clip [F, H, W, 3]: process_in(vae.encode(clip)), with the
    model's latent format (``latent_format`` when there is no ``model``: a VAE file alone)."""
    fmt = model.get_model_object("latent_format") if model is not None else latent_format
    latent = fmt.process_in(vae.encode(clip[:, :, :, :3]).to(torch.float32))
    if latent.dim() == 4:  # image VAE: frames as batch [F, C, h, w]
        return latent.permute(1, 0, 2, 3)
    if latent.dim() == 5:  # video VAE: [1, C, F', h, w]
        return latent[0]
    raise CILValueError(f"the VAE returned a latent of shape {tuple(latent.shape)}; expected 4-D or 5-D.")


def resize_clip(clip: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[F, H, W, 3] in [0, 1] at (height, width): the video reader's resize + centre crop."""
    if clip.shape[1] == height and clip.shape[2] == width:
        return clip
    return resize_frames(clip, width, height).to(torch.float32) / 255.0


def resolve_folder(folder: str) -> Path:
    """A folder of videos, absolute or relative to ComfyUI's input folder."""
    import folder_paths

    path = Path(folder.strip()).expanduser()
    if not path.is_absolute():
        path = Path(folder_paths.get_input_directory()) / path
    return path


def clip_memory(vae, frames: int, height: int, width: int) -> int:
    """Bytes one clip of ``frames`` x ``height`` x ``width`` needs here, at most: the pixels as 8-bit
    and float copies, the VAE's own activations when it runs on the CPU (ComfyUI's estimate for its
    smallest batch), the latent and the float64 Welford state over it."""
    import math

    pixels = frames * height * width * 3
    try:
        ratio = vae.downscale_ratio
        t, rh, rw = ratio if isinstance(ratio, (tuple, list)) else (1, ratio, ratio)
        f = t(frames) if callable(t) else math.ceil(frames / t)
        latent = f * int(vae.latent_channels) * math.ceil(height / rh) * math.ceil(width / rw)
    except Exception:  # a VAE that does not say: the latent is no larger than the pixels
        latent = pixels
    activations = 0
    try:
        if str(getattr(vae, "device", "cpu")).startswith("cpu"):
            unit = [1, 3, frames, height, width] if getattr(vae, "latent_dim", 2) == 3 else [1, 3, height, width]
            activations = int(vae.memory_used_encode(unit, vae.vae_dtype))
    except Exception:
        activations = 0
    return pixels * (1 + 4 + 4 + 4) + latent * (4 + 4 * 8) + activations


def check_clip_fits(vae, frames: int, height: int, width: int) -> None:
    check_fits(f"Estimate Analytic Stats on clips of {frames} frames at {width}x{height}", clip_memory(vae, frames, height, width),
               "lower width and height (0 keeps the source size) or frames.")


def start_frames_to_skip(model) -> tuple[int, str]:
    """(k, note): replacement models hold the start image in their first k latent frames, which
    sampling never generates, so their stats cover frames k.. only (Analytic-Init reads skip_frames)."""
    slot = find_slot(model) if model is not None else None
    if slot is None or not slot.is_replace:
        return 0, ""
    k = START_FRAMES
    return k, (f"E[x0] and tr Cov/d over latent frames {k}.. of each clip: {slot.label} holds the start image in latent "
               f"frame(s) 0..{k - 1}, which sampling does not generate")


def generated_frames(latent_cfhw: torch.Tensor, skip: int) -> torch.Tensor:
    """The latent frames after the ``skip`` held start frames ([C, F, h, w] → [C, F − skip, h, w])."""
    if latent_cfhw.shape[1] <= skip:
        raise CILValueError(
            f"a clip encodes to {latent_cfhw.shape[1]} latent frame(s), but this model holds the start image in the first "
            f"{skip}: give more frames (video VAEs compress time 4-8x; e.g. 9 or 17)."
        )
    return latent_cfhw[:, skip:]


def estimate_through_vae(model, vae, frames: int, width: int, height: int, folder: str, frame_stride: int, max_videos: int,
                         images=None, resume: AnalyticStats | None = None, *, videos: list | None = None, fps: float = 0.0,
                         latent_format=None, on_clip=None, report: FolderReport | None = None,
                         allow_empty: bool = False) -> tuple[AnalyticStats | None, str]:
    """Estimate Analytic Stats: stream clips (a folder of videos or an IMAGE batch) through the VAE
    into float64 Welford moments, with ComfyUI's progress bar and cancel.

    The headless ``cil stats estimate`` runs this same engine, with: ``videos`` (video paths, in
    place of ``folder``), ``fps`` (resample rate, 0 = the videos' own), ``latent_format`` (when
    ``model`` is None: stats from a VAE file and a named latent format), ``on_clip`` (called after
    each clip), ``report`` (filled with the videos used and skipped) and ``allow_empty`` ((None,
    info) instead of an error when no clip could be used)."""
    import comfy.model_management
    import comfy.utils

    report = report if report is not None else FolderReport()
    if not (width and height):
        width = height = 0  # keep the source size
    size = {"hw": (height, width) if width and height else None}
    if size["hw"]:
        check_clip_fits(vae, frames, height, width)  # before any clip is read
    if videos is not None:
        files = [Path(v) for v in videos]
        clips, total, source = clips_from_folder(files, frames, frame_stride, report, width, height, fps), len(files), "videos"
    elif folder.strip():
        files = list_videos(resolve_folder(folder))
        if max_videos:
            files = files[:max_videos]
        clips, total, source = clips_from_folder(files, frames, frame_stride, report, width, height, fps), len(files), str(folder)
    elif images is not None:
        clip_list = clips_from_images(images, frames)
        clips, total, source = iter(clip_list), len(clip_list), "images"
    else:
        raise CILValueError("Estimate Analytic Stats needs a source: connect `images` or set `folder` to a folder of videos.")

    pbar = comfy.utils.ProgressBar(total)
    skip, note = start_frames_to_skip(model)

    def latents():
        for clip in clips:
            comfy.model_management.throw_exception_if_processing_interrupted()
            if size["hw"] is None:
                size["hw"] = (clip.shape[1], clip.shape[2])
                check_clip_fits(vae, frames, *size["hw"])
            clip = resize_clip(clip, size["hw"][1], size["hw"][0])
            yield generated_frames(encode_to_model_space(vae, model, clip, latent_format), skip)
            pbar.update(1)
            if on_clip is not None:
                on_clip()

    meta = {
        "family": json.dumps(detect_family(model).describe()) if model is not None else "",
        "latent_format": latent_format_name(model) if model is not None else type(latent_format).__name__,
        "frames": str(frames),
        "source": source,
    }
    if skip:
        meta.update(skip_frames=str(skip), note=note)
    stream = latents()
    if allow_empty:
        first = next(stream, None)
        if first is None:
            return None, f"no usable clip ({report.summary()})"
        stream = itertools.chain([first], stream)
    try:
        stats = estimate_stats(stream, meta, resume=resume)
    except CILValueError as exc:
        raise CILValueError(f"{exc} ({report.summary()})" if folder.strip() or videos is not None else str(exc)) from None
    stats.meta["height"], stats.meta["width"] = (str(v) for v in size["hw"])
    info = f"estimated from {source}: {stats_info(stats)}" + (f"; {note}" if skip else "")
    if folder.strip() or videos is not None:
        info += f"; {report.summary()}"
    return stats, info
