"""The Leakage Probe's report: a table (JSON / CSV / text) and a plot drawn with PIL.

Package-neutral (torch + stdlib; PIL is imported inside the functions that need
it), so the ComfyUI node, ``cil probe`` and the toy demo all write the same report.

The report is one JSON-friendly dict (``build_report``). Its ``rows`` hold every measured
number; its ``plot`` section holds exactly the values the plot draws and where it draws them
(``draw_plot``), so a reader can check the picture against the table.

Motion metrics (each reported as motion(x̂0) / motion(x0), ~1 = faithful, → 0 = leakage):
    latent_energy  frame-difference energy of the latent video (``cil_core.motion``); always there.
    pixel_flow     mean optical-flow magnitude between consecutive decoded frames
                   (``cil_media.flow``: OpenCV Farneback, pixels per frame), as the official
                   code's RAFT motion score; only when OpenCV is importable and pixels are available.
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
    "latent_energy": "latent frame-difference energy",
    "pixel_flow": "pixel optical-flow magnitude (OpenCV Farneback)",
}


# --- the report dict ----------------------------------------------------------------------------

def _metric_rows(key: str, motion_pred: torch.Tensor, motion_ref: float) -> list[dict]:
    ratio = motion_pred.to(torch.float64) / motion_ref
    rows = []
    for r, m in zip(ratio, motion_pred.to(torch.float64)):
        rows.append(
            {
                f"{key}_ratio_mean": float(r.mean()),
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
) -> dict:
    """The probe's table as a JSON-friendly dict, with the recommendation on the latent metric.

    ``pixel_motion``: optional (motion_pred [T, S], motion_ref) of the pixel_flow metric.
    ``rule``: how M is chosen (``cil_core.start_rule``; default: the plateau rule).
    """
    rule = rule or StartRule()
    metrics = {"latent_energy": (result.motion_pred, result.motion_ref)}
    if pixel_motion is not None:
        if pixel_motion[1] <= 0:
            raise CILValueError("the reference video has no optical flow (static pixels): pixel_flow is undefined.")
        metrics["pixel_flow"] = pixel_motion
    rows = [{"t": float(t), "sigma": float(s)} for t, s in zip(result.t, result.sigma)]
    for key, (pred, ref) in metrics.items():
        if pred.shape != result.motion_pred.shape:
            raise CILValueError(f"{key} motion has shape {tuple(pred.shape)}; expected {tuple(result.motion_pred.shape)}.")
        for row, extra in zip(rows, _metric_rows(key, pred, ref)):
            row.update(extra)
    rec = recommend_start(result.t, result.mean_ratio, rule)
    report = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "recommended_start": rec.m,
        "recommendation_found": rec.found,
        "recommendation": rec.to_json(),
        "recommendation_stability": recommendation_stability(result.t, result.ratio, rule),
        "start_rule": rule.rule,
        "threshold": float(rule.threshold),
        "plateau_tolerance": float(rule.plateau_tolerance),
        "recommendation_metric": "latent_energy",
        "rule": rule.describe(),
        "samples_per_t": int(result.motion_pred.shape[1]),
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

def report_text(report: dict) -> str:
    """A fixed-width table for the node's STRING output and the terminal."""
    keys = metric_keys(report)
    head = f"{'t':>6} {'sigma':>10}" + "".join(f" {k + ' ratio':>22}" for k in keys)
    lines = ["Leakage Probe: motion(one-step x0 prediction) / motion(reference video)", head]
    for row in report["rows"]:
        cells = "".join(f" {row[f'{k}_ratio_mean']:>13.4f} ± {row[f'{k}_ratio_std']:<6.3f}" for k in keys)
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
    """One row per grid t: t, sigma, then mean/std/min/max and per-sample ratios per metric."""
    samples = report["samples_per_t"]
    cols = ["t", "sigma"]
    for k in metric_keys(report):
        cols += [f"{k}_ratio_{s}" for s in ("mean", "std", "min", "max")]
        cols += [f"{k}_ratio_s{i}" for i in range(samples)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in report["rows"]:
        flat = dict(row)
        for k in metric_keys(report):
            flat.update({f"{k}_ratio_s{i}": v for i, v in enumerate(row[f"{k}_ratios"])})
        writer.writerow([repr(float(flat[c])) for c in cols])
    return buf.getvalue()


def save_report(report: dict, stem: str | os.PathLike, image=None) -> dict[str, Path]:
    """Write ``stem``.json, ``stem``.csv and (given a PIL image) ``stem``.png, each atomically."""
    stem = Path(stem)
    paths = {
        "json": atomic_write_bytes(stem.with_name(stem.name + ".json"), json.dumps(report, indent=2).encode()),
        "csv": atomic_write_bytes(stem.with_name(stem.name + ".csv"), report_csv(report).encode()),
    }
    if image is not None:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        paths["png"] = atomic_write_bytes(stem.with_name(stem.name + ".png"), buf.getvalue())
    return paths


# --- the plot ----------------------------------------------------------------------------------------

SERIES_STYLE = {"latent_energy": ((31, 119, 180), "o"), "pixel_flow": ((148, 52, 170), "s")}
COLORS = {"threshold": (230, 120, 0), "plateau": (120, 120, 220), "unity": (150, 150, 150), "found": (30, 150, 60), "missing": (200, 30, 30)}
START_LABELS = {
    "late_start": "recommended M = {m:.3f}",
    "no_leakage": "no leakage: M = {m:.3f} (largest t)",
    "leaks_everywhere": "leaks at every t: M = {m:.3f} (smallest t)",
    "plateau_at_top": "plateau only at the top: M = {m:.3f}",
}
BLACK, GREY = (0, 0, 0), (70, 70, 70)
MARKER_RADIUS = 5


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def _nice_top(value: float) -> float:
    """Smallest of 1.2, 1.5, 2, 3, 5, 10, 100, … that is ≥ value (the y axis top)."""
    for top in (1.2, 1.5, 2.0, 3.0, 5.0):
        if value <= top:
            return top
    return 10.0 ** math.ceil(math.log10(value))


def plot_geometry(report: dict, width: int, height: int) -> dict:
    """Axes box in pixels and data ranges: x is t ∈ [0, 1], y is the motion ratio from 0."""
    keys = metric_keys(report)
    highest = max(r[f"{k}_ratio_max"] for r in report["rows"] for k in keys)
    box = [int(0.11 * width), int(0.14 * height), int(0.97 * width), int(0.74 * height)]
    return {"width": width, "height": height, "box": box, "x_range": [0.0, 1.0], "y_range": [0.0, _nice_top(highest * 1.05)]}


def to_pixel(geometry: dict, t: float, ratio: float) -> tuple[int, int]:
    """Pixel centre of the data point (t, ratio); ratios above the axis top are drawn at the top."""
    x0, y0, x1, y1 = geometry["box"]
    (tx0, tx1), (ry0, ry1) = geometry["x_range"], geometry["y_range"]
    px = x0 + (t - tx0) / (tx1 - tx0) * (x1 - x0)
    py = y1 - (min(ratio, ry1) - ry0) / (ry1 - ry0) * (y1 - y0)
    return round(px), round(py)


def _text(draw, xy: tuple[float, float], text: str, font, fill=BLACK, anchor: str = "la") -> None:
    """Text anchored horizontally l/m/r and vertically a (top) / m (middle); works with TrueType
    and bitmap fonts alike (bitmap fonts do not take PIL's own ``anchor``)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = xy[0] - {"l": 0.0, "m": (right - left) / 2, "r": float(right - left)}[anchor[0]] - left
    y = xy[1] - {"a": 0.0, "m": (bottom - top) / 2}[anchor[1]] - top
    draw.text((round(x), round(y)), text, fill=fill, font=font)


def _dashed_hline(draw, geometry: dict, ratio: float, color, dash: int = 8) -> None:
    x0, _, x1, _ = geometry["box"]
    _, py = to_pixel(geometry, 0.0, ratio)
    for x in range(x0, x1, 2 * dash):
        draw.line([(x, py), (min(x + dash, x1), py)], fill=color, width=2)


def _draw_axes(draw, geometry: dict, font) -> None:
    x0, y0, x1, y1 = geometry["box"]
    top = geometry["y_range"][1]
    step = 0.2 if top < 1.5 else top / 5
    for i in range(int(round(top / step)) + 1):
        _, py = to_pixel(geometry, 0.0, i * step)
        draw.line([(x0 + 1, py), (x1 - 1, py)], fill=(232, 232, 232))
        draw.line([(x0 - 5, py), (x0, py)], fill=BLACK)
        _text(draw, (x0 - 8, py), f"{i * step:g}", font, anchor="rm")
    for i in range(11):
        px, _ = to_pixel(geometry, i / 10, 0.0)
        draw.line([(px, y1), (px, y1 + 5)], fill=BLACK)
        if i % 2 == 0:
            _text(draw, (px, y1 + 8), f"{i / 10:.1f}", font, anchor="ma")
    draw.rectangle([x0, y0, x1, y1], outline=BLACK, width=1)


def _draw_marker(draw, xy: tuple[int, int], shape: str, color) -> None:
    x, y = xy
    r = MARKER_RADIUS
    if shape == "s":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=color)
    else:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color)


def _draw_series(draw, geometry: dict, report: dict, key: str) -> dict:
    """Mean ratio per t (line + markers) and the min–max over samples (vertical bars)."""
    color, shape = SERIES_STYLE[key]
    ts = [r["t"] for r in report["rows"]]
    means = mean_ratios(report, key)
    points = [to_pixel(geometry, t, m) for t, m in zip(ts, means)]
    for row, (px, _) in zip(report["rows"], points):
        _, lo = to_pixel(geometry, 0.0, row[f"{key}_ratio_min"])
        _, hi = to_pixel(geometry, 0.0, row[f"{key}_ratio_max"])
        draw.line([(px, lo), (px, hi)], fill=color, width=1)
    if len(points) > 1:
        draw.line(points, fill=color, width=2)
    for p in points:
        _draw_marker(draw, p, shape, color)
    return {"key": key, "label": METRIC_NAMES[key], "t": ts, "ratio": means, "markers": [list(p) for p in points], "color": list(color)}


def _draw_start(draw, geometry: dict, report: dict, font) -> None:
    m, rec = report["recommended_start"], report["recommendation"]
    color = COLORS["found"] if rec["found"] else COLORS["missing"]
    px, _ = to_pixel(geometry, m, 0.0)
    _, y0, _, y1 = geometry["box"]
    draw.line([(px, y0), (px, y1)], fill=color, width=2)
    text = START_LABELS[rec["verdict"]].format(m=m)
    if m > 0.6:
        _text(draw, (px - 6, y0 + 6), text, font, color, anchor="ra")
    else:
        _text(draw, (px + 6, y0 + 6), text, font, color, anchor="la")


def _draw_legend(draw, geometry: dict, series: list[dict], report: dict, font) -> None:
    """One row per metric, then one row for the threshold and unity lines."""
    x0, y = geometry["box"][0], int(0.86 * geometry["height"])
    rows = [[(tuple(s["color"]), f"{s['label']} (mean; bar = min-max of {report['samples_per_t']} samples)")] for s in series]
    lines = [(COLORS["threshold"], f"leak threshold {report['threshold']:g}")]
    if report["recommendation"]["plateau_level"] is not None:
        lines.append((COLORS["plateau"], f"plateau level (tolerance {report['plateau_tolerance']:g})"))
    rows.append(lines + [(COLORS["unity"], "ratio 1")])
    for row in rows:
        x = x0
        for color, label in row:
            draw.line([(x, y), (x + 22, y)], fill=color, width=3)
            _text(draw, (x + 28, y), label, font, anchor="lm")
            x += 60 + draw.textbbox((0, 0), label, font=font)[2]
        y += int(0.045 * geometry["height"])


def _footer(report: dict) -> str:
    """Model, family and settings from ``meta`` (strings and numbers only), bottom right."""
    meta = report.get("meta", {})
    parts = [str(meta[k]) for k in ("model", "family") if isinstance(meta.get(k), (str, int, float))]
    if isinstance(meta.get("cfg"), (int, float)):
        parts.append(f"cfg {meta['cfg']:g}")
    parts.append(f"{report['samples_per_t']} samples/t")
    return "  |  ".join(parts)


def draw_plot(report: dict, width: int = 800, height: int = 500):
    """Motion ratio vs t with the threshold, the plateau level, the unity line and M marked.

    Returns (PIL RGB image, plot section); the section holds each series' t, plotted mean
    ratios and marker pixel centres, the axes box and ranges (``to_pixel`` maps data to pixels).
    """
    from PIL import Image, ImageDraw

    if width < 560 or height < 360:
        raise CILValueError(f"plot size {width}x{height} is too small to read; use at least 560x360.")
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    small, big = _font(max(11, height // 36)), _font(max(14, height // 26))
    geometry = plot_geometry(report, width, height)
    x0, y0, x1, y1 = geometry["box"]
    _draw_axes(draw, geometry, small)
    _dashed_hline(draw, geometry, 1.0, COLORS["unity"], dash=3)
    _dashed_hline(draw, geometry, report["threshold"], COLORS["threshold"])
    level = report["recommendation"]["plateau_level"]
    if level is not None:
        _dashed_hline(draw, geometry, level, COLORS["plateau"], dash=5)
    _draw_start(draw, geometry, report, small)
    series = [_draw_series(draw, geometry, report, k) for k in metric_keys(report)]
    _text(draw, (width / 2, 0.015 * height), "Leakage Probe: motion(one-step x0 prediction) / motion(video)", big, anchor="ma")
    metric = METRIC_NAMES[report["recommendation_metric"]]
    _text(draw, (width / 2, 0.07 * height), f"M chosen on: {metric}  (1 = faithful, 0 = static image copy)", small, GREY, anchor="ma")
    _text(draw, ((x0 + x1) / 2, y1 + 0.055 * height), "t  (normalised diffusion time; 1 = pure noise)", small, anchor="ma")
    noisy = report.get("noise_not_motion") or []
    if noisy:
        times = ", ".join(f"{w['t']:.2f}" for w in noisy)
        _text(draw, (x0 + 6, y0 + 0.06 * height), f"ratio > 1 at t = {times}: noise, not motion (unreliable model)", small, COLORS["missing"])
    _text(draw, (x0 - 4, y0 - 0.03 * height), "motion ratio", small, anchor="rm")
    _draw_legend(draw, geometry, series, report, small)
    footer = _footer(report)
    if footer:
        _text(draw, (width - 8, height - 6), footer, small, GREY, anchor="rm")
    section = dict(geometry, series=series, recommended_start=report["recommended_start"], threshold=report["threshold"], plateau_level=level)
    return image, section


def image_to_tensor(image) -> torch.Tensor:
    """PIL RGB image → ComfyUI IMAGE [1, H, W, 3] float in [0, 1]."""
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.reshape(1, image.height, image.width, 3).float() / 255.0


def render_report(report: dict, width: int = 800, height: int = 500):
    """Draw the plot and record its section in ``report["plot"]``; returns the PIL image."""
    image, section = draw_plot(report, width, height)
    report["plot"] = section
    return image


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
    pooled "motions" are ratios). Needs the same t grid for every video."""
    if not results:
        raise CILValueError("pool_videos needs at least one probe result.")
    first = results[0]
    for r in results[1:]:
        if r.t.shape != first.t.shape or not torch.equal(r.t, first.t):
            raise CILValueError("pool_videos: every probe must use the same t grid.")
    ratios = torch.cat([r.motion_pred.to(torch.float64) / r.motion_ref for r in results], dim=1)
    return ProbeResult(t=first.t, sigma=first.sigma, motion_pred=ratios, motion_ref=1.0)
