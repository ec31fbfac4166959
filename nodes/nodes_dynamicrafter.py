"""Analytic-Init for kijai/ComfyUI-DynamiCrafterWrapper: our stats + M → its DCNOISE input.

The wrapper (nodes.py, DynamiCrafterLoadInitNoise / DynamiCrafterI2V) samples with its own DDIM
from ``x_T = mu_p + sigma_p·ε`` (ε = randn_like(mu_p)), ``ddpm_from = M`` and uniform_trailing
steps, where (VP space, t = M − 1 on DynamiCrafter's 1000-step schedule)

    mu_p = sqrt(ᾱ_t)·E[x0]        [1, C, F, h, w]
    sigma_p = sqrt(1 − ᾱ_t + ᾱ_t·tr Cov/d)        [1, 1, 1, 1, 1]

— paper Eq. 6 with α = sqrt(ᾱ_t), σ = sqrt(1 − ᾱ_t) (cil_core.optimal_gaussian). The schedule is
DynamiCrafter's own: LDM "linear" betas 0.00085–0.012 (scaled linear), 1000 steps, zero terminal
SNR (lvdm rescale_zero_terminal_snr): cil_core.dynamicrafter_family(), except that lvdm ends at
ᾱ_999 = 0 exactly where ComfyUI (and cil_core, which mirrors ComfyUI) clamp it to 4.9e-8.
The wrapper repeats mu_p along frames when the video's frame count is a multiple of F.
"""

from __future__ import annotations

import math

import torch
from comfy_api.latest import io

from ..cil_core.analytic_init import optimal_gaussian
from ..cil_core.families import dynamicrafter_family
from ..cil_core.validation import CILValueError
from .cil_types import DCNoise, Stats, show_text
from .late_start import FIT_POLICIES, fit_or_explain

SD_LATENT_FORMATS = ("", "SD15")


def dynamicrafter_alpha_bar(m: int) -> float:
    """ᾱ at DynamiCrafter's index t = M − 1 (M ∈ 1..1000), as lvdm's ZSNR schedule computes it."""
    family = dynamicrafter_family()
    if not 1 <= m <= family.num_steps:
        raise CILValueError(f"M={m} is outside 1..{family.num_steps}: DynamiCrafter's ddpm_from counts timesteps (1000 = pure noise).")
    if m == family.num_steps:
        return 0.0  # lvdm's zero terminal SNR reaches ᾱ = 0; ComfyUI's clamp (4.9e-8) is not DynamiCrafter's
    return float(family.alphas_cumprod[m - 1])


def target_shape(stats, frames: int, width: int, height: int) -> tuple[int, int, int, int]:
    c, f, h, w = stats.shape
    if c != 4:
        raise CILValueError(
            f"stats have {c} latent channels; DynamiCrafter's VAE latents have 4. Use stats estimated with an SD-style "
            "4-channel VAE (the latent format of SVD and DynamiCrafter: ×0.18215)."
        )
    if (width % 8) or (height % 8):
        raise CILValueError(f"width={width}, height={height} must be multiples of 8 (the VAE's downscale) or 0 for the stats' own size.")
    return (4, frames or f, (height // 8) or h, (width // 8) or w)


class DynamiCrafterInitNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CIL_DynamiCrafterInitNoise",
            display_name="Analytic-Init for DynamiCrafterWrapper",
            category="CIL/dynamicrafter",
            description=(
                "Turns this pack's Analytic-Init stats (any estimate, any resolution) and a start M into the `init_noise` "
                "(DCNOISE) input of kijai's DynamiCrafterI2V node, computed on DynamiCrafter's own ZSNR schedule. "
                "Replaces DynamiCrafter LoadInitNoise, which only knows the two official files."
            ),
            inputs=[
                Stats.Input("stats", tooltip="E[x0] and tr Cov/d of DynamiCrafter latents (×0.18215 SD latents): ours or an official file."),
                io.Int.Input("M", default=940, min=1, max=1000, tooltip="Start timestep (ddpm_from) of 1000. Paper: 940 for the original DynamiCrafter, 1000 for CIL fine-tuned ones (then Analytic-Init is plain N(0, I))."),
                io.Boolean.Input("analytic_init", default=True, tooltip="On: start from mu_p + sigma_p·ε. Off: the wrapper draws plain N(0, I) but still starts at M (naive late start)."),
                io.Int.Input("frames", default=0, min=0, max=1024, tooltip="Latent frames of mu_p; 0 = the stats' own. The wrapper repeats mu_p when the video length is a multiple of it."),
                io.Int.Input("width", default=0, min=0, max=8192, step=8, tooltip="Video width in pixels (latent = width/8); 0 = the stats' own size."),
                io.Int.Input("height", default=0, min=0, max=8192, step=8, tooltip="Video height in pixels (latent = height/8); 0 = the stats' own size."),
                io.Combo.Input("fit", options=list(FIT_POLICIES), default="strict", tooltip="When frames/width/height differ from the stats: 'strict' refuses, 'resample' resamples E[x0] (cil_core's documented rule)."),
            ],
            outputs=[
                DCNoise.Output(display_name="init_noise"),
                io.Int.Output(display_name="width"),
                io.Int.Output(display_name="height"),
                io.String.Output(display_name="info"),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, stats, M, analytic_init, frames, width, height, fit) -> io.NodeOutput:
        import comfy.model_management as mm

        shape = target_shape(stats, frames, width, height)
        fitted = fit_or_explain(stats, shape, fit, "the requested DynamiCrafter latent")
        abar = dynamicrafter_alpha_bar(int(M))
        mean, var = optimal_gaussian(math.sqrt(abar), math.sqrt(1.0 - abar), fitted.mean, fitted.tr_cov_d)
        device = mm.get_torch_device()
        init_noise = {
            "sigma_p": torch.full((1, 1, 1, 1, 1), math.sqrt(var), dtype=torch.float32, device=device),
            "mu_p": mean.to(torch.float32).unsqueeze(0).to(device),
            "M": int(M),
            "analytic_init": bool(analytic_init),
        }
        out_w, out_h = shape[3] * 8, shape[2] * 8
        fmt = stats.meta.get("latent_format", "")
        info = (
            f"DCNOISE at M={M} (t={M - 1}, sqrt(alpha_bar)={math.sqrt(abar):.6g}): mu_p {list(init_noise['mu_p'].shape)}, "
            f"sigma_p={math.sqrt(var):.6g}, analytic_init={'on' if analytic_init else 'off (naive late start)'}; "
            f"video {out_w}x{out_h}, frame count must be a multiple of {shape[1]}."
        )
        if fmt not in SD_LATENT_FORMATS:
            info += f" WARNING: stats were estimated with latent format {fmt}, not SD15 (×0.18215) as DynamiCrafter uses."
        show_text(cls, info)
        return io.NodeOutput(init_noise, out_w, out_h, info)


NODES = [DynamiCrafterInitNoise]
