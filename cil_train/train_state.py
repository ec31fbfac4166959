"""What a checkpoint holds of a run, and putting it back: weights, EMA, optimizer, grad scaler, the
loss generator, every rank's global RNG and data cursor, skipped videos, and the run's shape
(number of processes, DDP or FSDP), which a resume must match.

One process writes exactly the keys it always did (``rng/loss``, ``rng/torch_cpu``, ``rng/cuda/i``,
``cursor``). Several: the loss generator is the same on every rank (each takes its slice of one
draw for the global batch), so it is saved once; each rank's global RNG is ``rng/rank<r>/…`` and
its cursor ``cursors[r]``. FSDP: tensors are each rank's local shards, in its own shard file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from cil_core.validation import CILValueError

from .checkpoint import (
    load_checkpoint, load_shard, optimizer_from_flat, optimizer_to_flat, rng_from_tensors, rng_to_tensors,
    prune_checkpoints, save_checkpoint, save_shard,
)
from .data import Cursor
from .parallel import like, local


def _rank_rng(dist) -> dict[str, torch.Tensor]:
    """Every rank's global CPU (and own GPU) RNG state, gathered."""
    out = {f"rng/rank{r}/torch_cpu": t for r, t in enumerate(dist.gather(torch.get_rng_state()))}
    if dist.backend == "nccl":
        out.update({f"rng/rank{r}/cuda": t for r, t in enumerate(dist.gather(torch.cuda.get_rng_state(dist.local_rank)))})
    return out


def collect(tr) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors of this rank's file, small state) of Trainer ``tr``; a collective for several ranks."""
    dist = tr.dist
    tensors = {f"param/{n}": local(p.detach()) for n, p in tr.params.items()}
    if tr.ema is not None:
        tensors.update({f"ema/{n}": local(t) for n, t in tr.ema.items()})
    opt_tensors, opt_small = optimizer_to_flat(tr.optimizer)
    tensors.update({k: local(v) for k, v in opt_tensors.items()})
    if dist.active:
        tensors.update({"rng/loss": tr.generator.get_state()} | _rank_rng(dist))
    else:
        tensors.update(rng_to_tensors(tr.generator))
    state = {
        "step": tr.step, "cursor": {"epoch": tr.cursor.epoch, "position": tr.cursor.position},
        "skipped": tr.skipped, "bad_indices": sorted(tr.bad_indices), "optimizer": opt_small,
        "scaler": tr.scaler.state_dict() if tr.scaler is not None else None,
        "config_hash": tr.cfg.trajectory_hash(), "mode": tr.cfg.mode,
    }
    if dist.active:
        state.update(world_size=dist.world, parallel=tr.parallel.kind,
                     cursors=dist.gather_json([tr.cursor.epoch, tr.cursor.position]))
    return tensors, state


def save(tr) -> Path | None:
    """Write the checkpoint of ``tr.step``: FSDP shards first, then rank 0's file (which completes it)."""
    tensors, state = collect(tr)
    sharded = tr.parallel.sharded
    if sharded:
        if not tr.dist.main:
            save_shard(tr.out, tr.step, tr.dist.rank, {k: v for k, v in tensors.items() if not k.startswith("rng/")})
        tr.dist.barrier()
        state["sharded"] = True
    path = save_checkpoint(tr.out, tr.step, tensors, state, tr.cfg.run.keep_checkpoints) if tr.dist.main else None
    if sharded:
        tr.dist.barrier()
    return path


def check_shape(path: Path, state: dict, cfg, dist, parallel: str) -> None:
    """Refuse (one line) a checkpoint of other settings, another number of processes or layout."""
    if state["config_hash"] != cfg.trajectory_hash() or state["mode"] != cfg.mode:
        raise CILValueError(
            f"{path.name} was written with different training settings (config hash {state['config_hash']} vs "
            f"{cfg.trajectory_hash()}); resume with the same config (only run.steps, paths, workers may change)."
        )
    world = int(state.get("world_size", 1))
    if world != dist.world:
        launch = "one process (plain cil train)" if world == 1 else f"{world} processes (torchrun --nproc_per_node {world})"
        raise CILValueError(
            f"{path.name} was written by a run of {world} process(es) and this run has {dist.world}: the global batch and "
            f"the data split depend on it, so resume with {launch}."
        )
    if world > 1 and state.get("parallel", "ddp") != parallel:
        raise CILValueError(f"{path.name} was written with run.parallel = {state.get('parallel')!r}; resume with that setting "
                            f"(this run has {parallel!r}).")


def restore(tr, path: Path) -> None:
    """Put the checkpoint ``path`` back into Trainer ``tr`` (every rank reads it)."""
    dist = tr.dist
    tensors, state = load_checkpoint(path)
    check_shape(path, state, tr.cfg, dist, tr.parallel.kind)
    if state.get("sharded") and not dist.main:
        tensors = load_shard(tr.out, int(state["step"]), dist.rank) | {k: v for k, v in tensors.items() if k.startswith("rng/")}
    with torch.no_grad():
        for n, p in tr.params.items():
            local(p).copy_(tensors[f"param/{n}"].to(p.device, p.dtype))
        if tr.ema is not None:
            for n in tr.ema:
                local(tr.ema[n]).copy_(tensors[f"ema/{n}"])
    device = tr.adapter.device
    optim = {k: v.to(device) for k, v in tensors.items() if k.startswith("optim/")}
    if tr.parallel.sharded:
        params = [p for group in tr.optimizer.param_groups for p in group["params"]]
        optim = {k: like(v, params[int(k.split("/")[1])]) for k, v in optim.items()}
    optimizer_from_flat(tr.optimizer, optim, state["optimizer"])
    if dist.active:
        tr.generator.set_state(tensors["rng/loss"])
        torch.set_rng_state(tensors[f"rng/rank{dist.rank}/torch_cpu"])
        if dist.backend == "nccl" and f"rng/rank{dist.rank}/cuda" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng/rank{dist.rank}/cuda"], dist.local_rank)
        tr.cursor = Cursor(*state["cursors"][dist.rank])
    else:
        rng_from_tensors(tr.generator, tensors)
        tr.cursor = Cursor(**state["cursor"])
    if tr.scaler is not None and state.get("scaler"):
        tr.scaler.load_state_dict(state["scaler"])
    tr.step = int(state["step"])
    tr.skipped = dict(state.get("skipped", {}))
    tr.bad_indices = set(state.get("bad_indices", []))
    dist.barrier()  # every rank has read its shard: the older checkpoints may go
    if dist.main:
        prune_checkpoints(tr.out, tr.cfg.run.keep_checkpoints)
        print(f"cil train: resumed from {path.name} (step {tr.step})", file=sys.stderr)
