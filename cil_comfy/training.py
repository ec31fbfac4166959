"""TimeNoise fine-tuning of a graph's MODEL: the trainer (cil_train) run from the TimeNoise Fine-Tune node.

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
from pathlib import Path

import torch

from cil_core.memory import check_fits
from cil_core.validation import CILValueError
from cil_media.charts import image_to_tensor
from cil_media.loss_curve import draw_loss_curve
from cil_train.config import (
    DataSection, LoraSection, LossSection, ModelSection, OptimSection, RunSection, SVDSection, TrainConfig,
)
from cil_train.data import ClipDataset, ClipSpec, InMemoryDataset, list_entries
from cil_train.loop import Trainer

from .host import boot
from .loaders import load_models
from .image_slots import slot_for
from .models import detect_family
from .paths import check_name, inside, tree_inside
from .train_adapters import FAMILY_GROUPS, SVDAdapter, family_name_of
from .train_concat import ConcatAdapter, ReplaceAdapter


def make_adapter(patcher, cfg, *, vae=None, clip_vision=None, text_encoder=None, source: str = "",
                 fixed_text: torch.Tensor | None = None):
    """The adapter for this model, from its image slot (``cfg.model.family`` = auto, or a family
    name that must agree with the model)."""
    slot = slot_for(patcher)
    if slot.refuse or slot.untrainable:
        raise CILValueError(f"TimeNoise training cannot run on {slot.label}: {slot.refuse or slot.untrainable}.")
    family = detect_family(patcher)
    detected = family_name_of(slot, family)
    name = detected if cfg.model.family == "auto" else cfg.model.family
    if not {name, detected} <= next((g for g in FAMILY_GROUPS if detected in g), {detected}):
        raise CILValueError(f"model.family={name!r} but the model is {slot.label} on {type(family).__name__} ({detected!r}); "
                            "set model.family = \"auto\".")
    kw = dict(vae=vae, clip_vision=clip_vision, text_encoder=text_encoder, source=source, caption=cfg.data.caption,
              fixed_text=fixed_text)
    if detected == "svd":
        return SVDAdapter(patcher, family, name, slot, fps=cfg.svd.fps, motion_bucket_id=cfg.svd.motion_bucket_id, **kw)
    if slot.is_replace:
        return ReplaceAdapter(patcher, family, name, slot, **kw)
    return ConcatAdapter(patcher, family, name, slot, **kw)


def adapter_from_config(cfg: TrainConfig):
    """Boot ComfyUI, load ``cfg.model`` with ComfyUI's loaders and wrap it for the trainer."""
    comfy = boot(cfg.model.comfyui_path, cfg.model.device)
    loaded = load_models(cfg, comfy)
    return make_adapter(loaded.model, cfg, vae=loaded.vae, clip_vision=loaded.clip_vision,
                        text_encoder=loaded.text_encoder, source=loaded.source)


def train_in_graph(model, mode, steps, learning_rate, weight_decay, timenoise, beta_m, a, lora_rank, lora_alpha,
                   batch_size, grad_accum, precision, gradient_checkpointing, ema_decay, checkpoint_every, seed,
                   output_name, resume, positive=None, latent=None, video_folder="", vae=None, clip_vision=None,
                   frames=14, width=512, height=320, fps=0.0, stride=1, node_id: str = "CIL_TimeNoiseTrain"):
    """The TimeNoise Fine-Tune node's run: (trained MODEL, LoRA path or "", loss plot IMAGE)."""
    import comfy.model_management as mm
    import comfy.sd
    import comfy.utils

    if not video_folder and (latent is None or positive is None):
        raise CILValueError("TimeNoise Fine-Tune needs training data: connect 'latent' and 'positive' (one video), or set video_folder.")
    run_dir, lora_file = run_targets(output_name)
    if video_folder:  # decoded clips of a batch, 8-bit and float, before the VAE sees them
        check_fits(f"training clips of {frames} frames at {width}x{height}, {batch_size} per step",
                   batch_size * frames * height * width * 3 * 5, "lower frames, width, height or batch_size.")
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
                   else InMemoryDataset([adapter.item_from_graph(latent, positive)], seed))
        bar = comfy.utils.ProgressBar(steps)
        trainer = Trainer(adapter, dataset, cfg, on_step=lambda step, row: bar.update_absolute(step, steps),
                          check_cancel=mm.throw_exception_if_processing_interrupted, export_full=False,
                          lora_name=str(lora_file), extra_metadata={"trained_with": node_id})
        result = trainer.run(resume=resume)
    if mode == "lora":
        trained = comfy.sd.load_lora_for_models(model, None, result.lora_state, 1.0, 0)[0]
        lora_path = str(result.lora_path)
    else:
        trained, lora_path = patcher, ""
    return trained, lora_path, image_to_tensor(draw_loss_curve(result.steps, result.losses))




def run_targets(output_name: str) -> tuple[Path, Path]:
    """(run folder output/cil_train/<name>, LoRA file models/loras/<name>.safetensors), both checked:
    a plain name, and no symlink in the run folder (its logs are appended to) or on the way to
    either leads outside the output or loras folder."""
    import folder_paths

    check_name("output_name", output_name, subfolders=False)
    check_name("output_name", f"{output_name}.safetensors", subfolders=False)
    out_dir = folder_paths.get_output_directory()
    run_dir = tree_inside(out_dir, Path(out_dir) / "cil_train" / output_name, "output_name")
    loras = folder_paths.get_folder_paths("loras")[0]
    lora_file = Path(loras) / f"{output_name}.safetensors"
    inside(loras, lora_file.parent, "output_name")
    return run_dir, lora_file


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
