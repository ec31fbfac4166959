"""Resumable training checkpoints: one safetensors file per save, written atomically.

``<output_dir>/checkpoints/step_00000100.safetensors`` holds every tensor of the state
(trainable parameters ``param/…``, EMA ``ema/…``, optimizer state ``optim/<i>/<name>``, RNG
states ``rng/…`` as uint8) and, in its metadata, the small state as JSON (step, data cursor,
skipped videos, optimizer hyper-parameters, grad-scaler, config hash). Nothing is pickled.

Writes go through ``cil_core.atomic.atomic_path`` (a temporary file in the same folder, fsynced,
renamed over the final name, folder fsynced): a reader (or ``--resume`` after SIGKILL) sees either
a complete checkpoint or none. Temporary files a kill left behind are removed by ``clean_temporaries``.
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

from cil_core.atomic import atomic_path, leftover_temporaries
from cil_core.validation import CILValueError

FORMAT = "comfyui-cil/train-state"
NAME = re.compile(r"^step_(\d{8})\.safetensors$")
FAULT_ENV = "CIL_TRAIN_FAULT"  # test hook: "kill_in_checkpoint=<step>" (SIGKILL with a half-written temp file)


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


def clean_temporaries(output_dir: str | Path) -> list[Path]:
    removed = leftover_temporaries(checkpoint_dir(output_dir), "step_*.safetensors")
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def fault_step(kind: str) -> int | None:
    """Step number of an injected fault of ``kind`` from $CIL_TRAIN_FAULT (tests only)."""
    spec = os.environ.get(FAULT_ENV, "")
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if name.strip() == kind and value.strip().isdigit():
            return int(value)
    return None


def save_checkpoint(output_dir: str | Path, step: int, tensors: dict[str, torch.Tensor], state: dict, keep: int) -> Path:
    """Atomically write the checkpoint of ``step``; keep the newest ``keep`` ones."""
    final = checkpoint_path(output_dir, step)
    meta = {"format": FORMAT, "state": json.dumps(state, sort_keys=True)}
    with atomic_path(final) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        if fault_step("kill_in_checkpoint") == step:  # simulate dying mid-write: leave half a file
            with open(tmp, "r+b") as fh:
                fh.truncate(os.path.getsize(tmp) // 2)
            os.kill(os.getpid(), signal.SIGKILL)
    for old_step, old in list_checkpoints(output_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return final


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
