"""Where the conditional image enters each image-to-video model class: one row per ComfyUI class.

Two styles (read from comfy/model_base.py and comfy_extras/nodes_*.py of ComfyUI 0.9.2):

- **concat**: the image latent is concatenated to the noisy input along channels (``c_concat``),
  next to mask channels and padding that are NOT the image. TimeNoise noises the image channels,
  and only on the frames that hold the image.
- **replace**: the image replaces the first latent frame(s) of the sampler state; a ``noise_mask``
  holds them clean and the model reads a per-frame (per-token) timestep mask·t. TimeNoise there is
  stated in the model's own terms: the conditioning frame is put at noise level s and its tokens
  get timestep s (``cil_comfy.timenoise`` derives s from β).

Every consumer — the TimeNoise Conditioning wrapper, the trainer's adapters, Analytic-Init, the
probe — asks ``slot_for(model)``; a class without a row gets an error that names it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cil_core.validation import CILValueError

CONCAT, REPLACE = "concat", "replace"


@dataclass(frozen=True)
class ImageSlot:
    """How one model class takes its conditional image."""

    model_class: str  # the comfy.model_base class name
    label: str  # what users call it
    style: str  # CONCAT or REPLACE
    frames_as_batch: bool = False  # latents [T, C, h, w] (SVD, DynamiCrafter-style UNets)
    image_channels: tuple[int | None, int | None] = (None, None)  # concat: c_concat[:, a:b] is the image latent
    mask_channel: int | None = None  # concat: a c_concat channel that is 1 on the frames holding the image
    tokens: str = ""  # the apply_model kwarg with CLIP image tokens ("" = none apart from the text)
    beta_feedback: str = ""  # "augmentation" (SVD's y) or "noise_level" (the toy): the model is told β
    refuse: str = ""  # why TimeNoise cannot be applied honestly ("" = it can)
    in_network: bool = False  # replace: the network writes the image over frame 0 itself (no noise mask)

    @property
    def image(self) -> slice:
        return slice(*self.image_channels)

    @property
    def is_replace(self) -> bool:
        return self.style == REPLACE

    def describe_timenoise(self, clip_tokens: bool) -> str:
        """Where TimeNoise goes for this class, in one phrase."""
        if self.is_replace:
            return (f"{self.label}: the conditioning latent frame(s) put at noise level s = β/(1+β) with timestep s "
                    "(its own per-frame timestep), generated frames untouched")
        where = f"{self.label}: image channels c_concat[:, {_fmt(self.image_channels)}]"
        if self.mask_channel is not None:
            where += f" on the frames mask channel {self.mask_channel} marks (mask and padding untouched)"
        if self.beta_feedback == "augmentation":
            where += " (+ augmentation level in y set to β_s)"
        if clip_tokens:
            where += f" and CLIP image tokens ({self.tokens})" if self.tokens else " (no separable CLIP image tokens: left clean)"
        return where


def _fmt(channels: tuple[int | None, int | None]) -> str:
    a, b = channels
    return f"{'' if a is None else a}:{'' if b is None else b}"


SLOTS: dict[str, ImageSlot] = {
    slot.model_class: slot
    for slot in (
        ImageSlot("SVD_img2vid", "SVD", CONCAT, frames_as_batch=True, tokens="c_crossattn", beta_feedback="augmentation"),
        ImageSlot("WAN21", "Wan 2.1 / 2.2 A14B I2V", CONCAT, image_channels=(4, None), mask_channel=0, tokens="clip_fea"),
        ImageSlot("HunyuanVideo15", "HunyuanVideo 1.5 I2V", CONCAT, image_channels=(None, -1), mask_channel=-1, tokens="clip_fea"),
        ImageSlot("WAN22", "Wan 2.2 TI2V-5B", REPLACE),
        ImageSlot("LTXV", "LTX-Video", REPLACE),
        ImageSlot("LTXAV", "LTX-2", REPLACE),
        ImageSlot("Kandinsky5", "Kandinsky 5 I2V", REPLACE, in_network=True, refuse=(
            "Kandinsky 5 writes the clean start image over the first frame inside the network (time_dim_replace) and gives "
            "every token one timestep, so a noisy conditioning frame could not be told its noise level; the concat slot "
            "holds zeros and a mask, not the image")),
        ImageSlot("ToyI2VModel", "toy I2V model", CONCAT, beta_feedback="noise_level"),
    )
}


def find_slot(base) -> ImageSlot | None:
    """The row of a comfy BaseModel (or ModelPatcher), or None for a class without one."""
    base = getattr(base, "model", base)
    name = type(base).__name__
    if name == "WAN21" and not getattr(base, "image_to_video", False):
        return None  # WAN21 text-to-video: no image at all
    return SLOTS.get(name)


# the latent frames one start image occupies in a replacement model's latent (causal video VAEs: 1)
START_FRAMES = 1


def slot_for(base) -> ImageSlot:
    """The row of a comfy BaseModel (or ModelPatcher), or an error naming its class."""
    slot = find_slot(base)
    if slot is None:
        name = type(getattr(base, "model", base)).__name__
        known = ", ".join(f"{s.model_class} ({s.label})" for s in SLOTS.values())
        raise CILValueError(
            f"{name} is not an image-to-video model class this pack knows where the image enters; supported: {known}. "
            "A text-to-video model has no conditional image to leak."
        )
    return slot
