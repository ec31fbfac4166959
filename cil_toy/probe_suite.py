"""The toy's full Leakage Probe: one-step, perfect-denoiser reference and regeneration, paired.

For each of ``videos`` moving held-out videos (the same noisy inputs x_t for model and
reference):
- one-step probe (``cil_core.probe``): raw ratio FDE(x̂0)/FDE(x0) per noise draw, and the
  corrected ratio (motion of x̂0 averaged over the draws, their noise removed);
- reference (``cil_toy.reference``): the same two ratios for the exact posterior mean, and the
  motion of a posterior sample (what a perfect model shows on the regeneration probe);
- regeneration probe (``cil_core.regen_probe``): x_t sampled back to 0 with the demo's Euler
  sampler in ``regen_steps`` steps (its own noise draws).
``summarize`` turns the per-video numbers into curves with ± 1 SE over videos (the videos are
the independent units; the noise draws of one video are averaged first), and the paired
differences model − reference per t.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from cil_core.motion import frame_difference_energy
from cil_core.probe import ProbeResult, probe_leakage
from cil_core.regen_probe import regeneration_probe
from cil_core.schedules import StartTime, late_start_sigmas
from cil_core.validation import CILValueError

from .data import Scene, held_out_set, make_scenes, HELD_OUT_SEED
from .reference import ReferenceConfig, ReferenceCurves, reference_curves, reference_posterior
from .sampling import euler_sample
from .weights_io import ToyModel

DEFAULT_T = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


@dataclass(frozen=True)
class SuiteConfig:
    t_grid: tuple[float, ...] = DEFAULT_T
    videos: int = 16
    samples: int = 4  # one-step noise draws per t (>= 2 for the corrected ratio)
    regen_samples: int = 2  # regeneration draws per t (0: no regeneration probe)
    regen_steps: int = 10
    seed: int = 0
    reference: ReferenceConfig | None = field(default_factory=ReferenceConfig)
    max_batch: int = 64

    def __post_init__(self) -> None:
        if self.videos < 2:
            raise CILValueError(f"videos={self.videos}: the probe's SE over videos needs at least 2.")
        if self.samples < 2:
            raise CILValueError(f"samples={self.samples}: the corrected ratio needs at least 2 noise draws per t.")


@dataclass
class VideoProbe:
    one_step: ProbeResult
    reference: ReferenceCurves | None
    regen: ProbeResult | None
    inputs_digest: tuple[float, float] = (0.0, 0.0)  # identifies the noisy inputs the reference was computed on


def _digest(x: torch.Tensor) -> tuple[float, float]:
    x = x.double()
    return float(x.sum()), float((x * torch.arange(x.numel(), dtype=torch.float64).reshape(x.shape).remainder(7)).sum())


def moving_held_out(model: ToyModel, count: int) -> tuple[Scene, torch.Tensor, torch.Tensor]:
    """Scenes, motion draws and model latents of the first ``count`` held-out videos that move
    (a static video's motion ratio is undefined)."""
    pool = 4 * count
    scenes, motion = make_scenes(HELD_OUT_SEED, pool, model.world)
    pixels, _ = held_out_set(pool, model.world)
    latents = model.codec.encode(pixels)
    moving = (frame_difference_energy(latents, time_dim=2, batch_dims=1) > 0).nonzero().flatten()[:count]
    if moving.numel() < count:
        raise CILValueError(f"only {moving.numel()} of {pool} held-out toy videos move; ask for fewer videos.")
    return scenes[moving], motion[moving], latents[moving]


def regen_sampler(model: ToyModel, cond: torch.Tensor, steps: int):
    """(sample, schedule) for the regeneration probe: Euler from σ_t in ``steps`` steps."""
    denoise = model.denoiser.bind(cond)

    def sample(x0: torch.Tensor, eps: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        return euler_sample(denoise, model.family.noised(x0, eps, sigmas[:1].expand(eps.shape[0])), sigmas)

    def schedule(t: float) -> torch.Tensor:
        return late_start_sigmas(model.family, steps, StartTime(sigma=float(model.family.sigma_at(t))))

    return sample, schedule


def probe_video(model: ToyModel, scene: Scene, u_star: torch.Tensor, x0: torch.Tensor, cfg: SuiteConfig, seed: int,
                reuse: VideoProbe | None = None) -> VideoProbe:
    """One video's three probes (see the module docstring). ``reuse``: another model's probe of
    the same video and seed, whose reference is taken over (the inputs x_t must be identical)."""
    t = list(cfg.t_grid)
    one = probe_leakage(model.denoiser.bind(x0[:, 0]), x0, model.family, t, cfg.samples, generator=torch.Generator().manual_seed(seed),
                        max_batch=cfg.max_batch, keep_inputs=True)
    digest, ref = _digest(one.inputs), None
    one.inputs, inputs = None, one.inputs
    if reuse is not None and reuse.reference is not None:
        if reuse.inputs_digest != digest:
            raise CILValueError("the reference to reuse was computed on other noisy inputs (another seed or video).")
        ref = reuse.reference
    elif cfg.reference is not None:
        est = reference_posterior(scene, u_star, inputs.flatten(0, 1), one.sigma.repeat_interleave(cfg.samples), model.family, model.world,
                                  model.codec, cfg.reference, generator=torch.Generator().manual_seed(seed + 1))
        ref = reference_curves(est, x0, len(t))
    regen = None
    if cfg.regen_samples:
        sample, schedule = regen_sampler(model, x0[:, 0], cfg.regen_steps)
        regen = regeneration_probe(sample, x0, model.family, t, cfg.regen_samples, schedule,
                                   generator=torch.Generator().manual_seed(seed + 2), max_batch=cfg.max_batch)
    return VideoProbe(one, ref, regen, digest)


def probe_toy_model(model: ToyModel, cfg: SuiteConfig, tick: Callable[[int], None] | None = None,
                    reuse: list[VideoProbe] | None = None) -> list[VideoProbe]:
    """``probe_video`` on the first ``cfg.videos`` moving held-out videos (video v seeds
    1000·seed + 10·v, so two models see the same x_t and ``reuse`` shares one reference)."""
    scenes, motion, latents = moving_held_out(model, cfg.videos)
    out = []
    for v in range(cfg.videos):
        out.append(probe_video(model, scenes[v : v + 1], motion[v], latents[v], cfg, 1000 * cfg.seed + 10 * v,
                               None if reuse is None else reuse[v]))
        if tick is not None:
            tick(1)
    return out


def _mean_se(per_video: torch.Tensor) -> tuple[list[float], list[float]]:
    """[T, V] → (mean over videos, SE over videos) per t."""
    v = per_video.shape[1]
    se = per_video.std(1) / math.sqrt(v) if v > 1 else torch.full((per_video.shape[0],), math.nan)
    return per_video.mean(1).tolist(), se.tolist()


def summarize(videos: list[VideoProbe]) -> dict:
    """Curves per t (mean ± SE over videos) and paired differences, JSON-friendly."""
    one = torch.stack([v.one_step.ratio.mean(1) for v in videos], 1).double()  # [T, V]
    corr = torch.stack([v.one_step.corrected_ratio[:, 0] for v in videos], 1).double()
    out: dict = {"t": videos[0].one_step.t.tolist(), "sigma": videos[0].one_step.sigma.tolist(), "videos": len(videos),
                 "samples": int(videos[0].one_step.motion_pred.shape[1])}
    out["one_step_ratio"], out["one_step_ratio_se"] = _mean_se(one)
    out["corrected_ratio"], out["corrected_ratio_se"] = _mean_se(corr)
    if videos[0].reference is not None:
        ref = torch.stack([v.reference.raw.mean(1) for v in videos], 1).double()
        ref_c = torch.stack([v.reference.corrected for v in videos], 1).double()
        ref_s = torch.stack([v.reference.sample.mean(1) for v in videos], 1).double()
        mc = torch.stack([v.reference.raw_mc_se for v in videos], 1).double()
        out["reference_ratio"], out["reference_ratio_se"] = _mean_se(ref)
        out["reference_ratio_mc_se"] = (mc.pow(2).sum(1).sqrt() / len(videos)).tolist()
        out["reference_corrected"], out["reference_corrected_se"] = _mean_se(ref_c)
        out["reference_sample"], out["reference_sample_se"] = _mean_se(ref_s)
        out["reference_ess_min"] = torch.stack([v.reference.ess_min for v in videos], 1).amin(1).tolist()
        out["excess"], out["excess_se"] = _mean_se(one - ref)  # paired: the same x_t
        out["excess_corrected"], out["excess_corrected_se"] = _mean_se(corr - ref_c)
    if videos[0].regen is not None:
        regen = torch.stack([v.regen.ratio.mean(1) for v in videos], 1).double()
        out["regen_ratio"], out["regen_ratio_se"] = _mean_se(regen)
        out["regen_samples"] = int(videos[0].regen.motion_pred.shape[1])
        if videos[0].reference is not None:
            out["regen_excess"], out["regen_excess_se"] = _mean_se(regen - ref_s)
    return out
