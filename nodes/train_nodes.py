"""TimeNoise Fine-Tune node: the headless trainer's loop (cil_tools.train) on the graph's MODEL.

Data: either one training video given as its LATENT (VAEEncode of the frames) plus the
conditioning made for it (SVD_img2vid_Conditioning / WanImageToVideo …: concat image, CLIP
embedding, fps, motion bucket), or a folder / WebVid CSV of videos decoded with PyAV and encoded
with the graph's VAE (+ CLIP vision for SVD). ComfyUI runs nodes under ``torch.inference_mode``;
the trainer leaves it and swaps inference tensors for ordinary copies of equal value.

LoRA mode trains hooks on the (shared) model and removes them afterwards; the MODEL output is
the input model with the saved LoRA applied by ComfyUI's own loader (load_lora_for_models), and
the file lands in models/loras (LoraLoaderModelOnly lists it). Full mode trains a copy.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from comfy_api.latest import io

from ..cil_core.validation import CILValueError
from ..cil_tools.train.comfy_adapters import make_adapter
from ..cil_tools.train.config import (
    DataSection, LoraSection, LossSection, ModelSection, OptimSection, RunSection, SVDSection, TrainConfig,
)
from ..cil_tools.train.data import ClipDataset, ClipSpec, InMemoryDataset, list_entries
from ..cil_tools.train.loop import Trainer
from ..cil_tools.train.progress import draw_loss_curve

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
    def validate_inputs(cls, video_folder: str = "", output_name: str = "cil_timenoise", **kwargs) -> bool | str:
        if video_folder and not os.path.exists(video_folder):
            return f"video_folder {video_folder!r} does not exist; give a folder of videos or a CSV, or leave it empty and connect 'latent'."
        if not output_name or any(c in output_name for c in "/\\:") or output_name.startswith("."):
            return f"output_name {output_name!r} must be a plain file name (no folders), e.g. 'svd_timenoise'."
        return True

    @classmethod
    def execute(cls, model, mode, steps, learning_rate, weight_decay, timenoise, beta_m, a, lora_rank, lora_alpha,
                batch_size, grad_accum, precision, gradient_checkpointing, ema_decay, checkpoint_every, seed,
                output_name, resume, positive=None, latent=None, video_folder="", vae=None, clip_vision=None,
                frames=14, width=512, height=320, fps=0.0, stride=1) -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.sd
        import comfy.utils
        import folder_paths

        if not video_folder and (latent is None or positive is None):
            raise CILValueError("TimeNoise Fine-Tune needs training data: connect 'latent' and 'positive' (one video), or set video_folder.")
        run_dir = Path(folder_paths.get_output_directory()) / "cil_train" / output_name
        if not resume and any((run_dir / "checkpoints").glob("step_*.safetensors")):
            raise CILValueError(f"output/cil_train/{output_name} already holds checkpoints: switch 'resume' on, or pick another output_name.")
        cfg = TrainConfig(
            mode=mode,
            model=ModelSection(kind="comfy"),
            data=DataSection(source=video_folder, frames=frames, height=height, width=width, fps=fps, stride=stride,
                             clip_start="random", workers=0, batch_size=batch_size),
            loss=LossSection(timenoise=timenoise, beta_m=beta_m, a=a),
            lora=LoraSection(rank=lora_rank, alpha=lora_alpha),
            optim=OptimSection(lr=learning_rate, weight_decay=weight_decay, grad_accum=grad_accum, ema_decay=ema_decay),
            run=RunSection(steps=steps, seed=seed, output_dir=str(run_dir), checkpoint_every=checkpoint_every,
                           precision=precision, grad_checkpointing=gradient_checkpointing, progress=False),
            svd=SVDSection(),
        ).validate()
        with torch.inference_mode(False):
            patcher = trainable_copy(model) if mode == "full" else model
            fixed_text = positive[0][0][0].clone() if positive else None
            adapter = make_adapter(patcher, cfg, vae=vae, clip_vision=clip_vision, source="graph", fixed_text=fixed_text)
            dataset = (ClipDataset(list_entries(cfg.data), ClipSpec.from_config(cfg.data), seed) if video_folder
                       else InMemoryDataset([graph_item(adapter, latent, positive)], seed))
            bar = comfy.utils.ProgressBar(steps)
            lora_file = Path(folder_paths.get_folder_paths("loras")[0]) / f"{output_name}.safetensors"
            trainer = Trainer(adapter, dataset, cfg, on_step=lambda step, row: bar.update_absolute(step, steps),
                              check_cancel=mm.throw_exception_if_processing_interrupted, export_full=False,
                              lora_name=str(lora_file), extra_metadata={"trained_with": NODE_ID})
            result = trainer.run(resume=resume)
        if mode == "lora":
            trained = comfy.sd.load_lora_for_models(model, None, result.lora_state, 1.0, 0)[0]
            lora_path = str(result.lora_path)
        else:
            trained, lora_path = patcher, ""
        plot = draw_loss_curve(result.steps, result.losses)
        image = torch.frombuffer(bytearray(plot.tobytes()), dtype=torch.uint8).reshape(plot.height, plot.width, 3)
        return io.NodeOutput(trained, lora_path, image[None].float() / 255.0)


def trainable_copy(model):
    """A new ModelPatcher over a deep copy of the model, with the input's weight patches baked in
    and its object patches / model options kept: full fine-tuning never touches the input."""
    import comfy.model_management as mm
    import comfy.model_patcher

    mm.load_models_gpu([model], force_full_load=True)  # applies the input's LoRAs etc. to the weights
    with torch.no_grad():  # the config object answers None for unknown attributes: share it, don't copy it
        base = copy.deepcopy(model.model, memo={id(model.model.model_config): model.model.model_config})
    copy_ = comfy.model_patcher.ModelPatcher(base, load_device=model.load_device, offload_device=model.offload_device)
    copy_.model_options = copy.deepcopy(model.model_options)
    for name, obj in getattr(model, "object_patches", {}).items():
        copy_.add_object_patch(name, obj)
    return copy_


def graph_item(adapter, latent: dict, positive: list) -> dict:
    """One training clip from the graph: the video LATENT and the conditioning made for it."""
    import comfy.utils

    samples = latent["samples"].float().clone()
    emb, options = positive[0][0], dict(positive[0][1])
    if adapter.family_name == "svd":
        if samples.dim() != 4:
            raise CILValueError(f"SVD latents are [frames, 4, h, w]; got {tuple(samples.shape)}.")
        image = options.get("concat_latent_image")
        if image is None:
            raise CILValueError("the conditioning has no concat_latent_image: build it with SVD_img2vid_Conditioning.")
        image = image.float()
        if image.shape[-2:] != samples.shape[-2:]:
            image = comfy.utils.common_upscale(image, samples.shape[-1], samples.shape[-2], "bilinear", "center")
        return {"latent": samples, "image": image[0].clone(), "embed": emb.float().reshape(1, -1).clone(),
                "fps": int(options.get("fps", 6)), "motion_bucket_id": int(options.get("motion_bucket_id", 127))}
    if adapter.frames_as_batch:
        item_latent = samples
    else:
        if samples.dim() != 5 or samples.shape[0] != 1:
            raise CILValueError(f"Wan latents are [1, C, T, h, w] (one video); got {tuple(samples.shape)}.")
        item_latent = samples[0]
    options = {k: v for k, v in options.items() if k not in ("pooled_output",)}
    return {"latent": item_latent, "options": options | {"cross_attn": emb.float().clone()}}


NODES = [TimeNoiseTrain]
