"""TimeNoise at inference (paper Sec. 4.2, our extension) as an APPLY_MODEL wrapper on a MODEL.

At every model call the conditional image gets noise whose std β_s follows cil_core's TimeNoise
law at that call's t (never in place):

    t = family.timenoise_time(σ)   (SVD: σ/700, VP: index/1000, flow: σ — as the official code)
    β_s = β_m·sigmoid(N(2t^a − 1, s²))  ('sampled')   or its q-quantile ('quantile', deterministic)

Where the image is and how it is noised comes from the model's row in ``image_slots``:

- **concat** models (SVD, Wan 2.1/2.2 A14B I2V, HunyuanVideo 1.5, the toy): y0 + β_s·ε on the
  image channels of ``c_concat`` of the COND chunks (uncond ones untouched), only on the frames a
  mask channel marks (Wan, Hunyuan: never the mask channels, never the gray/zero padding).
  Frames-as-batch models (SVD) get one ε per video repeated over its frames, as the image is.
  SVD's augmentation level inside ``y`` is rebuilt with the model's own ``encode_adm`` (the
  official SVD training feeds β_s as noise_aug); the toy model is told β through ``noise_level``.
- **replace** models (Wan 2.2 TI2V-5B, LTX-Video): the image IS the first latent frame(s) of the
  sampler state, held clean by the noise mask, and the model reads a per-frame timestep mask·t.
  TimeNoise in the model's own terms: the frame is put on the flow path at level s and told
  timestep s. A concat image noised to y0 + β·ε has signal-to-noise ratio 1/β²; the flow state
  (1 − s)·y0 + s·ε has ((1 − s)/s)², equal when

      s = β / (1 + β)        (so β = s/(1 − s); β → 0 gives s → 0, β → ∞ gives s → 1)

  The wrapper replaces the held frames of x by (1 − s)·y0 + s·ε and their ``denoise_mask`` entry
  by s/σ, so that ComfyUI's own ``process_timestep`` (mask·t) hands the model timestep s there.
  Cond and uncond chunks see the same noisy frame (it is part of the state, not of a condition).
  Frames held only partly (LTX strength < 1: a fractional mask) are left as the user set them.
- Classes whose row refuses (Kandinsky 5) make the node fail when it runs, saying why.
"""

from __future__ import annotations

import torch

from cil_core.timenoise import BETA_MODES, TimeNoiseConfig, add_condition_noise, beta_at, seed_for_call
from cil_core.validation import CILValueError

from .image_slots import ImageSlot, slot_for
from .models import detect_family, family_from_model_sampling, family_label

WRAPPER_KEY = "comfyui_cil_timenoise"
NOISE_SHAPES = ("per_element", "per_sample_scalar")


def flow_level(beta: float) -> float:
    """The flow noise level s with the SNR of y0 + β·ε: s = β/(1 + β) (module docstring)."""
    return beta / (1.0 + beta)


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
        base = executor.class_obj
        slot = slot_for(base)
        if slot.refuse:
            raise CILValueError(f"TimeNoise Conditioning cannot run on {slot.label}: {slot.refuse}. Remove the node for this model.")
        family = self.family(base.model_sampling)
        sigmas = t.reshape(-1).detach().to("cpu", torch.float64)
        gen = torch.Generator().manual_seed(seed_for_call(self.seed, float(sigmas[0])))
        if slot.is_replace:
            x, kwargs = self.hold_frames_at_level(slot, x, sigmas, family, gen, kwargs, len(flags))
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        if 0 not in flags:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        if c_concat is None:
            raise CILValueError(
                f"TimeNoise Conditioning: the {slot.label} model got no concat conditional image (c_concat); build its "
                "conditioning with the model's image-to-video node (a start image connected)."
            )
        chunk = x.shape[0] // len(flags)
        group = self.group_size(x, chunk, kwargs)
        new = {"c_concat": c_concat.clone()}
        if slot.beta_feedback == "augmentation" and kwargs.get("y") is not None:
            new["y"] = kwargs["y"].clone()
        if slot.beta_feedback == "noise_level" and kwargs.get("noise_level") is not None:
            new["noise_level"] = kwargs["noise_level"].clone()
        tokens = c_crossattn if slot.tokens == "c_crossattn" else kwargs.get(slot.tokens) if slot.tokens else None
        if self.clip_tokens and tokens is not None:
            new["tokens"] = tokens.clone()
        for index, flag in enumerate(flags):
            if flag != 0:
                continue
            for start in range(index * chunk, (index + 1) * chunk, group):
                rows = slice(start, start + group)
                sigma = float(sigmas[min(start, sigmas.numel() - 1)])
                self.perturb(slot, base, new, rows, self.beta(family, sigma, gen), gen)
        c_concat = new.pop("c_concat")
        if "tokens" in new:
            if slot.tokens == "c_crossattn":
                c_crossattn = new.pop("tokens")
            else:
                new[slot.tokens] = new.pop("tokens")
        kwargs.update(new)
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    @staticmethod
    def group_size(x: torch.Tensor, chunk: int, kwargs: dict) -> int:
        """Rows that share one conditional image: a video's frames for frames-as-batch models."""
        if x.dim() == 5:
            return 1
        frames = kwargs.get("num_video_frames")
        frames = int(frames) if frames else chunk
        return frames if frames > 0 and chunk % frames == 0 else chunk

    def perturb(self, slot: ImageSlot, base, new: dict, rows: slice, beta: float, gen: torch.Generator) -> None:
        concat = new["c_concat"]
        image = concat[rows, slot.image]
        noise = self.draw((1, *image.shape[1:]) if slot.frames_as_batch else image.shape, gen).to(image.device, image.dtype)
        if slot.mask_channel is not None:  # only the frames holding the image, never the padding
            m = slot.mask_channel
            noise = noise * concat[rows, m:(m + 1) or None]
        concat[rows, slot.image] = self.noised(image, beta, noise)
        if "y" in new:
            emb = base.encode_adm(augmentation_level=beta)  # [1, 3·256]: fps, motion bucket, augmentation
            width = emb.shape[1] // 3
            new["y"][rows, -width:] = emb[:, -width:].to(new["y"].device, new["y"].dtype)
        if "noise_level" in new:
            new["noise_level"][rows] = beta
        if "tokens" in new:
            tokens = new["tokens"][rows]
            shape = (1, *tokens.shape[1:]) if slot.frames_as_batch else tokens.shape
            new["tokens"][rows] = self.noised(tokens, beta, self.draw(shape, gen).to(tokens.device))

    def hold_frames_at_level(self, slot: ImageSlot, x: torch.Tensor, sigmas: torch.Tensor, family, gen: torch.Generator,
                             kwargs: dict, chunks: int) -> tuple[torch.Tensor, dict]:
        """Replacement models: the fully held elements of every video go to flow level s (one ε and
        one s per video, the same in its cond and uncond rows), their mask entry to s/σ."""
        mask = kwargs.get("denoise_mask")
        if mask is None or x.dim() != 5:
            raise CILValueError(
                f"TimeNoise Conditioning on {slot.label}: this latent has no noise_mask, so no frame holds the start image; "
                "use the model's image-to-video latent node (e.g. Wan22ImageToVideoLatent, LTXVImgToVideo) with a start image."
            )
        mask = mask.to(x.device, x.dtype).expand(x.shape[0], -1, -1, -1, -1)  # ComfyUI reshaped it to the latent
        videos = max(1, x.shape[0] // max(1, chunks))
        draws = []
        for video in range(videos):
            sigma = float(sigmas[min(video, sigmas.numel() - 1)])
            draws.append((flow_level(self.beta(family, sigma, gen)), sigma, self.draw(x.shape[1:], gen).to(x.device, x.dtype)))
        x_new, mask_new = x.clone(), mask.clone()
        for row in range(x.shape[0]):
            level, sigma, eps = draws[row % videos]
            held = mask[row] == 0
            x_new[row] = torch.where(held, (1.0 - level) * x[row] + level * eps, x[row])
            mask_new[row] = torch.where(held, torch.full_like(mask[row], level / max(sigma, 1e-12)), mask[row])
        return x_new, dict(kwargs, denoise_mask=mask_new)


def patch_timenoise(model, beta_m: float, a: float, s: float, mode: str, quantile: float, seed: int, noise_shape: str,
                    noise_clip_tokens: bool):
    """A clone of ``model`` with the TimeNoise wrapper (replacing an earlier one) and a line of text.
    A model class whose image slot cannot take TimeNoise is refused here, before any sampling."""
    import comfy.patcher_extension as pe

    config = TimeNoiseConfig(beta_m=beta_m, a=a, s=s)
    if mode not in BETA_MODES or noise_shape not in NOISE_SHAPES:
        raise CILValueError(f"mode={mode!r}, noise_shape={noise_shape!r}; expected {BETA_MODES} and {NOISE_SHAPES}.")
    slot = slot_for(model)
    if slot.refuse:
        raise CILValueError(f"TimeNoise Conditioning cannot run on {slot.label}: {slot.refuse}. Remove the node for this model.")
    family = detect_family(model)
    out = model.clone()
    out.remove_wrappers_with_key(pe.WrappersMP.APPLY_MODEL, WRAPPER_KEY)
    out.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, WRAPPER_KEY,
                             TimeNoiseWrapper(config, mode, quantile, seed, noise_shape, noise_clip_tokens))
    law = "sampled β_s" if mode == "sampled" else f"β_s = its {quantile:g}-quantile"
    return out, (f"TimeNoise on {slot.describe_timenoise(noise_clip_tokens)}; {family_label(family)}; "
                 f"β_m={beta_m:g}, a={a:g}, s={s:g}, {law}, {noise_shape}.")
