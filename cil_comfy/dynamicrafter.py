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

import torch

from cil_core.analytic_init import AnalyticStats, dynamicrafter_init_noise
from cil_core.families import dynamicrafter_alpha_bar
from cil_core.validation import CILValueError

from .sampling import fit_or_explain

SD_LATENT_FORMATS = ("", "SD15")


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


def dcnoise(stats: AnalyticStats, m: int, analytic_init: bool, frames: int, width: int, height: int,
            fit: str) -> tuple[dict, int, int, str]:
    """(DCNOISE dict, width, height, info) for the wrapper's DynamiCrafterI2V ``init_noise`` input."""
    import comfy.model_management as mm

    shape = target_shape(stats, frames, width, height)
    fitted = fit_or_explain(stats, shape, fit, "the requested DynamiCrafter latent")
    mu_p, sigma_p = dynamicrafter_init_noise(fitted, int(m))
    abar = dynamicrafter_alpha_bar(int(m))
    device = mm.get_torch_device()
    init_noise = {
        "sigma_p": torch.full((1, 1, 1, 1, 1), sigma_p, dtype=torch.float32, device=device),
        "mu_p": mu_p.to(torch.float32).unsqueeze(0).to(device),
        "M": int(m),
        "analytic_init": bool(analytic_init),
    }
    out_w, out_h = shape[3] * 8, shape[2] * 8
    fmt = stats.meta.get("latent_format", "")
    info = (
        f"DCNOISE at M={m} (t={m - 1}, sqrt(alpha_bar)={abar ** 0.5:.6g}): mu_p {list(init_noise['mu_p'].shape)}, "
        f"sigma_p={sigma_p:.6g}, analytic_init={'on' if analytic_init else 'off (naive late start)'}; "
        f"video {out_w}x{out_h}, frame count must be a multiple of {shape[1]}."
    )
    if fmt not in SD_LATENT_FORMATS:
        info += f" WARNING: stats were estimated with latent format {fmt}, not SD15 (×0.18215) as DynamiCrafter uses."
    return init_noise, out_w, out_h, info
