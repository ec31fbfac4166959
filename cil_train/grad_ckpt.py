"""Gradient checkpointing for any network: recompute chosen blocks in the backward pass.

Blocks: every element of each ``nn.ModuleList`` directly under the root (UNet ``input_blocks`` /
``output_blocks``, Wan ``blocks``, the tiny model's ``blocks``) plus a ``middle_block``. A block
that is an ``nn.Sequential`` (ComfyUI's ``TimestepEmbedSequential``) is replaced by its layers:
ComfyUI runs those layers one by one (``forward_timestep_embed``) without calling the container.
Each block's ``forward`` is wrapped by ``torch.utils.checkpoint`` (non-reentrant, RNG state
preserved), so only block inputs are kept for backward. ``disable`` restores the original methods.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def checkpoint_blocks(root: nn.Module) -> list[nn.Module]:
    blocks: list[nn.Module] = []
    for name, child in root.named_children():
        if isinstance(child, nn.ModuleList):
            blocks.extend(child)
        elif name == "middle_block":
            blocks.append(child)
    out: list[nn.Module] = []
    for block in blocks:
        out.extend(block.children() if isinstance(block, nn.Sequential) else [block])
    return out


def enable(root: nn.Module) -> list[nn.Module]:
    """Wrap the blocks of ``root``; returns them (pass to ``disable``)."""
    blocks = checkpoint_blocks(root)
    for block in blocks:
        original = block.forward
        block._cil_original_forward = original

        @functools.wraps(original)
        def forward(*args, _original=original, **kwargs):
            if not torch.is_grad_enabled():
                return _original(*args, **kwargs)
            return checkpoint(_original, *args, use_reentrant=False, **kwargs)

        block.forward = forward
    return blocks


def disable(blocks: list[nn.Module]) -> None:
    for block in blocks:
        if hasattr(block, "_cil_original_forward"):
            del block.forward  # the instance attribute; the class method shows through again
            del block._cil_original_forward
