"""What the pack needs to know about a ComfyUI MODEL and LATENT, read from ComfyUI's own objects.

- ``detect_family(model)``: the cil_core ``DiffusionFamily`` of a ModelPatcher, from
  ``model.get_model_object("model_sampling")`` (object patches such as ModelSamplingDiscrete /
  ModelSamplingSD3 are honoured). Supported: EPS/V_PREDICTION × ModelSamplingDiscrete (VP,
  matched against the model's own sigma table), EPS/V_PREDICTION × ModelSamplingContinuousEDM
  (EDM), CONST × ModelSamplingDiscreteFlow / ModelSamplingFlux (rectified flow). Anything else
  raises ``UnsupportedFamily`` naming what the model uses.
- Spaces: a LATENT between nodes is in the VAE's raw space; stats and sampler states are in the
  model's space (``latent_format.process_in``). ``sampler_latent_in`` mirrors the sampler's rule
  that an all-zero latent is NOT shifted (comfy/samplers.py, CFGGuider.inner_sample).
"""

from __future__ import annotations

import torch

from cil_core.families import EDM, DiffusionFamily, RectifiedFlow, VPDiscrete
from cil_core.validation import CILValueError


class UnsupportedFamily(CILValueError):
    """The MODEL's sampling is not one the CIL nodes can handle."""


SUPPORTED = (
    "the CIL nodes handle VP discrete (ModelSamplingDiscrete with eps or v-prediction, e.g. DynamiCrafter), "
    "EDM (ModelSamplingContinuousEDM, e.g. SVD) and rectified flow (ModelSamplingDiscreteFlow / ModelSamplingFlux, "
    "e.g. Wan, LTX-Video)"
)


def _sampling_module():
    import comfy.model_sampling as cms

    return cms


def describe_model_sampling(ms) -> str:
    """'V_PREDICTION + ModelSamplingDiscrete'-style name of a model_sampling object's classes."""
    bases = [b.__name__ for b in type(ms).__mro__[1:] if b not in (object, torch.nn.Module)]
    bases = [b for b in bases if not b.startswith("_")]
    return " + ".join(dict.fromkeys(bases)) or type(ms).__name__


def _same_method(ms, name: str, owner) -> bool:
    return getattr(type(ms), name, None) is getattr(owner, name, None)


def prediction_of(ms) -> str:
    """'eps', 'v' or 'flow' from the parameterisation methods the object really uses."""
    cms = _sampling_module()
    if _same_method(ms, "noise_scaling", cms.CONST) and _same_method(ms, "calculate_denoised", cms.CONST):
        return "flow"
    if _same_method(ms, "noise_scaling", cms.EPS) and _same_method(ms, "calculate_input", cms.EPS):
        if _same_method(ms, "calculate_denoised", cms.V_PREDICTION):
            return "v"
        if _same_method(ms, "calculate_denoised", cms.EPS):
            return "eps"
    raise UnsupportedFamily(
        f"this MODEL samples with {describe_model_sampling(ms)}: its parameterisation is not eps, "
        f"v-prediction or flow (CONST); {SUPPORTED}."
    )


def _vp_from_table(ms, prediction: str) -> VPDiscrete:
    """The cil_core VPDiscrete whose sigma table equals the model's own (float32) table."""
    table = ms.sigmas.detach().to("cpu", torch.float64)
    start = getattr(ms, "linear_start", 0.00085)
    end = getattr(ms, "linear_end", 0.012)
    steps = int(getattr(ms, "num_timesteps", table.numel()))
    zsnr_first = bool(getattr(ms, "zsnr", False))
    for schedule in ("scaled_linear", "linear"):
        for zsnr in (zsnr_first, not zsnr_first):
            try:
                family = VPDiscrete(start, end, steps, schedule, zsnr, prediction)
            except CILValueError:
                continue
            ours = family.sigmas
            if ours.shape == table.shape and torch.allclose(ours, table, rtol=2e-5, atol=0.0):
                return family
    raise UnsupportedFamily(
        f"this MODEL samples with {describe_model_sampling(ms)}, but its {table.numel()}-entry sigma table "
        f"(sigma_min {float(table[0]):.6g}, sigma_max {float(table[-1]):.6g}) is not a linear or "
        f"scaled-linear beta schedule from {start} to {end}, with or without zero terminal SNR. "
        "Distilled (LCM) or custom discrete schedules are not supported."
    )


def family_from_model_sampling(ms) -> DiffusionFamily:
    cms = _sampling_module()
    prediction = prediction_of(ms)
    if prediction == "flow":
        if isinstance(ms, cms.ModelSamplingDiscreteFlow):
            return RectifiedFlow(shift=float(ms.shift), shift_kind="linear")
        if isinstance(ms, cms.ModelSamplingFlux):
            return RectifiedFlow(shift=float(ms.shift), shift_kind="exponential")
    elif isinstance(ms, cms.ModelSamplingContinuousEDM):
        return EDM(sigma_lo=float(ms.sigma_min), sigma_hi=float(ms.sigma_max), prediction=prediction)
    elif isinstance(ms, cms.ModelSamplingDiscrete):
        return _vp_from_table(ms, prediction)
    raise UnsupportedFamily(f"this MODEL samples with {describe_model_sampling(ms)}; {SUPPORTED}.")


def detect_family(model) -> DiffusionFamily:
    """The diffusion family of a ComfyUI MODEL (ModelPatcher), honouring object patches."""
    return family_from_model_sampling(model.get_model_object("model_sampling"))


def family_label(family: DiffusionFamily) -> str:
    if isinstance(family, VPDiscrete):
        zsnr = ", zero terminal SNR" if family.zero_terminal_snr else ""
        return f"VP discrete ({family.prediction}-prediction{zsnr})"
    if isinstance(family, EDM):
        return f"EDM ({family.prediction}-prediction, sigma {family.sigma_min:g}..{family.sigma_max:g})"
    if isinstance(family, RectifiedFlow):
        return f"rectified flow (shift {family.shift:g}, {family.shift_kind})"
    return type(family).__name__


# --- latents --------------------------------------------------------------------------------------

def fix_empty_latent(model, samples: torch.Tensor) -> torch.Tensor:
    """ComfyUI's own fix-up of empty latents (channel count, 5-D for video models)."""
    import comfy.sample

    return comfy.sample.fix_empty_latent_channels(model, samples)


def sampler_latent_in(model, samples: torch.Tensor) -> torch.Tensor:
    """The latent the sampler works with: process_in, except for an all-zero latent (kept at 0)."""
    if torch.count_nonzero(samples) > 0:
        return model.get_model_object("latent_format").process_in(samples)
    return samples


def latent_format_name(model) -> str:
    return type(model.get_model_object("latent_format")).__name__
