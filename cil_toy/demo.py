"""``cil demo``: the whole paper on the toy world, written to a report folder.

Stages (``run_demo``):
1. load the baseline and TimeNoise toy models and the Analytic-Init stats (shipped or retrained);
2. Leakage Probe (``cil_toy.demo_probe``) on both models over the same held-out videos and
   noisy inputs: the one-step ratio (raw and with prediction noise removed), the perfect
   denoiser's reference curve, the regeneration probe, and the M each start rule
   (``cil_core.start_rule``) reads off each model's curves;
3. generation on held-out conditional images: baseline from T, naive late start and
   Analytic-Init late start at every M, TimeNoise model from T and with Analytic-Init at every
   M; the rules' picks are added to the M sweep; the same initial ε for every method (paired);
4. metrics with ground truth (``cil_toy.metrics``), a Fréchet distance to the real videos, and
   the start-rule check (``validate_start``): the M with the lowest FD per model, the band of M
   within ``se_factor`` paired-bootstrap SEs of it, and whether each rule's M lies in the band;
5. the report (``cil_toy.report``): report.md, metrics.json, probe.png, motion_fidelity.png,
   samples.gif.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from cil_core.analytic_init import AnalyticStats
from cil_core.schedules import StartTime
from cil_core.start_rule import StartRule
from cil_core.stats_io import load_stats
from cil_core.validation import CILValueError, check_fraction

from . import metrics as M
from .data import SpriteTracks, held_out_set, make_videos
from .demo_probe import CURVES, run_probe
from .sampling import generate
from .weights_io import SHIPPED, STATS_FILE, WEIGHTS_DIR, ToyModel, load_toy_model

DEFAULT_M = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
DEFAULT_PROBE_T = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
REFERENCE_SEED = 777  # a second real set, for the Fréchet distance's sampling floor


@dataclass
class DemoConfig:
    out: Path = Path("cil-report")
    samples: int = 64
    steps: int = 20
    seed: int = 0
    m_values: tuple[float, ...] = DEFAULT_M
    probe_t: tuple[float, ...] = DEFAULT_PROBE_T
    probe_videos: int = 8
    probe_samples: int = 4  # one-step noise draws per t (>= 2: the corrected ratio needs them)
    regen_samples: int = 2  # regeneration-probe draws per t
    regen_steps: int = 10
    reference_candidates: int = 256  # per replicate (0: no perfect-denoiser reference)
    reference_replicates: int = 4
    probe_rule: str = "plateau"  # the rule whose M the report recommends; every rule is checked
    probe_curve: str = "one_step"  # the probe curve it reads (CURVES); every curve is checked
    probe_threshold: float = 0.5
    plateau_tolerance: float = 0.1
    family: str = "edm"  # which shipped pair: edm_* or vp_*
    weights_dir: Path | None = None  # folder with retrained weights (same file names); None: shipped
    baseline: str | None = None  # explicit path overrides
    timenoise: str | None = None
    gif_rows: int = 4
    bootstrap: int = 200
    batch: int = 32
    se_factor: float = 2.0  # a difference counts when it exceeds se_factor × its standard error

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.samples < 4:
            raise CILValueError(f"samples={self.samples}: use at least 4 held-out videos (the Fréchet distance needs a covariance).")
        if self.steps < 2:
            raise CILValueError(f"steps={self.steps}: use at least 2 sampling steps.")
        for m in self.m_values:
            check_fraction("M", m)
        if not self.m_values:
            raise CILValueError("give at least one late-start M.")
        self.start_rule(self.probe_rule)  # refuse a bad rule now, not after the probe
        if self.probe_curve not in CURVES:
            raise CILValueError(f"probe_curve={self.probe_curve!r}; expected one of {', '.join(CURVES)}.")
        if self.probe_videos < 2 or self.probe_samples < 2 or self.regen_samples < 1 or self.regen_steps < 1:
            raise CILValueError(f"probe_videos={self.probe_videos} and probe_samples={self.probe_samples} must be >= 2, "
                                f"regen_samples={self.regen_samples} and regen_steps={self.regen_steps} >= 1.")
        if self.family not in ("edm", "vp"):
            raise CILValueError(f"family={self.family!r}; expected 'edm' or 'vp'.")

    def start_rule(self, name: str) -> StartRule:
        return StartRule(name, self.probe_threshold, self.plateau_tolerance)

    def to_json(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


@dataclass
class Method:
    key: str
    model: str  # "baseline" | "timenoise"
    init: str  # "naive" | "analytic"
    m: float
    label: str


@dataclass
class DemoData:
    pixels: torch.Tensor  # [N, 3, F, H, W]
    tracks: SpriteTracks
    cond_pixels: torch.Tensor  # [N, 3, H, W]
    latents: torch.Tensor  # [N, C, F, h, w]
    cond_latents: torch.Tensor  # [N, C, h, w]


@dataclass
class DemoResult:
    config: DemoConfig
    probe: dict
    methods: list[Method]
    per_video: dict[str, dict[str, torch.Tensor]]  # method key (and "real") → metric → [N]
    features: dict[str, torch.Tensor]
    videos: dict[str, torch.Tensor]  # method key → pixels of the first gif_rows videos
    data: DemoData
    fd: dict[str, tuple[float, float]]
    real_floor: tuple[float, float]
    sigma_of: dict[float, float]
    start_check: dict  # validate_start's result
    timing: dict[str, float] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    model_meta: dict[str, dict] = field(default_factory=dict)  # role → training seed, command, steps
    stats_summary: dict[str, float] = field(default_factory=dict)  # tr Cov/d and RMS of E[x0]


def _model_path(cfg: DemoConfig, role: str) -> str:
    explicit = cfg.baseline if role == "baseline" else cfg.timenoise
    if explicit:
        return explicit
    name = f"{cfg.family}_{role}"
    if cfg.weights_dir is not None:
        return str(Path(cfg.weights_dir) / SHIPPED[name])
    if not (WEIGHTS_DIR / SHIPPED[name]).is_file():
        raise CILValueError(
            f"the toy model {name!r} is not shipped; train it with 'cil toy-train --vp --out DIR' "
            "and run 'cil demo --family vp --weights-dir DIR'."
        )
    return name


def load_demo_models(cfg: DemoConfig) -> tuple[ToyModel, ToyModel, AnalyticStats]:
    base, tn = load_toy_model(_model_path(cfg, "baseline")), load_toy_model(_model_path(cfg, "timenoise"))
    if base.world != tn.world or base.codec != tn.codec:
        raise CILValueError("the baseline and TimeNoise models were trained on different toy worlds or codecs.")
    stats_path = Path(cfg.weights_dir or WEIGHTS_DIR) / STATS_FILE
    if not stats_path.is_file():
        raise CILValueError(f"Analytic-Init stats {stats_path} are missing; 'cil toy-train' writes them.")
    stats = load_stats(stats_path)
    if stats.shape != base.latent_shape:
        raise CILValueError(f"stats shape {stats.shape} does not match the models' latent shape {base.latent_shape}.")
    return base, tn, stats


def held_out_data(model: ToyModel, n: int) -> DemoData:
    pixels, tracks = held_out_set(n, model.world)
    latents = model.codec.encode(pixels)
    return DemoData(pixels, tracks, pixels[:, :, 0], latents, latents[:, :, 0])


def all_picks(picks: dict) -> list[tuple[str, str, str, dict]]:
    """(curve, rule, role, pick) for every start-rule pick of the probe."""
    return [(c, r, role, p) for c, rules in picks.items() for r, roles in rules.items() for role, p in roles.items()]


def build_methods(cfg: DemoConfig, picks: dict) -> list[Method]:
    """Baseline from T, naive and Analytic-Init at every M; TimeNoise from T and Analytic-Init at
    every M. The sweep is ``m_values`` plus every rule's pick on every curve for either model."""
    ms = sorted({m for m in cfg.m_values if m < 1.0} | {p["m"] for *_, p in all_picks(picks) if p["m"] < 1.0}, reverse=True)
    methods = [Method("baseline_T", "baseline", "naive", 1.0, "baseline, from T")]
    for m in ms:
        methods.append(Method(f"baseline_naive_{m:g}", "baseline", "naive", m, f"naive late start M={m:g}"))
        methods.append(Method(f"baseline_analytic_{m:g}", "baseline", "analytic", m, f"Analytic-Init M={m:g}"))
    methods.append(Method("timenoise_T", "timenoise", "naive", 1.0, "TimeNoise, from T"))
    methods += [Method(f"timenoise_analytic_{m:g}", "timenoise", "analytic", m, f"TimeNoise + Analytic-Init M={m:g}") for m in ms]
    return methods


def start_candidates(methods: list[Method], role: str) -> dict[float, str]:
    """M → method key of one model's full-fix candidates: from T (M = 1) and Analytic-Init at each M."""
    return {m.m: m.key for m in methods if m.model == role and (m.m >= 1.0 or m.init == "analytic")}


def validate_start(cfg: DemoConfig, res_features: dict[str, torch.Tensor], fd_of: dict[str, tuple[float, float]], methods: list[Method],
                   probe: dict, generator: torch.Generator) -> dict:
    """Per model: the M whose videos have the lowest FD to the real ones (M = 1: from T), each
    M's paired-bootstrap FD excess over it, the band of M within ``se_factor`` SEs, and whether
    each start rule's M (from that model's probe curve) lies in the band. Paired: one resample of
    video indices serves every method and the real set (each video shares its first frame)."""
    real = res_features["real"]
    n = real.shape[0]
    out = {}
    for role in ("baseline", "timenoise"):
        cands = start_candidates(methods, role)
        fd = {m: fd_of[k][0] for m, k in cands.items()}  # the full-data FD of the metrics table
        best = min(fd, key=fd.get)
        boot = {m: [] for m in cands}
        for _ in range(cfg.bootstrap):
            idx = torch.randint(0, n, (n,), generator=generator)
            ref = M.frechet_distance(real[idx], res_features[cands[best]][idx])
            for m, k in cands.items():
                boot[m].append(M.frechet_distance(real[idx], res_features[k][idx]) - ref)
        rows = []
        for m in sorted(cands, reverse=True):
            se = float(torch.tensor(boot[m]).std()) if cfg.bootstrap > 1 else math.nan
            excess = fd[m] - fd[best]
            rows.append({"M": m, "fd": fd[m], "excess": excess, "excess_se": se, "in_band": m == best or excess <= cfg.se_factor * se})
        band = [r["M"] for r in rows if r["in_band"]]
        rules = {}
        for curve_name, name, who, pick in all_picks(probe["rule_picks"]):
            if who != role:
                continue
            m = pick["m"]
            row = next((r for r in rows if abs(r["M"] - min(m, 1.0)) < 1e-9), None)
            rules[f"{curve_name}/{name}"] = {"curve": curve_name, "rule": name, "M": m, "verdict": pick["verdict"],
                                             "in_band": None if row is None else row["in_band"],
                                             "excess": None if row is None else row["excess"], "excess_se": None if row is None else row["excess_se"]}
        out[role] = {"best_M": best, "band": band, "rows": rows, "rules": rules}
    return out


def generate_method(cfg: DemoConfig, method: Method, model: ToyModel, stats: AnalyticStats, data: DemoData, tick) -> torch.Tensor:
    """Pixels [N, 3, F, H, W] for one method; the initial ε depends only on the seed and batch."""
    outs = []
    n = data.latents.shape[0]
    for start in range(0, n, cfg.batch):
        cond = data.cond_latents[start : start + cfg.batch]
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + start)
        denoise = _batch_denoiser(model, cond)
        z = generate(denoise, model.family, (cond.shape[0], *model.latent_shape), steps=cfg.steps,
                     start=StartTime(fraction=method.m), init=method.init, stats=stats, generator=gen)
        outs.append(model.codec.decode(z).clamp(-1, 1))
        tick(cfg.steps)
    return torch.cat(outs)


def _batch_denoiser(model: ToyModel, cond: torch.Tensor):
    den = model.denoiser
    beta = torch.zeros(cond.shape[0])
    return lambda x, s: den(x, s, {"image": cond, "noise_level": beta})


def run_demo(cfg: DemoConfig, progress: bool = True) -> DemoResult:
    from tqdm.auto import tqdm

    timing, t0 = {}, time.perf_counter()
    base, tn, stats = load_demo_models(cfg)
    data = held_out_data(base, cfg.samples)
    models = {"baseline": base, "timenoise": tn}
    timing["load_s"] = time.perf_counter() - t0

    n_batches = math.ceil(cfg.samples / cfg.batch)
    t1 = time.perf_counter()
    with tqdm(total=2 * cfg.probe_videos, desc="cil demo: leakage probe", unit="video", disable=not progress) as pbar:
        probe = run_probe(cfg, models, pbar.update)
    timing["probe_s"] = time.perf_counter() - t1

    methods = build_methods(cfg, probe["rule_picks"])
    bar = tqdm(total=len(methods) * n_batches * cfg.steps, desc="cil demo: generation", unit="step", disable=not progress)
    tick = bar.update
    t2 = time.perf_counter()
    per_video, videos = {}, {}
    real = M.video_metrics(data.pixels, data.tracks, data.cond_pixels)
    per_video["real"] = real
    for method in methods:
        bar.set_postfix_str(method.key)
        pixels = generate_method(cfg, method, models[method.model], stats, data, tick)
        per_video[method.key] = M.video_metrics(pixels, data.tracks, data.cond_pixels)
        videos[method.key] = pixels[: cfg.gif_rows]
    bar.close()
    timing["generate_s"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    features = {k: M.feature_matrix(v) for k, v in per_video.items()}
    gen = torch.Generator().manual_seed(cfg.seed + 11)
    fd = {k: M.bootstrap_frechet(features["real"], f, cfg.bootstrap, gen) for k, f in features.items() if k != "real"}
    ref_pixels, ref_tracks = make_videos(REFERENCE_SEED, cfg.samples, base.world)
    ref_features = M.feature_matrix(M.video_metrics(ref_pixels, ref_tracks, ref_pixels[:, :, 0]))
    real_floor = M.bootstrap_frechet(features["real"], ref_features, cfg.bootstrap, gen)
    start_check = validate_start(cfg, features, fd, methods, probe, gen)
    timing["metrics_s"] = time.perf_counter() - t3
    sigma_of = {m.m: float(base.family.sigma_at(m.m)) for m in methods}
    result = DemoResult(cfg, probe, methods, per_video, features, videos, data, fd, real_floor, sigma_of, start_check, timing,
                        models={"baseline": base.name, "timenoise": tn.name},
                        model_meta={role: {k: m.meta.get(k) for k in ("seed", "command", "train_seconds", "final_loss")} for role, m in models.items()},
                        stats_summary={"tr_cov_d": stats.tr_cov_d, "rms_mean": float(stats.mean.double().pow(2).mean().sqrt())})
    return result
