"""The toy world's Bayes reference: what a perfect denoiser would show on the Leakage Probe.

The toy knows its generative process: a held-out video is a scene (what frame 0, the conditional
image, shows) moved by a motion draw u* ∈ [0, 1]^D (``cil_toy.data``). Every motion of that scene
shares frame 0 exactly, so the posterior over the video given the noisy x_t and the conditional
image is a posterior over u, and

    E[x0 | x_t, y0] = Σ_k w_k g(u_k) / Σ_k w_k,   log w_k = −log q(u_k) − ‖x_t − a·g(u_k)‖²/(2b²)

(``cil_core.posterior``; the prior is uniform on the cube). The proposal q mixes the prior (weight
``prior_weight``) with product truncated normals, one per noisy input and width factor c, at a
Laplace approximation of that input's posterior (``laplace_components``: one Gauss–Newton step
from u* with the Jacobian ∂g/∂u by central differences; std c × the Laplace marginal std); the
on/off flags are uniform within u*'s state, entries that do not change the video are uniform. Using u* only places candidates; the weights make the estimate converge to the
posterior mean whatever q is. ``replicates`` independent estimates give a Monte-Carlo SE.

What the reference conditions on: the scene's parameters, which frame 0 shows except for a
sprite wholly hidden behind another in frame 0 and texture clipped at black or white; such a
video's reference knows slightly more than y0.

``naive=True`` is the shortcut the issue warns about: prior futures plus the real video as one
more candidate. At mid t the real video's likelihood dwarfs every prior future's, so the
estimate collapses onto the real video and its motion ratio is biased up toward 1.

Also returned: Σ w·FDE(g(u_k))/Σ w, the expected motion of a posterior *sample*, which is what
a perfect model shows on the regeneration probe with a stochastic sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cil_core.families import DiffusionFamily
from cil_core.motion import frame_difference_energy, motion_of_mean
from cil_core.posterior import SNISAccumulator, TruncNormalMixture, log_likelihoods
from cil_core.validation import CILValueError

from .codec import LatentCodec
from .data import Scene, WorldConfig, motion_dims, motion_flag_dims, render


@dataclass(frozen=True)
class ReferenceConfig:
    candidates: int = 1024  # K per replicate
    replicates: int = 4
    pilot: int = 512  # candidates of the pilot pass that fits one component per input (0: none)
    prior_weight: float = 0.25
    widths: tuple[float, ...] = (1.2, 3.0)  # proposal std in Laplace stds
    chunk: int = 256  # candidates rendered at once
    delta: float = 1e-3  # finite-difference step in u

    def __post_init__(self) -> None:
        if self.candidates < 2 or self.replicates < 1 or self.chunk < 1:
            raise CILValueError(f"candidates={self.candidates} (>= 2), replicates={self.replicates} and chunk={self.chunk} (>= 1).")


@dataclass
class Reference:
    """Posterior-mean estimates for B noisy inputs of one video (R replicates of K candidates)."""

    means: torch.Tensor  # [R, B, C, F, h, w] float64, one estimate per replicate
    ess: torch.Tensor  # [R, B] effective sample size of each replicate
    sample_motion: torch.Tensor  # [R, B] Σw·FDE(candidate)/Σw: motion of a posterior sample

    @property
    def mean(self) -> torch.Tensor:
        """[B, ...] the replicates pooled (equal K each)."""
        return self.means.mean(0)


def render_latents(scene: Scene, motion: torch.Tensor, world: WorldConfig, codec: LatentCodec) -> torch.Tensor:
    """[k, C, F, h, w] model latents of one scene (``scene`` of length 1) under k motion draws."""
    pixels, _ = render(scene.repeat(motion.shape[0]), motion, world)
    return codec.encode(pixels)


def motion_jacobian(scene: Scene, u_star: torch.Tensor, world: WorldConfig, codec: LatentCodec, delta: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """(g(u*) [d], J [d, D]): the video's latent and ∂g/∂u by central differences kept in [0, 1]."""
    d = motion_dims(world)
    eye = torch.eye(d, dtype=torch.float64)
    hi = (u_star.unsqueeze(0) + delta * eye).clamp(0, 1)
    lo = (u_star.unsqueeze(0) - delta * eye).clamp(0, 1)
    z = render_latents(scene, torch.cat([hi, lo, u_star.double().unsqueeze(0)]), world, codec).double().flatten(1)
    step = (hi - lo).diagonal().clamp(min=1e-12)
    return z[-1], ((z[:d] - z[d : 2 * d]) / step.unsqueeze(1)).T


def flag_intervals(u_star: torch.Tensor, world: WorldConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """[D] intervals that keep each on/off flag of u* in its state ([0, 1] for other entries)."""
    lo, hi = torch.zeros_like(u_star, dtype=torch.float64), torch.ones_like(u_star, dtype=torch.float64)
    s = world.max_sprites
    for i, cut in [(3 * j, world.static_prob) for j in range(s)] + [(3 * s, world.pan_prob)]:
        if float(u_star[i]) < cut:
            hi[i] = cut
        else:
            lo[i] = cut
    return lo, hi


def laplace_components(u_star: torch.Tensor, g_star: torch.Tensor, jac: torch.Tensor, x: torch.Tensor, a: torch.Tensor,
                       b: torch.Tensor, world: WorldConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres and stds [B, D] of a Laplace approximation of each input's posterior over u: one
    Gauss–Newton step from u* on ‖x/a − g(u)‖²/(2(b/a)²) plus the prior's precision 12 (variance of
    U[0, 1]) per entry; flags and entries the video ignores get inf (uniform on their interval)."""
    flags = torch.zeros(jac.shape[1], dtype=torch.bool)
    flags[motion_flag_dims(world)] = True
    live = (jac.norm(dim=0) > 1e-9) & ~flags
    j = jac[:, live]  # [d, L]
    jtj, level2 = j.T @ j, (b / a).pow(2).reshape(-1, 1, 1)
    eye = torch.eye(j.shape[1], dtype=torch.float64)
    prec = jtj.unsqueeze(0) / level2 + 12.0 * eye  # [B, L, L]
    resid = x.to(torch.float64) / a.reshape(-1, 1) - g_star.unsqueeze(0)  # [B, d]
    step = torch.linalg.solve(prec, ((resid @ j) / level2.reshape(-1, 1)).unsqueeze(-1)).squeeze(-1)
    centers = u_star.double().unsqueeze(0).repeat(x.shape[0], 1)
    stds = torch.full_like(centers, float("inf"))
    centers[:, live] = (centers[:, live] + step).clamp(0, 1)
    stds[:, live] = torch.linalg.inv(prec).diagonal(dim1=1, dim2=2).sqrt()
    return centers, stds


def proposal(parts: list[tuple[torch.Tensor, torch.Tensor]], u_star: torch.Tensor, world: WorldConfig, cfg: "ReferenceConfig") -> TruncNormalMixture:
    """The prior plus, for each (centres, stds) [B, D] in ``parts`` and width factor c, one
    truncated normal per input (std c × std), its flags uniform within u*'s states."""
    centers = torch.cat([c for c, _ in parts for _ in cfg.widths])
    scale = torch.cat([(s * w).clamp(min=1e-12) for _, s in parts for w in cfg.widths])
    lo, hi = flag_intervals(u_star, world)
    n = scale.shape[0]
    return TruncNormalMixture(centers, scale, cfg.prior_weight, lo.expand(n, -1), hi.expand(n, -1))


def _weighted_pass(scene: Scene, u: torch.Tensor, log_ratio: torch.Tensor, xf: torch.Tensor, a, b, world: WorldConfig,
                   codec: LatentCodec, chunk: int, moments: bool) -> SNISAccumulator:
    """One SNIS pass: values = candidate latents (or, with ``moments``, u and scalars u²)."""
    acc = SNISAccumulator()
    for start in range(0, u.shape[0], chunk):
        uc = u[start : start + chunk]
        z = render_latents(scene, uc, world, codec)
        lw = log_likelihoods(xf, a, b, z.flatten(1)) + log_ratio[start : start + chunk].unsqueeze(0)
        if moments:
            acc.add(lw, uc, uc.pow(2))
        else:
            acc.add(lw, z.flatten(1), frame_difference_energy(z, time_dim=2, batch_dims=1).unsqueeze(1))
    return acc


@torch.no_grad()
def reference_posterior(scene: Scene, u_star: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor, family: DiffusionFamily,
                        world: WorldConfig, codec: LatentCodec, cfg: ReferenceConfig = ReferenceConfig(), *,
                        generator: torch.Generator | None = None, naive: bool = False) -> Reference:
    """Posterior means E[x0 | x_b, y0] for noisy inputs x [B, C, F, h, w] at ``sigma`` [B] of the
    video (``scene`` of length 1, motion ``u_star`` [D]); see the module docstring."""
    if len(scene) != 1:
        raise CILValueError(f"reference_posterior takes one scene (got {len(scene)}); loop over videos.")
    a, b = family.scaling(sigma.to(torch.float64))
    xf = x.reshape(x.shape[0], -1)
    if naive:
        mix = TruncNormalMixture(torch.zeros(0, motion_dims(world)), torch.zeros(0, motion_dims(world)), 1.0)
    else:
        g_star, jac = motion_jacobian(scene, u_star, world, codec, cfg.delta)
        parts = [laplace_components(u_star, g_star, jac, xf, a, b, world)]
        mix = proposal(parts, u_star.double(), world, cfg)
        if cfg.pilot:  # fit each input's posterior spread on an independent pilot draw
            u = mix.sample(cfg.pilot, generator)
            pilot = _weighted_pass(scene, u, -mix.log_prob(u, cfg.pilot), xf, a, b, world, codec, cfg.chunk, moments=True)
            mean_u = pilot.mean()
            std_u = (pilot.scalar_mean() - mean_u.pow(2)).clamp(min=0).sqrt().clamp(min=1e-9)
            live = torch.isfinite(parts[0][1])
            parts.append((torch.where(live, mean_u.clamp(0, 1), parts[0][0]), torch.where(live, std_u, parts[0][1])))
            mix = proposal(parts, u_star.double(), world, cfg)
    means, ess, sample_motion = [], [], []
    for _ in range(cfg.replicates):
        u = mix.sample(cfg.candidates, generator)
        log_ratio = -mix.log_prob(u, cfg.candidates)
        if naive:  # the real video as one more candidate, with the same weight as a prior future
            u = torch.cat([u_star.double().unsqueeze(0), u])
            log_ratio = torch.cat([log_ratio[:1], log_ratio])
        acc = _weighted_pass(scene, u, log_ratio, xf, a, b, world, codec, cfg.chunk, moments=False)
        means.append(acc.mean().reshape(x.shape))
        ess.append(acc.ess())
        sample_motion.append(acc.scalar_mean()[:, 0])
    return Reference(torch.stack(means), torch.stack(ess), torch.stack(sample_motion))


@dataclass
class ReferenceCurves:
    """Per video and grid t: the perfect denoiser's ratios, with their Monte-Carlo SE."""

    raw: torch.Tensor  # [T, S] FDE(E[x0|x_t])/FDE(x0) per noise draw (pooled replicates)
    raw_mc_se: torch.Tensor  # [T] SE of the mean over draws, from the replicates' spread
    corrected: torch.Tensor | None  # [T] noise-free motion of the mean over draws / FDE(x0)
    sample: torch.Tensor  # [T, S] motion of a posterior sample / FDE(x0) (regeneration target)
    ess_min: torch.Tensor  # [T] smallest effective sample size of any replicate and draw


def reference_curves(ref: Reference, x0: torch.Tensor, t_count: int) -> ReferenceCurves:
    """Ratios of one video's reference estimates for B = T·S inputs ordered t-major."""
    motion_ref = float(frame_difference_energy(x0, time_dim=1))
    r = ref.means.shape[0]
    per_rep = frame_difference_energy(ref.means.flatten(0, 1), time_dim=2, batch_dims=1).reshape(r, t_count, -1) / motion_ref
    raw = frame_difference_energy(ref.mean, time_dim=2, batch_dims=1).reshape(t_count, -1) / motion_ref
    se = per_rep.mean(2).std(0) / r**0.5 if r > 1 else torch.full((t_count,), float("nan"), dtype=torch.float64)
    s = raw.shape[1]
    corrected = motion_of_mean(ref.mean.reshape(t_count, s, *x0.shape), time_dim=1) / motion_ref if s >= 2 else None
    sample = ref.sample_motion.mean(0).reshape(t_count, s) / motion_ref
    return ReferenceCurves(raw, se, corrected, sample, ref.ess.amin(0).reshape(t_count, s).amin(1))
