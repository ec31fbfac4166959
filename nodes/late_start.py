"""Late start + Analytic-Init (paper Sec. 4.1, Prop. 1): three ways into ComfyUI's samplers.

- CIL_LateStartSampler: one node, like KSampler, plus the start M and optional stats (and an
  optional low-noise expert for Wan 2.2 A14B's pair, switched at a boundary sigma).
- CIL_LateStartSigmas: SIGMAS from σ_M to 0 and the matching Analytic-Init NOISE, for
  SamplerCustomAdvanced (bit-identical to the one-node sampler for the same seed).
- CIL_AnalyticInitLatent: the initial state as a LATENT for a sampler that adds no noise
  (SamplerCustom add_noise off, or SamplerCustomAdvanced with DisableNoise) and starts at σ_M.
"""

from __future__ import annotations

from comfy_api.latest import io

from cil_comfy.sampling import (
    NATIVE_SCHEDULER,
    analytic_init_latent,
    late_start_sample,
    late_start_sigmas_and_noise,
    sampler_names,
    scheduler_names,
)
from cil_core.analytic_init import NAIVE_MODES
from cil_core.stats_io import FIT_POLICIES

from .common import Stats, show_text, validate_m

CATEGORY = "CIL/analytic_init"

TIP_MODEL = "The diffusion model. Its sampling family (VP/EDM/flow) and sigma table are read from it, object patches included."
TIP_M = (
    "Start time M as a fraction of the diffusion time T, in (0, 1]. Sampling starts at sigma_M = sigma(M) "
    "instead of at pure noise. Paper defaults: 0.96 for DynamiCrafter/VideoCrafter; SVD's official sigma_M = 100 "
    "is M ≈ 0.85. Smaller M = less noise = more motion fidelity to stats, but too small hurts quality."
)
TIP_STATS = (
    "Optional Analytic-Init stats (E[x0] and tr Cov/d in model space) from Load/Estimate Analytic Stats. "
    "Without stats the start is the naive late start selected by naive_mode."
)
TIP_NAIVE = (
    "Used only WITHOUT stats. 'empty_latent': N(0, sigma_M^2), what ComfyUI does with an empty latent. "
    "'paper': the paper's naive baseline N(0, I) in its own space (E = 0, tr Cov/d = 1)."
)
TIP_FIT = (
    "What to do when the stats' frames/height/width differ from the latent: 'strict' refuses; 'resample' "
    "resamples E[x0] (area/trilinear, cil_core's documented rule) and keeps tr Cov/d. Channel counts must match."
)
TIP_SEED = "Seed of the Gaussian draw (the same standard normal noise KSampler draws for this seed)."
TIP_SCHEDULER = (
    f"'{NATIVE_SCHEDULER}': the paper's spacing from sigma_M to 0 (Karras for EDM/SVD, DDIM uniform_trailing "
    "for VP/DynamiCrafter, shifted-linear for flow/Wan). Any other: ComfyUI's scheduler with denoise = M "
    "(int(steps/M) steps, last steps kept), so the start is only approximately sigma(M)."
)

TIP_LOW_NOISE = (
    "Optional second expert (Wan 2.2 A14B: connect the HIGH-noise model to `model` and the LOW-noise model here). "
    "The high-noise model runs the steps that start at sigma >= boundary, this one the rest, in one run "
    "(as the template's two KSamplerAdvanced). Unconnected: one model for every step."
)
TIP_BOUNDARY = (
    "Only with model_low_noise: the sigma (shifted, in (0, 1)) where the low-noise expert takes over. "
    "Wan 2.2 official: 0.900 for I2V, 0.875 for T2V. A start sigma_M below it skips the high-noise expert (warned in info)."
)


def _widgets_common() -> list:
    return [
        io.Combo.Input("naive_mode", options=list(NAIVE_MODES), default="empty_latent", tooltip=TIP_NAIVE),
        io.Combo.Input("fit", options=list(FIT_POLICIES), default="strict", tooltip=TIP_FIT),
        Stats.Input("stats", optional=True, tooltip=TIP_STATS),
    ]


def _m_input(default: float = 0.96):
    return io.Float.Input("M", default=default, min=0.001, max=1.0, step=0.001, tooltip=TIP_M)


class LateStartSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_LateStartSampler",
            display_name="Late Start Sampler",
            category="CIL/sampling",
            description=(
                "KSampler with a late start: `steps` steps spaced over [0, M] starting from the Analytic-Init "
                "Gaussian at sigma_M (paper Sec. 4.1). Without stats it uses the naive late start named in the output text."
            ),
            inputs=[
                io.Model.Input("model", tooltip=TIP_MODEL),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip=TIP_SEED),
                io.Int.Input("steps", default=25, min=1, max=1000, tooltip="Number of sampling steps between sigma_M and 0."),
                io.Float.Input("cfg", default=3.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale, as in KSampler."),
                io.Combo.Input("sampler_name", options=sampler_names(), default="euler", tooltip="ComfyUI sampler (as in KSampler)."),
                io.Combo.Input("scheduler", options=scheduler_names(), default=NATIVE_SCHEDULER, tooltip=TIP_SCHEDULER),
                io.Conditioning.Input("positive", tooltip="Positive conditioning from the I2V conditioning node."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning from the I2V conditioning node."),
                io.Latent.Input("latent_image", tooltip="The (empty) video latent from the I2V conditioning node; it fixes the shape."),
                _m_input(),
                *_widgets_common(),
                io.Model.Input("model_low_noise", optional=True, tooltip=TIP_LOW_NOISE),
                io.Float.Input("boundary", default=0.9, min=0.001, max=0.999, step=0.001, round=False, optional=True,
                               tooltip=TIP_BOUNDARY),
            ],
            outputs=[io.Latent.Output(display_name="LATENT"), io.String.Output(display_name="info")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, M=None) -> bool | str:
        return validate_m(M)

    @classmethod
    def execute(cls, model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, M,
                naive_mode, fit, stats=None, model_low_noise=None, boundary=0.9) -> io.NodeOutput:
        latent, info = late_start_sample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative,
                                         latent_image, M, naive_mode, fit, stats, model_low_noise, boundary)
        show_text(cls, info)
        return io.NodeOutput(latent, info)


class LateStartSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_LateStartSigmas",
            display_name="Late Start Sigmas + Analytic-Init Noise",
            category="CIL/sampling",
            description=(
                "SIGMAS from sigma_M to 0 and a NOISE that starts SamplerCustomAdvanced at the Analytic-Init state "
                "(use with the (empty) latent of the conditioning node). Same result as the Late Start Sampler for the same seed."
            ),
            inputs=[
                io.Model.Input("model", tooltip=TIP_MODEL),
                io.Int.Input("steps", default=25, min=1, max=1000, tooltip="Number of sampling steps between sigma_M and 0."),
                _m_input(),
                io.Combo.Input("scheduler", options=scheduler_names(), default=NATIVE_SCHEDULER, tooltip=TIP_SCHEDULER),
                io.Int.Input("noise_seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip=TIP_SEED),
                *_widgets_common(),
            ],
            outputs=[
                io.Sigmas.Output(display_name="SIGMAS"),
                io.Noise.Output(display_name="NOISE"),
                io.String.Output(display_name="info"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, M=None) -> bool | str:
        return validate_m(M)

    @classmethod
    def execute(cls, model, steps, M, scheduler, noise_seed, naive_mode, fit, stats=None) -> io.NodeOutput:
        sigmas, noise, info = late_start_sigmas_and_noise(model, steps, M, scheduler, noise_seed, naive_mode, fit, stats)
        show_text(cls, info)
        return io.NodeOutput(sigmas, noise, info)


class AnalyticInitLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_AnalyticInitLatent",
            display_name="Analytic-Init Latent",
            category=CATEGORY,
            description=(
                "The initial latent at start M drawn from the KL-optimal Gaussian N(a·E[x0], a²·trCov/d + b²) "
                "(paper Eq. 6), for a sampler that adds NO noise and starts at sigma_M (e.g. SamplerCustom with "
                "add_noise off and Late Start Sigmas). Without stats: the naive late start named in the output text."
            ),
            inputs=[
                io.Model.Input("model", tooltip=TIP_MODEL),
                io.Latent.Input("latent", tooltip="The (empty) video latent from the I2V conditioning node; it fixes the shape."),
                _m_input(),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip=TIP_SEED),
                *_widgets_common(),
            ],
            outputs=[
                io.Latent.Output(display_name="LATENT"),
                io.Float.Output(display_name="sigma_M"),
                io.String.Output(display_name="info"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, M=None) -> bool | str:
        return validate_m(M)

    @classmethod
    def execute(cls, model, latent, M, seed, naive_mode, fit, stats=None) -> io.NodeOutput:
        out, sigma, info = analytic_init_latent(model, latent, M, seed, naive_mode, fit, stats)
        show_text(cls, info)
        return io.NodeOutput(out, sigma, info)


NODES = [LateStartSampler, LateStartSigmas, AnalyticInitLatent]
