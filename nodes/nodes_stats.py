"""Analytic-Init stats: estimate E[x0] and tr Cov/d through the graph's VAE, load and save them.

Stats live in the MODEL's latent space: ``latent_format.process_in(vae.encode(frames))`` (for SD
VAEs ×0.18215, for Wan a per-channel normalisation), the space the sampler and the official
DynamiCrafter files use. Files are safetensors in ``models/cil_stats`` (folder name
``cil_stats`` in ComfyUI's folder_paths, extra_model_paths.yaml works too); official files with
``Expectation_X0`` / ``Tr_Cov_d`` load as they are.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from comfy_api.latest import io

from ..cil_core.analytic_init import estimate_stats
from ..cil_core.stats_io import load_stats, save_stats
from ..cil_core.validation import CILValueError
from .cil_types import Stats, show_text
from .comfy_bridge import detect_family, latent_format_name
from .video_frames import FolderReport, clips_from_folder, clips_from_images, list_videos, resize_clip

FOLDER = "cil_stats"
CATEGORY = "CIL/analytic_init"


def register_stats_folder() -> None:
    """Make ``cil_stats`` a models folder (idempotent; keeps paths added by extra_model_paths)."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, FOLDER)
    entry = folder_paths.folder_names_and_paths.get(FOLDER)
    if entry is None:
        folder_paths.folder_names_and_paths[FOLDER] = ([default], {".safetensors"})
        return
    paths, extensions = entry
    if default not in paths:
        paths.append(default)
    if isinstance(extensions, set):
        extensions.add(".safetensors")


register_stats_folder()


def stats_info(stats) -> str:
    c, f, h, w = stats.shape
    src = stats.meta.get("source", "")
    kind = "official file" if src == "official" else "stats"
    return (
        f"{kind} [C,F,H,W]=[{c},{f},{h},{w}], tr Cov/d={stats.tr_cov_d:.6g}, count={stats.count}, "
        f"mean of E[x0]={float(stats.mean.mean()):.4g}"
    )


# --- load / save ---------------------------------------------------------------------------------

def _stats_files() -> list[str]:
    import folder_paths

    return folder_paths.get_filename_list(FOLDER)


def _stats_path(name: str) -> Path:
    import folder_paths

    path = folder_paths.get_full_path(FOLDER, name) if name else None
    if path is None:
        where = ", ".join(folder_paths.get_folder_paths(FOLDER))
        raise CILValueError(f"stats file {name!r} is not in the cil_stats folder(s) ({where}); put it there or save it with Save Analytic Stats.")
    return Path(path)


class LoadAnalyticStats(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_LoadAnalyticStats",
            display_name="Load Analytic Stats",
            category=CATEGORY,
            description="Loads Analytic-Init stats (this pack's format or an official DynamiCrafter/SVD safetensors file) from models/cil_stats.",
            inputs=[
                io.Combo.Input("stats_name", options=_stats_files(), tooltip="A .safetensors stats file in models/cil_stats (ours, or an official one with Expectation_X0 / Tr_Cov_d)."),
            ],
            outputs=[Stats.Output(display_name="stats"), io.String.Output(display_name="info")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, stats_name=None) -> bool | str:
        if stats_name is None:
            return True
        try:
            load_stats(_stats_path(stats_name))
        except CILValueError as exc:
            return str(exc)
        return True

    @classmethod
    def fingerprint_inputs(cls, stats_name=None):
        try:
            st = _stats_path(stats_name).stat()
            return f"{stats_name}:{st.st_mtime_ns}:{st.st_size}"
        except (CILValueError, OSError):
            return stats_name

    @classmethod
    def execute(cls, stats_name) -> io.NodeOutput:
        stats = load_stats(_stats_path(stats_name))
        stats.meta.setdefault("file", stats_name)
        stats.meta["file"] = stats_name
        info = f"{stats_name}: {stats_info(stats)}"
        show_text(cls, info)
        return io.NodeOutput(stats, info)


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


class SaveAnalyticStats(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_SaveAnalyticStats",
            display_name="Save Analytic Stats",
            category=CATEGORY,
            description="Saves stats as a safetensors file with metadata into models/cil_stats (written atomically: temporary file, then rename).",
            inputs=[
                Stats.Input("stats", tooltip="Stats from Estimate Analytic Stats (or Load Analytic Stats, to convert an official file)."),
                io.String.Input("filename", default="analytic_stats", tooltip="Name inside models/cil_stats; subfolders with '/'; '.safetensors' is added."),
                io.Boolean.Input("overwrite", default=False, tooltip="Replace an existing file of that name; off: a numbered name (_00001) is used instead."),
            ],
            outputs=[io.String.Output(display_name="path")],
            is_output_node=True,
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, filename=None) -> bool | str:
        if filename is None:
            return True
        try:
            check_filename(filename)
        except CILValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, stats, filename, overwrite) -> io.NodeOutput:
        import folder_paths

        root = Path(folder_paths.get_folder_paths(FOLDER)[0])
        path = root / check_filename(filename)
        if not overwrite:
            path = _free_path(path)
        save_stats(stats, path)
        show_text(cls, f"saved {path}")
        return io.NodeOutput(str(path))


# --- estimation ----------------------------------------------------------------------------------

def encode_to_model_space(vae, model, clip: torch.Tensor) -> torch.Tensor:
    """CFHW model-space latent of one clip [F, H, W, 3]: process_in(vae.encode(clip))."""
    latent = model.get_model_object("latent_format").process_in(vae.encode(clip[:, :, :, :3]).to(torch.float32))
    if latent.dim() == 4:  # image VAE: frames as batch [F, C, h, w]
        return latent.permute(1, 0, 2, 3)
    if latent.dim() == 5:  # video VAE: [1, C, F', h, w]
        return latent[0]
    raise CILValueError(f"the VAE returned a latent of shape {tuple(latent.shape)}; expected 4-D or 5-D.")


def _resolve_folder(folder: str) -> Path:
    import folder_paths

    path = Path(folder.strip()).expanduser()
    if not path.is_absolute():
        path = Path(folder_paths.get_input_directory()) / path
    return path


class EstimateAnalyticStats(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_EstimateAnalyticStats",
            display_name="Estimate Analytic Stats",
            category=CATEGORY,
            description=(
                "Estimates E[x0] (per element) and tr Cov/d of the model's clean video latents, streaming one clip at a "
                "time through the VAE (float64 Welford accumulation): from an IMAGE batch (consecutive clips of `frames` "
                "images) or from a folder of videos (one clip per video). Progress bar; cancel stops it."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model the stats are for: its latent format maps VAE latents to model space."),
                io.Vae.Input("vae", tooltip="The VAE of that model (encodes the frames)."),
                io.Int.Input("frames", default=16, min=1, max=4096, tooltip="Pixel frames per clip; use the frame count you generate (Wan: 4k+1)."),
                io.Int.Input("width", default=0, min=0, max=16384, step=8, tooltip="Resize+centre-crop width in pixels; 0 keeps the source size (videos of another size are fitted to the first one)."),
                io.Int.Input("height", default=0, min=0, max=16384, step=8, tooltip="Resize+centre-crop height in pixels; 0 keeps the source size."),
                io.String.Input("folder", default="", tooltip="Folder of videos (mp4, webm, mov, mkv, avi, gif), absolute or relative to ComfyUI's input folder. Empty: use `images`."),
                io.Int.Input("frame_stride", default=1, min=1, max=1000, tooltip="Take every n-th frame of each video (folder mode)."),
                io.Int.Input("max_videos", default=0, min=0, max=10_000_000, tooltip="Use at most this many videos (folder mode); 0 = all."),
                io.Image.Input("images", optional=True, tooltip="IMAGE batch read as consecutive clips of `frames` images (used when folder is empty)."),
                Stats.Input("resume", optional=True, tooltip="Earlier stats of this pack (with Welford state) to extend with more videos."),
            ],
            outputs=[Stats.Output(display_name="stats"), io.String.Output(display_name="info")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, folder=None) -> bool | str:
        if folder:
            path = _resolve_folder(folder)
            if not path.is_dir():
                return f"folder={folder!r}: {str(path)!r} is not a folder; give a folder of videos (absolute or relative to the input folder) or leave it empty and connect images."
        return True

    @classmethod
    def execute(cls, model, vae, frames, width, height, folder, frame_stride, max_videos, images=None, resume=None) -> io.NodeOutput:
        import comfy.model_management
        import comfy.utils

        report = FolderReport()
        if folder.strip():
            files = list_videos(_resolve_folder(folder))
            if max_videos:
                files = files[:max_videos]
            clips, total, source = clips_from_folder(files, frames, frame_stride, report), len(files), str(folder)
        elif images is not None:
            clip_list = clips_from_images(images, frames)
            clips, total, source = iter(clip_list), len(clip_list), "images"
        else:
            raise CILValueError("Estimate Analytic Stats needs a source: connect `images` or set `folder` to a folder of videos.")

        pbar = comfy.utils.ProgressBar(total)
        size = {"hw": (height, width) if width and height else None}

        def latents():
            for clip in clips:
                comfy.model_management.throw_exception_if_processing_interrupted()
                if size["hw"] is None:
                    size["hw"] = (clip.shape[1], clip.shape[2])
                clip = resize_clip(clip, size["hw"][1], size["hw"][0])
                yield encode_to_model_space(vae, model, clip)
                pbar.update(1)

        family = detect_family(model)
        meta = {
            "family": json.dumps(family.describe()),
            "latent_format": latent_format_name(model),
            "frames": str(frames),
            "source": source,
        }
        try:
            stats = estimate_stats(latents(), meta, resume=resume)
        except CILValueError as exc:
            raise CILValueError(f"{exc} ({report.summary()})" if folder.strip() else str(exc)) from None
        stats.meta["height"], stats.meta["width"] = (str(v) for v in size["hw"])
        info = f"estimated from {source}: {stats_info(stats)}"
        if folder.strip():
            info += f"; {report.summary()}"
        show_text(cls, info)
        return io.NodeOutput(stats, info)


NODES = [EstimateAnalyticStats, LoadAnalyticStats, SaveAnalyticStats]
