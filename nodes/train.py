"""TimeNoise Fine-Tune node (engine: cil_comfy.training, the same trainer as ``cil train``)."""

from __future__ import annotations

import os

from comfy_api.latest import io

from cil_comfy.training import run_targets, train_in_graph
from cil_core.validation import shown

from .common import check_inputs, require_inputs

NODE_ID = "CIL_TimeNoiseTrain"

DESCRIPTION = """Fine-tunes the MODEL with TimeNoise (paper Sec. 4.2): during training the conditional image
latent gets time-dependent noise β(t)·ε, β ~ β_m·sigmoid(N(2t^a − 1, s²)), so the model stops
copying it at large t (conditional image leakage). SVD: EDM v-prediction, noise on the raw concat
latent, β fed as the augmentation level (official recipe: β_m 15, a 5, AdamW 3e-5, wd 1e-2).
DynamiCrafter-style VP models: β_m 100 on the concat. Wan I2V: flow matching, noise on the image
channels of the concat. Train on one video (latent + the conditioning built for it) or on a
folder of videos (needs the VAE, and CLIP vision for SVD). Checkpoints every N steps in
output/cil_train/<name>; 'resume' continues from the newest. LoRA files go to models/loras."""


def _schema_inputs() -> list:
    return [
        io.Model.Input("model", tooltip="The image-to-video model to fine-tune (SVD, DynamiCrafter-style VP, Wan I2V)."),
        io.Combo.Input("mode", options=["lora", "full"], default="lora",
                       tooltip="lora: train low-rank adapters (small file, little memory). full: train every weight of a copy of the model (the official CIL recipe; needs much more memory)."),
        io.Int.Input("steps", default=200, min=1, max=1_000_000, tooltip="Optimizer steps (each uses batch_size × grad_accum clips)."),
        io.Float.Input("learning_rate", default=3e-5, min=1e-8, max=1.0, step=1e-6, round=False,
                       tooltip="AdamW learning rate. Official CIL: 3e-5 (full fine-tune); LoRA often uses ~1e-4."),
        io.Float.Input("weight_decay", default=1e-2, min=0.0, max=1.0, step=1e-3, round=False, tooltip="AdamW weight decay (official 1e-2)."),
        io.Boolean.Input("timenoise", default=True, tooltip="On: TimeNoise on the conditional image. Off: the baseline loss (for ablations)."),
        io.Float.Input("beta_m", default=0.0, min=0.0, max=1000.0, step=0.5, round=False,
                       tooltip="Largest TimeNoise std β_m. 0 = the family's official value (SVD 15, DynamiCrafter 100, Wan 100)."),
        io.Float.Input("a", default=5.0, min=0.05, max=50.0, step=0.05, round=False,
                       tooltip="TimeNoise curve exponent a in μ(t) = 2t^a − 1 (official 5: little noise until late t)."),
        io.Int.Input("lora_rank", default=16, min=1, max=1024, tooltip="LoRA rank r (ignored in full mode)."),
        io.Float.Input("lora_alpha", default=16.0, min=0.01, max=4096.0, step=0.5, round=False,
                       tooltip="LoRA alpha; the update is scaled by alpha / rank (ComfyUI's convention)."),
        io.Int.Input("batch_size", default=1, min=1, max=64, tooltip="Clips per micro-batch."),
        io.Int.Input("grad_accum", default=1, min=1, max=1024, tooltip="Micro-batches accumulated per optimizer step."),
        io.Combo.Input("precision", options=["fp32", "bf16", "fp16"], default="bf16",
                       tooltip="Autocast compute dtype. fp32 is exact but slow/large; fp16 uses a grad scaler."),
        io.Boolean.Input("gradient_checkpointing", default=True, tooltip="Recompute UNet/transformer blocks in backward: much less activation memory, ~30 % slower."),
        io.Float.Input("ema_decay", default=0.0, min=0.0, max=0.99999, step=0.0001, round=False,
                       tooltip="EMA of the trained weights (0 = off; official SVD 0.9999). The exported weights are the EMA ones when on."),
        io.Int.Input("checkpoint_every", default=100, min=1, max=1_000_000, tooltip="Save a resumable checkpoint every N steps."),
        io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Seed of every training draw (σ, noise, TimeNoise, data order)."),
        io.String.Input("output_name", default="cil_timenoise",
                        tooltip="Run name: LoRA file models/loras/<name>.safetensors, checkpoints and logs in output/cil_train/<name>."),
        io.Boolean.Input("resume", default=False, tooltip="Continue from the newest checkpoint of this run name (same settings)."),
        io.Conditioning.Input("positive", optional=True,
                              tooltip="Conditioning built for the training video (e.g. SVD_img2vid_Conditioning): concat image, CLIP embedding, fps, motion bucket. For a video folder on Wan/DynamiCrafter: its text is used for every clip."),
        io.Latent.Input("latent", optional=True, tooltip="The training video's latent (VAEEncode of its frames). Used with 'positive'; leave empty to train on video_folder."),
        io.String.Input("video_folder", default="", optional=True,
                        tooltip="Folder of videos (mp4/webm/mov/gif) or a WebVid-style CSV; empty = train on 'latent'. Bad videos are skipped and listed in the run's log."),
        io.Vae.Input("vae", optional=True, tooltip="VAE to encode the videos of video_folder."),
        io.ClipVision.Input("clip_vision", optional=True, tooltip="CLIP vision model for SVD's image embedding of each video_folder clip."),
        io.Int.Input("frames", default=14, min=1, max=512, optional=True, tooltip="video_folder: frames per clip (SVD-XT: 14/25, DynamiCrafter: 16)."),
        io.Int.Input("width", default=512, min=64, max=4096, step=8, optional=True, tooltip="video_folder: clip width in pixels (resize + centre crop)."),
        io.Int.Input("height", default=320, min=64, max=4096, step=8, optional=True, tooltip="video_folder: clip height in pixels."),
        io.Float.Input("fps", default=0.0, min=0.0, max=240.0, step=0.5, round=False, optional=True,
                       tooltip="video_folder: resample to this frame rate before taking every stride-th frame (0 = the video's own rate)."),
        io.Int.Input("stride", default=1, min=1, max=64, optional=True, tooltip="video_folder: take every stride-th frame."),
    ]


class TimeNoiseTrain(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_ID,
            display_name="TimeNoise Fine-Tune",
            category="CIL/training",
            description=DESCRIPTION,
            inputs=_schema_inputs(),
            outputs=[
                io.Model.Output(display_name="model", tooltip="The fine-tuned model (LoRA applied, or the trained copy)."),
                io.String.Output(display_name="lora_path", tooltip="The saved LoRA file (empty in full mode)."),
                io.Image.Output(display_name="loss_plot", tooltip="Loss against step (raw and smoothed)."),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return check_inputs(cls, values, run_paths)

    @classmethod
    def execute(cls, model, mode, steps, learning_rate, weight_decay, timenoise, beta_m, a, lora_rank, lora_alpha,
                batch_size, grad_accum, precision, gradient_checkpointing, ema_decay, checkpoint_every, seed,
                output_name, resume, positive=None, latent=None, video_folder="", vae=None, clip_vision=None,
                frames=14, width=512, height=320, fps=0.0, stride=1) -> io.NodeOutput:
        require_inputs(cls, locals(), run_paths)
        trained, lora_path, plot = train_in_graph(
            model, mode, steps, learning_rate, weight_decay, timenoise, beta_m, a, lora_rank, lora_alpha, batch_size,
            grad_accum, precision, gradient_checkpointing, ema_decay, checkpoint_every, seed, output_name, resume,
            positive, latent, video_folder, vae, clip_vision, frames, width, height, fps, stride, node_id=NODE_ID)
        return io.NodeOutput(trained, lora_path, plot)


def run_paths(values) -> bool | str:
    """The data source exists and the run name is a plain name whose folders stay where they belong."""
    folder = values.get("video_folder")
    if isinstance(folder, str) and folder and not os.path.exists(folder):
        return f"video_folder {shown(folder)} does not exist; give a folder of videos or a CSV, or leave it empty and connect 'latent'."
    name = values.get("output_name")
    if name is not None:
        if not isinstance(name, str) or not name or any(c in name for c in "/\\:") or name.startswith("."):
            return f"output_name {shown(name)} must be a plain file name (no folders), e.g. 'svd_timenoise'."
        run_targets(name)
    return True


NODES = [TimeNoiseTrain]
