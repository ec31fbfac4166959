"""Headless entry: config + adapter → data → ``Trainer``. ComfyUI models get their adapter from
``cil_comfy.training.adapter_from_config``; this package itself knows only the tiny test model.
Under ``torchrun`` the caller passes the process's ``distributed.Dist`` (``from_env``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .config import TrainConfig
from .data import ClipDataset, ClipSpec, list_entries
from .loop import Trainer, TrainResult


def tiny_adapter(cfg: TrainConfig):
    """The adapter of ``model.kind = "tiny"`` (the trainer's own test model)."""
    from cil_core.validation import CILValueError

    from .toy import TinyAdapter

    if cfg.model.kind != "tiny":
        raise CILValueError(f"model.kind={cfg.model.kind!r}: ComfyUI models are trained through cil_comfy.training.")
    return TinyAdapter.from_config(cfg)


def run_training(cfg: TrainConfig, *, resume: bool = False, adapter=None, dist=None) -> TrainResult:
    """Train as ``cfg`` says; ``adapter`` may be given (tests, embedding in other tools)."""
    from cil_core.atomic import atomic_write_bytes

    adapter = adapter if adapter is not None else tiny_adapter(cfg)
    dataset = ClipDataset(list_entries(cfg.data), ClipSpec.from_config(cfg.data), cfg.run.seed)
    out = Path(cfg.run.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(adapter, dataset, cfg, dist=dist)
    if trainer.dist.main:
        atomic_write_bytes(out / "config.json", json.dumps(_asdict(cfg), indent=2).encode("utf-8"))
    result = trainer.run(resume=resume)
    if trainer.dist.main:
        _summary(result)
    return result


def _asdict(cfg: TrainConfig) -> dict:
    from dataclasses import asdict

    return asdict(cfg)


def _summary(result: TrainResult) -> None:
    lines = [f"cil train: {result.step} steps done; log {result.output_dir / 'log.jsonl'}, curve {result.plot_path}"]
    if result.lora_path:
        lines.append(f"cil train: LoRA → {result.lora_path} (load it with LoraLoaderModelOnly)")
    if result.full_path:
        lines.append(f"cil train: model → {result.full_path}")
    if result.skipped:
        lines.append(f"cil train: {len(result.skipped)} video(s) skipped, listed in {result.output_dir / 'skipped_videos.txt'}")
    print("\n".join(lines), file=sys.stderr)
