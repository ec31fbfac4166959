"""The trainer's adapters on ComfyUI's own model code (``BaseModel.apply_model`` returns x̂0), chosen
by the model's row in ``image_slots`` (where the conditional image enters):

* ``SVDAdapter`` (SVD, EDM v-prediction; frames are the batch): as the official
  ``EDMLossTimeNoise``, TimeNoise perturbs the *unscaled* first-frame latent (ComfyUI's raw
  ``c_concat``) before it is repeated over frames, and β is fed as the augmentation level through
  ``encode_adm``, i.e. SVD's ``noise_aug`` micro-condition.
* ``ConcatAdapter`` (Wan 2.1 / 2.2 A14B I2V, HunyuanVideo 1.5, VP image-concat UNets, the toy):
  conds come from the model's own ``extra_conds`` (the code ComfyUI's samplers run on a
  CONDITIONING); TimeNoise perturbs the image channels of ``c_concat`` in model space, on the frames
  the mask channel marks only (never the mask channels, never the gray/zero padding); CLIP image
  tokens (``clip_fea``) get β·ε too; the toy is told β through ``noise_level``.
* ``ReplaceAdapter`` (Wan 2.2 TI2V-5B, LTX-Video): the start image IS the first latent frame of x.
  TimeNoise puts it on the flow path at level s = β/(1 + β) and tells the model timestep s there
  through ``denoise_mask`` — the same statement in the model's own terms as at inference
  (``cil_comfy.timenoise``): (1 − s)·(y0 + β·ε) = (1 − s)·y0 + s·ε. Its predictions there are
  replaced by the clean frame, as ComfyUI's inpainting sampler does, so the loss is over the
  generated frames only.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from cil_core.atomic import atomic_path
from cil_core.families import EDM, DiffusionFamily, RectifiedFlow
from cil_core.validation import CILValueError
from cil_train.adapters import Batch, TrainAdapter, apply_drop

from .autograd_kernels import differentiable_rope
from .image_slots import ImageSlot


FAMILY_GROUPS = ({"svd", "edm"}, {"dynamicrafter", "vp"}, {"wan", "flow"})  # names with the same official defaults


def family_name_of(slot: ImageSlot, family: DiffusionFamily) -> str:
    """The name that picks the official TimeNoise defaults (cil_train.config.DEFAULT_BETA_M)."""
    if slot.model_class == "SVD_img2vid":
        return "svd" if isinstance(family, EDM) else "dynamicrafter"
    if isinstance(family, RectifiedFlow):
        return "wan" if slot.model_class == "WAN21" else "flow"
    return "edm" if isinstance(family, EDM) else "vp"


class ComfyAdapter(TrainAdapter):
    lora_prefix = "diffusion_model."

    def __init__(self, patcher, family: DiffusionFamily, family_name: str, slot: ImageSlot, *, vae=None, clip_vision=None,
                 text_encoder=None, source: str = "", caption: str = "", fixed_text: torch.Tensor | None = None) -> None:
        self.patcher, self.bm = patcher, patcher.model
        self.family, self.family_name, self.slot = family, family_name, slot
        self.vae, self.clip_vision, self.text_encoder = vae, clip_vision, text_encoder
        self.source, self.default_caption = source, caption
        self.device = torch.device(patcher.load_device)
        self.latent_format = patcher.get_model_object("latent_format")
        self._text_cache: dict[str, torch.Tensor] = {}
        self.fixed_text = fixed_text  # [L, D] used for every clip (the node's positive conditioning)

    def trainable_root(self) -> torch.nn.Module:
        return self.bm.diffusion_model

    def encoder_id(self) -> str:
        return f"{type(self).__name__}:{self.family_name}:{os.path.abspath(self.source) if self.source else 'graph'}"

    def prepare_for_training(self) -> None:
        self._ensure_loaded()

    def _ensure_loaded(self) -> None:
        # a VAE/CLIP encode may have asked ComfyUI to free memory: bring the model back
        import comfy.model_management as mm

        mm.load_models_gpu([self.patcher], force_full_load=True)

    def _vae_encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [F, H, W, 3] → raw VAE latent (no process_in), as VAEEncode."""
        if self.vae is None:
            raise CILValueError("training from videos needs a VAE: a full checkpoint, model.vae, or the node's vae input.")
        with torch.no_grad():  # data, not a part of the trained graph
            out = self.vae.encode(pixels.float().div(255.0)).float().cpu()
        self._ensure_loaded()
        return out

    def _text(self, caption: str) -> torch.Tensor:
        """[L, D] text embedding of a caption (cached)."""
        if self.fixed_text is not None:
            return self.fixed_text
        caption = caption or self.default_caption
        if caption not in self._text_cache:
            if self.text_encoder is None:
                raise CILValueError(f"{self.family_name} training needs text conditioning: set model.text_encoder (and model.text_encoder_type).")
            tokens = self.text_encoder.tokenize(caption)
            with torch.no_grad():
                cond = self.text_encoder.encode_from_tokens_scheduled(tokens)[0][0]
            self._text_cache[caption] = cond[0].float().cpu()
            self._ensure_loaded()
        return self._text_cache[caption]

    def training_context(self) -> contextlib.AbstractContextManager:
        return differentiable_rope()

    def model_space(self, raw: torch.Tensor) -> torch.Tensor:
        return self.latent_format.process_in(raw)

    def model_conds(self, noise: torch.Tensor, options: dict) -> dict:
        """The model's own conds for one clip (the path ComfyUI's samplers take on a CONDITIONING)."""
        conds = self.bm.extra_conds(noise=noise, device=self.device, **_to_device(options, self.device))
        out = {}
        for name, c in conds.items():
            processed = c.process_cond(batch_size=noise.shape[0], device=self.device, area=None).cond
            out[name] = processed.to(self.device) if torch.is_tensor(processed) else processed
        return out

    def item_from_graph(self, latent: dict, positive: list) -> dict:
        """One training clip from a graph: the video LATENT and the conditioning made for it."""
        samples = latent["samples"].float().clone()
        if samples.dim() != 5 or samples.shape[0] != 1:
            raise CILValueError(f"{self.slot.label} training latents are [1, C, T, h, w] (one video, VAE Encode); got {tuple(samples.shape)}.")
        emb, options = positive[0][0], dict(positive[0][1])
        return {"latent": samples[0], "options": options | {"cross_attn": emb.float().clone()}}

    def export_full(self, path: Path, metadata: dict[str, str], state_dict: dict | None = None) -> Path:
        """A stock checkpoint (SGM keys; + VAE / CLIP vision when they were loaded) that ComfyUI's
        checkpoint loaders read, written atomically (cil_core.atomic). ``state_dict``: the network's
        weights gathered from FSDP shards, saved in place of the (sharded) network's own."""
        import comfy.sd

        net = self.bm.diffusion_model
        if state_dict is not None:
            net.state_dict = lambda *a, **k: dict(state_dict)  # read by ComfyUI's state_dict_for_saving
        try:
            with atomic_path(path) as tmp:
                comfy.sd.save_checkpoint(str(tmp), self.patcher, clip=None, vae=self.vae, clip_vision=self.clip_vision, metadata=metadata)
        finally:
            if state_dict is not None:
                del net.state_dict
        return Path(path)


class SVDAdapter(ComfyAdapter):
    """SVD img2vid. Batch: x0 [B, T, 4, h, w] (model space), cond image [B, 4, h, w] (raw),
    embed [B, 1, D] (CLIP image embedding), fps/motion [B]."""

    def __init__(self, patcher, family, family_name, slot, *, fps: int = 6, motion_bucket_id: int = 127, **kw) -> None:
        super().__init__(patcher, family, family_name, slot, **kw)
        self.fps, self.motion_bucket_id = fps, motion_bucket_id

    def encode(self, record: dict) -> dict[str, torch.Tensor]:
        if "encoded" in record:
            return check_svd_item(record["encoded"])
        pixels = record["pixels"]
        raw = self._vae_encode(pixels)
        if self.clip_vision is None:
            raise CILValueError("SVD training from videos needs CLIP vision (a full SVD checkpoint, model.clip_vision or the node's clip_vision input).")
        with torch.no_grad():
            embed = self.clip_vision.encode_image(pixels[:1].float().div(255.0)).image_embeds.float().cpu()
        self._ensure_loaded()
        return {"latent": raw, "image": raw[0].clone(), "embed": embed.reshape(1, -1)}

    def item_from_graph(self, latent: dict, positive: list) -> dict:
        import comfy.utils

        samples = latent["samples"].float().clone()
        emb, options = positive[0][0], dict(positive[0][1])
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

    def collate(self, encoded: list[dict]) -> Batch:
        dev = self.device
        x0 = torch.stack([self.model_space(e["latent"].float()) for e in encoded]).to(dev)
        image = torch.stack([e["image"].float() for e in encoded]).to(dev)
        embed = torch.stack([e["embed"].float().reshape(1, -1) for e in encoded]).to(dev)
        fps = [int(e["fps"]) if "fps" in e else self.fps for e in encoded]
        motion = [int(e["motion_bucket_id"]) if "motion_bucket_id" in e else self.motion_bucket_id for e in encoded]
        return Batch(x0, {"image": image, "embed": embed, "fps": fps, "motion_bucket_id": motion})

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        b, t = x.shape[:2]
        image = apply_drop(cond, cond["image"])
        embed = apply_drop(cond, cond["embed"])
        beta = torch.as_tensor(cond.get("noise_level", torch.zeros(b)), dtype=torch.float64).reshape(-1).expand(b)
        y = torch.cat([
            self.bm.encode_adm(fps=cond["fps"][i], motion_bucket_id=cond["motion_bucket_id"][i], augmentation_level=float(beta[i]))
            for i in range(b)
        ]).to(x.device)
        out = self.bm.apply_model(
            x.reshape(b * t, *x.shape[2:]), sigma.repeat_interleave(t),
            c_concat=image.repeat_interleave(t, dim=0), c_crossattn=embed.repeat_interleave(t, dim=0),
            y=y.repeat_interleave(t, dim=0), num_video_frames=t, transformer_options={},
        )
        return out.reshape(x.shape)


def check_svd_item(item: dict) -> dict:
    for key in ("latent", "image", "embed"):
        if key not in item:
            raise CILValueError(f"an encoded SVD clip needs tensors latent [T, 4, h, w], image [4, h, w], embed [1, D]; '{key}' is missing.")
    if item["latent"].dim() != 4 or item["image"].shape != item["latent"].shape[1:]:
        raise CILValueError(f"SVD clip shapes: latent {tuple(item['latent'].shape)} must be [T, C, h, w] and image "
                            f"{tuple(item['image'].shape)} must equal its [C, h, w].")
    return item


def _to_device(options: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in options.items()}
