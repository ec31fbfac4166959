"""The trainer's adapters for concat-style and replacement-style image slots (see train_adapters)."""

from __future__ import annotations

import torch

from cil_core.validation import CILValueError
from cil_train.adapters import Batch, apply_drop

from .train_adapters import ComfyAdapter

HELD_FRAMES = 1  # latent frames the start image occupies in replacement models (Wan 2.2 TI2V-5B, LTX-Video)


class ConcatAdapter(ComfyAdapter):
    """Concat-conditioned models whose conds come from ``BaseModel.extra_conds``.

    Frames-as-batch UNets (the slot says so): a clip is [T, C, h, w] and is the model's batch, the
    whole image slice is noised (i.i.d. per frame, as the official DynamiCrafter code). Otherwise a
    clip is [C, T, h, w] (model batch [1, C, T, h, w]) and, where the slot has a mask channel, only
    the frames it marks carry the image: TimeNoise noises those, never the padding after them.
    CLIP image tokens other than the text (``clip_fea``) get β·ε too when loss.noise_tokens.
    """

    def __init__(self, patcher, family, family_name, slot, **kw) -> None:
        super().__init__(patcher, family, family_name, slot, **kw)
        self.frames_as_batch = slot.frames_as_batch
        self.token_key = slot.tokens if slot.tokens and slot.tokens != "c_crossattn" else None

    # --- encoding -------------------------------------------------------------------------
    def encode(self, record: dict) -> dict:
        if "encoded" in record:
            return record["encoded"]
        pixels = record["pixels"]
        raw, options = self._frames_as_batch_encode(pixels) if self.frames_as_batch else self._video_encode(pixels)
        return {"latent": raw, "options": options | {"cross_attn": self._text(record.get("caption", ""))[None]}}

    def _frames_as_batch_encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raw = self._vae_encode(pixels)  # [T, C, h, w]
        return raw, {"concat_latent_image": raw[:1].clone()}

    def _video_encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """[C, T', h, w] and the conditioning the model's I2V node would build from frame 0."""
        raw = self._vae_encode(pixels)[0]
        padding = self.slot.padding
        if padding == "gray":  # WanImageToVideo: the start frame, then gray frames, encoded together
            guide = torch.full_like(pixels, 128)
            guide[:1] = pixels[:1]
            concat = self._vae_encode(guide)
        elif padding == "zeros":  # HunyuanVideo15ImageToVideo: the encoded start image, then zeros
            concat = torch.zeros_like(raw[None])
            start = self._vae_encode(pixels[:1])
            concat[:, :, :start.shape[2]] = start
        else:  # the start frame's latent on every frame (the toy's conditioning node)
            return raw, {"concat_latent_image": raw[None, :, :1].expand(-1, -1, raw.shape[1], -1, -1).clone()}
        mask = torch.ones(1, 1, raw.shape[1], raw.shape[2], raw.shape[3])
        mask[:, :, :1] = 0.0
        return raw, {"concat_latent_image": concat, "concat_mask": mask}

    # --- batches --------------------------------------------------------------------------
    def _noise_like(self, latent: torch.Tensor) -> torch.Tensor:
        return latent if self.frames_as_batch else latent[None]

    def image_frames(self, concat: torch.Tensor) -> torch.Tensor | slice:
        """The frames of ``c_concat`` holding the image: those the mask channel marks (5-D), or all."""
        m = self.slot.mask_channel
        if self.frames_as_batch or m is None:
            return slice(None)
        marked = concat[0, m].flatten(1).amax(dim=1) > 0.5
        if not bool(marked.any()):
            raise CILValueError(f"the {self.slot.label} conditioning marks no frame as the start image (its mask channel is 0 "
                                "everywhere): build it with the model's image-to-video node and a start image.")
        return marked.nonzero().flatten()

    def collate(self, encoded: list[dict]) -> Batch:
        x0s, images, concats, extras, tokens, frames = [], [], [], [], [], []
        for e in encoded:
            x0 = self.model_space_clip(e["latent"].float())
            conds = self.model_conds(self._noise_like(x0).to(self.device), e["options"])
            concat = conds.pop("c_concat", None)
            if concat is None:
                raise CILValueError(f"{type(self.bm).__name__} produced no c_concat from the conditioning; TimeNoise needs its image.")
            where = self.image_frames(concat)
            images.append(concat[:, self.slot.image][:, :, where] if not self.frames_as_batch else concat[:, self.slot.image])
            tokens.append(conds.pop(self.token_key, None) if self.token_key else None)
            concats.append(concat)
            extras.append(conds)
            frames.append(where)
            x0s.append(x0)
        cond = {"image": torch.stack(images), "concat": concats, "extra": extras, "frames": frames}
        if tokens and all(t is not None for t in tokens):
            cond["tokens"] = torch.stack(tokens)  # [B, 1, L, D]: the clip's image tokens
        return Batch(torch.stack(x0s).to(self.device), cond)

    def model_space_clip(self, raw: torch.Tensor) -> torch.Tensor:
        return self.model_space(raw) if self.frames_as_batch else self.model_space(raw[None])[0]

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        image = cond["image"]  # the concat is never dropped (official DynamiCrafter); only image tokens are
        tokens = cond.get("tokens")
        beta = cond.get("noise_level")
        outs = []
        for i in range(x.shape[0]):
            concat = cond["concat"][i].clone()
            if self.frames_as_batch:
                concat[:, self.slot.image] = image[i]
            else:
                sliced = concat[:, self.slot.image]
                sliced[:, :, cond["frames"][i]] = image[i]
                concat[:, self.slot.image] = sliced
            xi = self._noise_like(x[i])
            kwargs = dict(cond["extra"][i])
            if tokens is not None:
                kwargs[self.token_key] = apply_drop(cond, tokens)[i]
            if self.slot.beta_feedback == "noise_level" and beta is not None:
                kwargs["noise_level"] = torch.full((xi.shape[0],), float(beta[i]), device=xi.device)
            out = self.bm.apply_model(xi, sigma[i].expand(xi.shape[0]), c_concat=concat, transformer_options={}, **kwargs)
            outs.append(out if self.frames_as_batch else out[0])
        return torch.stack(outs)


class ReplaceAdapter(ComfyAdapter):
    """Replacement models: the first latent frame is the start image, held at TimeNoise's flow
    level s = β/(1 + β) with timestep s (``denoise_mask`` = s/σ there), predictions there replaced
    by the clean frame so the loss covers the generated frames only (train_adapters docstring)."""

    def encode(self, record: dict) -> dict:
        if "encoded" in record:
            return record["encoded"]
        raw = self._vae_encode(record["pixels"])[0]
        return {"latent": raw, "options": {"cross_attn": self._text(record.get("caption", ""))[None]}}

    def collate(self, encoded: list[dict]) -> Batch:
        x0s, extras = [], []
        for e in encoded:
            x0 = self.model_space(e["latent"].float()[None])[0]
            if x0.dim() != 4 or x0.shape[1] <= HELD_FRAMES:
                raise CILValueError(f"{self.slot.label} training clips are [C, T, h, w] with T > {HELD_FRAMES} latent frames; "
                                    f"got {tuple(x0.shape)}: use more frames.")
            extras.append(self.model_conds(x0[None].to(self.device), e["options"]))
            x0s.append(x0)
        x0 = torch.stack(x0s).to(self.device)
        held = x0[:, :, :HELD_FRAMES].clone()
        return Batch(x0, {"image": held, "clean": held.clone(), "extra": extras})

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        k = HELD_FRAMES
        beta = cond.get("noise_level")
        outs = []
        for i in range(x.shape[0]):
            b = float(beta[i]) if beta is not None else 0.0
            xi = x[i:i + 1].clone()
            xi[:, :, :k] = cond["image"][i:i + 1] / (1.0 + b)  # (1 − s)·(y0 + β·ε): flow level s = β/(1 + β)
            mask = torch.ones_like(xi)
            mask[:, :, :k] = (b / (1.0 + b)) / max(float(sigma[i]), 1e-12)  # ComfyUI's process_timestep: mask·t
            out = self.bm.apply_model(xi, sigma[i:i + 1], transformer_options={}, denoise_mask=mask, **cond["extra"][i])
            out = out.clone()
            out[:, :, :k] = cond["clean"][i:i + 1]  # as KSamplerX0Inpaint: the held frame is the clean latent
            outs.append(out[0])
        return torch.stack(outs)
