"""Resumable training checkpoints: one safetensors file per save, written atomically.

``<output_dir>/checkpoints/step_00000100.safetensors`` holds every tensor of the state
(trainable parameters ``param/…``, EMA ``ema/…``, optimizer state ``optim/<i>/<name>``, RNG
states ``rng/…`` as uint8) and, in its metadata, the small state as JSON (step, data cursor,
skipped videos, optimizer hyper-parameters, grad-scaler, config hash, number of processes).
Nothing is pickled. Several processes: rank 0 writes it, with every rank's RNG state and data
cursor; with FSDP each rank ``r`` > 0 first writes its shard of the tensors to
``step_00000100.rank0000r.safetensors`` and rank 0's file, written last, completes the checkpoint.

Writes go through ``cil_core.atomic.atomic_path`` (a temporary folder beside the file, the file
fsynced, renamed over the final name, folder fsynced): a reader (or ``--resume`` after SIGKILL) sees either
a complete checkpoint or none. Temporary files a kill left behind (and shards of a checkpoint that
was never completed) are removed by ``clean_temporaries``.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cil_core.atomic import atomic_path, leftover_temporaries, remove_temporaries
from cil_core.validation import CILValueError

FORMAT = "comfyui-cil/train-state"
NAME = re.compile(r"^step_(\d{8})\.safetensors$")
SHARD = re.compile(r"^step_(\d{8})\.rank(\d{5})\.safetensors$")
FAULT_ENV = "CIL_TRAIN_FAULT"  # test hook: "kill_in_checkpoint=<step>[@rank]" (SIGKILL with a half-written temp file)


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_path(output_dir: str | Path, step: int) -> Path:
    return checkpoint_dir(output_dir) / f"step_{step:08d}.safetensors"


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := NAME.match(p.name))]
    return sorted(found)


def shard_path(output_dir: str | Path, step: int, rank: int) -> Path:
    return checkpoint_dir(output_dir) / f"step_{step:08d}.rank{rank:05d}.safetensors"


def shard_files(output_dir: str | Path) -> list[tuple[int, Path]]:
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := SHARD.match(p.name)))


def clean_temporaries(output_dir: str | Path, files: tuple[str | Path, ...] = ()) -> list[Path]:
    """Remove what a killed run left: temporaries of checkpoints and of ``files`` (the run's other
    outputs, relative to ``output_dir`` or absolute), and shards of checkpoints never completed."""
    removed = leftover_temporaries(checkpoint_dir(output_dir), "step_*.safetensors")
    for name in files:
        path = Path(output_dir) / name
        removed += leftover_temporaries(path.parent, path.name)
    done = {step for step, _ in list_checkpoints(output_dir)}
    removed += [p for step, p in shard_files(output_dir) if step not in done]
    return remove_temporaries(removed)


def fault_step(kind: str, rank: int = 0) -> int | None:
    """Step number of an injected fault of ``kind`` from $CIL_TRAIN_FAULT (tests only); an entry
    ``kind=step@r`` is for rank r only."""
    spec = os.environ.get(FAULT_ENV, "")
    for part in spec.split(","):
        name, _, value = part.partition("=")
        value, _, only = value.strip().partition("@")
        if name.strip() == kind and value.isdigit() and (not only or only == str(rank)):
            return int(value)
    return None


def _write(final: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str], step: int, rank: int) -> Path:
    with atomic_path(final) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        if fault_step("kill_in_checkpoint", rank) == step:  # simulate dying mid-write: leave half a file
            with open(tmp, "r+b") as fh:
                fh.truncate(os.path.getsize(tmp) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
    return final


def save_checkpoint(output_dir: str | Path, step: int, tensors: dict[str, torch.Tensor], state: dict, keep: int) -> Path:
    """Atomically write the checkpoint of ``step`` (rank 0); keep the newest ``keep`` ones (and their shards)."""
    final = _write(checkpoint_path(output_dir, step), tensors, {"format": FORMAT, "state": json.dumps(state, sort_keys=True)}, step, 0)
    prune_checkpoints(output_dir, keep)
    return final


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` whole checkpoints, and every shard of another step (a
    checkpoint's shards whose rank-0 file was never written included). Run after each save and
    again at resume: a kill between a save and its pruning leaves one checkpoint too many."""
    kept = {s for s, _ in list_checkpoints(output_dir)[-keep:]}
    for old_step, old in list_checkpoints(output_dir)[:-keep] + shard_files(output_dir):
        if old_step not in kept:
            old.unlink(missing_ok=True)


def save_shard(output_dir: str | Path, step: int, rank: int, tensors: dict[str, torch.Tensor]) -> Path:
    """Atomically write rank ``rank``'s shard of the checkpoint of ``step`` (before rank 0's file)."""
    return _write(shard_path(output_dir, step, rank), tensors, {"format": FORMAT + "-shard", "rank": str(rank)}, step, rank)


def load_shard(output_dir: str | Path, step: int, rank: int) -> dict[str, torch.Tensor]:
    path = shard_path(output_dir, step, rank)
    if not path.is_file():
        raise CILValueError(f"checkpoint step {step} lacks {path.name} (rank {rank}'s shard); the checkpoints folder "
                            "is incomplete: delete that step's files to resume from an older one.")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise CILValueError(f"checkpoint shard {path} is unreadable ({type(exc).__name__}: {exc}).") from None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != FORMAT:
                raise CILValueError(f"{path.name} is not a cil training checkpoint (format {meta.get('format')!r}).")
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except CILValueError:
        raise
    except Exception as exc:
        raise CILValueError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc}); delete it to resume from an older one.") from None
    return tensors, json.loads(meta["state"])


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


# --- optimizer state <-> flat tensors + JSON ----------------------------------------------------

def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, value in st.items():
            if torch.is_tensor(value):
                tensors[f"optim/{idx}/{name}"] = value
            else:
                scalars[f"{idx}/{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], small: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = value
    for key, value in small.get("scalars", {}).items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": small["param_groups"]})


# --- RNG states -----------------------------------------------------------------------------------

def rng_to_tensors(generator: torch.Generator) -> dict[str, torch.Tensor]:
    out = {"rng/loss": generator.get_state(), "rng/torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng/cuda/{i}"] = st
    return out


def rng_from_tensors(generator: torch.Generator, tensors: dict[str, torch.Tensor]) -> None:
    generator.set_state(tensors["rng/loss"])
    torch.set_rng_state(tensors["rng/torch_cpu"])
    cuda = sorted((int(k.rsplit("/", 1)[1]), v) for k, v in tensors.items() if k.startswith("rng/cuda/"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([v for _, v in cuda][: torch.cuda.device_count()])
