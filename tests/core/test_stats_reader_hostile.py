"""Hostile stats files: every damaged, lying or oversized file is one CILValueError naming it, with
no unbounded allocation and nothing unpickled (cil_core.stats_io + cil_core.safetensors_header)."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cil_core.memory as memory
from cil_core.analytic_init import AnalyticStats, estimate_stats
from cil_core.stats_io import FORMAT, FORMAT_VERSION, check_shape, fit_stats_to_latent, load_stats, save_stats
from cil_core.validation import CILValueError


def good_file(tmp_path, name="s.safetensors"):
    g = torch.Generator().manual_seed(0)
    stats = estimate_stats([torch.randn(2, 3, 4, 4, generator=g) for _ in range(3)], {"family": "edm"})
    return save_stats(stats, tmp_path / name)


def raw_file(path, header: dict, data: bytes = b"", declared: int | None = None):
    body = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(body) if declared is None else declared) + body + data)
    return path


def ours(**tensors):
    return {"__metadata__": {"format": FORMAT, "format_version": FORMAT_VERSION, "count": "2"}, **tensors}


@pytest.mark.parametrize("declared, match", [(2**62, "claims"), (10**9, "claims"), (3, "not JSON")])
def test_a_header_that_claims_more_than_the_file_is_refused_without_reading_it(tmp_path, declared, match):
    path = raw_file(tmp_path / "h.safetensors", ours(), declared=declared)
    with pytest.raises(CILValueError, match=match) as info:
        load_stats(path)
    assert "h.safetensors" in str(info.value)


def test_a_tensor_that_claims_gigabytes_is_refused_from_its_header(tmp_path):
    """Shape [4, 16, 40000, 40000] float64 (819 GB) inside a 100-byte file: refused from the header,
    before safetensors maps or copies anything."""
    entry = {"dtype": "F64", "shape": [4, 16, 40000, 40000], "data_offsets": [0, 8 * 4 * 16 * 40000 * 40000]}
    path = raw_file(tmp_path / "big.safetensors", ours(mean=entry), b"\0" * 64)
    with pytest.raises(CILValueError, match="outside the file"):
        load_stats(path)


def test_a_sparse_file_as_large_as_its_header_says_is_refused_by_the_memory_check(tmp_path, monkeypatch):
    """A consistent header over a (sparse) file of 2 GB: the tensors fit the file but not the budget."""
    shape = [4, 16, 2048, 2048]
    nbytes = 8 * 4 * 16 * 2048 * 2048
    header = ours(mean={"dtype": "F64", "shape": shape, "data_offsets": [0, nbytes]},
                  channel_var={"dtype": "F64", "shape": [4], "data_offsets": [nbytes, nbytes + 32]},
                  tr_cov_d={"dtype": "F64", "shape": [1], "data_offsets": [nbytes + 32, nbytes + 40]})
    path = raw_file(tmp_path / "sparse.safetensors", header)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size + nbytes + 40)  # sparse: no disk used
    monkeypatch.setattr(memory, "available_bytes", lambda: 1024**3)
    with pytest.raises(CILValueError, match=r"needs about 2 GB of memory, more than the 512 MB"):
        load_stats(path)


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}, "unknown dtype"),
        ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}, "needs 8 bytes"),
        ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, "outside the file"),
        ("not an object", "not an object"),
    ],
)
def test_malformed_entries_are_named(tmp_path, entry, match):
    path = raw_file(tmp_path / "m.safetensors", ours(mean=entry), b"\0" * 8)
    with pytest.raises(CILValueError, match=match):
        load_stats(path)


def test_zero_sized_stats_are_refused_on_write_and_read(tmp_path):
    with pytest.raises(CILValueError, match="at least 1"):
        AnalyticStats(mean=torch.zeros(12, 0, 8, 8, dtype=torch.float64), tr_cov_d=1.0,
                      channel_var=torch.ones(12, dtype=torch.float64), count=1)
    from safetensors.torch import save_file

    save_file({"mean": torch.zeros(12, 0, 8, 8), "channel_var": torch.ones(12, dtype=torch.float64),
               "tr_cov_d": torch.ones(1, dtype=torch.float64)}, str(tmp_path / "z.safetensors"),
              metadata={"format": FORMAT, "format_version": FORMAT_VERSION, "count": "1"})
    with pytest.raises(CILValueError, match="at least 1"):
        load_stats(tmp_path / "z.safetensors")
    save_file({"mean": torch.zeros(2, 1, 1, 1), "channel_var": torch.ones(2, dtype=torch.float64),
               "tr_cov_d": torch.ones(0, dtype=torch.float64)}, str(tmp_path / "t.safetensors"),
              metadata={"format": FORMAT, "format_version": FORMAT_VERSION, "count": "1"})
    with pytest.raises(CILValueError, match="one scalar"):
        load_stats(tmp_path / "t.safetensors")


@pytest.mark.parametrize("key, value, match", [("tr_cov_d", -1.6e173, "tr_cov_d"), ("count", "0", "count=0"),
                                                ("channel_var", float("nan"), "finite")])
def test_values_the_stats_checks_refuse_name_the_file(tmp_path, key, value, match):
    """A whole file whose values are wrong (a negative variance, no samples): the error names the file."""
    from safetensors.torch import save_file

    tensors = {"mean": torch.zeros(2, 1, 1, 1), "channel_var": torch.ones(2, dtype=torch.float64),
               "tr_cov_d": torch.ones(1, dtype=torch.float64)}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "count": "1"}
    if key == "count":
        meta["count"] = value
    else:
        tensors[key] = torch.full_like(tensors[key], value)
    save_file(tensors, str(tmp_path / "v.safetensors"), metadata=meta)
    with pytest.raises(CILValueError, match=match) as info:
        load_stats(tmp_path / "v.safetensors")
    assert str(info.value).startswith("v.safetensors")


def test_a_folder_is_named_as_a_folder(tmp_path):
    with pytest.raises(CILValueError, match="is a folder"):
        load_stats(tmp_path)


@pytest.mark.parametrize("shape, match", [((12, -1, 8, 8), "at least 1"), ((12, 0, 8, 8), "at least 1"), ((4, 16, 40), "four"),
                                          ((4.5, 1, 1, 1), "four"), ((12, 8, 40000, 40000), "of memory")])
def test_fit_shapes_are_checked_before_allocating(shape, match):
    stats = AnalyticStats(mean=torch.zeros(12, 2, 2, 2, dtype=torch.float64), tr_cov_d=1.0, channel_var=torch.ones(12, dtype=torch.float64), count=1)
    with pytest.raises(CILValueError, match=match):
        fit_stats_to_latent(stats, shape)
    with pytest.raises(CILValueError, match=match):
        check_shape(shape)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_damage_to_a_stats_file_is_one_clear_error(tmp_path_factory, data):
    """Random byte flips, truncations and insertions of a valid file: it loads (the damage hit no
    checked byte) or fails with a CILValueError, never another exception."""
    folder = tmp_path_factory.mktemp("fuzz")
    blob = bytearray(good_file(folder).read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(blob) - 1))
        if kind == "flip":
            blob[at] = data.draw(st.integers(0, 255))
        elif kind == "cut":
            del blob[at:at + data.draw(st.integers(1, 64))]
        else:
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        if not blob:
            blob = bytearray(b"\0")
    path = folder / "d.safetensors"
    path.write_bytes(bytes(blob))
    try:
        stats = load_stats(path)
    except CILValueError as exc:
        assert "d.safetensors" in str(exc) or "stats" in str(exc)
    else:
        assert torch.isfinite(stats.mean).all() and stats.mean.numel() > 0
