"""The demo's report folder: metrics.json, report.md (built only from the JSON), plots and GIF.

Every float in metrics.json is rounded to ``SIG_DIGITS`` significant digits first; report.md is
then written from that rounded JSON with ``fmt``, so each number in the markdown is a number
in the JSON (tests/toy checks it). The answers to the paper's claims are computed from the data
by the rules in ``cil_toy.answers`` (stated in the report), never written in advance. One
uncertainty convention everywhere: ± is one standard error (over videos; paired bootstrap for
differences and Fréchet distances).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from . import plots
from .answers import all_answers
from .demo import DemoResult
from .metrics import FEATURES
from .report_md import build_markdown, fmt

SIG_DIGITS = 4
FILES = ("report.md", "metrics.json", "probe.png", "motion_fidelity.png", "samples.gif")


def round_sig(x, digits: int = SIG_DIGITS):
    """Round every float in a JSON-like structure to ``digits`` significant digits (NaN → None)."""
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.{digits}g}")
    if isinstance(x, dict):
        return {k: round_sig(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [round_sig(v, digits) for v in x]
    return x


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.double()
    return float(v.mean()), float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else math.nan


def method_rows(res: DemoResult) -> list[dict]:
    real = res.per_video["real"]
    fde_real = float(real["fde"].mean())
    rows = [{
        "key": "real", "label": "real held-out videos", "model": "data", "init": "none", "M": None, "sigma_M": None,
        **{k: _mean_se(real[k])[0] for k in ("speed", "net_speed", "persistence", "size_cv")},
        "speed_se": _mean_se(real["speed"])[1], "net_speed_se": _mean_se(real["net_speed"])[1], "fde_ratio": 1.0, "psnr0": None,
        "fd": res.real_floor[0], "fd_se": res.real_floor[1],
    }]
    for m in res.methods:
        pv = res.per_video[m.key]
        row = {"key": m.key, "label": m.label, "model": res.models[m.model], "init": m.init, "M": m.m, "sigma_M": res.sigma_of[m.m]}
        for k in ("speed", "net_speed", "psnr0", "persistence", "size_cv"):
            row[k] = _mean_se(pv[k])[0]
        row["speed_se"], row["net_speed_se"] = _mean_se(pv["speed"])[1], _mean_se(pv["net_speed"])[1]
        row["fde_ratio"] = float(pv["fde"].mean()) / fde_real
        row["fd"], row["fd_se"] = res.fd[m.key]
        rows.append(row)
    return rows


def build_json(res: DemoResult) -> dict:
    cfg = res.config
    doc = {
        "config": cfg.to_json(),
        "models": res.models,
        "model_meta": res.model_meta,
        "uncertainty": "± is one standard error: over videos for means; paired bootstrap (videos resampled, "
                       f"{cfg.bootstrap} resamples) for differences and Fréchet distances",
        "metric_definitions": "see cil_toy/metrics.py; speed/net_speed in px/frame, fde_ratio = pixel frame-difference "
                              "energy / real, psnr0 in dB (data range 2), FD on features " + ", ".join(FEATURES)
                              + "; probe ratios: latent frame-difference energy of the prediction / of the real video",
        "probe": res.probe,
        "stats": res.stats_summary,
        "rows": method_rows(res),
        "start_check": res.start_check,
        "answers": all_answers(res, cfg.se_factor, cfg.bootstrap, cfg.seed + 23),
        "timing_s": res.timing,
    }
    return round_sig(doc)


def samples_gif(res: DemoResult, path: Path) -> Path:
    rows = min(res.config.gif_rows, res.data.pixels.shape[0])
    cond = res.data.cond_pixels[:rows].unsqueeze(2).expand_as(res.data.pixels[:rows])
    columns = [("conditional\nimage", cond), ("real", res.data.pixels[:rows])]
    ms = sorted({m.m for m in res.methods if m.model == "baseline" and m.m < 1.0})
    pick = {ms[0], ms[len(ms) // 2], res.probe["recommended_M"]} if ms else set()  # smallest, median, recommended
    for m in res.methods:
        if m.model == "baseline" and m.m < 1.0 and m.m not in pick:
            continue
        name = {"naive": "naive", "analytic": "Analytic"}[m.init]
        label = ("baseline\nfrom T" if m.key == "baseline_T" else "TimeNoise\nfrom T" if m.key == "timenoise_T"
                 else f"{'TN+' if m.model == 'timenoise' else ''}{name}\nM={m.m:g}")
        columns.append((label, res.videos[m.key][:rows]))
    return plots.samples_grid(columns, path)


def write_report(res: DemoResult) -> dict[str, Path]:
    out = Path(res.config.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = build_json(res)
    paths = {name: out / name for name in FILES}
    paths["metrics.json"].write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["report.md"].write_text(build_markdown(doc), encoding="utf-8")
    plots.probe_chart(doc, paths["probe.png"])
    plots.motion_fidelity_chart(doc, paths["motion_fidelity.png"])
    samples_gif(res, paths["samples.gif"])
    return paths


__all__ = ["FILES", "SIG_DIGITS", "build_json", "build_markdown", "fmt", "round_sig", "write_report"]
