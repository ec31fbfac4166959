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

import json
import re
from pathlib import Path

import torch

from cil_core.analytic_init import AnalyticStats, estimate_stats
from cil_core.stats_io import load_stats, save_stats
from cil_core.validation import CILValueError
from cil_media.clips import FolderReport, clips_from_folder, clips_from_images, list_videos
from cil_media.video import resize_frames

from .image_slots import START_FRAMES, find_slot
from .models import detect_family, latent_format_name
from .paths import STATS_FOLDER, first_folder, folder_file


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
    return folder_file(STATS_FOLDER, name, "stats file")


def load_named_stats(stats_name: str) -> tuple[AnalyticStats, str]:
    """The stats file ``stats_name`` of models/cil_stats, tagged with its name, and a line of text."""
    stats = load_stats(stats_path(stats_name))
    stats.meta["file"] = stats_name
    return stats, f"{stats_name}: {stats_info(stats)}"


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-/]*$")


def check_filename(filename: str) -> str:
    """A relative name inside the stats folder (subfolders allowed), with .safetensors added."""
    name = filename.strip()
    parts = Path(name).parts
    if not name or not _SAFE_NAME.match(name) or ".." in parts or Path(name).is_absolute():
        raise CILValueError(
            f"filename={filename!r}: use a relative name of letters, digits, ' ', '_', '-', '.' and '/' "
            "(subfolders) inside models/cil_stats, e.g. 'svd/webvid_320x512'."
        )
    return name if name.endswith(".safetensors") else name + ".safetensors"


def _free_path(path: Path) -> Path:
    if not path.exists():
        return path
    stem = path.name[: -len(".safetensors")]
    for i in range(1, 100000):
        candidate = path.with_name(f"{stem}_{i:05d}.safetensors")
        if not candidate.exists():
            return candidate
    raise CILValueError(f"too many files named {stem}_*.safetensors in {path.parent}.")


def save_named_stats(stats: AnalyticStats, filename: str, overwrite: bool) -> Path:
    """Write ``stats`` as ``filename`` in models/cil_stats (a numbered name unless ``overwrite``)."""
    path = first_folder(STATS_FOLDER) / check_filename(filename)
    if not overwrite:
        path = _free_path(path)
    return save_stats(stats, path)


# --- estimation ----------------------------------------------------------------------------------

def encode_to_model_space(vae, model, clip: torch.Tensor) -> torch.Tensor:
    """CFHW model-space latent of one clip [F, H, W, 3]: process_in(vae.encode(clip))."""
    latent = model.get_model_object("latent_format").process_in(vae.encode(clip[:, :, :, :3]).to(torch.float32))
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


def start_frames_to_skip(model) -> tuple[int, str]:
    """(k, note): replacement models hold the start image in their first k latent frames, which
    sampling never generates, so their stats cover frames k.. only (Analytic-Init reads skip_frames)."""
    slot = find_slot(model)
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
                         images=None, resume: AnalyticStats | None = None) -> tuple[AnalyticStats, str]:
    """Estimate Analytic Stats: stream clips (a folder of videos or an IMAGE batch) through the VAE
    into float64 Welford moments, with ComfyUI's progress bar and cancel."""
    import comfy.model_management
    import comfy.utils

    report = FolderReport()
    if not (width and height):
        width = height = 0  # keep the source size
    if folder.strip():
        files = list_videos(resolve_folder(folder))
        if max_videos:
            files = files[:max_videos]
        clips, total, source = clips_from_folder(files, frames, frame_stride, report, width, height), len(files), str(folder)
    elif images is not None:
        clip_list = clips_from_images(images, frames)
        clips, total, source = iter(clip_list), len(clip_list), "images"
    else:
        raise CILValueError("Estimate Analytic Stats needs a source: connect `images` or set `folder` to a folder of videos.")

    pbar = comfy.utils.ProgressBar(total)
    size = {"hw": (height, width) if width and height else None}
    skip, note = start_frames_to_skip(model)

    def latents():
        for clip in clips:
            comfy.model_management.throw_exception_if_processing_interrupted()
            if size["hw"] is None:
                size["hw"] = (clip.shape[1], clip.shape[2])
            clip = resize_clip(clip, size["hw"][1], size["hw"][0])
            yield generated_frames(encode_to_model_space(vae, model, clip), skip)
            pbar.update(1)

    family = detect_family(model)
    meta = {
        "family": json.dumps(family.describe()),
        "latent_format": latent_format_name(model),
        "frames": str(frames),
        "source": source,
    }
    if skip:
        meta.update(skip_frames=str(skip), note=note)
    try:
        stats = estimate_stats(latents(), meta, resume=resume)
    except CILValueError as exc:
        raise CILValueError(f"{exc} ({report.summary()})" if folder.strip() else str(exc)) from None
    stats.meta["height"], stats.meta["width"] = (str(v) for v in size["hw"])
    info = f"estimated from {source}: {stats_info(stats)}" + (f"; {note}" if skip else "")
    if folder.strip():
        info += f"; {report.summary()}"
    return stats, info
