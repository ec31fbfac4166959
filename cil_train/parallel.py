"""Data parallelism for the trainer: DDP (LoRA and full fine-tunes) or FSDP2 (full fine-tunes).

* ``ddp``: every process holds the whole model. The trained weights (the LoRA layers, or the
  network) sit in one module whose forward is the adapter's denoiser, wrapped in
  ``DistributedDataParallel``: gradients are averaged over processes during backward (only on the
  last micro-batch of an accumulated step), so every process takes the same optimizer step and
  rank 0's copy of the state is everyone's.
* ``fsdp``: ``torch.distributed.fsdp.fully_shard`` on each block of the network (the blocks that
  gradient checkpointing uses) and on the network itself. Parameters, gradients and AdamW states are
  DTensors split over processes; each process checkpoints its own shard.

One process: no wrapper at all (the denoiser is the adapter's own method).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from cil_core.validation import CILValueError

from . import grad_ckpt
from .distributed import Dist

PARALLEL_MODES = ("ddp", "fsdp")


class Denoiser(nn.Module):
    """The trained weights as one module whose forward is ``adapter.denoise`` (what DDP wraps)."""

    def __init__(self, adapter, trained: nn.Module) -> None:
        super().__init__()
        self.trained = trained
        self._adapter = adapter

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        return self._adapter.denoise(x, sigma, cond)


class Parallel:
    """How the trainer calls the model and syncs gradients: ``denoise`` and ``sync(last)``."""

    def __init__(self, adapter, dist: Dist, kind: str = "none", module: nn.Module | None = None) -> None:
        self.adapter, self.dist, self.kind, self.module = adapter, dist, kind, module

    @property
    def sharded(self) -> bool:
        return self.kind == "fsdp"

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        if self.kind == "ddp":
            return self.module(x, sigma, cond)
        return self.adapter.denoise(x, sigma, cond)

    def sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Around one micro-batch's forward and backward: gradients are averaged over processes only
        on the ``last`` micro-batch of a step (DDP ``no_sync``; FSDP ``set_requires_gradient_sync``)."""
        if self.kind == "ddp" and not last:
            return self.module.no_sync()
        if self.kind == "fsdp":
            self.module.set_requires_gradient_sync(last)
        return contextlib.nullcontext()


def wrap(adapter, root: nn.Module, lora, dist: Dist, mode: str, parallel: str) -> Parallel:
    """Set up data parallelism for training ``root`` (``lora``: its LoraSet in LoRA mode)."""
    if parallel not in PARALLEL_MODES:
        raise CILValueError(f"run.parallel={parallel!r}; expected one of {PARALLEL_MODES}.")
    if not dist.active:
        return Parallel(adapter, dist)
    if parallel == "fsdp":
        if lora is not None:
            raise CILValueError('run.parallel = "fsdp" shards full fine-tunes (mode = "full"); a LoRA run keeps the frozen '
                                'weights whole on every GPU: use run.parallel = "ddp".')
        return Parallel(adapter, dist, "fsdp", shard_fully(root, dist))
    trained = root if lora is None else nn.ModuleDict({n.replace(".", "__"): layer for n, layer in lora.layers.items()})
    # device_ids=None: the module sits on one device already and inputs are passed as they are;
    # gradients live in DDP's all-reduce buckets (no second copy of them)
    ddp = nn.parallel.DistributedDataParallel(Denoiser(adapter, trained), device_ids=None, find_unused_parameters=lora is None,
                                              gradient_as_bucket_view=True)
    return Parallel(adapter, dist, "ddp", ddp)


def shard_fully(root: nn.Module, dist: Dist) -> nn.Module:
    """FSDP2 on each block of ``root`` (``grad_ckpt.checkpoint_blocks``), then on ``root``."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cuda" if dist.backend == "nccl" else "cpu", (dist.world,))
    for block in grad_ckpt.checkpoint_blocks(root):
        fully_shard(block, mesh=mesh)
    fully_shard(root, mesh=mesh)
    return root


# --- sharded tensors (FSDP's DTensors) -----------------------------------------------------------------

def is_sharded(t) -> bool:
    return type(t).__name__ == "DTensor"


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of ``t`` (the tensor itself when it is not sharded)."""
    return t.to_local() if is_sharded(t) else t


def like(saved: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """A saved local shard back as a tensor shaped like ``param``'s (a DTensor with its layout)."""
    if not is_sharded(param) or saved.dim() != param.dim():
        return saved
    from torch.distributed.tensor import DTensor

    mine = param.to_local()
    return DTensor.from_local(saved.to(mine.device, mine.dtype), param.device_mesh, param.placements,
                              shape=param.shape, stride=param.stride())


def full_state_dict(root: nn.Module, dist: Dist) -> dict[str, torch.Tensor]:
    """The whole network's weights on rank 0's CPU (an empty dict elsewhere; all ranks must call)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(root, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return sd if dist.main else {}
