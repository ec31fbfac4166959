"""Training the toy models with cil_core's loss (the same ``diffusion_loss`` as the real trainer).

One run = ``TrainConfig``: from scratch (pre-train) or from a parent checkpoint (the baseline and
TimeNoise fine-tunes, the VP variant), AdamW with linear warm-up and cosine decay, an EMA of the weights (the EMA is what is saved), per-batch videos from
``data.training_batches`` encoded with the toy codec. The conditional image is frame 0 of the
clean video (model-space latent); TimeNoise, when on, noises it inside ``diffusion_loss``.
Everything random comes from seeded generators, so a run is reproducible on one machine
(bit-exactness across CPUs/threads is not promised by torch).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cil_core.families import EDM, DiffusionFamily, VPDiscrete, dynamicrafter_family
from cil_core.losses import LossConfig, diffusion_loss, sample_training_sigmas
from cil_core.timenoise import TimeNoiseConfig
from cil_core.validation import CILValueError

from .codec import LatentCodec
from .data import WorldConfig, training_batches
from .model import ToyDenoiser, ToyNetConfig, ToyVideoNet


def toy_edm_family() -> EDM:
    """SVD's EDM family (σ ∈ [0.002, 700], v-prediction, σ_data = 1)."""
    return EDM(sigma_lo=0.002, sigma_hi=700.0, prediction="v")


def toy_vp_family() -> VPDiscrete:
    """DynamiCrafter's VP family (LDM linear betas, 1000 steps, zero terminal SNR, v-prediction)."""
    return dynamicrafter_family()


FAMILIES: dict[str, Callable[[], DiffusionFamily]] = {"edm": toy_edm_family, "vp": toy_vp_family}


@dataclass(frozen=True)
class TrainConfig:
    family: str = "edm"  # key of FAMILIES
    steps: int = 1500
    batch_size: int = 16
    lr: float = 2e-3
    warmup: int = 50
    weight_decay: float = 1e-2
    ema_decay: float = 0.995
    grad_clip: float = 1.0
    seed: int = 0
    p_mean: float = 0.4  # EDM lognormal σ (median 1.5): weight on σ ≈ 2–10, where sprites are placed
    p_std: float = 1.4
    sigma_uniform_fraction: float = 0.2  # EDM: share of σ drawn log-uniformly over [σ_min, σ_max]
    timenoise_beta_m: float | None = None  # None: baseline loss; else TimeNoise with this β_m
    timenoise_a: float = 5.0
    timenoise_per_sample_scalar: bool = False
    arch: ToyNetConfig = field(default_factory=ToyNetConfig)
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise CILValueError(f"family={self.family!r}; expected one of {sorted(FAMILIES)}.")
        if self.steps < 1 or self.batch_size < 1:
            raise CILValueError(f"steps={self.steps} and batch_size={self.batch_size} must be >= 1.")

    def loss_config(self) -> LossConfig:
        tn = None
        if self.timenoise_beta_m is not None:
            tn = TimeNoiseConfig(beta_m=self.timenoise_beta_m, a=self.timenoise_a)
        return LossConfig(timenoise=tn, per_sample_scalar=self.timenoise_per_sample_scalar, p_mean=self.p_mean, p_std=self.p_std)

    def to_meta(self) -> dict[str, str]:
        meta = {
            f"train.{k}": repr(getattr(self, k))
            for k in ("family", "steps", "batch_size", "lr", "warmup", "weight_decay", "ema_decay", "grad_clip", "seed",
                      "p_mean", "p_std", "sigma_uniform_fraction", "timenoise_beta_m", "timenoise_a", "timenoise_per_sample_scalar")
        }
        meta.update(self.world.describe())
        return meta | self.arch.to_meta()


@dataclass
class TrainResult:
    net: ToyVideoNet  # EMA weights
    family: DiffusionFamily
    losses: list[float]  # per-step batch loss (training weights, not EMA)
    seconds: float


def conditional_latent(x0: torch.Tensor) -> torch.Tensor:
    """The conditional image latent: frame 0 of a [B, C, F, h, w] clean latent → [B, C, h, w]."""
    return x0[:, :, 0]


def training_sigmas(family: DiffusionFamily, batch: int, cfg: TrainConfig, loss_cfg: LossConfig, gen: torch.Generator) -> torch.Tensor:
    """cil_core's training σ (EDM lognormal, VP uniform index); for EDM a share
    ``sigma_uniform_fraction`` is replaced by log-uniform draws over the whole [σ_min, σ_max], so
    every σ a sampler starting at T visits has been trained (the lognormal alone almost never
    reaches σ > 50, and "sampling from T" would then be handicapped by an untrained region)."""
    sigma = sample_training_sigmas(family, batch, loss_cfg, gen)
    if isinstance(family, EDM) and cfg.sigma_uniform_fraction > 0:
        u = torch.rand(batch, generator=gen, dtype=torch.float64)
        pick = torch.rand(batch, generator=gen, dtype=torch.float64) < cfg.sigma_uniform_fraction
        sigma = torch.where(pick, family.sigma_at(u), sigma)
    return sigma


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def build_net(cfg: TrainConfig, family: DiffusionFamily, parent: ToyVideoNet | None, seed: int) -> ToyVideoNet:
    torch.manual_seed(seed)  # parameter init
    net = ToyVideoNet(cfg.arch, family)
    if parent is not None:
        if parent.cfg != cfg.arch:
            raise CILValueError("the parent checkpoint's architecture differs from this run's; they must match.")
        net.load_state_dict(parent.state_dict())
    return net


def train(
    cfg: TrainConfig,
    *,
    parent: ToyVideoNet | None = None,
    codec: LatentCodec | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train (or fine-tune ``parent``) for ``cfg.steps`` steps; returns the EMA network."""
    codec = codec or LatentCodec()
    family = FAMILIES[cfg.family]()
    net = build_net(cfg, family, parent, cfg.seed)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    denoiser, loss_cfg = ToyDenoiser(net, family), cfg.loss_config()
    gen = torch.Generator().manual_seed(10_007 * cfg.seed + 1)
    batches = training_batches(cfg.seed, cfg.batch_size, cfg.world)
    losses, t0 = [], time.perf_counter()
    net.train()
    for step in range(cfg.steps):
        x0 = codec.encode(next(batches))
        sigma = training_sigmas(family, x0.shape[0], cfg, loss_cfg, gen)
        loss, _ = diffusion_loss(family, denoiser, x0, {"image": conditional_latent(x0)}, loss_cfg, generator=gen, sigma=sigma)
        loss = loss.mean()
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        _ema_update(ema, net, cfg.ema_decay if step >= cfg.warmup else 0.0)
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, losses[-1])
    ema.eval()
    return TrainResult(net=ema, family=family, losses=losses, seconds=time.perf_counter() - t0)


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for p_ema, p in zip(ema.parameters(), net.parameters()):
        p_ema.lerp_(p, 1.0 - decay)


# --- the shipped set: `cil toy-train` ------------------------------------------------------------

@dataclass(frozen=True)
class Recipe:
    """Everything `cil toy-train` needs; its defaults produce the shipped weights.

    Paper-style protocol (Sec. 6, App. B): one pre-training run, then two fine-tunes from it with
    identical settings except TimeNoise, so "baseline" and "TimeNoise" differ only by the loss.
    """

    seed: int = 0
    pretrain_steps: int = 1400
    finetune_steps: int = 350
    batch_size: int = 16
    stats_videos: int = 2048
    edm_beta_m: float = 3.0  # SVD's β_m = 15 on its unscaled latent (std ≈ 5) → 3 latent stds
    vp_beta_m: float | None = None  # VP variant's β_m (None: no VP models)
    vp_steps: int = 400  # VP baseline: fine-tune of the EDM pre-train with the VP loss
    timenoise_a: float = 5.0

    def edm_base(self) -> TrainConfig:
        return TrainConfig(family="edm", steps=self.pretrain_steps, batch_size=self.batch_size, seed=self.seed)

    def finetune(self, family: str, beta_m: float | None, offset: int) -> TrainConfig:
        return TrainConfig(family=family, steps=self.finetune_steps if family == "edm" else self.vp_steps,
                           batch_size=self.batch_size, seed=self.seed + offset, lr=5e-4, warmup=20,
                           timenoise_beta_m=beta_m, timenoise_a=self.timenoise_a)


def estimate_toy_stats(recipe: Recipe, codec: LatentCodec, world: WorldConfig, meta: dict[str, str]):
    """Analytic-Init stats (E[x0], tr Cov/d) of model-space latents of ``stats_videos`` training videos."""
    from cil_core.analytic_init import estimate_stats

    batch = 256
    stream = training_batches(recipe.seed + 500, batch, world)
    n_batches = max(1, math.ceil(recipe.stats_videos / batch))
    latents = (codec.encode(next(stream)) for _ in range(n_batches))
    return estimate_stats(latents, meta)


def train_shipped_set(recipe: Recipe, out_dir, *, command: str, threads: int = 1, progress: bool = True) -> list[tuple[Path, float]]:
    """Stats + EDM pre-train + baseline/TimeNoise fine-tunes (+ the VP pair); returns (path, seconds)."""
    from cil_core.stats_io import save_stats
    from tqdm.auto import tqdm

    from .weights_io import SHIPPED, STATS_FILE, save_toy_model

    out_dir = Path(out_dir)
    codec, world = LatentCodec(), WorldConfig()
    common = {"command": command, "seed": str(recipe.seed), "threads": str(threads), "codec_note": "model latent = raw × scale_factor"}
    written: list[tuple[Path, float]] = []

    t0 = time.perf_counter()
    stats = estimate_toy_stats(recipe, codec, world, {**common, **codec.describe(), **world.describe(), "latent_space": "model"})
    stats_path = save_stats(stats, out_dir / STATS_FILE)
    stats_path.chmod(0o644)
    written.append((stats_path, time.perf_counter() - t0))

    def run(cfg: TrainConfig, desc: str, parent: ToyVideoNet | None) -> TrainResult:
        bar = tqdm(total=cfg.steps, desc=desc, unit="step", disable=not progress)

        def tick(step: int, loss: float) -> None:
            bar.update(1)
            if step % 25 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")

        result = train(cfg, parent=parent, codec=codec, progress=tick)
        bar.close()
        return result

    pre_cfg = recipe.edm_base()
    pre = run(pre_cfg, "EDM pre-train", None)
    parent_meta = {f"parent.{k}": v for k, v in pre_cfg.to_meta().items() if k.startswith("train.")}
    parent_meta.update({"parent": "edm_pretrain (not shipped; rebuilt by the same command)",
                        "parent.train_seconds": f"{pre.seconds:.1f}", "parent.final_loss": f"{_tail_loss(pre):.6g}"})
    jobs = [("edm_baseline", "baseline", recipe.finetune("edm", None, 1)),
            ("edm_timenoise", "timenoise", recipe.finetune("edm", recipe.edm_beta_m, 1))]
    if recipe.vp_beta_m is not None:
        jobs += [("vp_baseline", "baseline", recipe.finetune("vp", None, 2)),
                 ("vp_timenoise", "timenoise", recipe.finetune("vp", recipe.vp_beta_m, 2))]
    for name, role, cfg in jobs:
        res = run(cfg, name, pre.net)
        meta = {**common, **parent_meta, **cfg.to_meta(), "name": name, "role": role,
                "train_seconds": f"{res.seconds:.1f}", "final_loss": f"{_tail_loss(res):.6g}"}
        path = save_toy_model(out_dir / SHIPPED[name], res.net, res.family, codec, meta)
        written.append((path, res.seconds + (pre.seconds if name == "edm_baseline" else 0.0)))
    return written


def _tail_loss(res: TrainResult, n: int = 50) -> float:
    tail = res.losses[-n:]
    return sum(tail) / len(tail)
