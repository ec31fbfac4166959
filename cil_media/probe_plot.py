"""The Leakage Probe's plot (``cil_core.probe_report``'s report, drawn with ``cil_media.charts``).

``draw_plot`` draws motion ratio against t per curve (mean line with markers, ± 1 standard-error
bars over the samples: the one uncertainty convention of the report's text and table): the raw
one-step curve (the paper's), the one-step curve with the prediction noise removed (dashed), the
regeneration curve and the pixel-flow curve when measured; the threshold, the plateau level, the
unity line and the recommended M (with the curve it was read from), and returns
the report's ``plot`` section: exactly the values it draws and where (each series' t, plotted
mean ratios, marker pixel centres and colour; the axes box and ranges, ``to_pixel``), so a reader
can check the picture against the table.
"""

from __future__ import annotations

import math

from cil_core.probe_report import METRIC_NAMES, mean_ratios, metric_keys
from cil_core.validation import CILValueError
from cil_media.charts import GREY, Axes

SERIES_STYLE = {"latent_energy": ((31, 119, 180), "o", 0), "corrected": ((110, 170, 225), "d", 7), "regen": ((30, 150, 60), "s", 0),
                "pixel_flow": ((148, 52, 170), "s", 0)}  # colour, marker, dash
SHORT_NAMES = {"latent_energy": "one-step x0 (raw, paper)", "corrected": "one-step x0, noise removed", "regen": "regenerated video",
               "pixel_flow": "one-step x0, pixel flow"}
DRAW_ORDER = ("corrected", "pixel_flow", "regen", "latent_energy")  # the paper's curve on top
COLORS = {"threshold": (230, 120, 0), "plateau": (120, 120, 220), "unity": (150, 150, 150), "found": (30, 150, 60), "missing": (200, 30, 30)}
START_LABELS = {
    "late_start": "recommended M = {m:.3f}",
    "no_leakage": "no leakage: M = {m:.3f} (largest t)",
    "leaks_everywhere": "leaks at every t: M = {m:.3f} (smallest t)",
    "plateau_at_top": "plateau only at the top: M = {m:.3f}",
}
MARKER_RADIUS = 5


def _nice_top(value: float) -> float:
    """Smallest of 1.2, 1.5, 2, 3, 5, 10, 100, … that is ≥ value (the y axis top)."""
    for top in (1.2, 1.5, 2.0, 3.0, 5.0):
        if value <= top:
            return top
    return 10.0 ** math.ceil(math.log10(value))


def plot_geometry(report: dict, width: int, height: int) -> dict:
    """Axes box in pixels and data ranges: x is t ∈ [0, 1], y is the motion ratio from 0."""
    keys = metric_keys(report)
    highest = max(r[f"{k}_ratio_mean"] + (r.get(f"{k}_ratio_se") or 0.0) for r in report["rows"] for k in keys)
    box = [int(0.11 * width), int(0.14 * height), int(0.97 * width), int(0.74 * height)]
    return {"width": width, "height": height, "box": box, "x_range": [0.0, 1.0], "y_range": [0.0, _nice_top(highest * 1.05)]}


def to_pixel(geometry: dict, t: float, ratio: float) -> tuple[int, int]:
    """Pixel centre of the data point (t, ratio); ratios above the axis top are drawn at the top."""
    x0, y0, x1, y1 = geometry["box"]
    (tx0, tx1), (ry0, ry1) = geometry["x_range"], geometry["y_range"]
    px = x0 + (t - tx0) / (tx1 - tx0) * (x1 - x0)
    py = y1 - (min(ratio, ry1) - ry0) / (ry1 - ry0) * (y1 - y0)
    return round(px), round(py)


def _axes(report: dict, geometry: dict) -> Axes:
    top = geometry["y_range"][1]
    step = 0.2 if top < 1.5 else top / 5
    return Axes(
        (geometry["width"], geometry["height"]), box=geometry["box"], xlim=geometry["x_range"], ylim=geometry["y_range"],
        xticks=[i / 10 for i in range(11)], xfmt=lambda v: f"{v:.1f}" if round(v * 10) % 2 == 0 else "",
        yticks=[i * step for i in range(round(top / step) + 1)], yfmt=lambda v: f"{v:g}",
        title="Leakage Probe: motion(prediction or regenerated video) / motion(video)",
        subtitle=f"M read off: {SHORT_NAMES[report['recommendation_metric']]} | bars: ±1 SE | 1 = full motion, 0 = still copy",
        xlabel="t  (normalised diffusion time; 1 = pure noise)", ylabel="motion ratio", legend="below",
    )


def _series(ax: Axes, report: dict, key: str) -> dict:
    """Mean ratio per t (line + markers) with ± 1 SE bars."""
    color, shape, dash = SERIES_STYLE[key]
    rows = report["rows"]
    ts, means = [r["t"] for r in rows], mean_ratios(report, key)
    ses = [r.get(f"{key}_ratio_se") or 0.0 for r in rows]
    ax.error_bars(ts, [m - e for m, e in zip(means, ses)], [m + e for m, e in zip(means, ses)], color, cap=3)
    count = len(rows[0][f"{key}_ratios"])
    label = f"{SHORT_NAMES[key]} ({count} {'video' if key == 'corrected' else 'sample'}{'s' if count > 1 else ''}/t)"
    row = "one_step" if key in ("latent_energy", "corrected") else "other"
    points = ax.line(ts, means, color, label, marker=shape, radius=MARKER_RADIUS - (1 if dash else 0), dash=dash, legend_row=row)
    return {"key": key, "label": METRIC_NAMES[key], "t": ts, "ratio": means, "markers": [list(p) for p in points], "color": list(color)}


def _start_label(ax: Axes, report: dict) -> None:
    m, rec = report["recommended_start"], report["recommendation"]
    color = COLORS["found"] if rec["found"] else COLORS["missing"]
    ax.vline(m, color, width=2)
    px, _ = ax.pixel(m, 0.0)
    y0 = ax.box[1]
    text = START_LABELS[rec["verdict"]].format(m=m) + f" ({SHORT_NAMES[report['recommendation_metric']]})"
    if m > 0.6:
        ax.label((px - 6, y0 + 6), text, color, "ra")
    else:
        ax.label((px + 6, y0 + 6), text, color, "la")


def _footer(report: dict) -> str:
    """Model, family and settings from ``meta`` (strings and numbers only), bottom right."""
    meta = report.get("meta", {})
    parts = [str(meta[k]) for k in ("model", "family") if isinstance(meta.get(k), (str, int, float))]
    if isinstance(meta.get("cfg"), (int, float)):
        parts.append(f"cfg {meta['cfg']:g}")
    return "  |  ".join(parts)


def draw_plot(report: dict, width: int = 900, height: int = 560):
    """Motion ratio vs t with the threshold, the plateau level, the unity line and M marked.
    Returns (PIL RGB image, plot section)."""
    if width < 560 or height < 360:
        raise CILValueError(f"plot size {width}x{height} is too small to read; use at least 560x360.")
    geometry = plot_geometry(report, width, height)
    ax = _axes(report, geometry)
    refs = "reference lines"
    level = report["recommendation"]["plateau_level"]
    ax.hline(1.0, COLORS["unity"], width=2, dash=3)
    ax.hline(report["threshold"], COLORS["threshold"], width=2, dash=8)
    if level is not None:
        ax.hline(level, COLORS["plateau"], width=2, dash=5)
    _start_label(ax, report)
    noisy = report.get("noise_not_motion") or []
    if noisy:
        times = ", ".join(f"{w['t']:.2f}" for w in noisy)
        ax.label((ax.box[0] + 6, ax.box[1] + 0.06 * height), f"ratio > 1 at t = {times}: noise, not motion (unreliable model)",
                 COLORS["missing"])
    ax.draw_labels()  # under the series: a marker is never hidden by text
    keys = metric_keys(report)
    drawn = {k: _series(ax, report, k) for k in sorted(keys, key=lambda k: DRAW_ORDER.index(k) if k in DRAW_ORDER else -1)}
    series = [drawn[k] for k in keys]  # listed in the report's order (the paper's curve first), drawn with it on top
    ax.add_legend(f"leak threshold {report['threshold']:g}", COLORS["threshold"], row=refs)
    if level is not None:
        ax.add_legend(f"plateau level (tolerance {report['plateau_tolerance']:g})", COLORS["plateau"], row=refs)
    ax.add_legend("ratio 1", COLORS["unity"], row=refs)
    ax.label((width - 8, height - 6), _footer(report), GREY, "rm")
    image = ax.finish()
    section = dict(geometry, series=series, recommended_start=report["recommended_start"], threshold=report["threshold"], plateau_level=level)
    return image, section


def render_report(report: dict, width: int = 900, height: int = 560):
    """Draw the plot and record its section in ``report["plot"]``; returns the PIL image."""
    image, section = draw_plot(report, width, height)
    report["plot"] = section
    return image
