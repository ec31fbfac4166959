"""comfyui-cil core: the mathematics of conditional image leakage (CIL) fixes, pure torch.

Never imports ComfyUI. Modules, one idea each:
    families       α(t), σ(t), normalised time and ComfyUI sigma space per diffusion family
    moments        streaming, mergeable per-element mean/variance (float64 Welford/Chan)
    analytic_init  the KL-optimal initial Gaussian at a start time M (paper Eq. 6)
    stats_io       Analytic-Init stats files (ours and the official ones), fitting to a latent
    schedules      late-start sigma schedules from σ_M to 0
    timenoise      TimeNoise: β_s = β_m·sigmoid(N(2t^a − 1, 1)) on the conditional image
    motion         frame-difference motion energy and alignment metrics
    probe          the Leakage Probe's batched one-step predictions and start recommendation
    losses         training losses (EDM, VP, flow) with optional TimeNoise
    layouts        ComfyUI latent layouts ↔ the canonical CFHW video layout
"""

from .analytic_init import (
    AnalyticStats,
    noise_for_state,
    estimate_stats,
    initial_distribution,
    naive_initial_distribution,
    optimal_gaussian,
    sample_initial_latent,
)
from .families import EDM, DiffusionFamily, RectifiedFlow, VPDiscrete, dynamicrafter_family, svd_family, wan_family
from .moments import StreamingMoments
from .schedules import StartTime, late_start_sigmas
from .stats_io import fit_stats_to_latent, load_stats, save_stats
from .timenoise import TimeNoiseConfig, add_condition_noise
from .validation import CILValueError

__version__ = "0.1.0"

__all__ = [
    "AnalyticStats",
    "CILValueError",
    "DiffusionFamily",
    "EDM",
    "RectifiedFlow",
    "StartTime",
    "StreamingMoments",
    "TimeNoiseConfig",
    "VPDiscrete",
    "add_condition_noise",
    "noise_for_state",
    "dynamicrafter_family",
    "estimate_stats",
    "fit_stats_to_latent",
    "initial_distribution",
    "late_start_sigmas",
    "load_stats",
    "naive_initial_distribution",
    "optimal_gaussian",
    "sample_initial_latent",
    "save_stats",
    "svd_family",
    "wan_family",
]
