"""``cil demo``'s probe stage: both toy models on the same held-out videos and noisy inputs.

``run_probe`` runs ``cil_toy.probe_suite`` on the baseline (with the perfect-denoiser reference)
and on the TimeNoise model (reusing that reference: the same x_t), and reads a start time M off
each probe curve with each start rule. The returned dict is metrics.json's ``probe`` section:

    t, sigma, videos, samples, regen_samples, regen_steps
    reference_ratio (+ _se, _mc_se), reference_corrected (+ _se), reference_sample (+ _se),
    reference_ess_min                           the perfect denoiser (cil_toy.reference)
    <role>_mean_ratio, <role>_ratio_se           one-step probe, raw (the paper's measure)
    <role>_corrected_ratio (+ _se)               one-step probe, prediction noise removed
    <role>_excess (+ _se), <role>_excess_corrected (+ _se)   model − reference, paired
    regen_ratio, regen_ratio_se, regen_excess, regen_excess_se   {role: [...]}: regeneration probe
    per_video                                    {curve key: [[ratio per t] per video]}
    rule_picks                                   {curve: {rule: {role: StartRecommendation}}}
    recommended_M, rule, curve                   the pick the report recommends
± is one standard error over the probe's videos everywhere.
"""

from __future__ import annotations

import torch

from cil_core.start_rule import START_RULES, recommend_start

from .probe_suite import SuiteConfig, VideoProbe, probe_toy_model, summarize
from .reference import ReferenceConfig
from .weights_io import ToyModel

CURVES = {"one_step": "one-step x0, raw (paper)", "corrected": "one-step x0, noise removed", "regen": "regeneration"}
CURVE_KEYS = {"one_step": "{role}_mean_ratio", "corrected": "{role}_corrected_ratio", "regen": "regen_ratio"}


def suite_config(cfg) -> SuiteConfig:
    ref = ReferenceConfig(candidates=cfg.reference_candidates, replicates=cfg.reference_replicates,
                          pilot=cfg.reference_candidates) if cfg.reference_candidates else None
    return SuiteConfig(t_grid=tuple(cfg.probe_t), videos=cfg.probe_videos, samples=cfg.probe_samples, regen_samples=cfg.regen_samples,
                       regen_steps=cfg.regen_steps, seed=cfg.seed, reference=ref, max_batch=cfg.batch * 2)


def curve(probe: dict, name: str, role: str) -> list[float]:
    """A model's mean ratio per t on one probe curve (``CURVES``)."""
    values = probe[CURVE_KEYS[name].format(role=role)]
    return values[role] if isinstance(values, dict) else values


def _per_video(videos: list[VideoProbe]) -> dict[str, list[list[float]]]:
    out = {"one_step": [v.one_step.ratio.mean(1).tolist() for v in videos],
           "corrected": [v.one_step.corrected_ratio[:, 0].tolist() for v in videos]}
    if videos[0].regen is not None:
        out["regen"] = [v.regen.ratio.mean(1).tolist() for v in videos]
    if videos[0].reference is not None:
        out["reference"] = [v.reference.raw.mean(1).tolist() for v in videos]
        out["reference_corrected"] = [v.reference.corrected.tolist() for v in videos]
        out["reference_sample"] = [v.reference.sample.mean(1).tolist() for v in videos]
    return out


def run_probe(cfg, models: dict[str, ToyModel], tick) -> dict:
    """The probe section of metrics.json (see the module docstring)."""
    scfg = suite_config(cfg)
    runs: dict[str, list[VideoProbe]] = {}
    for role, model in models.items():
        runs[role] = probe_toy_model(model, scfg, tick, reuse=runs.get("baseline"))
    sums = {role: summarize(v) for role, v in runs.items()}
    base = sums["baseline"]
    out: dict = {k: base[k] for k in ("t", "sigma", "videos", "samples")}
    out.update(regen_samples=cfg.regen_samples, regen_steps=cfg.regen_steps, reference_candidates=cfg.reference_candidates,
               reference_replicates=cfg.reference_replicates)
    for k in [k for k in base if k.startswith("reference_")]:
        out[k] = base[k]
    for role, s in sums.items():
        out[f"{role}_mean_ratio"], out[f"{role}_ratio_se"] = s["one_step_ratio"], s["one_step_ratio_se"]
        out[f"{role}_corrected_ratio"], out[f"{role}_corrected_ratio_se"] = s["corrected_ratio"], s["corrected_ratio_se"]
        for k in ("excess", "excess_se", "excess_corrected", "excess_corrected_se"):
            if k in s:
                out[f"{role}_{k}"] = s[k]
    for k in ("regen_ratio", "regen_ratio_se", "regen_excess", "regen_excess_se"):
        if k in base:
            out[k] = {role: s[k] for role, s in sums.items()}
    out["per_video"] = {role: _per_video(v) for role, v in runs.items()}
    t = torch.tensor(out["t"], dtype=torch.float64)
    picks: dict = {}
    for name in CURVES:
        if name == "regen" and "regen_ratio" not in out:
            continue
        picks[name] = {rule: {role: recommend_start(t, torch.tensor(curve(out, name, role), dtype=torch.float64), cfg.start_rule(rule)).to_json()
                              for role in models} for rule in START_RULES}
    chosen = picks[cfg.probe_curve][cfg.probe_rule]["baseline"]
    out.update(rule_picks=picks, recommended_M=chosen["m"], recommended_found=chosen["found"], recommendation=chosen, rule=cfg.probe_rule,
               curve=cfg.probe_curve, rule_text=cfg.start_rule(cfg.probe_rule).describe(), threshold=cfg.probe_threshold,
               plateau_tolerance=cfg.plateau_tolerance, curve_names=CURVES)
    return out
