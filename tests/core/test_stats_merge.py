"""Merging estimates made apart (cil_core.stats_merge, ``cil stats merge``): the merge of disjoint
shards equals one pass over all videos (float64, 1e-12 relative); estimates of other latents, or
sharing a video, are refused in one line that names both files and what differs."""

from __future__ import annotations

import json

import pytest
import torch

from cil_core.analytic_init import estimate_stats
from cil_core.stats_io import load_stats, save_stats
from cil_core.stats_merge import merge_stats, videos_digest
from cil_core.validation import CILValueError
from cil_tools import cli

META = {"latent_format": "SD15", "pixel_frames": "4", "height": "32", "width": "32", "stride": "1", "fps": "0.0"}


def latents(n: int, seed: int = 0, shape=(4, 2, 3, 5)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1 for _ in range(n)]


def shard(videos, ids, **meta):
    stats = estimate_stats(videos, META | meta)
    stats.meta["videos"] = json.dumps(ids)
    return stats


def test_merge_of_three_shards_equals_one_pass(tmp_path, capsys):
    xs = latents(10)
    ids = [f"v{i}.mp4" for i in range(10)]
    one = estimate_stats(xs, META)
    files = []
    for k in range(3):
        files.append(str(save_stats(shard(xs[k::3], ids[k::3]), tmp_path / f"part{k}.safetensors")))
    assert cli.main(["stats", "merge", *files, "--out", str(tmp_path / "all.safetensors")]) == 0
    merged = load_stats(tmp_path / "all.safetensors")
    assert merged.count == 10
    assert torch.allclose(merged.mean, one.mean, rtol=1e-12, atol=0)
    assert torch.allclose(merged.m2, one.m2, rtol=1e-12, atol=0)
    assert merged.tr_cov_d == pytest.approx(one.tr_cov_d, rel=1e-12)
    assert sorted(json.loads(merged.meta["videos"])) == sorted(ids) and merged.meta["videos_sha256"] == videos_digest(ids)
    # the float64 two-pass reference, independently of the Welford code
    stack = torch.stack(xs)
    assert torch.allclose(merged.mean, stack.mean(0), rtol=1e-12, atol=1e-12)
    assert merged.tr_cov_d == pytest.approx(float(stack.var(0, unbiased=False).mean()), rel=1e-12)


@pytest.mark.parametrize("field,value", [("pixel_frames", "8"), ("latent_format", "Wan21"), ("width", "64"), ("fps", "8.0")])
def test_estimates_of_other_latents_are_refused_naming_both_files_and_the_field(tmp_path, capsys, field, value):
    a = save_stats(shard(latents(3), ["a.mp4", "b.mp4", "c.mp4"]), tmp_path / "a.safetensors")
    b = save_stats(shard(latents(2, 1), ["d.mp4", "e.mp4"], **{field: value}), tmp_path / "b.safetensors")
    assert cli.main(["stats", "merge", str(a), str(b), "--out", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cil stats: error: ") and "\n" not in err
    assert str(a) in err and str(b) in err and f"differ in {field}" in err
    assert not (tmp_path / "m.safetensors").exists()


def test_overlapping_shards_and_shapes_are_refused(tmp_path):
    a = shard(latents(2), ["a.mp4", "b.mp4"])
    with pytest.raises(CILValueError, match="both include 1 video.*count them twice"):
        merge_stats([("A", a), ("B", shard(latents(2, 1), ["b.mp4", "c.mp4"]))])
    with pytest.raises(CILValueError, match="A and B differ in latent shape"):
        merge_stats([("A", a), ("B", shard(latents(2, 1, shape=(4, 2, 3, 6)), ["c.mp4", "d.mp4"]))])
    official = estimate_stats(latents(2), META)
    official.m2 = None
    with pytest.raises(CILValueError, match="B carries no Welford state"):
        merge_stats([("A", a), ("B", official)])
