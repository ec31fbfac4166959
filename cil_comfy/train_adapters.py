"""Training adapters on ComfyUI's own model code (``BaseModel.apply_model`` returns x̂0).

* ``SVDAdapter`` (EDM, v-prediction; frames are the batch, latents [T, 4, h, w]): as the
  official ``EDMLossTimeNoise``, TimeNoise perturbs the *unscaled* first-frame latent (ComfyUI's
  raw ``c_concat``) before it is repeated over frames, and β is fed as the augmentation level
  through ``encode_adm`` (with fps and motion bucket), i.e. SVD's ``noise_aug`` micro-condition.
* ``ConcatAdapter`` — conditions come from the model's own ``extra_conds`` (the same code
  ComfyUI's samplers run on a CONDITIONING), then TimeNoise perturbs the image channels of
  ``c_concat`` in model space: all of them for DynamiCrafter-style VP v-prediction models
  (the official code noises the scaled latent, i.i.d. per frame), ``c_concat[:, 4:]`` for Wan
  I2V (after its 4 mask channels); Wan 2.1's CLIP image tokens (``clip_fea``) get β·ε too.

None of this imports ComfyUI at module level: the modules come from ``comfy_host.boot`` or from
the running ComfyUI (node).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import torch

from cil_core.validation import CILValueError
from cil_core.families import DiffusionFamily, EDM, RectifiedFlow, VPDiscrete

from cil_train.adapters import Batch, TrainAdapter, apply_drop


def family_of(patcher) -> tuple[DiffusionFamily, str]:
    """cil_core family (and official-defaults name) of a ComfyUI model from its model_sampling."""
    import comfy.model_base as mb
    import comfy.model_sampling as ms_mod

    bm = patcher.model
    ms = patcher.get_model_object("model_sampling")
    if isinstance(ms, ms_mod.EDM) or not isinstance(ms, (ms_mod.EPS, ms_mod.CONST)):
        raise CILValueError(f"{type(bm).__name__}: its parameterisation ({type(ms).__name__}) is not trainable here; "
                            "supported: EDM v-prediction (SVD), discrete VP eps/v (DynamiCrafter-style), flow (Wan).")
    if isinstance(ms, ms_mod.ModelSamplingContinuousEDM) and isinstance(ms, ms_mod.V_PREDICTION):
        family = EDM(float(ms.sigma_min), float(ms.sigma_max), prediction="v")
        return family, "svd" if isinstance(bm, mb.SVD_img2vid) else "edm"
    if isinstance(ms, ms_mod.ModelSamplingDiscreteFlow) and isinstance(ms, ms_mod.CONST):
        family = RectifiedFlow(shift=float(ms.shift), shift_kind="linear")
        return family, "wan" if isinstance(bm, mb.WAN21) else "flow"
    if isinstance(ms, ms_mod.ModelSamplingDiscrete) and isinstance(ms, ms_mod.EPS) and not isinstance(ms, ms_mod.CONST):
        prediction = "v" if isinstance(ms, ms_mod.V_PREDICTION) else "eps"
        table = ms.sigmas.double().cpu()
        start, end = float(getattr(ms, "linear_start", 0.00085)), float(getattr(ms, "linear_end", 0.012))
        for schedule in ("scaled_linear", "linear"):
            fam = VPDiscrete(beta_start=start, beta_end=end, num_steps=len(table), schedule=schedule,
                             zero_terminal_snr=bool(getattr(ms, "zsnr", False)), prediction=prediction)
            if torch.allclose(fam.sigmas, table, rtol=1e-3):
                return fam, "dynamicrafter"
        raise CILValueError(f"{type(bm).__name__}: its discrete schedule is not a (scaled) linear beta schedule.")
    raise CILValueError(f"{type(bm).__name__}: unsupported model_sampling {type(ms).__name__}.")


class ComfyAdapter(TrainAdapter):
    lora_prefix = "diffusion_model."

    def __init__(self, patcher, family: DiffusionFamily, family_name: str, *, vae=None, clip_vision=None,
                 text_encoder=None, source: str = "", caption: str = "", fixed_text: torch.Tensor | None = None) -> None:
        self.patcher, self.bm = patcher, patcher.model
        self.family, self.family_name = family, family_name
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
        import comfy.model_management as mm

        mm.load_models_gpu([self.patcher], force_full_load=True)

    def _ensure_loaded(self) -> None:
        # a VAE/CLIP encode may have asked ComfyUI to free memory: bring the model back
        import comfy.model_management as mm

        mm.load_models_gpu([self.patcher], force_full_load=True)

    def _vae_encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [F, H, W, 3] → raw VAE latent (no process_in), as VAEEncode."""
        if self.vae is None:
            raise CILValueError("training from videos needs a VAE: a full checkpoint, model.vae, or the node's vae input.")
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
            cond = self.text_encoder.encode_from_tokens_scheduled(tokens)[0][0]
            self._text_cache[caption] = cond[0].float().cpu()
            self._ensure_loaded()
        return self._text_cache[caption]

    def training_context(self) -> contextlib.AbstractContextManager:
        return differentiable_rope()

    def model_space(self, raw: torch.Tensor) -> torch.Tensor:
        return self.latent_format.process_in(raw)

    def export_full(self, path: Path, metadata: dict[str, str], state_dict: dict | None = None) -> Path:
        """A stock checkpoint (SGM keys; + VAE / CLIP vision when they were loaded) that ComfyUI's
        checkpoint loaders read, written atomically (cil_core.atomic). ``state_dict``: the network's
        weights gathered from FSDP shards, saved in place of the (sharded) network's own."""
        import comfy.sd

        from cil_core.atomic import atomic_path

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

    def __init__(self, patcher, family, family_name="svd", *, fps: int = 6, motion_bucket_id: int = 127, **kw) -> None:
        super().__init__(patcher, family, family_name, **kw)
        self.fps, self.motion_bucket_id = fps, motion_bucket_id

    def encode(self, record: dict) -> dict[str, torch.Tensor]:
        if "encoded" in record:
            return check_svd_item(record["encoded"])
        pixels = record["pixels"]
        raw = self._vae_encode(pixels)
        if self.clip_vision is None:
            raise CILValueError("SVD training from videos needs CLIP vision (a full SVD checkpoint, model.clip_vision or the node's clip_vision input).")
        embed = self.clip_vision.encode_image(pixels[:1].float().div(255.0)).image_embeds.float().cpu()
        self._ensure_loaded()
        return {"latent": raw, "image": raw[0].clone(), "embed": embed.reshape(1, -1)}

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


class ConcatAdapter(ComfyAdapter):
    """Concat-conditioned models whose conds come from ``BaseModel.extra_conds``.

    ``frames_as_batch`` (DynamiCrafter-style UNets): a clip is [T, C, h, w] and is the model's
    batch; else (Wan) a clip is [C, T, h, w] and the model batch holds [1, C, T, h, w].
    ``image_channels``: the slice of ``c_concat`` TimeNoise perturbs; ``token_key``: the cond
    holding CLIP image tokens (Wan 2.1: ``clip_fea``) that get β·ε too when loss.noise_tokens.
    Text (``c_crossattn``) is never noised.
    """

    def __init__(self, patcher, family, family_name, *, frames_as_batch: bool, image_channels: slice,
                 token_key: str | None = None, **kw) -> None:
        super().__init__(patcher, family, family_name, **kw)
        self.frames_as_batch, self.image_channels, self.token_key = frames_as_batch, image_channels, token_key

    # --- encoding -------------------------------------------------------------------------
    def encode(self, record: dict) -> dict:
        if "encoded" in record:
            return record["encoded"]
        pixels = record["pixels"]
        caption = record.get("caption", "")
        if self.frames_as_batch:
            raw = self._vae_encode(pixels)  # [T, C, h, w]
            options = {"concat_latent_image": raw[:1].clone()}
        else:
            raw, options = self._wan_encode(pixels)
        return {"latent": raw, "options": options | {"cross_attn": self._text(caption)[None]}}

    def _wan_encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """As WanImageToVideo: the start frame followed by grey frames, and a mask that marks it."""
        raw = self._vae_encode(pixels)[0]  # [C, T', h, w]
        guide = torch.full_like(pixels, 128)
        guide[:1] = pixels[:1]
        concat = self._vae_encode(guide)  # [1, C, T', h, w]
        mask = torch.ones(1, 1, raw.shape[1], raw.shape[2], raw.shape[3])
        mask[:, :, :1] = 0.0
        return raw, {"concat_latent_image": concat, "concat_mask": mask}

    # --- batches --------------------------------------------------------------------------
    def _noise_like(self, latent: torch.Tensor) -> torch.Tensor:
        return latent if self.frames_as_batch else latent[None]

    def collate(self, encoded: list[dict]) -> Batch:
        x0s, images, concats, extras, tokens = [], [], [], [], []
        for e in encoded:
            x0 = self.model_space_clip(e["latent"].float())
            conds = self._model_conds(x0, e["options"])
            concat = conds.pop("c_concat")
            images.append(concat[:, self.image_channels])
            tokens.append(conds.pop(self.token_key, None) if self.token_key else None)
            concats.append(concat)
            extras.append(conds)
            x0s.append(x0)
        cond = {"image": torch.stack(images), "concat": concats, "extra": extras}
        if tokens and all(t is not None for t in tokens):
            cond["tokens"] = torch.stack(tokens)  # [B, 1, L, D]: the clip's image tokens
        return Batch(torch.stack(x0s).to(self.device), cond)

    def model_space_clip(self, raw: torch.Tensor) -> torch.Tensor:
        return self.model_space(raw) if self.frames_as_batch else self.model_space(raw[None])[0]

    def _model_conds(self, x0: torch.Tensor, options: dict) -> dict:
        """The model's own conds for one clip (same path as ComfyUI's samplers)."""
        noise = self._noise_like(x0).to(self.device)
        conds = self.bm.extra_conds(noise=noise, device=self.device, **_to_device(options, self.device))
        out = {}
        for name, c in conds.items():
            processed = c.process_cond(batch_size=noise.shape[0], device=self.device, area=None).cond
            out[name] = processed.to(self.device) if torch.is_tensor(processed) else processed
        if "c_concat" not in out:
            raise CILValueError(f"{type(self.bm).__name__} produced no c_concat from the conditioning; TimeNoise needs an image-concat model.")
        return out

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        image = cond["image"]  # the concat is never dropped (official DynamiCrafter); only image tokens are
        tokens = cond.get("tokens")
        outs = []
        for i in range(x.shape[0]):
            concat = cond["concat"][i].clone()
            concat[:, self.image_channels] = image[i]
            xi = self._noise_like(x[i])
            kwargs = dict(cond["extra"][i])
            if tokens is not None:
                kwargs[self.token_key] = apply_drop(cond, tokens)[i]
            out = self.bm.apply_model(xi, sigma[i].expand(xi.shape[0]), c_concat=concat, transformer_options={}, **kwargs)
            outs.append(out if self.frames_as_batch else out[0])
        return torch.stack(outs)


def rope1(x: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    """RoPE on one tensor, the formula of ComfyUI's own fallback (comfy/ldm/flux/math.py)."""
    x_ = x.to(dtype=freqs_cis.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    out = freqs_cis[..., 0] * x_[..., 0] + freqs_cis[..., 1] * x_[..., 1]
    return out.reshape(*x.shape).type_as(x)


def rope2(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor):
    return rope1(xq, freqs_cis), rope1(xk, freqs_cis)


@contextlib.contextmanager
def differentiable_rope():
    """ComfyUI ≥ 0.7 computes RoPE (Wan, Flux, Qwen …) with comfy_kitchen kernels that have no
    autograd formula; while training, the model modules use the equivalent torch formula."""
    swapped = []
    for name, module in list(sys.modules.items()):
        if not name.startswith("comfy.ldm.") or module is None:
            continue
        for attr, replacement in (("apply_rope1", rope1), ("apply_rope", rope2)):
            fn = getattr(module, attr, None)
            if fn is not None and getattr(fn, "__module__", "").startswith("comfy_kitchen"):
                swapped.append((module, attr, fn))
                setattr(module, attr, replacement)
    try:
        yield
    finally:
        for module, attr, fn in swapped:
            setattr(module, attr, fn)


def _to_device(options: dict, device) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in options.items()}


def make_adapter(patcher, cfg, *, vae=None, clip_vision=None, text_encoder=None, source: str = "",
                 fixed_text: torch.Tensor | None = None) -> ComfyAdapter:
    """The adapter for this model (``cfg.model.family`` = auto detects it)."""
    import comfy.model_base as mb

    family, detected = family_of(patcher)
    name = detected if cfg.model.family == "auto" else cfg.model.family
    kw = dict(vae=vae, clip_vision=clip_vision, text_encoder=text_encoder, source=source, caption=cfg.data.caption,
              fixed_text=fixed_text)
    if name in ("svd", "edm"):
        if not isinstance(family, EDM):
            raise CILValueError(f"model.family={name!r} but the model's schedule is {type(family).__name__}.")
        return SVDAdapter(patcher, family, "svd", fps=cfg.svd.fps, motion_bucket_id=cfg.svd.motion_bucket_id, **kw)
    if name in ("wan", "flow"):
        if not isinstance(patcher.model, mb.WAN21):
            raise CILValueError(f"model.family={name!r} needs a Wan I2V model; got {type(patcher.model).__name__}.")
        return ConcatAdapter(patcher, family, "wan", frames_as_batch=False, image_channels=slice(4, None), token_key="clip_fea", **kw)
    if name in ("dynamicrafter", "vp"):
        if not isinstance(family, VPDiscrete):
            raise CILValueError(f"model.family={name!r} but the model's schedule is {type(family).__name__}.")
        return ConcatAdapter(patcher, family, "dynamicrafter", frames_as_batch=True, image_channels=slice(None), **kw)
    raise CILValueError(f"model.family={name!r} is not trainable through ComfyUI.")

