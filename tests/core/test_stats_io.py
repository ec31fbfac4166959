"""Stats files: round trip, atomic writes, official files, validation and fitting to a latent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

import cil_core.stats_io as stats_io
from cil_core.analytic_init import AnalyticStats, estimate_stats
from cil_core.stats_io import FORMAT, FORMAT_VERSION, fit_stats_to_latent, load_stats, save_stats
from cil_core.validation import CILValueError

OFFICIAL_DIR = next(
    (d for d in (Path(__file__).resolve().parents[3] / "shared" / "data" / "official-analytic-init", Path("/work/shared/data/official-analytic-init")) if d.is_dir()),
    Path("/work/shared/data/official-analytic-init"),
)  # shared/ beside the checkout (CI), or the workspace copy
OFFICIAL = {
    "dynamicrafter_320x512.safetensors": (4, 16, 40, 64),
    "dynamicrafter_576x1024.safetensors": (4, 16, 72, 128),
}


def make_stats(shape=(2, 3, 4, 5), n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    vids = [0.4 + torch.randn(shape, generator=g) for _ in range(n)]
    return estimate_stats(vids, {"family": json.dumps({"family": "edm"}), "fps": "8", "note": "ünïcode"})


def temp_leftovers(folder: Path):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_round_trip(tmp_path):
    stats = make_stats()
    path = save_stats(stats, tmp_path / "sub" / "s.safetensors")
    back = load_stats(path)
    assert torch.equal(back.mean, stats.mean)  # float64 when the Welford state is kept
    assert back.tr_cov_d == stats.tr_cov_d
    assert torch.equal(back.channel_var, stats.channel_var)
    assert torch.equal(back.m2, stats.m2) and back.m2.dtype == torch.float64
    assert back.count == stats.count and back.shape == stats.shape
    for key in ("family", "fps", "note"):
        assert back.meta[key] == stats.meta[key]
    assert back.meta["format"] == FORMAT and back.meta["format_version"] == FORMAT_VERSION
    assert (back.meta["channels"], back.meta["frames"], back.meta["latent_height"], back.meta["latent_width"]) == ("2", "3", "4", "5")
    assert back.meta["count"] == "6"
    assert temp_leftovers(path.parent) == []


def test_round_trip_without_m2(tmp_path):
    stats = make_stats()
    stats.m2 = None
    back = load_stats(save_stats(stats, tmp_path / "s.safetensors"))
    assert back.m2 is None
    torch.testing.assert_close(back.mean, stats.mean.float().double(), rtol=0, atol=0)  # stored as float32


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = save_stats(make_stats(seed=1), tmp_path / "s.safetensors")
    before = path.read_bytes()

    def broken_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(stats_io, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        save_stats(make_stats(seed=2), path)
    assert path.read_bytes() == before
    assert temp_leftovers(tmp_path) == []
    monkeypatch.undo()
    assert load_stats(path).count == 6


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_files_load(name):
    path = OFFICIAL_DIR / name
    if not path.exists():
        pytest.skip(f"official file {path} not present on this machine")
    with safe_open(str(path), framework="pt") as fh:
        raw_mean, raw_tr = fh.get_tensor("Expectation_X0"), fh.get_tensor("Tr_Cov_d")
    stats = load_stats(path)
    assert stats.shape == OFFICIAL[name]
    assert stats.tr_cov_d == pytest.approx(float(raw_tr), rel=1e-7)
    assert torch.equal(stats.mean, raw_mean[0].double())
    assert stats.channel_var.shape == (4,) and torch.allclose(stats.channel_var, torch.tensor(stats.tr_cov_d, dtype=torch.float64))
    assert stats.m2 is None and stats.meta["source"] == "official"


def write(path, tensors, metadata=None):
    save_file(tensors, str(path), metadata=metadata)
    return path


def ours_meta():
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "count": "3"}


def ours_tensors(mean=None):
    mean = torch.zeros(2, 3, 4, 4) if mean is None else mean
    return {"mean": mean, "channel_var": torch.ones(mean.shape[0] if mean.dim() else 1, dtype=torch.float64), "tr_cov_d": torch.tensor([1.0], dtype=torch.float64)}


@pytest.mark.parametrize(
    "tensors, metadata, match",
    [
        ({"Expectation_X0": torch.full((1, 4, 2, 3, 3), float("nan")), "Tr_Cov_d": torch.tensor(0.5)}, None, "non-finite"),
        ({"Expectation_X0": torch.zeros(1, 4, 2, 3, 3), "Tr_Cov_d": torch.tensor(float("inf"))}, None, "non-finite"),
        ({"Expectation_X0": torch.zeros(4, 3, 3), "Tr_Cov_d": torch.tensor(0.5)}, None, r"shape \(4, 3, 3\)"),
        ({"Expectation_X0": torch.zeros(1, 4, 2, 3, 3, dtype=torch.int32), "Tr_Cov_d": torch.tensor(0.5)}, None, "int32"),
        ({"Expectation_X0": torch.zeros(1, 4, 2, 3, 3), "Tr_Cov_d": torch.tensor([1, 2], dtype=torch.int64)}, None, "int64"),
        ({"Expectation_X0": torch.zeros(1, 4, 2, 3, 3), "Tr_Cov_d": torch.tensor([0.5, 0.6])}, None, "one scalar"),
        ({"Expectation_x_0": torch.zeros(1, 4, 2, 3, 3), "trCov_d": torch.tensor(-1.0)}, None, "tr_cov_d"),
        ({"something": torch.zeros(3)}, None, "expected our format"),
        (ours_tensors(torch.full((2, 3, 4, 4), float("nan"))), ours_meta(), "non-finite"),
        (ours_tensors(torch.zeros(2, 3, 4)), ours_meta(), r"expected \[C, F, H, W\]"),
        (ours_tensors(torch.zeros(2, 3, 4, 4, dtype=torch.int16)), ours_meta(), "int16"),
        ({"mean": torch.zeros(2, 3, 4, 4)}, ours_meta(), "lacks"),
        (ours_tensors(), {**ours_meta(), "format_version": "99"}, "version"),
        ({**ours_tensors(), "m2": torch.zeros(2, 3, 4, 5, dtype=torch.float64)}, ours_meta(), "'m2'"),
        ({**ours_tensors(), "channel_var": torch.ones(3, dtype=torch.float64)}, ours_meta(), "channel_var"),
    ],
)
def test_bad_files_raise(tmp_path, tensors, metadata, match):
    path = write(tmp_path / "bad.safetensors", tensors, metadata)
    with pytest.raises(CILValueError, match=match):
        load_stats(path)


def test_truncated_file_raises(tmp_path):
    path = save_stats(make_stats(), tmp_path / "s.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CILValueError, match="not a readable safetensors"):
        load_stats(path)
    path.write_bytes(b"")
    with pytest.raises(CILValueError, match="s.safetensors"):
        load_stats(path)


def test_pickle_suffix_and_missing_file_raise(tmp_path):
    pt = tmp_path / "stats.pt"
    pt.write_bytes(b"not read")
    with pytest.raises(CILValueError, match=r"only \.safetensors"):
        load_stats(pt)
    with pytest.raises(CILValueError, match="does not exist"):
        load_stats(tmp_path / "missing.safetensors")


# --- fit_stats_to_latent -----------------------------------------------------------------------
def const_stats(shape, value):
    return AnalyticStats(
        mean=torch.full(shape, value, dtype=torch.float64), tr_cov_d=0.3, channel_var=torch.full((shape[0],), 0.3, dtype=torch.float64), count=4
    )


def test_channel_mismatch_refused_naming_both_shapes():
    stats = const_stats((4, 16, 40, 64), 0.5)
    for policy in ("resample", "strict"):
        with pytest.raises(CILValueError) as err:
            fit_stats_to_latent(stats, (16, 21, 60, 104), policy=policy)
        msg = str(err.value)
        assert "[4, 16, 40, 64]" in msg and "[16, 21, 60, 104]" in msg and "channels" in msg


def test_strict_refuses_and_same_shape_passes():
    stats = const_stats((4, 16, 40, 64), 0.5)
    with pytest.raises(CILValueError, match=r"\[4, 16, 40, 64\].*\[4, 16, 72, 128\]"):
        fit_stats_to_latent(stats, (4, 16, 72, 128), policy="strict")
    assert fit_stats_to_latent(stats, (4, 16, 40, 64), policy="strict") is stats
    with pytest.raises(CILValueError, match="policy"):
        fit_stats_to_latent(stats, (4, 16, 40, 64), policy="nearest")


dims = st.integers(1, 9)


@given(src=st.tuples(dims, dims, dims), dst=st.tuples(dims, dims, dims), value=st.sampled_from([0.5, -1.25, 3.0, 0.1, -0.7]))
@settings(max_examples=30, deadline=None)
def test_resample_shape_and_constant_field(src, dst, value):
    stats = const_stats((3, *src), value)
    out = fit_stats_to_latent(stats, (3, *dst))
    assert out.shape == (3, *dst)
    assert out.tr_cov_d == stats.tr_cov_d and torch.equal(out.channel_var, stats.channel_var)
    if value in (0.5, -1.25, 3.0):  # dyadic constants: averaging/interpolation is exact
        assert bool((out.mean == value).all())
    else:
        torch.testing.assert_close(out.mean, torch.full_like(out.mean, value), rtol=1e-14, atol=0)
    if src != dst:
        assert json.loads(out.meta["resampled_from"]) == [3, *src]


def test_resample_halving_is_block_average():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(2, 4, 6, 8, generator=g, dtype=torch.float64)
    stats = AnalyticStats(mean=mean, tr_cov_d=1.0, channel_var=torch.ones(2, dtype=torch.float64), count=1)
    out = fit_stats_to_latent(stats, (2, 2, 3, 4))
    ref = mean.reshape(2, 2, 2, 3, 2, 4, 2).mean(dim=(2, 4, 6))
    torch.testing.assert_close(out.mean, ref, rtol=1e-13, atol=1e-13)


def test_atomic_save_leaves_no_temp_on_success(tmp_path):
    for i in range(3):
        stats_io.atomic_save_safetensors({"x": torch.full((3,), float(i))}, tmp_path / "x.safetensors", {"i": str(i)})
    assert sorted(os.listdir(tmp_path)) == ["x.safetensors"]
    with safe_open(str(tmp_path / "x.safetensors"), framework="pt") as fh:
        assert fh.metadata()["i"] == "2" and float(fh.get_tensor("x")[0]) == 2.0


def test_resume_from_saved_file_matches_one_pass(tmp_path):
    """A resumable file stores E[x0] and m2 in float64, so resuming equals one pass up to float64
    rounding of the merge (relative 1e-12 is ~4500 ulps: generous for 20 merges)."""
    g = torch.Generator().manual_seed(3)
    vids = [2.0 + torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(20)]
    one = estimate_stats(vids)
    path = save_stats(estimate_stats(vids[:12]), tmp_path / "part.safetensors")
    resumed = estimate_stats(vids[12:], resume=load_stats(path))
    assert resumed.count == 20
    torch.testing.assert_close(resumed.mean, one.mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(resumed.m2, one.m2, rtol=1e-12, atol=0)
    assert resumed.tr_cov_d == pytest.approx(one.tr_cov_d, rel=1e-12)
