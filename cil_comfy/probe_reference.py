"""The Leakage Probe's reference video, and which of its frames the model's own sampler holds.

Concat models (SVD, Wan 2.1/2.2 A14B, HunyuanVideo 1.5, the toy) take the start image through
the conditioning: every latent frame of the reference is corrupted and measured.

Replacement models (image_slots style "replace") hold the start image IN the latent. The probe
does what their sampler does:

- Wan 2.2 TI2V-5B, LTX-Video: a noise mask (0 on the held frame) goes to ``guider.sample``: the
  model reads the per-frame / per-token timestep mask·t, and the held frame is put back clean
  before every call (ComfyUI's KSamplerX0Inpaint). The mask is the ``noise_mask`` the reference
  LATENT carries (e.g. LTXVImgToVideoInplace run on the encoded video: its strength), else 0 on
  latent frame 0 (one start image, strength 1, as Wan22ImageToVideoLatent and LTXVImgToVideo do).
- Kandinsky 5 writes the clean image over frame 0 inside the network (time_dim_replace): no mask.

The leading held frames are left out of the motion (frames k.. are measured; report meta says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cil_core.layouts import latent_layout
from cil_core.validation import CILValueError

from .image_slots import START_FRAMES, find_slot


@dataclass
class Reference:
    """The reference as a raw (VAE-space) latent, and how the model's sampler holds its start."""

    latent: torch.Tensor
    source: str
    layout: str
    hold_mask: torch.Tensor | None = None  # noise mask for guider.sample (replacement models)
    skip_frames: int = 0  # leading latent frames that hold the start image: not measured
    note: str = ""

    @property
    def frames(self) -> int:
        return self.latent.shape[0] if self.layout == "TCHW" else self.latent.shape[2]


def reference_latent(video_latent, video_frames, vae) -> tuple[torch.Tensor, str]:
    """The reference as a raw (VAE-space) latent and where it came from."""
    if video_latent is not None and video_frames is not None:
        raise CILValueError("connect the reference video once: either video_latent, or video_frames + vae, not both.")
    if video_latent is not None:
        return video_latent["samples"], "latent"
    if video_frames is None:
        raise CILValueError("no reference video: connect video_latent, or video_frames together with a vae.")
    if vae is None:
        raise CILValueError("video_frames needs a vae to encode them; connect the model's VAE (or a video_latent instead).")
    if video_frames.shape[0] < 2:
        raise CILValueError(f"video_frames holds {video_frames.shape[0]} frame(s); the probe needs a video of at least 2 frames.")
    return vae.encode(video_frames[..., :3]), "frames+vae"


def _time_dim_replace_frames(positive) -> int:
    for _, options in positive:
        image = options.get("time_dim_replace")
        if isinstance(image, torch.Tensor) and image.dim() == 5:
            return int(image.shape[2])
    return START_FRAMES


def reference_for(model, positive, negative, *, video_latent=None, video_frames=None, vae=None) -> Reference:
    """The checked reference, with the hold mask and skipped frames of the model's image slot."""
    latent, source = reference_latent(video_latent, video_frames, vae)
    ref = Reference(latent, source, latent_layout(latent))
    user_mask = video_latent.get("noise_mask") if video_latent is not None else None
    slot = find_slot(model)
    masked = slot is not None and slot.is_replace and not slot.in_network
    if user_mask is not None and not masked:
        where = "inside the network" if slot is not None and slot.in_network else "through the conditioning (concat)"
        raise CILValueError(
            f"video_latent carries a noise_mask, but this model takes its start image {where}, not through a noise mask: "
            "connect the clean reference video (VAE Encode) without a mask."
        )
    if slot is not None and slot.in_network:
        ref.skip_frames = _time_dim_replace_frames(positive)
        ref.note = f"{slot.label} writes the clean start image over latent frame(s) 0..{ref.skip_frames - 1} inside the network"
    elif masked:
        mask = user_mask
        if mask is None:
            mask = torch.ones(1, 1, ref.frames, 1, 1)
            mask[:, :, :START_FRAMES] = 0.0
        ref.hold_mask = mask[:1].float()
        per_frame = _per_frame_min(ref.hold_mask, ref.frames)
        ref.skip_frames = next((i for i, v in enumerate(per_frame) if v >= 1.0), len(per_frame))
        strength = ", ".join(f"{1.0 - v:g}" for v in per_frame[: ref.skip_frames])
        origin = "the latent's noise_mask" if user_mask is not None else "one start image, strength 1"
        ref.note = (f"{slot.label} holds latent frame(s) 0..{ref.skip_frames - 1} with its noise mask ({origin}; "
                    f"strength {strength}), as its sampler does")
    check_reference(ref, model, positive, negative)
    return ref


def _per_frame_min(mask: torch.Tensor, frames: int) -> list[float]:
    """The smallest mask value on each latent frame (a [B, C|1, F, h|1, w|1] noise mask)."""
    if mask.dim() != 5 or mask.shape[2] != frames:
        raise CILValueError(f"the noise_mask {tuple(mask.shape)} does not match the reference's {frames} latent frames; "
                            "build it on the encoded reference video (e.g. LTXVImgToVideoInplace on VAE Encode's output).")
    return [float(mask[:, :, f].min()) for f in range(frames)]


def check_reference(ref: Reference, model, positive, negative) -> None:
    """Frames ≥ 2 (+ held ones), the model's channel count, and the conditioning's concat image size."""
    latent, layout, frames = ref.latent, ref.layout, ref.frames
    if frames < ref.skip_frames + 2:
        held = f" after the {ref.skip_frames} held start frame(s)" if ref.skip_frames else ""
        raise CILValueError(
            f"the reference video has {frames} latent frame(s) (latent {tuple(latent.shape)}); the probe needs at least 2{held} "
            "(video VAEs such as Wan's compress time 4x: give at least 5 frames, more for replacement models)."
        )
    channels = getattr(model.get_model_object("latent_format"), "latent_channels", latent.shape[1])
    if latent.shape[1] != channels:
        raise CILValueError(f"the reference latent has {latent.shape[1]} channels but this model's latents have {channels}: encode the video with this model's VAE.")
    for name, cond in (("positive", positive), ("negative", negative)):
        for _, options in cond:
            image = options.get("concat_latent_image")
            if isinstance(image, torch.Tensor) and tuple(image.shape[-2:]) != tuple(latent.shape[-2:]):
                h, w = latent.shape[-2:]
                ch, cw = image.shape[-2:]
                raise CILValueError(
                    f"frame size mismatch: the reference video's latent is {h}x{w} (h x w) but the {name} conditioning's "
                    f"image latent is {ch}x{cw}; give the conditioning node the video's width/height, or resize the video to match."
                )
            if layout == "BCTHW" and isinstance(image, torch.Tensor) and image.dim() == 5 and image.shape[2] != frames:
                raise CILValueError(
                    f"frame count mismatch: the reference video has {frames} latent frames but the {name} conditioning "
                    f"was built for {image.shape[2]}; give the conditioning node the video's length."
                )


def pixel_frames(vae, latent_frames: int) -> int:
    """Decoded frames that ``latent_frames`` leading latent frames become (causal video VAEs: 1 → 1)."""
    if latent_frames <= 0:
        return 0
    ratio = getattr(vae, "upscale_ratio", None)
    if isinstance(ratio, tuple) and callable(ratio[0]):
        return int(ratio[0](latent_frames))
    return latent_frames
