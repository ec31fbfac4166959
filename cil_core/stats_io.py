"""Analytic-Init stats files: our safetensors format, the official ones, and fitting to a latent.

Our format (``FORMAT``, version ``FORMAT_VERSION``): tensors ``mean`` [C, F, H, W] (float32, or float64
when ``m2`` is kept; model space, i.e. after the model's latent scaling), ``channel_var`` [C], ``tr_cov_d`` [1] (float64) and,
when the estimate can be resumed, ``m2`` [C, F, H, W] (float64). Metadata (all strings): format,
format_version, layout=CFHW, latent_space=model, family (JSON), channels, frames, latent_height,
latent_width, height, width, fps, count, plus free-form keys.

Official DynamiCrafter files hold ``Expectation_X0`` [1, C, T, H, W] and ``Tr_Cov_d``; the official
SVD keys are ``Expectation_x_0`` / ``trCov_d``. Only safetensors are read: never unpickle.
"""

from __future__ import annotations

import json
import operator
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from .analytic_init import AnalyticStats
from .atomic import atomic_path
from .memory import check_fits, tensor_bytes
from .safetensors_header import read_header
from .validation import CILValueError, check_finite

FORMAT = "comfyui-cil/analytic-stats"
FORMAT_VERSION = "1"
OFFICIAL_KEYS = (("Expectation_X0", "Tr_Cov_d"), ("Expectation_x_0", "trCov_d"))
FIT_POLICIES = ("resample", "strict")


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> Path:
    """Write a safetensors file atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return Path(path)


def save_stats(stats: AnalyticStats, path: str | os.PathLike) -> Path:
    c, f, h, w = stats.shape
    meta = {k: str(v) for k, v in stats.meta.items()}
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        layout="CFHW",
        latent_space=meta.get("latent_space", "model"),
        channels=str(c),
        frames=str(f),
        latent_height=str(h),
        latent_width=str(w),
        count=str(stats.count),
    )
    tensors = {
        # float64 when the Welford state is kept, so a resumed estimate is exact
        "mean": stats.mean.to(torch.float64 if stats.m2 is not None else torch.float32),
        "channel_var": stats.channel_var.to(torch.float64),
        "tr_cov_d": torch.tensor([stats.tr_cov_d], dtype=torch.float64),
    }
    if stats.m2 is not None:
        tensors["m2"] = stats.m2.to(torch.float64)
    return atomic_save_safetensors(tensors, path, meta)


def load_stats(path: str | os.PathLike) -> AnalyticStats:
    """Load our format or an official file (recognised by its keys), validating everything. The
    header is checked first (``safetensors_header``): only the tensors a stats file needs are
    read, once they are known to be whole and to fit in memory."""
    path = Path(path)
    if not path.exists():
        raise CILValueError(f"stats file {str(path)!r} does not exist.")
    if path.is_dir():
        raise CILValueError(f"{str(path)!r} is a folder, not a stats file; give a .safetensors file in it.")
    if not path.is_file():  # a FIFO or a device: opening it could block or never end
        raise CILValueError(f"{str(path)!r} is not a regular file; give a .safetensors stats file.")
    if path.suffix != ".safetensors":
        raise CILValueError(
            f"{path.name}: only .safetensors stats files are read (pickled .pt/.ckpt files can run code); "
            "convert an official .pt with torch.load in a trusted session and save_file()."
        )
    try:
        meta, entries = read_header(path)
    except OSError as exc:
        raise CILValueError(f"{path.name} cannot be read ({exc.strerror or exc}).") from None
    keys = _needed_keys(path, meta, entries)
    check_fits(f"stats file {path.name}", sum(entries[k].nbytes for k in keys),
               "this is not a stats file of any latent this machine can sample.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in keys}
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise CILValueError(f"{path.name} is not a readable safetensors file ({exc}); re-save or re-estimate it.") from exc
    try:
        if meta.get("format") == FORMAT:
            return _from_ours(path, tensors, meta)
        mean_key, var_key = keys
        return _from_official(path, tensors[mean_key], tensors[var_key], meta)
    except CILValueError as exc:  # AnalyticStats' own checks do not know the file: name it
        if path.name in str(exc):
            raise
        raise CILValueError(f"{path.name}: {exc} The file is damaged; re-estimate it.") from None


def _needed_keys(path: Path, meta: dict[str, str], entries: dict) -> list[str]:
    """The tensors of a stats file: ours (by its format tag) or an official pair (by its keys)."""
    if meta.get("format") == FORMAT:
        return [k for k in ("mean", "channel_var", "tr_cov_d", "m2") if k in entries]
    for mean_key, var_key in OFFICIAL_KEYS:
        if mean_key in entries and var_key in entries:
            return [mean_key, var_key]
    raise CILValueError(
        f"{path.name} holds keys {sorted(entries)}; expected our format ({FORMAT}) or an official file "
        f"with {OFFICIAL_KEYS[0]} or {OFFICIAL_KEYS[1]}."
    )


def _require_float(path: Path, key: str, t: torch.Tensor) -> torch.Tensor:
    if not torch.is_floating_point(t):
        raise CILValueError(f"{path.name}: tensor {key!r} has dtype {t.dtype}; expected a float dtype.")
    return check_finite(f"{path.name}:{key}", t)


def _parse_count(path: Path, meta: dict[str, str]) -> int:
    raw = meta.get("count", "1")
    try:
        return int(raw)
    except ValueError:
        raise CILValueError(f"{path.name}: metadata count={raw!r} is not a whole number; the file is damaged.") from None


def _from_ours(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> AnalyticStats:
    if meta.get("format_version") != FORMAT_VERSION:
        raise CILValueError(
            f"{path.name} is format version {meta.get('format_version')!r}; this pack reads version "
            f"{FORMAT_VERSION}. Update comfyui-cil or re-estimate the stats."
        )
    missing = {"mean", "channel_var", "tr_cov_d"} - tensors.keys()
    if missing:
        raise CILValueError(f"{path.name} lacks tensor(s) {sorted(missing)}; the file is incomplete, re-estimate it.")
    mean = _require_float(path, "mean", tensors["mean"])
    if mean.dim() != 4 or mean.numel() == 0:
        raise CILValueError(f"{path.name}: 'mean' has shape {tuple(mean.shape)}; expected [C, F, H, W], each at least 1.")
    tr = _require_float(path, "tr_cov_d", tensors["tr_cov_d"])
    if tr.numel() != 1:
        raise CILValueError(f"{path.name}: 'tr_cov_d' has {tr.numel()} values; expected one scalar.")
    m2 = tensors.get("m2")
    if m2 is not None:
        m2 = _require_float(path, "m2", m2)
        if m2.shape != mean.shape:
            raise CILValueError(f"{path.name}: 'm2' {tuple(m2.shape)} does not match 'mean' {tuple(mean.shape)}.")
    return AnalyticStats(
        mean=mean.to(torch.float64),
        tr_cov_d=float(tr.reshape(-1)[0]),
        channel_var=_require_float(path, "channel_var", tensors["channel_var"]).to(torch.float64),
        count=_parse_count(path, meta),
        meta=dict(meta),
        m2=m2,
    )


def _from_official(path: Path, mean: torch.Tensor, tr: torch.Tensor, meta: dict[str, str]) -> AnalyticStats:
    mean = _require_float(path, "Expectation_X0", mean)
    if mean.dim() == 5 and mean.shape[0] == 1:
        mean = mean[0]
    if mean.dim() != 4 or mean.numel() == 0:
        raise CILValueError(
            f"{path.name}: official E[x0] has shape {tuple(mean.shape)}; expected [1, C, T, H, W] or [C, T, H, W], each at least 1."
        )
    tr = _require_float(path, "Tr_Cov_d", tr)
    if tr.numel() != 1:
        raise CILValueError(f"{path.name}: Tr_Cov_d has {tr.numel()} values; expected one scalar.")
    v = float(tr.reshape(-1)[0])
    c = mean.shape[0]
    # Official files keep only the scalar: per-channel variances are taken equal to it.
    return AnalyticStats(
        mean=mean.to(torch.float64),
        tr_cov_d=v,
        channel_var=torch.full((c,), v, dtype=torch.float64),
        count=_parse_count(path, meta),
        meta={"source": "official", "file": path.name, "latent_space": "model", "family": "", **meta},
    )


def check_shape(shape) -> tuple[int, int, int, int]:
    """A CFHW latent shape: four whole numbers >= 1 whose float64 E[x0] (and resampling) fits in memory."""
    try:
        shape = tuple(operator.index(s) for s in shape)
    except TypeError:  # a float or a string is not a size
        shape = ()
    if len(shape) != 4 or any(isinstance(s, bool) for s in shape):
        raise CILValueError("a stats shape must be four whole numbers C, F, H, W, such as 4, 16, 40, 64.")
    if min(shape) < 1:
        raise CILValueError(f"shape {list(shape)}: every dimension must be at least 1 (C, F, H, W = channels, frames, height, width).")
    # E[x0] in float64, its interpolated copy and the float32 latent it is made for
    check_fits(f"stats of shape {list(shape)}", tensor_bytes(shape, 8) * 2 + tensor_bytes(shape, 4),
               "that latent is larger than this machine can hold; check the shape (C, F, H, W in latent units).")
    return shape


def describe_mismatch(stats_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> str:
    names = ("channels", "frames", "latent height", "latent width")
    diffs = [f"{n} {a} vs {b}" for n, a, b in zip(names, stats_shape, target_shape) if a != b]
    return (
        f"stats are [C, F, H, W] = {list(stats_shape)} but the latent to generate is {list(target_shape)} "
        f"({', '.join(diffs)})"
    )


def fit_stats_to_latent(stats: AnalyticStats, target_shape: tuple[int, int, int, int], policy: str = "resample") -> AnalyticStats:
    """Make stats match a CFHW latent shape, by the documented rule or not at all.

    Rule (``policy="resample"``): E[x0] is resampled over (frames, height, width) — area
    averaging when no dimension grows, trilinear interpolation otherwise; v and the channel
    variances are kept (they are per-element averages, to first order independent of size).
    A different channel count is always refused: those stats belong to another VAE.
    """
    if policy not in FIT_POLICIES:
        raise CILValueError(f"policy={policy!r}; expected one of {FIT_POLICIES}.")
    target_shape = check_shape(target_shape)
    if stats.shape == target_shape:
        return stats
    if stats.shape[0] != target_shape[0]:
        raise CILValueError(
            describe_mismatch(stats.shape, target_shape)
            + ". Stats for another latent channel count come from another VAE/model family: estimate stats "
            "with this model's VAE."
        )
    if policy == "strict":
        raise CILValueError(
            describe_mismatch(stats.shape, target_shape)
            + ". Estimate stats at this resolution and frame count, or allow resampling."
        )
    size = target_shape[1:]
    shrink = all(t <= s for t, s in zip(size, stats.shape[1:]))
    x = stats.mean.unsqueeze(0).to(torch.float64)
    mean = F.interpolate(x, size=size, mode="area") if shrink else F.interpolate(x, size=size, mode="trilinear", align_corners=False)
    meta = dict(stats.meta)
    meta["resampled_from"] = json.dumps(list(stats.shape))
    return AnalyticStats(mean=mean[0], tr_cov_d=stats.tr_cov_d, channel_var=stats.channel_var.clone(), count=stats.count, meta=meta)
