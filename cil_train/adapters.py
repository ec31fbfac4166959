"""The ``TrainAdapter`` interface: what the model-agnostic training loop needs from a model.

An adapter turns decoded clips into model-space latents and conditions (``encode`` →
cacheable tensors, ``collate`` → ``Batch``) and exposes the denoiser that
``cil_core.losses.diffusion_loss`` calls: ``denoise(x, sigma, cond) -> x̂0`` in the sampler
space of ``family``. ``cond`` always holds ``"image"`` (the conditional image latent TimeNoise
perturbs, dim 0 = batch), optionally ``"tokens"`` (CLIP image tokens), the loop's ``"drop"``
(bool [B], condition dropout) and cil_core's ``"noise_level"`` (β [B]).

Implementations: ``toy.TinyAdapter`` (no ComfyUI) and ``comfy_adapters`` (SVD, VP concat
(DynamiCrafter-style), Wan I2V) on ComfyUI's own ``BaseModel.apply_model``.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cil_core.families import DiffusionFamily


@dataclass
class Batch:
    x0: torch.Tensor  # clean latents in model space, dim 0 = batch item (one video each)
    cond: dict = field(default_factory=dict)
    captions: list[str] = field(default_factory=list)


class TrainAdapter(ABC):
    family: DiffusionFamily
    family_name: str  # svd | dynamicrafter | wan | edm | vp | flow (picks official defaults)
    device: torch.device = torch.device("cpu")
    lora_prefix: str = ""  # key prefix in exported LoRA files ("diffusion_model." for ComfyUI)

    @abstractmethod
    def trainable_root(self) -> torch.nn.Module:
        """The network whose weights (or LoRA adapters) are trained."""

    @abstractmethod
    def encode(self, record: dict) -> dict[str, torch.Tensor]:
        """Decoded clip record (uint8 pixels [F, H, W, 3]) → cacheable CPU tensors."""

    @abstractmethod
    def collate(self, encoded: list[dict[str, torch.Tensor]]) -> Batch:
        """Encoded clips → a batch on ``device``."""

    @abstractmethod
    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        """x̂0 from the sampler state x at σ [B] (same layout as ``Batch.x0``)."""

    def encoder_id(self) -> str:
        """Identity of the encoder for the latent cache (cache files of another VAE never match)."""
        return type(self).__name__

    def prepare_for_training(self) -> None:
        """Move/load the network for training (ComfyUI: load_models_gpu)."""

    def training_context(self) -> contextlib.AbstractContextManager:
        """Entered around the training loop (e.g. swap in differentiable kernels)."""
        return contextlib.nullcontext()

    def export_full(self, path: Path, metadata: dict[str, str], state_dict: dict | None = None) -> Path:
        """Write the trained network as a file the model's usual loader reads; ``state_dict``: its
        weights gathered from shards (FSDP), used instead of the network's own."""
        raise NotImplementedError(f"{type(self).__name__} cannot export a full model")


def drop_mask(cond: dict, like: torch.Tensor) -> torch.Tensor | None:
    """The loop's condition-dropout mask broadcast against ``like`` (None when nothing drops)."""
    drop = cond.get("drop")
    if drop is None or not bool(drop.any()):
        return None
    return drop.to(like.device).reshape(-1, *([1] * (like.dim() - 1)))


def apply_drop(cond: dict, tensor: torch.Tensor) -> torch.Tensor:
    mask = drop_mask(cond, tensor)
    return tensor if mask is None else torch.where(mask, torch.zeros_like(tensor), tensor)
