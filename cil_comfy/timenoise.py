"""TimeNoise at inference (paper Sec. 4.2, our extension) as an APPLY_MODEL wrapper on a MODEL.

At every model call, the conditional image of the COND chunks (never the uncond ones, never in
place) gets β_s·ε with β_s from cil_core's TimeNoise distribution at that call's t:

    t = family.timenoise_time(σ)   (SVD: σ/700, VP: index/1000, flow: σ — as the official code)
    β_s = β_m·sigmoid(N(2t^a − 1, s²))  ('sampled')   or its q-quantile ('quantile', deterministic)

Where the image enters, per model (comfy/model_base.py):
- SVD_img2vid: ``c_concat`` (raw VAE latent, the space of the official β_m = 15) with one ε per
  video repeated over its frames (the image is repeated too); the augmentation level inside ``y``
  is rebuilt with the model's own ``encode_adm(augmentation_level=β_s)``, as the official SVD
  training feeds β_s as noise_aug. CLIP tokens: ``c_crossattn`` (the image embedding).
- WAN21 image-to-video: ``c_concat[:, 4:]`` (16 image channels after 4 mask channels), noised
  where the mask marks conditioned frames; CLIP tokens: ``clip_fea``.
- any other model with a concat image: the whole ``c_concat`` (4-D: one ε per video repeated over
  frames; 5-D: per element). CLIP image tokens are not separable there and stay clean.
"""

from __future__ import annotations

import torch

from cil_core.timenoise import BETA_MODES, TimeNoiseConfig, add_condition_noise, beta_at, seed_for_call
from cil_core.validation import CILValueError

from .models import detect_family, family_from_model_sampling, family_label

WRAPPER_KEY = "comfyui_cil_timenoise"
NOISE_SHAPES = ("per_element", "per_sample_scalar")


def model_kind(base) -> str:
    """'svd', 'wan' or 'concat' for a comfy BaseModel."""
    import comfy.model_base as mb

    if type(base) is mb.SVD_img2vid:
        return "svd"
    if type(base) is mb.WAN21 and getattr(base, "image_to_video", False):
        return "wan"
    return "concat"


class TimeNoiseWrapper:
    """The APPLY_MODEL wrapper: ``(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kw)``."""

    def __init__(self, config: TimeNoiseConfig, mode: str, quantile: float, seed: int, noise_shape: str, clip_tokens: bool) -> None:
        self.config, self.mode, self.quantile, self.seed = config, mode, quantile, seed
        self.scalar = noise_shape == "per_sample_scalar"
        self.clip_tokens = clip_tokens
        self._families: dict[int, object] = {}

    # -- helpers --------------------------------------------------------------------------------
    def family(self, model_sampling):
        cached = self._families.get(id(model_sampling))
        if cached is None or cached[0] is not model_sampling:  # ids of dead objects get reused
            cached = (model_sampling, family_from_model_sampling(model_sampling))
            self._families[id(model_sampling)] = cached
        return cached[1]

    def beta(self, family, sigma: float, gen: torch.Generator) -> float:
        return beta_at(self.config, float(family.timenoise_time(sigma)), self.mode, self.quantile, gen)

    def draw(self, shape, gen: torch.Generator) -> torch.Tensor:
        if self.scalar:
            shape = (shape[0],) + (1,) * (len(shape) - 1)
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    def noised(self, cond: torch.Tensor, beta: float, noise: torch.Tensor) -> torch.Tensor:
        return add_condition_noise(cond, torch.tensor([beta], dtype=torch.float64), noise=noise)

    # -- the wrapper ----------------------------------------------------------------------------
    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        flags = list(transformer_options.get("cond_or_uncond") or [])
        if 0 not in flags:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        base = executor.class_obj
        if c_concat is None:
            raise CILValueError(
                f"TimeNoise Conditioning: {type(base).__name__} got no concat conditional image (c_concat); it works on "
                "concat image-to-video models (SVD, Wan I2V, VP models with an image concat). Remove the node for this model."
            )
        kind = model_kind(base)
        family = self.family(base.model_sampling)
        sigmas = t.reshape(-1).detach().to("cpu", torch.float64)
        chunk = x.shape[0] // len(flags)
        group = self.group_size(kind, x, chunk, kwargs)
        gen = torch.Generator().manual_seed(seed_for_call(self.seed, float(sigmas[0])))
        new = {"c_concat": c_concat.clone()}
        if kind == "svd" and kwargs.get("y") is not None:
            new["y"] = kwargs["y"].clone()
        if kwargs.get("noise_level") is not None:  # models told β directly (the toy world)
            new["noise_level"] = kwargs["noise_level"].clone()
        if self.clip_tokens and kind == "svd" and c_crossattn is not None:
            new["c_crossattn"] = c_crossattn.clone()
        if self.clip_tokens and kind == "wan" and kwargs.get("clip_fea") is not None:
            new["clip_fea"] = kwargs["clip_fea"].clone()
        for index, flag in enumerate(flags):
            if flag != 0:
                continue
            for start in range(index * chunk, (index + 1) * chunk, group):
                rows = slice(start, start + group)
                sigma = float(sigmas[min(start, sigmas.numel() - 1)])
                self.perturb(kind, base, new, rows, self.beta(family, sigma, gen), gen)
        c_concat = new.pop("c_concat")
        c_crossattn = new.pop("c_crossattn", c_crossattn)
        kwargs.update(new)
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    @staticmethod
    def group_size(kind: str, x: torch.Tensor, chunk: int, kwargs: dict) -> int:
        """Rows that share one conditional image: a video's frames for frames-as-batch models."""
        if x.dim() == 5:
            return 1
        frames = kwargs.get("num_video_frames")
        frames = int(frames) if frames else chunk
        return frames if frames > 0 and chunk % frames == 0 else chunk

    def perturb(self, kind: str, base, new: dict, rows: slice, beta: float, gen: torch.Generator) -> None:
        concat = new["c_concat"]
        if kind == "wan":
            image, mask = concat[rows, 4:], concat[rows, :1]
            noise = self.draw(image.shape, gen).to(image.device, image.dtype) * mask
            concat[rows, 4:] = self.noised(image, beta, noise)
        else:
            part = concat[rows]
            shape = (1, *part.shape[1:]) if part.dim() == 4 else part.shape
            concat[rows] = self.noised(part, beta, self.draw(shape, gen).to(part.device))
        if "y" in new:
            emb = base.encode_adm(augmentation_level=beta)  # [1, 3·256]: fps, motion bucket, augmentation
            width = emb.shape[1] // 3
            new["y"][rows, -width:] = emb[:, -width:].to(new["y"].device, new["y"].dtype)
        if "noise_level" in new:
            new["noise_level"][rows] = beta
        for key in ("c_crossattn", "clip_fea"):
            if key in new:
                tokens = new[key][rows]
                shape = (1, *tokens.shape[1:]) if kind == "svd" else tokens.shape
                new[key][rows] = self.noised(tokens, beta, self.draw(shape, gen).to(tokens.device))




def patch_timenoise(model, beta_m: float, a: float, s: float, mode: str, quantile: float, seed: int, noise_shape: str,
                    noise_clip_tokens: bool):
    """A clone of ``model`` with the TimeNoise wrapper (replacing an earlier one) and a line of text."""
    import comfy.patcher_extension as pe

    config = TimeNoiseConfig(beta_m=beta_m, a=a, s=s)
    if mode not in BETA_MODES or noise_shape not in NOISE_SHAPES:
        raise CILValueError(f"mode={mode!r}, noise_shape={noise_shape!r}; expected {BETA_MODES} and {NOISE_SHAPES}.")
    family = detect_family(model)
    out = model.clone()
    out.remove_wrappers_with_key(pe.WrappersMP.APPLY_MODEL, WRAPPER_KEY)
    out.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, WRAPPER_KEY,
                             TimeNoiseWrapper(config, mode, quantile, seed, noise_shape, noise_clip_tokens))
    kind = model_kind(out.model)
    where = {
        "svd": "SVD concat latent (+ augmentation level in y set to β_s)" + (" and CLIP image embedding" if noise_clip_tokens else ""),
        "wan": "Wan I2V image channels c_concat[:, 4:] on masked frames" + (" and clip_fea tokens" if noise_clip_tokens else ""),
        "concat": "the whole concat conditioning" + (" (CLIP tokens not separable for this model: left clean)" if noise_clip_tokens else ""),
    }[kind]
    law = "sampled β_s" if mode == "sampled" else f"β_s = its {quantile:g}-quantile"
    return out, f"TimeNoise on {where}; {family_label(family)}; β_m={beta_m:g}, a={a:g}, s={s:g}, {law}, {noise_shape}."
