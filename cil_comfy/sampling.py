"""Late start + Analytic-Init inside ComfyUI's own samplers (no part of a sampler is re-typed).

ComfyUI forms the first sampler state as ``x = noise_scaling(σ0, noise, latent_in, max_denoise)``
(comfy/samplers.py, KSAMPLER.sample), an affine map of ``noise``. The Analytic-Init state x_M is
cil_core's draw (``sample_initial_latent``) with the standard normal ε that KSampler draws for
the seed (``comfy.sample.prepare_noise``), and reaches the sampler either

- as a NOISE object (``AnalyticInitNoise``): ``cil_core.noise_for_state`` with the offset and gain
  read from the model's own ``noise_scaling`` for the latent the sampler will see (the max-denoise
  case σ_M ≥ σ_max included); or
- as a LATENT for a sampler that adds no noise (``state_to_latent``): ``process_out(x_M/gain)``.

Sampling itself is ComfyUI's SamplerCustomAdvanced (``sample_custom_advanced``): preview, denoised
output and every later change of that node come with it. With zero stats (E = 0, v = 0) the start
equals ComfyUI's own late start from an empty latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cil_core.analytic_init import NAIVE_MODES, AnalyticStats, noise_for_state, sample_initial_latent
from cil_core.families import DiffusionFamily
from cil_core.layouts import from_cfhw, latent_layout, video_shape
from cil_core.schedules import StartTime, denoise_rule_length, late_start_sigmas
from cil_core.stats_io import FIT_POLICIES, fit_stats_to_latent
from cil_core.validation import CILValueError, check_fraction

from .models import detect_family, family_label, fix_empty_latent, latent_format_name, sampler_latent_in

NATIVE_SCHEDULER = "cil_late_start"


def scheduler_names() -> list[str]:
    import comfy.samplers

    return [NATIVE_SCHEDULER, *comfy.samplers.SCHEDULER_NAMES]


def sampler_names() -> list[str]:
    import comfy.samplers

    return list(comfy.samplers.SAMPLER_NAMES)


def late_start_schedule(model, family: DiffusionFamily, steps: int, m: float, scheduler: str) -> torch.Tensor:
    """float32 SIGMAS from the start at M to 0.

    ``cil_late_start``: the paper's spacing for the family (cil_core.late_start_sigmas: Karras for
    EDM, DDIM uniform_trailing for VP, shifted-linear for flow). Any ComfyUI scheduler: ComfyUI's
    own ``denoise = M`` rule (cil_core.denoise_rule_length), the last ``steps`` + 1 sigmas kept.
    """
    check_fraction("M", m)
    if scheduler == NATIVE_SCHEDULER:
        return late_start_sigmas(family, int(steps), StartTime(fraction=m)).to(torch.float32)
    import comfy.samplers

    if scheduler not in comfy.samplers.SCHEDULER_NAMES:
        raise CILValueError(f"scheduler={scheduler!r}; expected {NATIVE_SCHEDULER!r} or one of {comfy.samplers.SCHEDULER_NAMES}.")
    ms = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, scheduler, denoise_rule_length(steps, m)).cpu().to(torch.float32)
    return sigmas[-(int(steps) + 1):]


def native_start_sigma(family: DiffusionFamily, m: float) -> float:
    """σ_M: the first sigma of the ``cil_late_start`` schedule for this M (any step count)."""
    return float(late_start_sigmas(family, 1, StartTime(fraction=check_fraction("M", m))).to(torch.float32)[0])


def max_denoise(model, sigma: float) -> bool:
    """ComfyUI's Sampler.max_denoise rule: σ0 at (rel. 1e-5) or above the model's sigma_max."""
    sigma_max = float(model.get_model_object("model_sampling").sigma_max)
    return math.isclose(sigma_max, sigma, rel_tol=1e-05) or sigma > sigma_max


def fit_or_explain(stats: AnalyticStats, shape, policy: str, what: str) -> AnalyticStats:
    """cil_core.fit_stats_to_latent with a message that names the node option to change."""
    try:
        return fit_stats_to_latent(stats, tuple(shape), policy=policy)
    except CILValueError as exc:
        hint = ""
        if policy == "strict" and stats.shape[0] == shape[0]:
            hint = " Set fit to 'resample' to resample E[x0] to this size (cil_core's documented rule)."
        raise CILValueError(f"Analytic-Init stats do not fit {what}: {exc}{hint}") from None


@dataclass
class InitSpec:
    """Everything that fixes the initial distribution at σ_M, except the latent's shape."""

    family: DiffusionFamily
    sigma: float
    stats: AnalyticStats | None = None
    naive_mode: str = "empty_latent"
    fit: str = "strict"
    stats_name: str = ""

    def __post_init__(self) -> None:
        if self.naive_mode not in NAIVE_MODES:
            raise CILValueError(f"naive_mode={self.naive_mode!r}; expected one of {NAIVE_MODES}.")
        if self.fit not in FIT_POLICIES:
            raise CILValueError(f"fit={self.fit!r}; expected one of {FIT_POLICIES}.")

    @classmethod
    def for_model(cls, model, sigma: float, stats, naive_mode: str, fit: str, family: DiffusionFamily | None = None) -> "InitSpec":
        name = (stats.meta.get("file") or stats.meta.get("name") or "") if stats is not None else ""
        return cls(family or detect_family(model), sigma, stats, naive_mode, fit, name)

    @property
    def skip_frames(self) -> int:
        """Leading latent frames the stats were NOT estimated on (the start image of replacement
        models, e.g. Wan 2.2 TI2V-5B): sampling does not generate them, so E[x0] starts after them."""
        return int(self.stats.meta.get("skip_frames", "0")) if self.stats is not None else 0

    def fitted_stats(self, samples: torch.Tensor) -> AnalyticStats | None:
        """The stats fitted to the generated frames of this latent, E[x0] padded with zeros over the
        skipped leading frames (whose initial state is ComfyUI's own, see ``generated_elements``)."""
        if self.stats is None:
            return None
        c, f, h, w = video_shape(samples)
        k = self.skip_frames
        if not 0 <= k < f:
            raise CILValueError(f"the stats skip {k} leading latent frame(s) but this latent has {f}; estimate stats for this frame count.")
        fitted = fit_or_explain(self.stats, (c, f - k, h, w), self.fit, "the generated frames of this latent" if k else "this latent")
        if k:
            fitted = AnalyticStats(torch.cat([fitted.mean.new_zeros(c, k, h, w), fitted.mean], dim=1), fitted.tr_cov_d,
                                   fitted.channel_var, fitted.count, fitted.meta)
        return fitted

    def describe(self, samples: torch.Tensor | None = None) -> str:
        head = f"late start at sigma_M={self.sigma:.6g} on {family_label(self.family)}"
        if self.stats is None:
            law = "N(0, sigma_M^2) (ComfyUI's empty latent)" if self.naive_mode == "empty_latent" else "N(0, I) in the paper's space"
            return f"{head}; NO stats: naive late start, mode '{self.naive_mode}' = {law}."
        c, f, h, w = self.stats.shape
        name = f" '{self.stats_name}'" if self.stats_name else ""
        text = f"{head}; Analytic-Init from stats{name} [C,F,H,W]=[{c},{f},{h},{w}], tr Cov/d={self.stats.tr_cov_d:.6g}"
        if samples is not None and tuple(video_shape(samples)) != self.stats.shape:
            text += f", resampled to {list(video_shape(samples))} ({self.fit})"
        return text + "."


def ksampler_noise(samples: torch.Tensor, seed: int, batch_index=None) -> torch.Tensor:
    """The standard normal ε KSampler draws for this latent and seed."""
    import comfy.sample

    return comfy.sample.prepare_noise(samples, seed, batch_index)


def generated_elements(samples: torch.Tensor, noise_mask: torch.Tensor | None, skip_frames: int) -> torch.Tensor | None:
    """Where sampling generates the latent (bool, the latent's shape; None = everywhere): not where a
    noise_mask below 1 keeps the user's latent (fully or partly), not in the leading frames the stats skip."""
    if noise_mask is None and not skip_frames:
        return None
    generated = torch.ones(samples.shape, dtype=torch.bool)
    if noise_mask is not None:
        import comfy.sampler_helpers

        generated &= comfy.sampler_helpers.prepare_mask(noise_mask, samples.shape, "cpu") >= 1.0
    if skip_frames:
        frames = generated[:skip_frames] if latent_layout(samples) == "TCHW" else generated[:, :, :skip_frames]
        frames.fill_(False)
    return generated


def draw_state(spec: InitSpec, samples: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """x_M in model space, float32, the latent's shape: cil_core's Analytic-Init draw with ``eps``."""
    layout = latent_layout(samples)
    eps_videos = eps.permute(1, 0, 2, 3).unsqueeze(0) if layout == "TCHW" else eps  # [N, C, F, H, W]
    x_m = sample_initial_latent(spec.family, spec.sigma, spec.fitted_stats(samples), shape=video_shape(samples),
                                naive_mode=spec.naive_mode, noise=eps_videos, dtype=torch.float32)
    return from_cfhw(x_m, layout)


def _noise_scaling(model, sigma: float, noise: torch.Tensor, latent: torch.Tensor, sigma0_is_max: bool) -> torch.Tensor:
    ms = model.get_model_object("model_sampling")
    return ms.noise_scaling(torch.tensor(sigma, dtype=torch.float32), noise, latent, sigma0_is_max)


def state_to_noise(model, sigma: float, x_m: torch.Tensor, latent_in: torch.Tensor) -> torch.Tensor:
    """The NOISE that makes ComfyUI's first state equal x_M (its noise_scaling inverted)."""
    md = max_denoise(model, sigma)
    offset = _noise_scaling(model, sigma, torch.zeros_like(x_m), latent_in.to(x_m.dtype), md)
    gain = float(_noise_scaling(model, sigma, torch.ones(()), torch.zeros(()), md))
    return noise_for_state(x_m, offset, gain)


def state_to_latent(model, sigma: float, x_m: torch.Tensor) -> torch.Tensor:
    """Raw-space LATENT that a no-noise sampler starting at σ_M turns into x_M."""
    gain = float(_noise_scaling(model, sigma, torch.zeros(()), torch.ones(()), max_denoise(model, sigma)))
    if abs(gain) < 1e-6:
        raise CILValueError(
            f"at sigma_M={sigma:g} this model keeps no trace of the latent (flow models at M = 1), so the "
            "state cannot be passed as a LATENT; use CIL_LateStartSigmas' NOISE output or M < 1."
        )
    return model.get_model_object("latent_format").process_out(x_m / gain)


class AnalyticInitNoise:
    """A ComfyUI NOISE (``seed`` + ``generate_noise(latent)``) that starts the sampler at x_M."""

    def __init__(self, seed: int, model, spec: InitSpec) -> None:
        self.seed = int(seed)
        self.model = model
        self.spec = spec

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        if getattr(samples, "is_nested", False):
            raise CILValueError("nested (multi-shape) latents are not supported by the Analytic-Init NOISE.")
        samples = samples.to(torch.float32)
        eps = ksampler_noise(samples, self.seed, input_latent.get("batch_index"))
        latent_in = sampler_latent_in(self.model, samples)
        noise = state_to_noise(self.model, self.spec.sigma, draw_state(self.spec, samples, eps), latent_in)
        generated = generated_elements(samples, input_latent.get("noise_mask"), self.spec.skip_frames)
        if generated is not None:  # elsewhere ComfyUI's own start from the user's latent
            noise = torch.where(generated, noise, eps.to(noise.dtype))
        return noise.to(dtype=input_latent["samples"].dtype, device="cpu")


def check_stats_space(model, stats: AnalyticStats | None) -> str:
    """A warning (or "") when the stats were estimated for another latent format."""
    if stats is None:
        return ""
    theirs = stats.meta.get("latent_format", "")
    ours = latent_format_name(model)
    if theirs and theirs != ours:
        return f" WARNING: stats were estimated with latent format {theirs}, this model uses {ours}."
    return ""


def max_denoise_note(model, sigma: float) -> str:
    if max_denoise(model, sigma):
        return " sigma_M is the model's sigma_max: ComfyUI scales noise by sqrt(1+sigma^2) there (max_denoise); accounted for."
    return ""


# --- the three node engines --------------------------------------------------------------------------

def sample_custom_advanced(noise, guider, sampler, sigmas: torch.Tensor, latent: dict) -> tuple[dict, dict]:
    """ComfyUI's own SamplerCustomAdvanced (V1 instance method up to 0.3.x, V3 classmethod after):
    (output LATENT, denoised LATENT)."""
    from comfy_extras.nodes_custom_sampler import SamplerCustomAdvanced

    result = SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, latent)
    return result[0], result[1]


@dataclass
class LateStartPlan:
    """A late start resolved for one model: the schedule, the initial law and a line of text."""

    sigmas: torch.Tensor
    spec: InitSpec
    info: str

    @classmethod
    def make(cls, model, steps: int, m: float, scheduler: str, naive_mode: str, fit: str, stats=None,
             samples: torch.Tensor | None = None) -> "LateStartPlan":
        family = detect_family(model)
        sigmas = late_start_schedule(model, family, steps, m, scheduler)
        spec = InitSpec.for_model(model, float(sigmas[0]), stats, naive_mode, fit, family)
        info = f"M={m:g}, {len(sigmas) - 1} steps ({scheduler}): " + spec.describe(samples)
        info += max_denoise_note(model, spec.sigma) + check_stats_space(model, stats)
        return cls(sigmas, spec, info)


def expert_segments(model_high, model_low, sigmas: torch.Tensor, boundary: float) -> tuple[list, str]:
    """Wan 2.2 A14B's two experts: the high-noise model takes the steps that start at σ ≥ boundary,
    the low-noise model the rest; [(model, SIGMAS)] without empty segments, and a line of text."""
    if not 0.0 < boundary < 1.0:
        raise CILValueError(f"boundary={boundary!r}; expected a sigma in (0, 1) (0.900 for Wan 2.2 I2V, 0.875 for T2V).")
    high, low = latent_format_name(model_high), latent_format_name(model_low)
    if high != low:
        raise CILValueError(f"model_low_noise has latent format {low} but model has {high}; connect the two experts of one "
                            "pair (Wan 2.2 A14B: high-noise to model, low-noise to model_low_noise).")
    k = int((sigmas[:-1] >= boundary).sum())  # steps of the high-noise expert
    n = len(sigmas) - 1
    segments = [(m, s) for m, s in ((model_high, sigmas[: k + 1]), (model_low, sigmas[k:])) if len(s) > 1]
    text = f" Two experts, boundary sigma {boundary:g}: high-noise model for {k} step(s), low-noise model for {n - k}."
    if k == 0:
        text += (f" WARNING: sigma_M={float(sigmas[0]):.4g} is below the boundary: the start skips the high-noise "
                 "expert (layout and motion) entirely; raise M to run it.")
    if k == n:
        text += " WARNING: every step starts above the boundary: the low-noise expert never runs."
    if family_label(detect_family(model_low)) != family_label(detect_family(model_high)):
        text += " WARNING: the two models sample differently (shift); the schedule is the high-noise model's."
    return segments, text


def restore_held(latent_in: dict, latent_out: dict, sigmas: torch.Tensor) -> dict:
    """Where the noise mask holds the user's latent fully (mask 0), the output is the user's latent
    exactly: ComfyUI's sampler ends there only up to rounding (x − (x − y), process_out(process_in))."""
    mask = latent_in.get("noise_mask")
    if mask is None or float(sigmas[-1]) != 0.0:
        return latent_out
    import comfy.sampler_helpers

    out, user = latent_out["samples"], latent_in["samples"]
    if getattr(out, "is_nested", False) or out.shape != user.shape:
        return latent_out
    held = comfy.sampler_helpers.prepare_mask(mask, out.shape, "cpu").to(out.device) == 0
    restored = latent_out.copy()
    restored["samples"] = torch.where(held, user.to(out.device, out.dtype), out)
    return restored


def late_start_sample(model, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str, positive, negative,
                      latent_image: dict, m: float, naive_mode: str, fit: str, stats=None, model_low=None,
                      boundary: float = 0.9) -> tuple[dict, str]:
    """The Late Start Sampler: ComfyUI's CFGGuider + sampler + SamplerCustomAdvanced, started at
    σ_M from the Analytic-Init NOISE. With ``model_low`` (Wan 2.2 A14B) one SamplerCustomAdvanced
    per expert, as the template's pair of KSamplerAdvanced: the first with our NOISE and leftover
    noise, the next with zero noise (same seed) on the previous output."""
    import comfy.samplers
    from comfy_extras.nodes_custom_sampler import Noise_EmptyNoise

    samples = fix_empty_latent(model, latent_image["samples"])
    plan = LateStartPlan.make(model, steps, m, scheduler, naive_mode, fit, stats, samples)
    segments, info = [(model, plan.sigmas)], plan.info
    if model_low is not None:
        segments, text = expert_segments(model, model_low, plan.sigmas, boundary)
        info += text
    sampler, latent = comfy.samplers.sampler_object(sampler_name), latent_image
    for index, (expert, sigmas) in enumerate(segments):
        if index == 0:
            noise = AnalyticInitNoise(seed, expert, plan.spec)
        else:
            noise = Noise_EmptyNoise()
            noise.seed = int(seed)
        guider = comfy.samplers.CFGGuider(expert)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        latent, _ = sample_custom_advanced(noise, guider, sampler, sigmas, latent)
    return restore_held(latent_image, latent, plan.sigmas), info


def late_start_sigmas_and_noise(model, steps: int, m: float, scheduler: str, seed: int, naive_mode: str, fit: str,
                                stats=None) -> tuple[torch.Tensor, AnalyticInitNoise, str]:
    """Late Start Sigmas: SIGMAS from σ_M and the NOISE that starts SamplerCustomAdvanced at x_M."""
    plan = LateStartPlan.make(model, steps, m, scheduler, naive_mode, fit, stats)
    return plan.sigmas, AnalyticInitNoise(seed, model, plan.spec), plan.info


def analytic_init_latent(model, latent: dict, m: float, seed: int, naive_mode: str, fit: str,
                         stats=None) -> tuple[dict, float, str]:
    """Analytic-Init Latent: x_M as a raw LATENT for a no-noise sampler that starts at σ_M."""
    family = detect_family(model)
    sigma = native_start_sigma(family, m)
    spec = InitSpec.for_model(model, sigma, stats, naive_mode, fit, family)
    samples = fix_empty_latent(model, latent["samples"]).to(torch.float32)
    eps = ksampler_noise(samples, seed, latent.get("batch_index"))
    out = latent.copy()
    out["samples"] = state_to_latent(model, sigma, draw_state(spec, samples, eps))
    generated = generated_elements(samples, latent.get("noise_mask"), spec.skip_frames)
    if generated is not None:  # the user's latent stays where sampling does not generate
        out["samples"] = torch.where(generated, out["samples"], samples)
    info = f"M={m:g}: " + spec.describe(samples) + check_stats_space(model, stats)
    info += " Sample it with NO added noise and a schedule that starts at sigma_M (e.g. Late Start Sigmas)."
    return out, sigma, info
