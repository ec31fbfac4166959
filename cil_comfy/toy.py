"""The toy I2V world (``cil_toy``) as ComfyUI objects: its models run in ComfyUI's own samplers.

- ``CIL_ToyModelLoader``: a real ``comfy.model_base.BaseModel`` subclass around the toy network
  (no second copy of the network: ``ToyDiffusionModel`` only splits ComfyUI's input apart),
  sampling family from the weights' metadata (EDM v → V_PREDICTION_EDM, VP → EPS/V_PREDICTION on
  ModelSamplingDiscrete), a ``LatentFormat`` with the codec's channels and scale factor; a
  ``comfy.sd.VAE`` whose first stage is the toy codec, so VAEEncode/VAEDecode take it; and the
  toy world's Analytic-Init stats when they fit the model.
- ``CIL_ToyImageToVideo``: start image → conditioning (concat latent + noise level β) and an empty
  video latent, as SVD_img2vid_Conditioning / WanImageToVideo do for the real models.
- ``CIL_ToyWorldVideo``: a held-out video of the toy world (in-distribution start frames and a
  reference video for the Leakage Probe).

Conventions (cil_toy.model): the net takes c_in·x [B, C, F, h, w], the conditional image latent
(model space), ComfyUI's timestep (EDM 0.25·ln σ, VP the table index) and β. ComfyUI's
BaseModel concatenates ``c_concat`` onto c_in·x along dim 1; the toy's conditional image is ONE
frame repeated over F, so the wrapper reads it from frame 0 of the concat (a TimeNoise wrapper's
noise on that frame is then noise on the image, as in training). Latents are 5-D [B, C, F, h, w]
in the VAE's raw space between nodes (model space = raw × codec.scale_factor).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path

import comfy.conds
import comfy.latent_formats
import comfy.model_base
import comfy.model_management as mm
import comfy.model_patcher
import comfy.sd
import comfy.supported_models_base
import comfy.utils
import torch

from cil_core.families import EDM, VPDiscrete, family_from_description
from cil_core.memory import check_fits
from cil_core.stats_io import load_stats
from cil_core.timenoise import add_condition_noise
from cil_core.validation import CILValueError, shown
from cil_toy import data as toy_data
from cil_toy import weights_io as toy_weights

from .paths import TOY_FOLDER, folder_file, folder_files

HELD_OUT_COUNT = 64  # Toy World Video picks from cil_toy.data.held_out_set(64)
SAMPLING_COPIES = 8  # noise, state, model input (+ concat image), prediction, the sampler's own buffers


def toy_model_names() -> list[str]:
    """Shipped toy models (by name) first, then .safetensors files in models/cil_toy."""
    return list(toy_weights.available_toy_models()) + folder_files(TOY_FOLDER)


def toy_model_path(name: str) -> Path:
    """The weights file of a combo entry (shipped name or file in models/cil_toy)."""
    if name in toy_weights.SHIPPED:
        return toy_weights.weights_path(name)
    return folder_file(TOY_FOLDER, name, f"toy model (not shipped: {', '.join(toy_weights.SHIPPED)})")


# --- the MODEL ---------------------------------------------------------------------------------

def comfy_sampling(family_desc: dict) -> tuple[comfy.model_base.ModelType, dict]:
    """ComfyUI ModelType and sampling_settings reproducing a toy family exactly."""
    family = family_from_description(family_desc)
    mt = comfy.model_base.ModelType
    if isinstance(family, EDM) and family.prediction == "v":
        return mt.V_PREDICTION_EDM, {"sigma_min": family.sigma_min, "sigma_max": family.sigma_max, "sigma_data": 1.0}
    if isinstance(family, VPDiscrete) and family.prediction in ("eps", "v"):
        schedule = {"scaled_linear": "linear", "linear": "sqrt_linear"}[family.schedule]  # ComfyUI's names
        settings = {"beta_schedule": schedule, "linear_start": family.beta_start, "linear_end": family.beta_end,
                    "timesteps": family.num_steps, "zsnr": family.zero_terminal_snr}
        return (mt.V_PREDICTION if family.prediction == "v" else mt.EPS), settings
    raise CILValueError(
        f"toy family {family_desc} has no ComfyUI model type here; the loader supports EDM with v-prediction "
        "and VP discrete with eps or v-prediction (what 'cil toy-train' writes)."
    )


class ToyLatentFormat(comfy.latent_formats.LatentFormat):
    """5-D toy latents: model space = raw × codec.scale_factor. The previewer's RGB map is exact:
    channel c·b² (the block-mean "LL" channel of colour c) is b·scale × the pixel block mean."""

    latent_dimensions = 3

    def __init__(self, channels: int = 12, scale_factor: float = 2.0, block: int = 2) -> None:
        self.latent_channels = channels
        self.scale_factor = scale_factor
        gain = 1.0 / (block * scale_factor)
        self.latent_rgb_factors = [[gain if i == c * block * block else 0.0 for c in range(3)] for i in range(channels)]
        self.latent_rgb_factors_bias = None


class ToyModelConfig(comfy.supported_models_base.BASE):
    """A supported-model config for one toy model; the network is built by cil_toy, not by ComfyUI."""

    unet_config = {"disable_unet_model_creation": True}
    unet_extra_config = {}
    latent_format = ToyLatentFormat
    supported_inference_dtypes = [torch.float32]
    memory_usage_factor = 1.0


class ToyDiffusionModel(torch.nn.Module):
    """``BaseModel.diffusion_model`` for a toy net: splits ComfyUI's input, calls the net once."""

    def __init__(self, net: torch.nn.Module, block: int) -> None:
        super().__init__()
        self.net, self.block = net, int(block)
        self.channels = int(net.cfg.latent_channels)
        self.frames = int(net.cfg.frames)
        self.spatial_multiple = 2 ** len(net.downs)  # each U-Net level halves h and w
        # with attention the net has a position embedding: it runs at its training size only
        self.fixed_size = int(getattr(net.cfg, "latent_size", 0)) if getattr(net.cfg, "attn_heads", 0) else 0

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def check_input(self, xc: torch.Tensor) -> None:
        c, f = self.channels, self.frames
        if xc.dim() != 5 or xc.shape[1] != 2 * c:
            raise CILValueError(
                f"the toy model got input {tuple(xc.shape)}; expected [B, {2 * c}, F, h, w] (the noisy {c}-channel video "
                "plus its concat image): use the LATENT and conditioning of Toy I2V Conditioning with the Toy VAE."
            )
        size = self.fixed_size
        if size and tuple(xc.shape[2:]) != (f, size, size):
            px = size * self.block
            raise CILValueError(
                f"the toy model was trained on {f}-frame videos of {px}x{px} px and its attention runs at that size only; "
                f"set frames={f} and width=height={px} in Toy I2V Conditioning (got {xc.shape[2]} frames of "
                f"{xc.shape[4] * self.block}x{xc.shape[3] * self.block} px)."
            )
        if xc.shape[2] > f:
            raise CILValueError(f"the toy model was trained on {f}-frame videos; set frames <= {f} in Toy I2V Conditioning (got {xc.shape[2]}).")
        m = self.spatial_multiple
        if xc.shape[3] % m or xc.shape[4] % m:
            raise CILValueError(
                f"the toy model needs latent height/width divisible by {m}; got {xc.shape[3]}x{xc.shape[4]}. "
                f"Use a width/height that is a multiple of {m * self.block} pixels in Toy I2V Conditioning."
            )

    def forward(self, xc, t, context=None, control=None, transformer_options={}, noise_level=None, **kwargs):
        """xc = cat(c_in·x, concat image repeated over F) [B, 2C, F, h, w]; t = model_sampling.timestep(σ) [B]."""
        self.check_input(xc)
        c = self.channels
        beta = torch.zeros(xc.shape[0], device=xc.device) if noise_level is None else noise_level.reshape(-1)
        return self.net(xc[:, :c], xc[:, c:, 0], t.reshape(-1), beta.to(device=xc.device, dtype=torch.float32))


class ToyI2VModel(comfy.model_base.BaseModel):
    """A ComfyUI model around a cil_toy network: concat conditioning + the noise level β."""

    def __init__(self, model_config, model_type, net: torch.nn.Module, block: int, device=None) -> None:
        super().__init__(model_config, model_type, device=device)
        self.diffusion_model = ToyDiffusionModel(net, block)

    def extra_conds(self, **kwargs):
        noise = kwargs["noise"]
        image = kwargs.get("concat_latent_image")
        if image is None:
            raise CILValueError("the toy model needs a start image: build its conditioning with Toy I2V Conditioning.")
        image = concat_image(self.process_latent_in(image.to(noise.device, torch.float32)), noise)
        beta = float(kwargs.get("noise_level", 0.0))
        if beta > 0:  # the cond noise of training (cil_core.losses.timenoise_condition): image + β·ε, one ε per video
            gen = torch.Generator().manual_seed(int(kwargs.get("noise_level_seed", 0)))
            eps = torch.randn(image.shape[:2] + image.shape[3:], generator=gen).to(image.device)
            image = add_condition_noise(image[:, :, 0], torch.tensor([beta]), noise=eps).unsqueeze(2).expand_as(image)
        return {
            "c_concat": comfy.conds.CONDNoiseShape(image),
            "noise_level": comfy.conds.CONDRegular(torch.full((noise.shape[0],), beta)),
        }


def concat_image(image: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Model-space start latent [b, C, 1 or F, h, w] → [B, C, F, h, w] like the noise (frame repeated)."""
    if image.dim() == 4:
        image = image.unsqueeze(2)
    if image.dim() != 5 or noise.dim() != 5 or image.shape[1] != noise.shape[1] or image.shape[-2:] != noise.shape[-2:]:
        raise CILValueError(
            f"start image latent {tuple(image.shape)} does not fit the video latent {tuple(noise.shape)}; build both with "
            "Toy I2V Conditioning (same width/height) and sample its LATENT."
        )
    frames = noise.shape[2]
    if image.shape[2] not in (1, frames):
        raise CILValueError(f"the start image latent has {image.shape[2]} frames; expected 1 (or {frames}).")
    image = image[:, :, :1].expand(-1, -1, frames, -1, -1)
    return comfy.utils.resize_to_batch_size(image, noise.shape[0])


def build_comfy_model(toy) -> comfy.model_patcher.ModelPatcher:
    """A ModelPatcher around a ``ToyI2VModel`` for a loaded ``cil_toy`` ``ToyModel``."""
    desc = json.loads(toy.meta["family"]) if "family" in toy.meta else toy.family.describe()
    model_type, settings = comfy_sampling(desc)
    config = ToyModelConfig({"disable_unet_model_creation": True})
    config.sampling_settings = settings
    config.latent_format = ToyLatentFormat(toy.codec.channels, toy.codec.scale_factor, toy.codec.block)
    config.set_inference_dtype(torch.float32, None)
    model = ToyI2VModel(config, model_type, toy.net.float().eval(), toy.codec.block)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


# --- the VAE -----------------------------------------------------------------------------------

class ToyCodecModule(torch.nn.Module):
    """First stage of the toy VAE: pixels [N, 3, F, H, W] in [-1, 1] ↔ raw latent (cil_toy codec)."""

    def __init__(self, codec) -> None:
        super().__init__()
        self.codec = codec

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.codec.encode_raw(pixels.float())

    def decode(self, raw: torch.Tensor, **_) -> torch.Tensor:
        return self.codec.decode_raw(raw.float())


@contextlib.contextmanager
def _without_empty_vae_warning():
    """comfy.sd.VAE(sd={}) logs 'No VAE weights detected'; the toy VAE has none by design."""
    def drop(record: logging.LogRecord) -> bool:
        return "No VAE weights detected" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


class ToyVAE(comfy.sd.VAE):
    """A comfy.sd.VAE (its own encode/decode, batching and device handling) whose first stage is
    the exactly invertible toy codec: latent_dim 3, images in a batch are the frames of one video."""

    def __init__(self, codec) -> None:
        with _without_empty_vae_warning():
            super().__init__(sd={})  # ComfyUI's defaults for every attribute; no weights to detect
        self.first_stage_model = ToyCodecModule(codec).eval()
        self.latent_channels, self.latent_dim = codec.channels, 3
        self.downscale_ratio = self.upscale_ratio = codec.block
        self.working_dtypes = [torch.float32]
        self.memory_used_encode = lambda shape, dtype: 8 * math.prod(shape) * mm.dtype_size(dtype)
        self.memory_used_decode = lambda shape, dtype: 8 * math.prod(shape) * codec.block**2 * mm.dtype_size(dtype)
        self.device, self.vae_dtype = mm.vae_device(), torch.float32
        self.output_device = mm.intermediate_device()
        self.patcher = comfy.model_patcher.ModelPatcher(self.first_stage_model, load_device=self.device, offload_device=mm.vae_offload_device())
        self.size = 0


# --- stats -------------------------------------------------------------------------------------

def toy_stats_for(toy) -> tuple[object | None, str]:
    """(AnalyticStats or None, why) of the toy world's shipped stats for this model."""
    path = toy_weights.WEIGHTS_DIR / toy_weights.STATS_FILE
    if not path.is_file():
        return None, f"no Analytic-Init stats: {path.name} is not shipped (run 'cil toy-train'); late start will be naive"
    stats = load_stats(path)
    meta = stats.meta
    same_codec = meta.get("codec.block") == str(toy.codec.block) and float(meta.get("codec.scale_factor", "nan")) == toy.codec.scale_factor
    if tuple(stats.shape) != tuple(toy.latent_shape) or not same_codec:
        return None, (f"no Analytic-Init stats: {path.name} has shape {list(stats.shape)} (codec block {meta.get('codec.block')}) but this "
                      f"model's latents are {list(toy.latent_shape)} (block {toy.codec.block}); retrain with 'cil toy-train'")
    stats.meta["file"] = f"cil_toy/weights/{path.name}"
    return stats, f"stats {path.name} [C,F,H,W]={list(stats.shape)}, tr Cov/d={stats.tr_cov_d:.4g}"


def toy_summary(toy, stats_note: str) -> str:
    c, f, h, w = toy.latent_shape
    fam = toy.family.describe()
    params = sum(p.numel() for p in toy.net.parameters())
    return (
        f"toy model '{toy.name}' (role {toy.meta.get('role', '?')}): {fam.get('family')} {fam.get('prediction')}-prediction, "
        f"{params / 1e3:.0f}k parameters; videos of {f} frames at {toy.world.width}x{toy.world.height} px "
        f"(latent [C,F,h,w]=[{c},{f},{h},{w}], codec block {toy.codec.block}, scale {toy.codec.scale_factor:g}); "
        f"{stats_note}. Retrain: {toy.meta.get('command', '?')}"
    )



def check_model_name(model_name) -> bool | str:
    """validate_inputs helper of the toy nodes."""
    if model_name is not None and model_name not in toy_model_names():
        return f"model_name={shown(model_name)}: toy model not found; available: {toy_model_names() or 'none (run cil toy-train)'}."
    return True


def load_toy(model_name: str):
    """(MODEL, VAE, stats or None, info) of a toy model by combo name."""
    toy = toy_weights.load_toy_model(toy_model_path(model_name))
    stats, note = toy_stats_for(toy)
    return build_comfy_model(toy), ToyVAE(toy.codec), stats, toy_summary(toy, note)


def toy_conditioning(vae, start_image, width: int, height: int, frames: int, batch_size: int, crop: str,
                     noise_level: float, noise_seed: int) -> tuple[list, list, dict]:
    """(positive, negative, empty LATENT) for a toy model, as SVD_img2vid_Conditioning does for SVD."""
    block = getattr(getattr(vae, "first_stage_model", None), "codec", None)
    block = getattr(block, "block", 2)
    latent_bytes = batch_size * getattr(vae, "latent_channels", 12) * frames * (height // block) * (width // block) * 4
    check_fits(f"a toy video latent of {batch_size} x {frames} frames at {width}x{height}", latent_bytes * SAMPLING_COPIES,
               f"lower batch_size, frames, width or height (a sampler keeps about {SAMPLING_COPIES} tensors of the latent's size).")
    pixels = comfy.utils.common_upscale(start_image[:1].movedim(-1, 1), width, height, "area", crop).movedim(1, -1)
    raw = vae.encode(pixels[..., :3])
    if raw.dim() != 5 or raw.shape[2] != 1:
        raise CILValueError(
            f"the VAE encoded one image to a latent of shape {tuple(raw.shape)}; the toy models need their own VAE "
            "([1, C, 1, h, w]): connect the VAE output of Toy I2V Model Loader."
        )
    video = raw.expand(-1, -1, frames, -1, -1).contiguous()  # the start image on every frame, as the net sees it
    cond = {"concat_latent_image": video, "noise_level": float(noise_level), "noise_level_seed": int(noise_seed)}
    latent = torch.zeros(batch_size, raw.shape[1], frames, raw.shape[3], raw.shape[4])
    return [[torch.zeros(1, 1, 1), cond]], [[torch.zeros(1, 1, 1), dict(cond)]], {"samples": latent}


def toy_world_video(model_name: str, index: int) -> torch.Tensor:
    """Held-out video ``index`` of the model's world as IMAGE frames [F, H, W, 3] in [0, 1]."""
    world = toy_data.WorldConfig.from_meta(toy_weights.read_meta(toy_model_path(model_name)))
    videos, _ = toy_data.held_out_set(HELD_OUT_COUNT, world)
    return ((videos[index] + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0).contiguous()  # CFHW [-1, 1] → [F, H, W, 3] [0, 1]
