"""Load models from files the way ComfyUI's loader nodes do (ImageOnlyCheckpointLoader, UNETLoader,
VAELoader, CLIPVisionLoader, CLIPLoader), for the headless commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from cil_core.validation import CILValueError


@dataclass
class LoadedModels:
    model: object  # comfy ModelPatcher
    vae: object | None = None
    clip_vision: object | None = None
    text_encoder: object | None = None
    source: str = ""


def load_models(cfg, comfy: SimpleNamespace) -> LoadedModels:
    """Load what ``cfg.model`` names, with ComfyUI's loaders."""
    m = cfg.model
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[m.weight_dtype]
    options = {"dtype": dtype}
    vae = clip_vision = None
    if m.checkpoint:
        _must_exist("model.checkpoint", m.checkpoint)
        out = comfy.sd.load_checkpoint_guess_config(m.checkpoint, output_vae=True, output_clip=False,
                                                    output_clipvision=True, model_options=options)
        if out[0] is None:
            raise CILValueError(f"ComfyUI did not recognise a diffusion model in {m.checkpoint}.")
        model, vae, clip_vision = out[0], out[2], out[3]
        source = m.checkpoint
    elif m.unet:
        _must_exist("model.unet", m.unet)
        model = comfy.sd.load_diffusion_model(m.unet, model_options=options)
        source = m.unet
    else:
        raise CILValueError("set model.checkpoint (full checkpoint) or model.unet (diffusion model only) in [model].")
    if m.vae:
        _must_exist("model.vae", m.vae)
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(m.vae))
    if m.clip_vision:
        _must_exist("model.clip_vision", m.clip_vision)
        clip_vision = comfy.clip_vision.load(m.clip_vision)
    text_encoder = None
    if m.text_encoder:
        for p in m.text_encoder:
            _must_exist("model.text_encoder", p)
        clip_type = getattr(comfy.sd.CLIPType, m.text_encoder_type.upper(), None)
        if clip_type is None:
            raise CILValueError(f"model.text_encoder_type={m.text_encoder_type!r} is not a ComfyUI CLIPType.")
        text_encoder = comfy.sd.load_clip(ckpt_paths=list(m.text_encoder), clip_type=clip_type)
    return LoadedModels(model, vae, clip_vision, text_encoder, source)


def _must_exist(name: str, path: str) -> None:
    if not Path(path).is_file():
        raise CILValueError(f"{name}={path!r} does not exist.")


def load_svd_conditioned(checkpoint: str, frames, width: int, height: int, motion_bucket_id: int, fps: int,
                         augmentation_level: float):
    """(MODEL, positive, negative, VAE) of an SVD image-to-video checkpoint, conditioned on frame 0 of
    ``frames`` [F, H, W, 3] by ComfyUI's own SVD_img2vid_Conditioning."""
    import comfy.sd
    from comfy_extras.nodes_video_model import SVD_img2vid_Conditioning

    model, _, vae, clip_vision = comfy.sd.load_checkpoint_guess_config(
        checkpoint, output_vae=True, output_clip=False, output_clipvision=True
    )[:4]
    if model is None or clip_vision is None or type(model.model).__name__ != "SVD_img2vid":
        found = "no diffusion model" if model is None else type(model.model).__name__
        raise CILValueError(f"--checkpoint {checkpoint!r} is not an SVD image-to-video checkpoint with CLIP vision ({found}); "
                            "other models: use the Leakage Probe node in ComfyUI.")
    with torch.inference_mode():  # as ComfyUI runs its nodes
        positive, negative, _ = SVD_img2vid_Conditioning().encode(
            clip_vision, frames[:1], vae, width, height, frames.shape[0], motion_bucket_id, fps, augmentation_level
        )
    return model, positive, negative, vae
