"""The model-agnostic TimeNoise training loop (LoRA or full fine-tune).

Per optimizer step: ``grad_accum`` micro-batches, each ``loss = mean(w(σ)·(x̂0 − x0)²)`` from
``cil_core.losses.diffusion_loss`` (TimeNoise on the conditional image, β fed to the denoiser),
AdamW (official defaults lr 3e-5, weight decay 1e-2), optional EMA, gradient clipping, warm-up,
bf16/fp16 autocast (fp16 with a grad scaler) and gradient checkpointing.

Randomness: every training draw (σ, noise, β, condition noise, dropout) comes from one
``torch.Generator`` seeded with ``run.seed``; its state, the data cursor, optimizer, EMA and the
global RNG are checkpointed, so ``resume`` continues the exact loss sequence of an
uninterrupted run.

Several processes (``dist``, from ``torchrun``): each takes every world-th clip of the one data
order (``KeySampler``) and, from a generator that is the same on every rank, draws the randomness
of the whole global batch and keeps its own rows (``training_loss``), so a W-process run with B
clips each sees the clips and numbers of one process with W·B. Gradients are averaged over
processes (``parallel``: DDP or FSDP2), logged values too; rank 0 writes logs, plots and
checkpoints.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cil_core.validation import CILValueError
from cil_core.losses import LossConfig, diffusion_loss, draw_training_randomness, item_shapes

from . import grad_ckpt, parallel, train_state
from .adapters import Batch, TrainAdapter
from .checkpoint import clean_temporaries, fault_step, latest_checkpoint, list_checkpoints
from .config import TrainConfig
from .data import ClipDataset, Cursor, LatentCache, record_stream
from .distributed import Dist
from .lora import LoraSet, LoraSpec
from .progress import OUTPUT_FILES, TrainLog, save_loss_curve
from .weights import make_trainable_storage, swapped_weights

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LORA_FORMAT = "comfyui-cil/timenoise-lora"


def loss_config(cfg: TrainConfig, family_name: str) -> LossConfig:
    return LossConfig(
        timenoise=cfg.timenoise_config(family_name),
        per_sample_scalar=cfg.per_sample_scalar(family_name),
        noise_tokens=cfg.loss.noise_tokens,
        p_mean=cfg.loss.p_mean,
        p_std=cfg.loss.p_std,
    )


def training_loss(adapter: TrainAdapter, batch: Batch, loss_cfg: LossConfig, cond_dropout: float,
                  generator: torch.Generator, *, sigma: torch.Tensor | None = None,
                  noise: torch.Tensor | None = None, shard: tuple[int, int] = (0, 1),
                  denoise=None) -> tuple[torch.Tensor, dict]:
    """Unreduced loss of one batch. Draw order from ``generator``: dropout mask (only when
    ``cond_dropout > 0``), then cil_core's σ, x noise, β, condition noise.

    ``shard = (rank, world)``: this batch holds items rank, rank + world, … of a global batch of
    world × B items; the draws are made for the global batch and this process keeps those rows."""
    rank, world = shard
    total = batch.x0.shape[0] * world
    rows = slice(rank, None, world)
    cond = dict(batch.cond)
    if cond_dropout > 0:
        cond["drop"] = (torch.rand(total, generator=generator, dtype=torch.float64) < cond_dropout)[rows]
    draws = draw_training_randomness(adapter.family, loss_cfg, total, tuple(batch.x0.shape[1:]), *item_shapes(cond), generator,
                                     sigma=sigma, noise=noise)
    mine = draws.rows(rows) if world > 1 else draws
    return diffusion_loss(adapter.family, denoise or adapter.denoise, batch.x0, cond, loss_cfg, draws=mine)


@dataclass
class TrainResult:
    step: int
    steps: list[int]
    losses: list[float]
    output_dir: Path
    lora_path: Path | None = None
    lora_state: dict[str, torch.Tensor] | None = None
    full_path: Path | None = None
    plot_path: Path | None = None
    skipped: dict[str, str] = field(default_factory=dict)


class Trainer:
    """Runs ``cfg.run.steps`` optimizer steps of ``adapter`` on ``dataset``.

    ``on_step(step, row)`` is called after each step (progress bars); ``check_cancel()`` may
    raise to stop (ComfyUI's interrupt). ``export_full=False`` skips writing a full model file
    (the node hands the trained MODEL on instead). ``dist``: this process's place in a
    multi-process run (``distributed.from_env``); one process by default.
    """

    def __init__(self, adapter: TrainAdapter, dataset: ClipDataset, cfg: TrainConfig, *,
                 on_step: Callable[[int, dict], None] | None = None, check_cancel: Callable[[], None] | None = None,
                 export_full: bool = True, lora_name: str = "lora.safetensors", extra_metadata: dict | None = None,
                 dist: Dist | None = None) -> None:
        self.adapter, self.dataset, self.cfg = adapter, dataset, cfg
        self.on_step, self.check_cancel, self.export_full_model = on_step, check_cancel, export_full
        self.lora_name, self.extra_metadata = lora_name, dict(extra_metadata or {})
        self.dist = dist or Dist()
        self.out = Path(cfg.run.output_dir)
        self.log = TrainLog(self.out, write=self.dist.main)
        self.loss_cfg = loss_config(cfg, adapter.family_name)
        self.generator = torch.Generator().manual_seed(cfg.run.seed)
        self.cache = (LatentCache(cfg.data.latent_cache, adapter.encoder_id(), dataset.spec)
                      if cfg.data.latent_cache and dataset.spec is not None else None)
        self.dataset.cache = self.cache
        self.step, self.cursor = 0, Cursor()
        self.skipped: dict[str, str] = {}
        self.bad_indices: set[int] = set()
        self.new_bad: list[list] = []  # [index, path, error] found in this step, not yet shared

    # --- set-up ---------------------------------------------------------------------------
    def _setup(self) -> None:
        root = self.adapter.trainable_root()
        self.adapter.prepare_for_training()
        make_trainable_storage(root)
        self._flags = {n: p.requires_grad for n, p in root.named_parameters()}
        self.lora: LoraSet | None = None
        if self.cfg.mode == "lora":
            root.requires_grad_(False)
            spec = LoraSpec(self.cfg.lora.rank, self.cfg.lora.alpha, tuple(self.cfg.lora.targets))
            self.lora = LoraSet(root, spec, seed=self.cfg.run.seed, device=self.adapter.device)
            self.params = self.lora.parameters()
        else:
            root.requires_grad_(True)
            self.params = dict(root.named_parameters())
        o = self.cfg.optim
        self.parallel = parallel.wrap(self.adapter, root, self.lora, self.dist, self.cfg.mode, self.cfg.run.parallel)
        if self.parallel.sharded:  # the parameters are now DTensors: train (and checkpoint) those
            self.params = dict(root.named_parameters())
        self.optimizer = torch.optim.AdamW(list(self.params.values()), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps,
                                           weight_decay=o.weight_decay)
        self.ema = ({n: p.detach().float().clone() for n, p in self.params.items()} if o.ema_decay > 0 else None)
        device_type = self.adapter.device.type
        self.autocast_dtype = DTYPES[self.cfg.run.precision]
        self.scaler = torch.amp.GradScaler(device_type) if self.cfg.run.precision == "fp16" else None
        self.ckpt_blocks = grad_ckpt.enable(root) if self.cfg.run.grad_checkpointing else []

    def _teardown(self) -> None:
        grad_ckpt.disable(getattr(self, "ckpt_blocks", []))
        if getattr(self, "lora", None) is not None:
            self.lora.remove()
        root = self.adapter.trainable_root()
        for n, p in root.named_parameters():
            if n in getattr(self, "_flags", {}):
                p.requires_grad_(self._flags[n])

    # --- state ---------------------------------------------------------------------------
    def _resume(self) -> bool:
        if self.dist.main:
            removed = self._clean()
            if removed:
                names = ", ".join(p.name for p in removed)
                print(f"cil train: removed {len(removed)} unfinished file(s) of a killed run: {names}", file=sys.stderr)
        self.dist.barrier()
        path = latest_checkpoint(self.out)
        if path is None:
            if self.dist.main:
                print(f"cil train: no checkpoint in {self.out}; starting from step 0", file=sys.stderr)
            return False
        train_state.restore(self, path)
        self.log.truncate(self.step)
        return True

    def _clean(self) -> list[Path]:
        """Remove the temporaries of ours a killed run left in the output folder."""
        return clean_temporaries(self.out, (*OUTPUT_FILES, self.lora_name))

    # --- data -----------------------------------------------------------------------------
    def _next_batch(self, records) -> Batch:
        encoded = []
        n = len(self.dataset)
        while len(encoded) < self.cfg.data.batch_size:
            record = next(records)
            self.cursor = self.cursor.after(record["key"], n)
            if not record["ok"]:
                self._skip(record)
                continue
            item = self.adapter.encode(record)
            if self.cache is not None and "pixels" in record:
                self.cache.store(record["path"], item, {"caption": record.get("caption", ""), "fps": str(record.get("fps", ""))})
            encoded.append(item)
        return self.adapter.collate(encoded)

    def _skip(self, record: dict) -> None:
        idx = record["key"][2]
        if idx not in self.bad_indices:
            self.bad_indices.add(idx)
            self.skipped[record["path"]] = record["error"]
            self.new_bad.append([idx, record["path"], record["error"]])
            if not self.dist.active:
                self.log.write_skipped(self.skipped)
            print(f"cil train: skipped {record['path']}: {record['error']}{self.dist.tag()}", file=sys.stderr)
        if len(self.bad_indices) >= len(self.dataset):
            raise CILValueError(f"all {len(self.dataset)} training videos failed to decode; see {self.log.skipped_file}.")

    def _share_skipped(self) -> None:
        """Every rank learns the bad videos the others met this step (so all hold one list)."""
        if self.dist.active and int(self.dist.total(torch.tensor([len(self.new_bad)]))):
            for idx, path, error in (e for found in self.dist.gather_json(self.new_bad) for e in found):
                self.bad_indices.add(idx)
                self.skipped[path] = error
            self.log.write_skipped(self.skipped)
        self.new_bad = []

    # --- one step -------------------------------------------------------------------------
    def _lr(self) -> float:
        warm = self.cfg.optim.warmup_steps
        return self.cfg.optim.lr * (min(1.0, (self.step + 1) / warm) if warm else 1.0)

    def _train_step(self, records) -> dict:
        start = time.perf_counter()
        accum = self.cfg.optim.grad_accum
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        values = []  # per micro-batch: loss, mean σ, mean β
        shard = (self.dist.rank, self.dist.world)
        for i in range(accum):
            batch = self._next_batch(records)
            with self.parallel.sync(last=i == accum - 1):
                with torch.autocast(self.adapter.device.type, dtype=self.autocast_dtype, enabled=self.cfg.run.precision != "fp32"):
                    loss_el, info = training_loss(self.adapter, batch, self.loss_cfg, self.cfg.loss.cond_dropout, self.generator,
                                                  shard=shard, denoise=self.parallel.denoise)
                    loss = loss_el.float().mean()
                if not torch.isfinite(loss):
                    raise CILValueError(f"loss is {loss.item()} at step {self.step + 1}; lower optim.lr or use run.precision = \"fp32\".")
                scaled = loss / accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            values.append([loss.item(), float(info["sigma"].double().mean()), float(info["beta"].double().mean())])
        self._share_skipped()
        losses, sigmas, betas = (list(col) for col in zip(*self.dist.mean(torch.tensor(values, dtype=torch.float64)).tolist()))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = list(self.params.values())
        max_norm = self.cfg.optim.max_grad_norm if self.cfg.optim.max_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._update_ema()
        self.step += 1
        return {"step": self.step, "loss": sum(losses) / len(losses), "sigma": sum(sigmas) / len(sigmas),
                "beta": sum(betas) / len(betas), "lr": self._lr_logged(), "grad_norm": grad_norm,
                "step_time": time.perf_counter() - start, "skipped": len(self.skipped)}

    def _lr_logged(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        d = self.cfg.optim.ema_decay
        for n, p in self.params.items():
            self.ema[n].mul_(d).add_(p.detach().float(), alpha=1 - d)

    # --- run ------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> TrainResult:
        if not resume and list_checkpoints(self.out):
            raise CILValueError(f"{self.out} already holds checkpoints; pass --resume to continue or pick another run.output_dir.")
        with torch.inference_mode(False), torch.enable_grad():
            self._setup()
            records = None
            try:
                if not (resume and self._resume()):
                    if self.dist.main:
                        self._clean()
                    self.log.truncate(0)
                    self.log.write_skipped({})
                records = record_stream(self.dataset, self.cfg.run.seed, self.cursor, self.cfg.data.workers, self.bad_indices,
                                        self.dist.rank, self.dist.world)
                with self.adapter.training_context():
                    self._loop(records)
                return self._finish()
            finally:
                del records
                self._teardown()

    def _loop(self, records) -> None:
        from tqdm import tqdm

        total = self.cfg.run.steps
        kill_at = fault_step("kill_after_step", self.dist.rank)
        fail_at = fault_step("fail_after_step", self.dist.rank)
        bar = tqdm(total=total, initial=self.step, disable=not (self.cfg.run.progress and self.dist.main), desc="train",
                   unit="step", file=sys.stderr)
        try:
            while self.step < total:
                row = self._train_step(records)
                self.log.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4g}", s_per_step=f"{row['step_time']:.2f}")
                bar.update(1)
                if self.on_step is not None:
                    self.on_step(self.step, row)
                if kill_at == self.step:  # test hook: die like a crash, after the log row, before any save
                    os.kill(os.getpid(), signal.SIGKILL)
                if fail_at == self.step:  # test hook: a rank fails with an error
                    raise CILValueError(f"injected failure after step {self.step} (CIL_TRAIN_FAULT)")
                if self.step % self.cfg.run.checkpoint_every == 0 or self.step == total:
                    train_state.save(self)
                    if self.dist.main:
                        self._plot()
                if self.check_cancel is not None:
                    self.check_cancel()
        finally:
            bar.close()

    def _plot(self) -> Path:
        rows = self.log.rows()
        return save_loss_curve(self.out / "loss.png", [r["step"] for r in rows], [r["loss"] for r in rows])

    def _metadata(self) -> dict[str, str]:
        tn = self.loss_cfg.timenoise
        meta = {
            "format": LORA_FORMAT if self.cfg.mode == "lora" else "comfyui-cil/timenoise-full",
            "family": self.adapter.family_name, "steps": str(self.step), "mode": self.cfg.mode,
            "timenoise": "off" if tn is None else f"beta_m={tn.beta_m},a={tn.a},s={tn.s}",
            "per_sample_scalar": str(self.loss_cfg.per_sample_scalar).lower(),
            "weights": self._export_kind(),
        }
        if self.lora is not None:
            meta.update(rank=str(self.cfg.lora.rank), alpha=str(self.cfg.lora.alpha), targets=",".join(self.cfg.lora.targets))
        return meta | {k: str(v) for k, v in self.extra_metadata.items()}

    def _export_kind(self) -> str:
        return "ema" if self.ema is not None and self.cfg.run.export_weights == "ema" else "raw"

    def _finish(self) -> TrainResult:
        from cil_core.stats_io import atomic_save_safetensors

        rows = self.log.rows()
        result = TrainResult(self.step, [r["step"] for r in rows], [r["loss"] for r in rows], self.out,
                             plot_path=self._plot() if self.dist.main else None, skipped=dict(self.skipped))
        export_full = self.lora is None and self.export_full_model
        with swapped_weights(self.params, self.ema if self._export_kind() == "ema" else None):
            full = parallel.full_state_dict(self.adapter.trainable_root(), self.dist) if export_full and self.parallel.sharded else None
            if self.dist.main and self.lora is not None:
                sd = self.lora.comfy_state_dict(self.adapter.lora_prefix, DTYPES[self.cfg.lora.save_dtype])
                result.lora_state = sd
                result.lora_path = atomic_save_safetensors(sd, self.out / self.lora_name, self._metadata())
            elif self.dist.main and export_full:
                result.full_path = self.adapter.export_full(self.out / "model.safetensors", self._metadata(), state_dict=full)
        if self.dist.main:
            self._clean()
        return result
