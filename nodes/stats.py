"""Analytic-Init stats nodes: estimate through the graph's VAE, load and save (engine: cil_comfy.stats)."""

from __future__ import annotations

from comfy_api.latest import io

from cil_comfy.paths import STATS_FOLDER, folder_files
from cil_comfy.stats import (
    estimate_through_vae,
    load_named_stats,
    resolve_folder,
    save_named_stats,
    stats_path,
    stats_target,
)
from cil_core.stats_io import load_stats
from cil_core.validation import CILValueError, shown

from .common import Stats, check_inputs, require_inputs, show_text

CATEGORY = "CIL/analytic_init"


class LoadAnalyticStats(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_LoadAnalyticStats",
            display_name="Load Analytic Stats",
            category=CATEGORY,
            description="Loads Analytic-Init stats (this pack's format or an official DynamiCrafter/SVD safetensors file) from models/cil_stats.",
            inputs=[
                io.Combo.Input("stats_name", options=folder_files(STATS_FOLDER), tooltip="A .safetensors stats file in models/cil_stats (ours, or an official one with Expectation_X0 / Tr_Cov_d)."),
            ],
            outputs=[Stats.Output(display_name="stats"), io.String.Output(display_name="info")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return check_inputs(cls, values, readable_stats)

    @classmethod
    def fingerprint_inputs(cls, stats_name=None):
        try:
            st = stats_path(stats_name).stat()
            return f"{stats_name}:{st.st_mtime_ns}:{st.st_size}"
        except (CILValueError, OSError):
            return stats_name

    @classmethod
    def execute(cls, stats_name) -> io.NodeOutput:
        require_inputs(cls, locals())
        stats, info = load_named_stats(stats_name)
        show_text(cls, info)
        return io.NodeOutput(stats, info)


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
    def validate_inputs(cls, **values) -> bool | str:
        return check_inputs(cls, values, writable_name)

    @classmethod
    def execute(cls, stats, filename, overwrite) -> io.NodeOutput:
        require_inputs(cls, locals(), writable_name)
        path = save_named_stats(stats, filename, overwrite)
        show_text(cls, f"saved {path}")
        return io.NodeOutput(str(path))


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
    def validate_inputs(cls, **values) -> bool | str:
        return check_inputs(cls, values, video_folder)

    @classmethod
    def execute(cls, model, vae, frames, width, height, folder, frame_stride, max_videos, images=None, resume=None) -> io.NodeOutput:
        require_inputs(cls, locals(), video_folder)
        stats, info = estimate_through_vae(model, vae, frames, width, height, folder, frame_stride, max_videos, images, resume)
        show_text(cls, info)
        return io.NodeOutput(stats, info)


def readable_stats(values) -> bool:
    """Load Analytic Stats: the named file is in models/cil_stats and reads as stats."""
    if isinstance(values.get("stats_name"), str):
        load_stats(stats_path(values["stats_name"]))
    return True


def writable_name(values) -> bool:
    """Save Analytic Stats: a relative name that stays inside models/cil_stats."""
    if values.get("filename") is not None:
        stats_target(values["filename"])
    return True


def video_folder(values) -> bool | str:
    """Estimate Analytic Stats: an existing folder of videos, or empty."""
    folder = values.get("folder")
    if folder and isinstance(folder, str) and folder.strip():
        path = resolve_folder(folder)
        if not path.is_dir():
            return (f"folder={shown(folder)}: {shown(str(path))} is not a folder; give a folder of videos (absolute or relative "
                    "to the input folder) or leave it empty and connect images.")
    return True


NODES = [EstimateAnalyticStats, LoadAnalyticStats, SaveAnalyticStats]
