"""Toy metrics against ground truth and independent formulas."""

from __future__ import annotations

import math

import pytest
import torch

from cil_core.validation import CILValueError
from cil_toy.data import WorldConfig, make_videos
from cil_toy.metrics import bootstrap_frechet, feature_matrix, frechet_distance, track_sprites, video_metrics


def _gt_speed(tracks) -> float:
    steps = (tracks.centers[:, :, 1:] - tracks.centers[:, :, :-1]).norm(dim=-1)
    return float((steps * tracks.present.unsqueeze(-1)).sum() / (tracks.present.sum() * steps.shape[-1]))


def test_colour_tracker_recovers_ground_truth_centres():
    video, tracks = make_videos(21, 64)
    obs = track_sprites(video, tracks, video[:, :, 0])
    err = (obs.center - tracks.centers).norm(dim=-1)
    # unoccluded, found sprites: centroid within 0.35 px of the true centre
    present = tracks.present.unsqueeze(-1).expand_as(obs.found)
    assert obs.found[present].float().mean() > 0.9  # most sprites are found in most frames
    assert float(err[obs.found].median()) < 0.35


def test_speed_metric_matches_ground_truth_speed():
    video, tracks = make_videos(22, 128)
    speed = float(video_metrics(video, tracks, video[:, :, 0])["speed"].mean())
    assert speed == pytest.approx(_gt_speed(tracks), rel=0.1)


def test_static_copy_has_no_motion_and_perfect_alignment():
    video, tracks = make_videos(23, 16)
    cond = video[:, :, 0]
    static = cond.unsqueeze(2).expand_as(video)
    m = video_metrics(static, tracks, cond)
    assert torch.all(m["speed"] == 0) and torch.all(m["fde"] == 0)
    assert torch.all(m["psnr0"] >= 90)
    assert torch.all(m["persistence"] == 1)


def test_frechet_distance_matches_1d_and_diagonal_formulas():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(5000, 1, generator=g, dtype=torch.float64) * 2 + 1
    b = torch.randn(5000, 1, generator=g, dtype=torch.float64) * 0.5 - 1
    ma, mb, sa, sb = a.mean(), b.mean(), a.std(), b.std()
    assert frechet_distance(a, b) == pytest.approx(float((ma - mb) ** 2 + (sa - sb) ** 2), rel=1e-9)
    # diagonal covariances: sum over dims of the 1-D formula
    a2 = torch.randn(4000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0])
    b2 = torch.randn(4000, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0]) + 1
    diag = sum((a2[:, i].mean() - b2[:, i].mean()) ** 2 + (a2[:, i].std() - b2[:, i].std()) ** 2 for i in range(3))
    assert frechet_distance(a2, b2) == pytest.approx(float(diag), rel=0.05)  # sample cross-covariances ≠ 0
    assert frechet_distance(a2, a2) == pytest.approx(0.0, abs=1e-8)


def test_frechet_rejects_bad_shapes_and_bootstrap_se_is_positive():
    with pytest.raises(CILValueError):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))
    video, tracks = make_videos(24, 24, WorldConfig())
    f = feature_matrix(video_metrics(video, tracks, video[:, :, 0]))
    g = torch.Generator().manual_seed(1)
    fd, se = bootstrap_frechet(f, f, 20, g)
    assert fd == pytest.approx(0.0, abs=1e-8) and se > 0 and math.isfinite(se)
