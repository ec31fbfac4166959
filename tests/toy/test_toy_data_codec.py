"""Toy world data and codec: determinism, ground truth consistency, exact invertibility."""

from __future__ import annotations

import itertools

import pytest
import torch

from cil_core.validation import CILValueError
from cil_toy.codec import LatentCodec, hadamard_2d
from cil_toy.data import HELD_OUT_SEED, WorldConfig, held_out_set, make_videos, sprite_coverage, training_batches

SMALL = WorldConfig(frames=4, height=16, width=16)


def test_same_seed_same_videos_and_tracks():
    a, ta = make_videos(123, 5, SMALL)
    b, tb = make_videos(123, 5, SMALL)
    assert torch.equal(a, b)
    assert torch.equal(ta.centers, tb.centers) and torch.equal(ta.colors, tb.colors)


def test_different_seeds_differ_and_range_is_pixels():
    a, _ = make_videos(1, 4, SMALL)
    b, _ = make_videos(2, 4, SMALL)
    assert not torch.equal(a, b)
    assert a.shape == (4, 3, 4, 16, 16)
    assert a.min() >= -1 and a.max() <= 1


def test_held_out_set_is_fixed_and_not_in_the_training_stream():
    v1, _ = held_out_set(3, SMALL)
    v2, _ = make_videos(HELD_OUT_SEED, 3, SMALL)
    assert torch.equal(v1, v2)
    for batch in itertools.islice(training_batches(0, 3, SMALL), 3):
        assert not torch.equal(batch, v1)


def test_training_stream_is_deterministic_and_resumable():
    first = list(itertools.islice(training_batches(5, 2, SMALL), 3))
    resumed = next(training_batches(5, 2, SMALL, start_step=2))
    assert torch.equal(first[2], resumed)
    assert not torch.equal(first[0], first[1])


def test_sprites_stay_inside_the_frame_and_static_ones_do_not_move():
    _, tracks = make_videos(7, 256)
    cfg = WorldConfig()
    r = tracks.radii.unsqueeze(-1)
    x, y = tracks.centers[..., 0], tracks.centers[..., 1]
    assert ((x >= r - 1e-4) & (x <= cfg.width - r + 1e-4)).all()
    assert ((y >= r - 1e-4) & (y <= cfg.height - r + 1e-4)).all()
    steps = (tracks.centers[:, :, 1:] - tracks.centers[:, :, :-1]).norm(dim=-1)
    speeds = steps.amax(dim=-1)[tracks.present]
    assert (speeds <= cfg.speed_range[1] + 1e-4).all()
    static_share = (speeds < 1e-6).float().mean()
    assert 0.1 < static_share < 0.4  # static_prob = 0.25, over ~500 sprites


def test_sprite_pixels_have_the_sprite_colour():
    """Where a sprite fully covers a pixel and no later sprite does, the pixel is its colour."""
    video, tracks = make_videos(11, 8)
    cover = sprite_coverage(tracks, WorldConfig())  # [N, S, F, H, W]
    for s in range(cover.shape[1]):
        on_top = (cover[:, s] == 1) & (cover[:, s + 1 :].sum(1) == 0)
        if on_top.any():
            pix = video.permute(0, 2, 3, 4, 1)[on_top]  # [P, 3]
            n_idx = on_top.nonzero()[:, 0]
            assert torch.allclose(pix, tracks.colors[n_idx, s], atol=1e-5)


@pytest.mark.parametrize("block", [1, 2, 4])
def test_hadamard_is_orthonormal(block):
    h = hadamard_2d(block).double()
    assert torch.allclose(h @ h.T, torch.eye(block * block, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("block", [2, 4])
def test_codec_round_trip_and_energy(block):
    codec = LatentCodec(scale_factor=2.0, block=block)
    video, _ = make_videos(3, 2, SMALL)
    z = codec.encode(video)
    assert z.shape == (2, 3 * block * block, 4, 16 // block, 16 // block)
    assert torch.allclose(codec.decode(z), video, atol=1e-5)
    # orthonormal transform: energy × scale² (independent check of the scaling)
    assert torch.allclose(z.pow(2).sum(), 4.0 * video.pow(2).sum(), rtol=1e-5)
    # channel 0 of each colour is the block mean × block (times the scale)
    mean = torch.nn.functional.avg_pool2d(video[:, 0, 0], block)
    assert torch.allclose(z[:, 0, 0], 2.0 * block * mean, atol=1e-5)


def test_codec_rejects_bad_shapes():
    codec = LatentCodec(block=4)
    with pytest.raises(CILValueError):
        codec.encode(torch.zeros(1, 3, 2, 10, 10))  # not divisible by 4
    with pytest.raises(CILValueError):
        codec.decode(torch.zeros(1, 12, 2, 4, 4))  # 12 channels, block 4 needs 48
    with pytest.raises(CILValueError):
        LatentCodec(block=3)
