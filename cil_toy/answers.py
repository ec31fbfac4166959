"""The paper's claims, asked of the toy (``cil demo``): each answer is computed from the data by a
rule stated here and in the report, never written in advance.

Uncertainty: every ± is one paired-bootstrap standard error — videos are resampled with
replacement, the same indices for every quantity compared (each video shares its conditional
image and, in the probe, its noisy inputs), ``bootstrap`` times. A difference counts when it
exceeds ``k`` (``se_factor``, 2) standard errors.

(a) ``answer_leak``: does the baseline leak beyond the perfect denoiser, and where in t? Paired
    excess model − reference per t, raw and with prediction noise removed; leakage where it is
    below −k·SE. (The paper's own reading, a ratio far below 1, is reported alongside.)
(b) ``answer_late_start``: does some late start (naive or Analytic-Init, M < 1) raise the
    generated motion (sprite speed, without losing directed travel) without losing fidelity (FD
    to real videos not higher by more than k·SE)?
(c) ``answer_analytic``: at the smallest M, is Analytic-Init's FD lower than the naive start's?
(d) ``answer_timenoise``: does TimeNoise bring the corrected one-step and the regeneration
    curves toward the reference (mean |excess| over the t where the baseline leaks), and does it
    raise the generated motion from T?
(e) ``answer_start``: does each start rule's M, on each probe curve, land in the FD-best band?
"""

from __future__ import annotations

import math

import torch

from . import metrics as M


def boot_se(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Bootstrap SE of the mean over dim 0 of ``values`` [n, ...] for resampled indices [B, n]."""
    return values.double()[index].mean(1).std(0)


def resample(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, n, (count, n), generator=generator)


def answer_leak(probe: dict, k: float, count: int, generator: torch.Generator) -> dict:
    t, pv = probe["t"], probe["per_video"]["baseline"]
    out = {"t": t, "threshold": probe["threshold"], "ratio_floor": min(probe["baseline_mean_ratio"]),
           "recommended_M": probe["recommended_M"], "recommended_found": probe["recommended_found"]}
    if "reference" not in pv:
        return {**out, "verdict": "no reference"}
    idx = resample(len(pv["one_step"]), count, generator)
    for name, model, ref in (("raw", "one_step", "reference"), ("corrected", "corrected", "reference_corrected"),
                             ("regen", "regen", "reference_sample")):
        if model not in pv:
            continue
        d = torch.tensor(pv[model], dtype=torch.float64) - torch.tensor(pv[ref], dtype=torch.float64)  # [V, T]
        mean, se = d.mean(0), boot_se(d, idx)
        out[f"excess_{name}"], out[f"excess_{name}_se"] = mean.tolist(), se.tolist()
        out[f"below_{name}"] = [ti for ti, m, s in zip(t, mean.tolist(), se.tolist()) if m < -k * s]
        out[f"above_{name}"] = [ti for ti, m, s in zip(t, mean.tolist(), se.tolist()) if m > k * s]
    out["verdict"] = "yes" if out["below_corrected"] else "no"
    return out


def _paired_fd(real: torch.Tensor, a: torch.Tensor, b: torch.Tensor, idx: torch.Tensor) -> tuple[float, float]:
    """FD(a) − FD(b) against the real set, and its paired-bootstrap SE."""
    full = M.frechet_distance(real, a) - M.frechet_distance(real, b)
    boots = torch.tensor([M.frechet_distance(real[i], a[i]) - M.frechet_distance(real[i], b[i]) for i in idx])
    return full, float(boots.std())


def _delta(res, a_key: str, b_key: str, metric: str, idx: torch.Tensor) -> tuple[float, float]:
    d = res.per_video[a_key][metric].double() - res.per_video[b_key][metric].double()
    return float(d.mean()), float(boot_se(d, idx))


def answer_late_start(res, k: float, idx: torch.Tensor) -> dict:
    rows, real = [], res.features["real"]
    for m in res.methods:
        if m.model != "baseline" or m.m >= 1.0:
            continue
        ds, dss = _delta(res, m.key, "baseline_T", "speed", idx)
        dn, dns = _delta(res, m.key, "baseline_T", "net_speed", idx)
        dfd, dfds = _paired_fd(real, res.features[m.key], res.features["baseline_T"], idx)
        more = ds > k * dss and dn > -k * dns
        rows.append({"key": m.key, "M": m.m, "init": m.init, "speed_delta": ds, "speed_delta_se": dss, "net_delta": dn,
                     "net_delta_se": dns, "fd_delta": dfd, "fd_delta_se": dfds, "more_motion": more, "fd_worse": dfd > k * dfds})
    if not rows:
        return {"verdict": "not run"}
    wins = [r for r in rows if r["more_motion"] and not r["fd_worse"]]
    if wins:
        verdict, best = "yes", max(wins, key=lambda r: r["speed_delta"])
    elif any(r["more_motion"] for r in rows):
        verdict, best = "more motion, worse FD", max((r for r in rows if r["more_motion"]), key=lambda r: r["speed_delta"])
    else:
        verdict, best = "no", max(rows, key=lambda r: r["speed_delta"])
    base = res.per_video["baseline_T"]
    return {"verdict": verdict, "best": best, "rows": rows, "speed_T": float(base["speed"].double().mean()),
            "net_speed_T": float(base["net_speed"].double().mean()), "speed_real": float(res.per_video["real"]["speed"].double().mean()),
            "net_speed_real": float(res.per_video["real"]["net_speed"].double().mean())}


def answer_analytic(res, k: float, idx: torch.Tensor) -> dict:
    ms = sorted({m.m for m in res.methods if m.model == "baseline" and m.m < 1.0})
    if not ms:
        return {"verdict": "not run"}
    real, per_m = res.features["real"], []
    for m in ms:
        a, n = f"baseline_analytic_{m:g}", f"baseline_naive_{m:g}"
        d, se = _paired_fd(real, res.features[a], res.features[n], idx)
        dp, dps = _delta(res, a, n, "psnr0", idx)
        per_m.append({"M": m, "fd_naive": res.fd[n][0], "fd_analytic": res.fd[a][0], "fd_delta": d, "fd_delta_se": se,
                      "psnr_gain": dp, "psnr_gain_se": dps})
    small = per_m[0]
    st, sig = res.stats_summary, res.sigma_of[small["M"]]
    small["mean_offset_in_std"] = st["rms_mean"] / math.sqrt(st["tr_cov_d"] + sig**2)
    small["std_ratio"] = math.sqrt(st["tr_cov_d"] + sig**2) / math.sqrt(1.0 + sig**2)
    d, se = small["fd_delta"], small["fd_delta_se"]
    verdict = "yes" if d < -k * se else ("no, worse" if d > k * se else "no significant difference")
    return {"verdict": verdict, "smallest": small, "per_M": per_m,
            "analytic_better_count": sum(r["fd_delta"] < -k * r["fd_delta_se"] for r in per_m), "m_count": len(per_m)}


def _closer(pv: dict, model: str, ref: str, ts: list[int], idx: torch.Tensor) -> tuple[float, float] | None:
    """Mean over the chosen t of |TimeNoise − ref| − |baseline − ref| (negative: TimeNoise is closer)."""
    if not ts or model not in pv["baseline"]:
        return None
    r = torch.tensor(pv["baseline"][ref], dtype=torch.float64)[:, ts]
    b = (torch.tensor(pv["baseline"][model], dtype=torch.float64)[:, ts] - r).abs().mean(1)
    n = (torch.tensor(pv["timenoise"][model], dtype=torch.float64)[:, ts] - r).abs().mean(1)
    return float((n - b).mean()), float(boot_se(n - b, idx))


def answer_timenoise(res, leak: dict, k: float, idx_probe: torch.Tensor, idx_gen: torch.Tensor) -> dict:
    pv, t = res.probe["per_video"], res.probe["t"]
    out: dict = {}
    for name, model, ref, below in (("corrected", "corrected", "reference_corrected", "below_corrected"),
                                    ("regen", "regen", "reference_sample", "below_regen")):
        ts = [t.index(x) for x in leak.get(below, [])]
        got = _closer(pv, model, ref, ts, idx_probe) if "reference" in pv["baseline"] else None
        out[f"{name}_t"] = [t[i] for i in ts]
        out[f"{name}_closer"], out[f"{name}_closer_se"] = got if got else (None, None)
        out[f"{name}_toward"] = got is not None and got[0] < -k * got[1]
    out["speed_delta"], out["speed_delta_se"] = _delta(res, "timenoise_T", "baseline_T", "speed", idx_gen)
    out["net_delta"], out["net_delta_se"] = _delta(res, "timenoise_T", "baseline_T", "net_speed", idx_gen)
    out["psnr_delta"], out["psnr_delta_se"] = _delta(res, "timenoise_T", "baseline_T", "psnr0", idx_gen)
    out["fd_delta"], out["fd_delta_se"] = _paired_fd(res.features["real"], res.features["timenoise_T"], res.features["baseline_T"], idx_gen)
    out["more_motion"] = out["speed_delta"] > k * out["speed_delta_se"]
    parts = [out["corrected_toward"], out["regen_toward"], out["more_motion"]]
    out["verdict"] = "yes" if all(parts) else ("no" if not any(parts) else "partly")
    return out


def answer_start(start_check: dict) -> dict:
    picks = [(role, key, v) for role, c in start_check.items() for key, v in c["rules"].items()]
    inside = [f"{role} {key}" for role, key, v in picks if v["in_band"]]
    return {"verdict": f"{len(inside)} of {len(picks)} in band", "in_band": inside, "count": len(picks)}


def all_answers(res, k: float, count: int, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    idx_probe = resample(res.probe["videos"], count, gen)
    idx_gen = resample(res.features["real"].shape[0], count, gen)
    leak = answer_leak(res.probe, k, count, gen)
    return {"leak": leak, "late_start": answer_late_start(res, k, idx_gen), "analytic_init": answer_analytic(res, k, idx_gen),
            "timenoise": answer_timenoise(res, leak, k, idx_probe, idx_gen), "start": answer_start(res.start_check)}
