"""The Leakage Probe's report: its schema, statistics, the recommended M, text / CSV / JSON and
writing the files (torch + stdlib), so the ComfyUI node, ``cil probe`` and the toy demo all write
the same report.

The report is one JSON-friendly dict (``build_report``). Its ``rows`` hold every measured
number; its ``plot`` section (added by ``cil_media.probe_plot.render_report``) holds exactly the
values the plot draws and where it draws them, so a reader can check the picture against the table.

Motion curves (each reported as motion(·) / motion(x0), ~1 = faithful, → 0 = leakage):
    latent_energy  one-step probe: frame-difference energy of each one-step x̂0 (``cil_core.motion``);
                   always there. The paper's measure; noise left in x̂0 counts as motion.
    corrected      one-step probe: energy of x̂0 averaged over the noise draws, their noise removed
                   (``motion_of_mean``; one value per video, so its SE needs pooled videos).
    regen          regeneration probe (``cil_core.regen_probe``): energy of videos sampled back
                   from x_t; a perfect model keeps it near 1 on average over videos.
    pixel_flow     mean optical-flow magnitude between consecutive decoded frames of the one-step
                   x̂0 (``cil_media.flow``: OpenCV Farneback, pixels per frame), as the official
                   code's RAFT motion score; only when OpenCV is importable and pixels are available.
Each row holds, per curve, the mean ratio, its standard error over the samples (``_ratio_se``:
the one convention the text and the plot show), std, min, max and the per-sample ratios.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .atomic import atomic_write_bytes
from .probe import ProbeResult
from .start_rule import StartRule, recommend_start, recommendation_stability
from .validation import CILValueError

REPORT_FORMAT = "cil-leakage-probe"
REPORT_VERSION = 2
METRIC_NAMES = {
    "latent_energy": "one-step x0, latent frame-difference energy (raw, the paper's)",
    "corrected": "one-step x0 averaged over the noise draws, latent frame-difference energy (noise removed)",
    "regen": "regenerated video, latent frame-difference energy",
    "pixel_flow": "one-step x0, pixel optical-flow magnitude (OpenCV Farneback)",
}
CURVE_METRICS = ("latent_energy", "corrected", "regen")  # curves a start rule can read


# --- the report dict ----------------------------------------------------------------------------

def _metric_rows(key: str, motion_pred: torch.Tensor, motion_ref: float) -> list[dict]:
    ratio = motion_pred.to(torch.float64) / motion_ref
    rows = []
    for r, m in zip(ratio, motion_pred.to(torch.float64)):
        rows.append(
            {
                f"{key}_ratio_mean": float(r.mean()),
                f"{key}_ratio_se": float(r.std() / math.sqrt(r.numel())) if r.numel() > 1 else None,
                f"{key}_ratio_std": float(r.std(unbiased=False)),
                f"{key}_ratio_min": float(r.min()),
                f"{key}_ratio_max": float(r.max()),
                f"{key}_ratios": [float(v) for v in r],
                f"{key}_motion": [float(v) for v in m],
            }
        )
    return rows


def ratios_above_one(ts, means, ses, k: float = 2.0) -> list[dict]:
    """Grid times whose mean motion ratio exceeds 1 by more than ``k`` standard errors. An exact
    denoiser predicts the posterior mean E[x0|x_t], and the frame-difference energy (a convex
    function) of a mean is at most the mean energy (Jensen): averaged over videos, its prediction
    moves no more than the videos do. A single video can exceed 1 legitimately, but a clear excess
    most likely is noise in the prediction, not motion."""
    return [{"t": t, "ratio": m, "se": e} for t, m, e in zip(ts, means, ses)
            if e is not None and math.isfinite(e) and m - k * e > 1.0]


def noise_not_motion(report: dict, key: str = "latent_energy", k: float = 2.0) -> list[dict]:
    """``ratios_above_one`` on a report's per-sample ratios (SE over samples; needs 2 or more)."""
    ts, means, ses = [], [], []
    for row in report["rows"]:
        ratios = row[f"{key}_ratios"]
        if len(ratios) < 2:
            continue
        mean = sum(ratios) / len(ratios)
        ts.append(row["t"])
        means.append(mean)
        ses.append(math.sqrt(sum((v - mean) ** 2 for v in ratios) / (len(ratios) - 1) / len(ratios)))
    return ratios_above_one(ts, means, ses, k)


def build_report(
    result: ProbeResult,
    rule: StartRule | None = None,
    *,
    pixel_motion: tuple[torch.Tensor, float] | None = None,
    meta: dict | None = None,
    regen: ProbeResult | None = None,
    recommend_from: str = "latent_energy",
) -> dict:
    """The probe's table as a JSON-friendly dict, with the recommendation read off one curve.

    ``pixel_motion``: optional (motion_pred [T, S], motion_ref) of the pixel_flow metric.
    ``regen``: optional regeneration probe on the same t grid. ``recommend_from``: the curve the
    start rule reads (``CURVE_METRICS``). ``rule``: how M is chosen (``cil_core.start_rule``;
    default: the plateau rule).
    """
    rule = rule or StartRule()
    metrics = {"latent_energy": (result.motion_pred, result.motion_ref)}
    if result.motion_mean is not None:
        metrics["corrected"] = (result.motion_mean, result.motion_ref)
    if regen is not None:
        if regen.t.shape != result.t.shape or not torch.equal(regen.t, result.t):
            raise CILValueError("the regeneration probe must use the one-step probe's t grid.")
        metrics["regen"] = (regen.motion_pred, regen.motion_ref)
    if pixel_motion is not None:
        if pixel_motion[1] <= 0:
            raise CILValueError("the reference video has no optical flow (static pixels): pixel_flow is undefined.")
        if pixel_motion[0].shape != result.motion_pred.shape:
            raise CILValueError(f"pixel_flow motion has shape {tuple(pixel_motion[0].shape)}; expected {tuple(result.motion_pred.shape)}.")
        metrics["pixel_flow"] = pixel_motion
    if recommend_from not in CURVE_METRICS or recommend_from not in metrics:
        raise CILValueError(f"recommend_from={recommend_from!r}: this probe measured {', '.join(k for k in metrics if k in CURVE_METRICS)}; "
                            "choose one of those (corrected needs samples_per_t >= 2, regen a regeneration probe).")
    rows = [{"t": float(t), "sigma": float(s)} for t, s in zip(result.t, result.sigma)]
    for key, (pred, ref) in metrics.items():
        for row, extra in zip(rows, _metric_rows(key, pred, ref)):
            row.update(extra)
    curve_pred, curve_ref = metrics[recommend_from]
    curve = curve_pred.to(torch.float64) / curve_ref
    rec = recommend_start(result.t, curve.mean(dim=1), rule)
    report = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "recommended_start": rec.m,
        "recommendation_found": rec.found,
        "recommendation": rec.to_json(),
        "recommendation_stability": recommendation_stability(result.t, curve, rule),
        "start_rule": rule.rule,
        "threshold": float(rule.threshold),
        "plateau_tolerance": float(rule.plateau_tolerance),
        "recommendation_metric": recommend_from,
        "rule": rule.describe(),
        "samples_per_t": int(result.motion_pred.shape[1]),
        "regen_samples_per_t": int(regen.motion_pred.shape[1]) if regen is not None else 0,
        "metrics": {k: {"name": METRIC_NAMES[k], "reference_motion": float(ref)} for k, (_, ref) in metrics.items()},
        "rows": rows,
        "meta": dict(meta or {}),
    }
    report["noise_not_motion"] = noise_not_motion(report)
    return report


def metric_keys(report: dict) -> list[str]:
    return list(report["metrics"])


def mean_ratios(report: dict, key: str) -> list[float]:
    """Recompute the mean ratio per grid t from the per-sample ratios in the rows."""
    return [sum(r[f"{key}_ratios"]) / len(r[f"{key}_ratios"]) for r in report["rows"]]


# --- text / CSV / JSON ----------------------------------------------------------------------------

def _se_text(se) -> str:
    return "  n/a " if se is None else f"{se:<6.3f}"


def report_text(report: dict) -> str:
    """A fixed-width table for the node's STRING output and the terminal (mean ± SE per curve)."""
    keys = metric_keys(report)
    head = f"{'t':>6} {'sigma':>10}" + "".join(f" {k:>22}" for k in keys)
    lines = ["Leakage Probe: motion ratio = motion(prediction or regenerated video) / motion(reference video); "
             "± is one standard error over the samples"]
    lines += [f"  {k}: {report['metrics'][k]['name']}" for k in keys]
    lines.append(head)
    for row in report["rows"]:
        cells = "".join(f" {row[f'{k}_ratio_mean']:>13.4f} ± {_se_text(row[f'{k}_ratio_se'])}" for k in keys)
        lines.append(f"{row['t']:>6.3f} {row['sigma']:>10.4g}{cells}")
    rec, stab = report["recommendation"], report["recommendation_stability"]
    lines.append(
        f"recommended start M = {report['recommended_start']:.4f} ({rec['message']}) "
        f"[metric {report['recommendation_metric']}, {report['start_rule']} rule]"
    )
    lines.append(
        f"stability: {stab['agreement']:.0%} of {stab['resamples']} bootstrap resamples of the samples give this M "
        f"(range {stab['m_min']:.3f} to {stab['m_max']:.3f})"
    )
    for w in report["noise_not_motion"]:
        lines.append(f"warning: at t = {w['t']:.3f} the ratio {w['ratio']:.3f} ± {w['se']:.3f} is above 1: the prediction "
                     "moves more than the video, which an exact denoiser does not do on average (Jensen); most likely noise, "
                     "not motion (the model is unreliable there)")
    lines.append("rule: " + report["rule"])
    return "\n".join(lines)


def report_csv(report: dict) -> str:
    """One row per grid t: t, sigma, then mean/SE/std/min/max and per-sample ratios per curve
    (an SE that needs more samples than there are is written as nan)."""
    cols = ["t", "sigma"]
    for k in metric_keys(report):
        cols += [f"{k}_ratio_{s}" for s in ("mean", "se", "std", "min", "max")]
        cols += [f"{k}_ratio_s{i}" for i in range(len(report["rows"][0][f"{k}_ratios"]))]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in report["rows"]:
        flat = dict(row)
        for k in metric_keys(report):
            flat.update({f"{k}_ratio_s{i}": v for i, v in enumerate(row[f"{k}_ratios"])})
        writer.writerow([repr(float("nan") if flat[c] is None else float(flat[c])) for c in cols])
    return buf.getvalue()


def save_report(report: dict, stem: str | os.PathLike, png: bytes | None = None) -> dict[str, Path]:
    """Write ``stem``.json, ``stem``.csv and (given the plot's PNG bytes) ``stem``.png, each atomically."""
    stem = Path(stem)
    paths = {
        "json": atomic_write_bytes(stem.with_name(stem.name + ".json"), json.dumps(report, indent=2).encode()),
        "csv": atomic_write_bytes(stem.with_name(stem.name + ".csv"), report_csv(report).encode()),
    }
    if png is not None:
        paths["png"] = atomic_write_bytes(stem.with_name(stem.name + ".png"), png)
    return paths


# --- time grid and pooling ------------------------------------------------------------------------

def grid(t_min: float, t_max: float, count: int) -> list[float]:
    """``count`` evenly spaced times from t_min to t_max (inclusive), each in (0, 1]."""
    for name, v in (("t_min", t_min), ("t_max", t_max)):
        if not math.isfinite(v) or not 0.0 < v <= 1.0:
            raise CILValueError(f"{name}={v!r} is outside (0, 1]: probe times are fractions of the diffusion time T.")
    if t_min > t_max:
        raise CILValueError(f"t_min={t_min} is larger than t_max={t_max}; swap them.")
    if count < 1:
        raise CILValueError(f"count={count} must be >= 1.")
    if count == 1:
        return [float(t_max)]
    inner = [t_min + (t_max - t_min) * i / (count - 1) for i in range(1, count - 1)]
    return [float(t_min)] + [min(max(t, t_min), t_max) for t in inner] + [float(t_max)]


def nearest_grid_indices(t_grid: Sequence[float], wanted: Sequence[float]) -> list[int]:
    """Index of the grid time nearest to each wanted time (for previews)."""
    return [min(range(len(t_grid)), key=lambda i: abs(t_grid[i] - w)) for w in wanted]


def pool_videos(results: Sequence[ProbeResult]) -> ProbeResult:
    """Several reference videos' probes as one: every (video, sample) becomes a sample, with
    each video's motions divided by its own reference motion (so ``motion_ref`` is 1 and the
    pooled "motions" are ratios); likewise each video's noise-free mean motion. Needs the same t
    grid and probe mode for every video."""
    if not results:
        raise CILValueError("pool_videos needs at least one probe result.")
    first = results[0]
    for r in results[1:]:
        if r.t.shape != first.t.shape or not torch.equal(r.t, first.t):
            raise CILValueError("pool_videos: every probe must use the same t grid.")
        if r.mode != first.mode:
            raise CILValueError(f"pool_videos: cannot pool a {r.mode} probe with a {first.mode} probe.")
    ratios = torch.cat([r.motion_pred.to(torch.float64) / r.motion_ref for r in results], dim=1)
    means = None
    if all(r.motion_mean is not None for r in results):
        means = torch.cat([r.motion_mean.to(torch.float64) / r.motion_ref for r in results], dim=1)
    return ProbeResult(t=first.t, sigma=first.sigma, motion_pred=ratios, motion_ref=1.0, motion_mean=means, mode=first.mode)
