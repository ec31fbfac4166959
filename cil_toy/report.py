"""The demo's report folder: metrics.json, report.md (built only from the JSON), plots and GIF.

Every float in metrics.json is rounded to ``SIG_DIGITS`` significant digits first; report.md is
then written from that rounded JSON with ``fmt``, so each number in the markdown is a number
in the JSON (tests/toy checks it). The "Does the toy reproduce the paper?" answers are computed
from the data with the rules in ``answer_*`` (stated in the report), never written in advance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from cil_core.probe_report import ratios_above_one

from . import plots
from .metrics import FEATURES
from .demo import DemoResult

SIG_DIGITS = 4
FILES = ("report.md", "metrics.json", "probe.png", "motion_fidelity.png", "samples.gif")
TABLE_METRICS = ("speed", "net_speed", "fde_ratio", "psnr0", "persistence", "size_cv")


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


def fmt(x) -> str:
    """Markdown form of a rounded JSON number (reproduces it exactly)."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{SIG_DIGITS}g}"


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.double()
    return float(v.mean()), float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else math.nan


def _paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of the per-video difference a − b."""
    return _mean_se(a.double() - b.double())


def method_rows(res: DemoResult) -> list[dict]:
    real = res.per_video["real"]
    fde_real = float(real["fde"].mean())
    rows = [{
        "key": "real", "label": "real held-out videos", "model": "data", "init": "none", "M": None, "sigma_M": None,
        **{k: _mean_se(real[k])[0] for k in ("speed", "net_speed", "persistence", "size_cv")},
        "speed_se": _mean_se(real["speed"])[1], "fde_ratio": 1.0, "psnr0": None,
        "fd": res.real_floor[0], "fd_se": res.real_floor[1],
    }]
    for m in res.methods:
        pv = res.per_video[m.key]
        row = {"key": m.key, "label": m.label, "model": res.models[m.model], "init": m.init, "M": m.m, "sigma_M": res.sigma_of[m.m]}
        for k in ("speed", "net_speed", "psnr0", "persistence", "size_cv"):
            row[k] = _mean_se(pv[k])[0]
        row["speed_se"] = _mean_se(pv["speed"])[1]
        row["fde_ratio"] = float(pv["fde"].mean()) / fde_real
        row["fd"], row["fd_se"] = res.fd[m.key]
        rows.append(row)
    return rows


def answer_leak(probe: dict) -> dict:
    """Q1: leakage = the baseline's lowest mean probe ratio is below the threshold."""
    t, r = probe["t"], probe["baseline_mean_ratio"]
    i_floor, i_lo = min(range(len(t)), key=lambda i: (r[i], -t[i])), min(range(len(t)), key=t.__getitem__)
    leaks = r[i_floor] < probe["threshold"]
    return {"verdict": "yes" if leaks else "no", "t_floor": t[i_floor], "ratio_floor": r[i_floor], "t_low": t[i_lo],
            "ratio_low": r[i_lo], "threshold": probe["threshold"], "recommended_M": probe["recommended_M"],
            "recommended_found": probe["recommended_found"]}


def answer_late_start(res: DemoResult, k: float) -> dict:
    """Q2: the late start (naive or Analytic-Init, any M) with the largest paired gain in sprite
    speed over 'from T'. "yes": the gain exceeds k·SE, closes at least ``materiality`` of the gap
    to the real speed, and net speed (directed travel) does not fall by more than k·SE;
    "jitter only": speed rises but net speed falls (sprites wobble, they do not travel);
    "marginal": a significant but immaterial gain; else "no" / "no significant change"."""
    base = res.per_video["baseline_T"]
    best = None
    for m in res.methods:
        if m.model == "baseline" and m.m < 1.0:
            d, se = _paired(res.per_video[m.key]["speed"], base["speed"])
            if best is None or d > best["delta"]:
                nd, nse = _paired(res.per_video[m.key]["net_speed"], base["net_speed"])
                best = {"key": m.key, "M": m.m, "init": m.init, "delta": d, "delta_se": se, "net_delta": nd, "net_delta_se": nse}
    if best is None:
        return {"verdict": "not run"}
    speed_t, speed_real = float(base["speed"].double().mean()), float(res.per_video["real"]["speed"].double().mean())
    gap = speed_real - speed_t
    closed = best["delta"] / gap if gap > 0 else math.nan
    if best["delta"] > k * best["delta_se"]:
        if best["net_delta"] < -k * best["net_delta_se"]:
            verdict = "jitter only"
        else:
            verdict = "yes" if closed >= res.config.materiality else "marginal"
    else:
        verdict = "no" if best["delta"] < -k * best["delta_se"] else "no significant change"
    return {"verdict": verdict, "speed_T": speed_t, "speed_real": speed_real, "gap_closed": closed,
            "materiality": res.config.materiality, **best}


def answer_analytic(res: DemoResult, k: float) -> dict:
    """Q3: at the smallest M, Analytic-Init's FD is lower than naive's by > k·SE (bootstrap SEs)."""
    ms = sorted({m.m for m in res.methods if m.model == "baseline" and m.m < 1.0})
    if not ms:
        return {"verdict": "not run"}
    per_m, wins = [], 0
    for m in ms:
        n_key, a_key = f"baseline_naive_{m:g}", f"baseline_analytic_{m:g}"
        (fn, sn), (fa, sa) = res.fd[n_key], res.fd[a_key]
        dpsnr, dpsnr_se = _paired(res.per_video[a_key]["psnr0"], res.per_video[n_key]["psnr0"])
        per_m.append({"M": m, "fd_naive": fn, "fd_analytic": fa, "fd_se": math.hypot(sn, sa), "psnr_gain": dpsnr, "psnr_gain_se": dpsnr_se})
        wins += fa < fn
    small = per_m[0]
    # how different the two starts are: RMS of the mean offset, and the std ratio, at the smallest M
    st, sig = res.stats_summary, res.sigma_of[small["M"]]
    small["mean_offset_in_std"] = st["rms_mean"] / math.sqrt(st["tr_cov_d"] + sig**2)
    small["std_ratio"] = math.sqrt(st["tr_cov_d"] + sig**2) / math.sqrt(1.0 + sig**2)
    gap = small["fd_naive"] - small["fd_analytic"]
    verdict = "yes" if gap > k * small["fd_se"] else ("no" if gap < -k * small["fd_se"] else "no significant difference")
    return {"verdict": verdict, "smallest": small, "analytic_better_count": wins, "m_count": len(ms), "per_M": per_m}


def answer_timenoise(res: DemoResult, k: float) -> dict:
    """Q4: 'no longer denoises' if a TimeNoise probe ratio exceeds 1 by > k·SE (noise, not
    motion: see cil_core.probe_report.ratios_above_one); 'removes' if its ratio stays ≥ threshold
    at every t; 'reduces' if its ratio at the largest t beats the baseline's by > k·SE; sprite
    speed from T is compared too."""
    p = res.probe
    t = p["t"]
    i_hi = max(range(len(t)), key=t.__getitem__)
    rb, rt = p["baseline_mean_ratio"][i_hi], p["timenoise_mean_ratio"][i_hi]
    se = math.hypot(p["baseline_ratio_se"][i_hi] or 0.0, p["timenoise_ratio_se"][i_hi] or 0.0)
    min_ratio, max_ratio = min(p["timenoise_mean_ratio"]), max(p["timenoise_mean_ratio"])
    noisy = [w["t"] for w in ratios_above_one(t, p["timenoise_mean_ratio"], p["timenoise_ratio_se"], k)]
    if noisy:
        verdict = "no longer denoises"
    elif min_ratio >= p["threshold"]:
        verdict = "removes"
    elif rt - rb > k * se:
        verdict = "reduces"
    else:
        verdict = "no"
    d, dse = _paired(res.per_video["timenoise_T"]["speed"], res.per_video["baseline_T"]["speed"])
    dp, dpse = _paired(res.per_video["timenoise_T"]["psnr0"], res.per_video["baseline_T"]["psnr0"])
    return {"verdict": verdict, "t_high": t[i_hi], "ratio_baseline": rb, "ratio_timenoise": rt, "ratio_se": se,
            "timenoise_min_ratio": min_ratio, "timenoise_max_ratio": max_ratio, "noise_at_t": noisy, "speed_delta_T": d, "speed_delta_T_se": dse, "psnr_delta_T": dp,
            "psnr_delta_T_se": dpse}


def _start_check_md(doc: dict) -> list[str]:
    """The start-rule check: per model, FD against M and where each rule's M falls."""
    check, k = doc["start_check"], doc["config"]["se_factor"]
    out = ["## Choosing M: does the probe's rule pick a good start?", "",
           "The best start is measured, not assumed: for each model, every M of the sweep (Analytic-Init; M = 1 is from T) "
           "is scored by its Fréchet distance to the real videos, which weighs motion (speed, net speed, motion energy) and "
           f"fidelity (persistence, size stability, texture) together. The band holds every M whose FD exceeds the lowest "
           f"by at most {fmt(k)} paired-bootstrap SEs (one resample of videos for all methods). A rule is right on this model "
           "when its M, read off the model's own probe curve, lies in the band.", ""]
    head = "| model | M | FD | FD − best ± SE | in band |"
    for role, c in check.items():
        out += [f"**{role}** (best M = {fmt(c['best_M'])}, band: {', '.join(fmt(m) for m in c['band'])}).", "",
                head, "|---|---|---|---|---|"]
        out += [f"| {role} | {fmt(r['M'])} | {fmt(r['fd'])} | {fmt(r['excess'])} ± {fmt(r['excess_se'])} | {fmt(r['in_band'])} |" for r in c["rows"]]
        picks = "; ".join(f"{name} rule: M = {fmt(v['M'])} ({v['verdict']}, in band: {fmt(v['in_band'])})" for name, v in c["rules"].items())
        out += ["", f"Rules on the {role} curve: {picks}.", ""]
    return out


def build_json(res: DemoResult) -> dict:
    k = res.config.se_factor
    doc = {
        "config": res.config.to_json(),
        "models": res.models,
        "metric_definitions": "see cil_toy/metrics.py; speed/net_speed in px/frame, fde_ratio = pixel frame-difference "
                              "energy / real, psnr0 in dB (data range 2), FD on features " + ", ".join(FEATURES),
        "probe": res.probe,
        "stats": res.stats_summary,
        "rows": method_rows(res),
        "start_check": res.start_check,
        "answers": {
            "leak": answer_leak(res.probe),
            "late_start": answer_late_start(res, k),
            "analytic_init": answer_analytic(res, k),
            "timenoise": answer_timenoise(res, k),
        },
        "timing_s": res.timing,
    }
    return round_sig(doc)


def _table(doc: dict) -> list[str]:
    head = "| method | model | M | σ_M | speed (px/frame) | net speed | motion energy / real | frame-0 PSNR (dB) | sprite persistence | size CV | FD ± SE |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in doc["rows"]:
        lines.append(
            f"| {r['label']} | {r['model']} | {fmt(r['M'])} | {fmt(r['sigma_M'])} | {fmt(r['speed'])} ± {fmt(r['speed_se'])} | "
            f"{fmt(r['net_speed'])} | {fmt(r['fde_ratio'])} | {fmt(r['psnr0'])} | {fmt(r['persistence'])} | {fmt(r['size_cv'])} | "
            f"{fmt(r['fd'])} ± {fmt(r['fd_se'])} |"
        )
    return lines


def _answers_md(doc: dict) -> list[str]:
    a, k = doc["answers"], doc["config"]["se_factor"]
    q1, q2, q3, q4 = a["leak"], a["late_start"], a["analytic_init"], a["timenoise"]
    real = next(r for r in doc["rows"] if r["key"] == "real")
    base = next(r for r in doc["rows"] if r["key"] == "baseline_T")
    out = ["## Does the toy reproduce the paper?", "",
           f"Sample quality first: sampled from T, the baseline's sprites are found in {fmt(base['persistence'])} of "
           f"the (sprite, frame) pairs (real videos: {fmt(real['persistence'])}); speeds are measured on found sprites "
           "only, so read them together with persistence.", ""]
    out += [f"**Does the baseline leak (Leakage Probe)? — {q1['verdict']}.** The one-step prediction keeps "
            f"{fmt(q1['ratio_low'])} of the real motion at t = {fmt(q1['t_low'])} and {fmt(q1['ratio_floor'])} at "
            f"t = {fmt(q1['t_floor'])}, its lowest (rule: leaking if the lowest ratio is below {fmt(q1['threshold'])}). The probe recommends "
            f"starting at M = {fmt(q1['recommended_M'])} ({doc['probe']['rule_text']}; found: {fmt(q1['recommended_found'])}). "
            "How to read it: x̂0 is a posterior mean, and at large t even an exact "
            "denoiser averages over the possible futures of the sprites, so part of any collapse is averaging, not copying; "
            "the TimeNoise curve and the generated videos below tell the two apart.", ""]
    if q2.get("verdict") != "not run":
        out += [f"**Does late start raise motion? — {q2['verdict']}.** From T the baseline's sprites move "
                f"{fmt(q2['speed_T'])} px/frame (real videos: {fmt(q2['speed_real'])}). The largest gain is "
                f"{fmt(q2['delta'])} ± {fmt(q2['delta_se'])} px/frame ({q2['init']} start at M = {fmt(q2['M'])}), "
                f"closing {fmt(q2['gap_closed'])} of the gap to real motion; its net speed (directed travel) changes by "
                f"{fmt(q2['net_delta'])} ± {fmt(q2['net_delta_se'])} px/frame (rule: 'yes' for a paired speed gain over "
                f"{fmt(k)} standard errors that closes at least {fmt(q2['materiality'])} of the gap without a significant "
                "loss of net speed; 'jitter only' when net speed falls; 'marginal' for a smaller significant gain).", ""]
    if q3.get("verdict") != "not run":
        s = q3["smallest"]
        out += [f"**Does Analytic-Init repair fidelity at small M? — {q3['verdict']}.** At the smallest M = {fmt(s['M'])} "
                f"the Fréchet distance to real videos is {fmt(s['fd_naive'])} with the naive N(0, I) start and "
                f"{fmt(s['fd_analytic'])} with Analytic-Init (combined bootstrap SE {fmt(s['fd_se'])}); frame-0 PSNR changes by "
                f"{fmt(s['psnr_gain'])} ± {fmt(s['psnr_gain_se'])} dB. Analytic-Init has the lower FD at "
                f"{fmt(q3['analytic_better_count'])} of {fmt(q3['m_count'])} start times. How far apart the two starts are "
                f"there: the Analytic-Init mean is {fmt(s['mean_offset_in_std'])} standard deviations (RMS) from the naive "
                f"zero mean and its std is {fmt(s['std_ratio'])} times the naive one (stats: tr Cov/d = "
                f"{fmt(doc['stats']['tr_cov_d'])}, RMS of E[x0] = {fmt(doc['stats']['rms_mean'])}).", ""]
    out += [f"**Does TimeNoise remove leakage? — {q4['verdict']}.** At t = {fmt(q4['t_high'])} the probe ratio is "
            f"{fmt(q4['ratio_timenoise'])} for the TimeNoise model and {fmt(q4['ratio_baseline'])} for the baseline "
            f"(SE {fmt(q4['ratio_se'])}); its lowest ratio over the grid is {fmt(q4['timenoise_min_ratio'])}. Sampled from T, "
            f"its sprites move {fmt(q4['speed_delta_T'])} ± {fmt(q4['speed_delta_T_se'])} px/frame faster than the baseline's "
            f"and its frame-0 PSNR differs by {fmt(q4['psnr_delta_T'])} ± {fmt(q4['psnr_delta_T_se'])} dB "
            f"(rule: 'no longer denoises' if a ratio exceeds 1 by over {fmt(k)} SE — its highest is {fmt(q4['timenoise_max_ratio'])} — "
            "since an exact denoiser's prediction moves no more than the videos on average; 'removes' if the ratio never drops "
            f"below the threshold, 'reduces' if it beats the baseline at the largest t by over {fmt(k)} SE).", ""]
    return out


def build_markdown(doc: dict) -> str:
    c, p = doc["config"], doc["probe"]
    lines = [
        "# Conditional image leakage in the toy I2V world", "",
        f"Models: baseline `{doc['models']['baseline']}`, TimeNoise `{doc['models']['timenoise']}`. "
        f"{fmt(c['samples'])} held-out videos, {fmt(c['steps'])} Euler steps, seed {fmt(c['seed'])}. "
        "Metrics: cil_toy/metrics.py (sprite speed by colour tracking, pixel motion energy, frame-0 PSNR, sprite "
        "persistence and size stability, Fréchet distance on the motion feature vector). ± is one standard error "
        "(over videos; bootstrap for FD). The real row's FD compares the held-out set with a second real set of the "
        "same size: differences below it are sampling noise.", "",
        "## Metrics (laid out like the paper's ablation tables)", "",
        *_table(doc), "",
        "## Leakage Probe", "",
        "![probe](probe.png)", "",
        "| t | σ | baseline ratio | TimeNoise ratio |", "|---|---|---|---|",
        *[f"| {fmt(t)} | {fmt(s)} | {fmt(b)} | {fmt(n)} |" for t, s, b, n in zip(p["t"], p["sigma"], p["baseline_mean_ratio"], p["timenoise_mean_ratio"])],
        "", "Motion vs fidelity over M: ![motion vs fidelity](motion_fidelity.png)", "",
        "Samples (conditional image, real video, each method): ![samples](samples.gif)", "",
        *_answers_md(doc),
        *_start_check_md(doc),
    ]
    return "\n".join(lines) + "\n"


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
