"""Several processes, one run: ``torch.distributed`` as ``torchrun`` (or ``accelerate launch``) sets it up.

The launcher sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and the rendezvous address); ``from_env``
reads them. Without them, or with ``WORLD_SIZE=1``, nothing is initialised and every method here is a
no-op: one process runs exactly as it always did. With several, the backend is NCCL when the process
has a GPU (it takes ``cuda:LOCAL_RANK``) and gloo on CPUs, and every collective has a timeout, so a
rank that stops answering ends the job with an error instead of a hang (a rank that dies is noticed
sooner: the launcher stops the others).

Collectives carry tensors only; small Python values travel as JSON bytes (nothing is pickled).
"""

from __future__ import annotations

import datetime
import gc
import json
import os
from dataclasses import dataclass

import torch

from cil_core.validation import CILValueError

DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: ``world`` processes, this one ``rank`` (GPU ``local_rank``)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str = ""  # "" (one process), "gloo" or "nccl"

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def tag(self) -> str:
        """" (rank r of W)" for messages of a multi-process run, "" for one process."""
        return f" (rank {self.rank} of {self.world})" if self.active else ""

    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    # --- collectives (no-ops for one process) ---------------------------------------------------
    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise mean over ranks of a float64 CPU tensor (the same tensor for one process)."""
        if not self.active:
            return values
        t = values.to(self._comm_device(), torch.float64)
        torch.distributed.all_reduce(t)
        return (t / self.world).cpu()

    def total(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks of an int64 CPU tensor."""
        if not self.active:
            return values
        t = values.to(self._comm_device(), torch.int64)
        torch.distributed.all_reduce(t)
        return t.cpu()

    def gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's ``tensor`` (same shape and dtype on all ranks), in rank order, on the CPU."""
        if not self.active:
            return [tensor]
        t = tensor.contiguous().to(self._comm_device())
        out = [torch.empty_like(t) for _ in range(self.world)]
        torch.distributed.all_gather(out, t)
        return [o.cpu() for o in out]

    def gather_json(self, value) -> list:
        """Every rank's JSON-serialisable ``value``, in rank order."""
        if not self.active:
            return [value]
        data = torch.tensor(list(json.dumps(value).encode("utf-8")), dtype=torch.uint8)
        sizes = [int(s) for s in self.gather(torch.tensor([data.numel()], dtype=torch.int64))]
        padded = torch.zeros(max(sizes), dtype=torch.uint8)
        padded[: data.numel()] = data
        return [json.loads(bytes(t[:n].tolist()).decode("utf-8")) for t, n in zip(self.gather(padded), sizes)]

    def close(self, finished: bool = False) -> None:
        """Leave the process group. ``finished`` (every rank ended its work): wait for the others
        first, so no rank tears down while another is still writing or in a collective. Objects
        that hold the group (a DDP or FSDP model) are freed before it goes: a gloo rank that frees
        them after ``destroy_process_group`` can abort at exit."""
        if self.active and torch.distributed.is_initialized():
            if finished:
                torch.distributed.barrier()
            gc.collect()
            torch.distributed.destroy_process_group()

    def __enter__(self) -> "Dist":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """``with from_env(...) as dist:`` — leaves the group on the way out; finished when nothing was raised."""
        self.close(finished=exc_type is None)


def env_world() -> int:
    raw = os.environ.get("WORLD_SIZE", "").strip()
    try:
        return int(raw) if raw else 1
    except ValueError:
        raise CILValueError(f"WORLD_SIZE={raw!r} is not a whole number; start several processes with torchrun "
                            "--nproc_per_node N (it sets WORLD_SIZE, RANK and LOCAL_RANK).") from None


def from_env(device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Dist:
    """Join the process group a launcher described in the environment (one process: ``Dist()``)."""
    world = env_world()
    if world <= 1:
        return Dist()
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    except (KeyError, ValueError):
        raise CILValueError(f"WORLD_SIZE={world} but RANK/LOCAL_RANK are missing or not numbers; start the "
                            "processes with torchrun or accelerate launch, which set all three.") from None
    use_cuda = device != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise CILValueError(f"LOCAL_RANK={local_rank} but this machine shows {torch.cuda.device_count()} GPU(s); "
                                "start at most one process per GPU (torchrun --nproc_per_node).")
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Dist(world, rank, local_rank, backend)
