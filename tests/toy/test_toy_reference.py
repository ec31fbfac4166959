"""The toy world's scene/motion split and its perfect-denoiser reference (cil_toy.reference)."""

from __future__ import annotations

import math

import pytest
import torch

from cil_core.families import EDM
from cil_core.motion import frame_difference_energy
from cil_core.validation import CILValueError
from cil_toy.codec import LatentCodec
from cil_toy.data import WorldConfig, draw_motion, make_scenes, make_videos, motion_dims, motion_flag_dims, render
from cil_toy.reference import ReferenceConfig, flag_intervals, reference_curves, reference_posterior, render_latents

TINY = WorldConfig(frames=4, height=16, width=16, max_sprites=2, radius_range=(3.0, 4.0), speed_range=(1.0, 2.0))
CUE = WorldConfig(frames=4, height=16, width=16, max_sprites=2, radius_range=(3.0, 4.0), speed_range=(1.0, 2.0), heading_cue=0.45)
CODEC = LatentCodec()
FAMILY = EDM(sigma_lo=0.002, sigma_hi=700.0, prediction="v")


@pytest.mark.parametrize("world", [TINY, CUE], ids=["no-cue", "cue"])
def test_every_motion_of_a_scene_shares_frame_0_and_make_videos_is_scene_then_motion(world):
    scenes, motion = make_scenes(3, 4, world)
    videos, _ = make_videos(3, 4, world)
    assert torch.equal(render(scenes, motion, world)[0], videos)
    futures, _ = render(scenes[1:2].repeat(16), draw_motion(torch.Generator().manual_seed(0), world, 16), world)
    assert torch.equal(futures[:, :, 0], videos[1:2, :, 0].expand(16, -1, -1, -1))
    assert (futures[:, :, 1:] - videos[1:2, :, 1:]).abs().flatten(1).amax(1).max() > 0.1  # the futures differ


def test_the_heading_cue_shows_the_direction_and_hides_only_speed_and_pan():
    scenes, motion = make_scenes(5, 64, CUE)
    _, tracks = render(scenes, motion, CUE)
    moving = scenes.moving & scenes.present
    first_step = tracks.centers[:, :, 1] - tracks.centers[:, :, 0]
    heading = torch.stack([scenes.heading.cos(), scenes.heading.sin()], -1)
    unbounced = moving & (first_step.norm(dim=-1) > 0.99)  # a bounce in step 1 turns it
    cos = (first_step * heading).sum(-1) / first_step.norm(dim=-1).clamp(min=1e-6)
    assert (cos[unbounced] > 0.999).float().mean() > 0.8
    assert ((tracks.nose.norm(dim=-1) > 0) == scenes.moving)[scenes.present].all()  # static sprites: nose in the middle
    assert motion_flag_dims(CUE) == [3 * CUE.max_sprites] and len(motion_flag_dims(TINY)) == CUE.max_sprites + 1


def test_motion_draw_shape_is_checked():
    scenes, _ = make_scenes(1, 2, TINY)
    with pytest.raises(CILValueError, match="motion_dims"):
        render(scenes, torch.zeros(2, motion_dims(TINY) - 1), TINY)


def test_flag_intervals_keep_each_flag_in_its_state():
    u = torch.full((motion_dims(TINY),), 0.5, dtype=torch.float64)
    u[0], u[3 * TINY.max_sprites] = 0.1, 0.1  # sprite 0 static, pan on
    lo, hi = flag_intervals(u, TINY)
    assert (hi[0], lo[3]) == (TINY.static_prob, TINY.static_prob) and hi[3 * TINY.max_sprites] == TINY.pan_prob


def _inputs(x0: torch.Tensor, t: float, n: int, seed: int):
    sigma = FAMILY.sigma_at(torch.full((n,), t, dtype=torch.float64))
    eps = torch.randn(n, *x0.shape, generator=torch.Generator().manual_seed(seed))
    return x0.unsqueeze(0) + sigma.view(-1, 1, 1, 1, 1).float() * eps, sigma


def test_reference_at_pure_noise_is_the_prior_mean_of_the_futures():
    """At σ = 700 the posterior is the prior over motions: compare with a plain Monte-Carlo mean
    of 6000 prior futures (tolerance: 5 SE of that mean per element, in RMS)."""
    scenes, motion = make_scenes(7, 1, TINY)
    x0 = render_latents(scenes, motion, TINY, CODEC)[0]
    x, sigma = _inputs(x0, 1.0, 2, 0)
    ref = reference_posterior(scenes, motion[0], x, sigma, FAMILY, TINY, CODEC, ReferenceConfig(candidates=1024, replicates=2),
                              generator=torch.Generator().manual_seed(1))
    prior = render_latents(scenes, draw_motion(torch.Generator().manual_seed(2), TINY, 6000), TINY, CODEC).double()
    mc_mean, mc_se = prior.mean(0), prior.std(0) / math.sqrt(prior.shape[0])
    for est in ref.mean:
        err = (est - mc_mean) / (mc_se.clamp(min=1e-6) * math.sqrt(1 + prior.shape[0] / float(ref.ess[:, 0].sum())))
        assert float(err.pow(2).mean().sqrt()) < 2.0


def test_reference_at_small_noise_is_the_video():
    scenes, motion = make_scenes(11, 3, TINY)
    latents = render_latents(scenes[0:1], motion[0:1], TINY, CODEC)
    x0 = latents[0]
    x, sigma = _inputs(x0, 0.2, 2, 3)
    ref = reference_posterior(scenes[0:1], motion[0], x, sigma, FAMILY, TINY, CODEC, ReferenceConfig(candidates=256, replicates=2, pilot=128),
                              generator=torch.Generator().manual_seed(4))
    assert float((ref.mean - x0).abs().max()) < 0.05  # σ(0.2) = 0.026: the posterior is a point
    assert float(ref.ess.min()) > 5  # the Laplace proposal finds it


def test_reference_curves_shapes_and_regeneration_target():
    scenes, motion = make_scenes(13, 1, TINY)
    x0 = render_latents(scenes, motion, TINY, CODEC)[0]
    t = [0.3, 1.0]
    xs, sig = zip(*(_inputs(x0, ti, 2, 5 + i) for i, ti in enumerate(t)))
    ref = reference_posterior(scenes, motion[0], torch.cat(xs), torch.cat(sig), FAMILY, TINY, CODEC,
                              ReferenceConfig(candidates=256, replicates=2, pilot=128), generator=torch.Generator().manual_seed(6))
    cur = reference_curves(ref, x0, len(t))
    assert cur.raw.shape == (2, 2) and cur.corrected.shape == (2,) and cur.sample.shape == (2, 2)
    assert torch.allclose(cur.raw[0], torch.ones(2, dtype=torch.float64), atol=0.02)
    # a posterior sample moves at least as much as the posterior mean on average (Jensen)
    assert float(cur.sample[1].mean()) >= float(cur.raw[1].mean()) - 1e-9
    fde = frame_difference_energy(x0, time_dim=1)
    assert float(fde) > 0
