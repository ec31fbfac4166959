"""The demo report's pictures, drawn with ``cil_media``'s chart kit: the Leakage Probe (one-step
and regeneration panels, each with the perfect-denoiser reference), motion vs fidelity over the
start time M, and the animated sample grid. Bars are ± 1 standard error everywhere (over the
probe's videos; for FD the paired bootstrap's), and the legends say so."""

from __future__ import annotations

from pathlib import Path

import torch

from cil_media.charts import Axes, hstack, padded_limits, save_png
from cil_media.grid_gif import sample_grid_gif

REFERENCE = (20, 20, 20)
ROLE_STYLE = {"baseline": ((31, 119, 180), "o", "baseline"), "timenoise": ((230, 110, 0), "s", "TimeNoise")}
SIZE = (660, 580)
MARGIN = (70, 72, 25, 150)  # left, top, right, bottom: room for the subtitle and a 3-row legend


def _limits(values: list, include=(0.0, 1.0)) -> tuple[float, float]:
    vals = [v for v in values if v is not None]
    lo, hi = padded_limits(vals, pad=0.05, include=include)
    return min(lo, 0.0), hi


def _with_bars(ax: Axes, t: list, mean: list, se: list, color, label: str, marker: str, dx: int = 0, width: int = 2,
               legend_row: str | None = None) -> None:
    ax.error_bars(t, [m - (s or 0) for m, s in zip(mean, se)], [m + (s or 0) for m, s in zip(mean, se)], color, cap=3, dx=dx)
    ax.line(t, mean, color, label, marker=marker, radius=4, width=width, legend_row=legend_row)


def _one_step_panel(p: dict) -> Axes:
    ys = [v for k in ("baseline_mean_ratio", "timenoise_mean_ratio", "reference_ratio", "baseline_corrected_ratio") for v in p.get(k, [])]
    ax = Axes(SIZE, margin=MARGIN, xlim=(0.0, 1.0), ylim=_limits(ys), title="One-step probe: motion(x0 prediction) / motion(video)",
              subtitle="solid: raw (paper) | dashed: prediction noise removed | bars: ±1 SE over videos",
              xlabel="t (normalised diffusion time; 1 = pure noise)", ylabel="motion ratio", legend="below")
    ax.hline(1.0, (170, 170, 170), dash=3)
    if "reference_ratio" in p:
        _with_bars(ax, p["t"], p["reference_ratio"], p["reference_ratio_se"], REFERENCE, "perfect denoiser (reference)", "d", width=3,
                   legend_row="ref")
        ax.line(p["t"], p["reference_corrected"], REFERENCE, "reference, noise removed", marker=None, width=2, dash=6, legend_row="ref")
    for i, (role, (color, marker, name)) in enumerate(ROLE_STYLE.items()):
        _with_bars(ax, p["t"], p[f"{role}_mean_ratio"], p[f"{role}_ratio_se"], color, name, marker, dx=2 * i - 1, legend_row=role)
        ax.line(p["t"], p[f"{role}_corrected_ratio"], color, f"{name}, noise removed", marker=None, dash=6, legend_row=role)
    return ax


def _regen_panel(p: dict) -> Axes:
    ys = [v for r in ROLE_STYLE for v in p["regen_ratio"][r]] + p.get("reference_sample", [])
    ax = Axes(SIZE, margin=MARGIN, xlim=(0.0, 1.0), ylim=_limits(ys), title="Regeneration probe: motion(sampled from x_t) / motion(video)",
              subtitle=f"x_t sampled back to 0 in {p['regen_steps']} Euler steps | bars: ±1 SE over videos",
              xlabel="t (start of the regeneration)", ylabel="motion ratio", legend="below")
    ax.hline(1.0, (170, 170, 170), dash=3)
    if "reference_sample" in p:
        _with_bars(ax, p["t"], p["reference_sample"], p["reference_sample_se"], REFERENCE, "perfect model (motion of a posterior sample)",
                   "d", width=3)
    for i, (role, (color, marker, name)) in enumerate(ROLE_STYLE.items()):
        _with_bars(ax, p["t"], p["regen_ratio"][role], p["regen_ratio_se"][role], color, name, marker, dx=2 * i - 1)
    m = p["recommended_M"]
    ax.vline(m, (30, 150, 60), dash=4)
    px, py = ax.pixel(m, ax.ylim[1])
    text = f"recommended M = {m:g} ({p['rule']} rule, {p['curve']} curve)"
    ax.label((px - 4, py + 4) if m > 0.5 else (px + 4, py + 4), text, (30, 150, 60), "ra" if m > 0.5 else "la")
    return ax


def probe_chart(doc: dict, path: Path) -> Path:
    """Two panels: the one-step probe (raw and noise-removed, with the reference) and the
    regeneration probe (with the perfect model's target)."""
    p = doc["probe"]
    panels = [_one_step_panel(p).finish()]
    if "regen_ratio" in p:
        panels.append(_regen_panel(p).finish())
    return save_png(hstack(panels), path)


def motion_fidelity_chart(doc: dict, path: Path) -> Path:
    """Sprite speed vs Fréchet distance of each late-start sweep (±1 SE bars on FD); each point of
    the Analytic-Init sweeps is labelled with its M (the naive sweep shares them)."""
    rows = {r["key"]: r for r in doc["rows"]}

    def sweep(model: str, init: str) -> list[dict]:
        return sorted((r for r in doc["rows"] if r["init"] == init and r["model"] == doc["models"][model] and r["M"] is not None and r["M"] < 1.0),
                      key=lambda r: r["M"])

    series = [("naive late start (baseline)", sweep("baseline", "naive"), (120, 170, 220), "o", 6),
              ("Analytic-Init late start (baseline)", sweep("baseline", "analytic"), (31, 119, 180), "s", 0),
              ("TimeNoise + Analytic-Init", sweep("timenoise", "analytic"), (230, 110, 0), "d", 0)]
    fds = [r["fd"] + (r["fd_se"] or 0) for r in doc["rows"]]
    ax = Axes((760, 620), margin=(70, 84, 25, 140), xlim=padded_limits([r["speed"] for r in doc["rows"]]), ylim=padded_limits(fds, include=(0.0,)),
              title="Motion vs fidelity over the start time M", subtitle="bars: ±1 SE (paired bootstrap) | point labels: start time M",
              xlabel="sprite speed (px/frame)", ylabel="Frechet distance to real videos (lower is better)", legend="below")
    ax.vline(rows["real"]["speed"], (150, 150, 150), "real videos' speed", dash=4, legend_row="ref")
    for label, rs, color, marker, dash in series:
        if not rs:
            continue
        ax.error_bars([r["speed"] for r in rs], [r["fd"] - (r["fd_se"] or 0) for r in rs], [r["fd"] + (r["fd_se"] or 0) for r in rs], color, cap=2)
        ax.line([r["speed"] for r in rs], [r["fd"] for r in rs], color, label, marker=marker, radius=4, dash=dash,
                legend_row="timenoise" if "TimeNoise" in label else "baseline")
        if marker != "o":
            for r in rs:
                ax.annotate(r["speed"], r["fd"], f"M={r['M']:g}", color)
    for key, color, label in (("baseline_T", (31, 119, 180), "baseline from T"), ("timenoise_T", (230, 110, 0), "TimeNoise from T")):
        if key in rows:
            ax.point(rows[key]["speed"], rows[key]["fd"], color)
            ax.add_legend(label, color, "box", "timenoise" if key.startswith("timenoise") else "ref")
    return ax.save(path)


def to_uint8_frames(videos: torch.Tensor) -> torch.Tensor:
    """Toy videos [R, 3, F, H, W] in [-1, 1] → uint8 [R, F, H, W, 3]."""
    return ((videos.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).contiguous()


def samples_grid(columns: list[tuple[str, torch.Tensor]], path: Path) -> Path:
    """Animated grid: one column per (label, toy videos [R, 3, F, H, W]), one row per example."""
    return sample_grid_gif([(label, to_uint8_frames(videos)) for label, videos in columns], path)
