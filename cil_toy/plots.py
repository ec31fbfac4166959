"""The demo report's pictures, drawn with ``cil_media``'s chart kit: the Leakage Probe curves of
both toy models, motion vs fidelity over the start time M, and the animated sample grid."""

from __future__ import annotations

from pathlib import Path

import torch

from cil_media.charts import PALETTE, Axes, padded_limits
from cil_media.grid_gif import sample_grid_gif

RULE_COLORS = {"plateau": (120, 120, 220), "threshold": (255, 127, 14)}


def probe_chart(doc: dict, path: Path) -> Path:
    """Mean motion ratio vs t of the baseline and TimeNoise models, threshold, and each rule's M."""
    p = doc["probe"]
    ys = [v for v in p["baseline_mean_ratio"] + p["timenoise_mean_ratio"] if v is not None]
    ax = Axes(xlim=(0.0, 1.0), ylim=padded_limits(ys, include=(0.0, 1.0)), title="Leakage Probe: motion of one-step x0 / motion of x0",
              xlabel="normalised time t", ylabel="motion ratio")
    ax.hline(1.0, (150, 150, 150), "ideal (ratio 1)")
    ax.hline(p["threshold"], (200, 160, 0), "threshold", dash=6)
    ax.line(p["t"], p["baseline_mean_ratio"], PALETTE[1], "baseline")
    ax.line(p["t"], p["timenoise_mean_ratio"], PALETTE[2], "TimeNoise")
    for name, pick in p["rule_picks"].items():
        ax.vline(pick["baseline"]["m"], RULE_COLORS.get(name, (90, 90, 90)), f"baseline M, {name} rule", dash=4)
    return ax.save(path)


def motion_fidelity_chart(doc: dict, path: Path) -> Path:
    """Sprite speed vs Fréchet distance of every late-start sweep, each point labelled with its M."""
    rows = {r["key"]: r for r in doc["rows"]}

    def sweep(model: str, init: str) -> list[dict]:
        return sorted((r for r in doc["rows"] if r["init"] == init and r["model"] == doc["models"][model] and r["M"] is not None and r["M"] < 1.0),
                      key=lambda r: r["M"])

    series = {"naive late start": (sweep("baseline", "naive"), PALETTE[1]),
              "Analytic-Init late start": (sweep("baseline", "analytic"), PALETTE[0]),
              "TimeNoise + Analytic-Init": (sweep("timenoise", "analytic"), PALETTE[4])}
    ax = Axes(xlim=padded_limits([r["speed"] for r in doc["rows"]]), ylim=padded_limits([r["fd"] for r in doc["rows"]], include=(0.0,)),
              title="Motion vs fidelity over the start time M", xlabel="sprite speed (px/frame)",
              ylabel="Frechet distance to real (lower is better)")
    ax.vline(rows["real"]["speed"], (150, 150, 150), "real speed")
    for label, (rs, color) in series.items():
        if rs:
            ax.line([r["speed"] for r in rs], [r["fd"] for r in rs], color, label)
        for r in rs:
            ax.annotate(r["speed"], r["fd"], f"M={r['M']:g}", color)
    for key, color, label in (("baseline_T", PALETTE[3], "baseline from T"), ("timenoise_T", PALETTE[2], "TimeNoise from T")):
        if key in rows:
            ax.point(rows[key]["speed"], rows[key]["fd"], color, label)
    return ax.save(path)


def to_uint8_frames(videos: torch.Tensor) -> torch.Tensor:
    """Toy videos [R, 3, F, H, W] in [-1, 1] → uint8 [R, F, H, W, 3]."""
    return ((videos.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).contiguous()


def samples_grid(columns: list[tuple[str, torch.Tensor]], path: Path) -> Path:
    """Animated grid: one column per (label, toy videos [R, 3, F, H, W]), one row per example."""
    return sample_grid_gif([(label, to_uint8_frames(videos)) for label, videos in columns], path)
