"""LoRA adapters as forward hooks, saved in the key format ComfyUI's LoraLoaderModelOnly reads.

For a target layer with weight W (Linear [out, in] or Conv [out, in, k…]) the hook adds
``scale · up(down(x))`` to the layer's output, scale = alpha / rank. ``down`` has the layer's
kernel, stride, padding and dilation, ``up`` is 1×1: the sum equals the layer with the merged
weight W + scale · up @ down — exactly what ComfyUI computes when it loads the file
(``comfy/weight_adapter/lora.py``: ``alpha / down.shape[0]`` times ``up.flatten(1) @ down.flatten(1)``).

File keys (ComfyUI's "generic" LoRA format, ``comfy/lora.py::model_lora_keys_unet``):
``diffusion_model.<module path>.lora_down.weight`` [r, in, k…], ``….lora_up.weight``
[out, r, 1…] and ``….alpha`` (scalar). Hooks never touch the base weights, so removing them
restores the model exactly.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import torch
from torch import nn

from cil_core.validation import CILValueError

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class LoraSpec:
    rank: int = 16
    alpha: float = 16.0
    targets: tuple[str, ...] = ("*.to_q", "*.to_k", "*.to_v", "*.to_out.0")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoraLayer(nn.Module):
    """down/up pair for one base layer; ``up`` starts at zero so training starts at the base model."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.rank, self.alpha = rank, float(alpha)
        if isinstance(base, nn.Linear):
            self.down = nn.Linear(base.in_features, rank, bias=False)
            self.up = nn.Linear(rank, base.out_features, bias=False)
        elif isinstance(base, CONV_TYPES):
            if base.groups != 1:
                raise CILValueError(f"LoRA on grouped convolutions (groups={base.groups}) is not supported; drop it from lora.targets.")
            conv = next(c for c in CONV_TYPES if isinstance(base, c))
            self.down = conv(base.in_channels, rank, base.kernel_size, base.stride, base.padding, base.dilation, bias=False)
            self.up = conv(rank, base.out_channels, 1, bias=False)
        else:
            raise CILValueError(f"LoRA needs a Linear or Conv layer; got {type(base).__name__}.")
        self.down.to(torch.float32)
        self.up.to(torch.float32)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(self.down.weight[0].numel())
            self.down.weight.copy_(torch.rand(self.down.weight.shape, generator=generator) * 2 * bound - bound)
            self.up.weight.zero_()

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype if _autocast_on(x.device.type) else self.down.weight.dtype
        return self.up(self.down(x.to(dtype))) * self.scale


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # e.g. the meta device has no autocast
        return False


class LoraSet:
    """LoRA layers attached by forward hooks to the matching modules of ``root``."""

    def __init__(self, root: nn.Module, spec: LoraSpec, seed: int = 0, device: torch.device | None = None) -> None:
        self.spec = spec
        self.layers: dict[str, LoraLayer] = {}
        self._handles = []
        gen = torch.Generator().manual_seed(seed)
        for name in matching_modules(root, spec.targets):
            base = root.get_submodule(name)
            layer = LoraLayer(base, spec.rank, spec.alpha, gen)
            if device is not None:
                layer.to(device)
            self.layers[name] = layer
            self._handles.append(base.register_forward_hook(_hook(layer)))

    def parameters(self) -> dict[str, nn.Parameter]:
        return {f"{name}.{p}": t for name, layer in self.layers.items() for p, t in layer.named_parameters()}

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def comfy_state_dict(self, prefix: str, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Keys ``<prefix><module>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha`` (ComfyUI)."""
        out = {}
        for name, layer in self.layers.items():
            key = f"{prefix}{name}"
            out[f"{key}.lora_down.weight"] = layer.down.weight.detach().to("cpu", dtype).contiguous()
            out[f"{key}.lora_up.weight"] = layer.up.weight.detach().to("cpu", dtype).contiguous()
            out[f"{key}.alpha"] = torch.tensor(layer.alpha, dtype=torch.float32)
        return out


def _hook(layer: LoraLayer):
    def hook(module, args, output):
        return output + layer.delta(args[0]).to(output.dtype)

    return hook


def matching_modules(root: nn.Module, patterns) -> list[str]:
    """Names of Linear/Conv modules of ``root`` matching any fnmatch pattern ("all-linear": every Linear)."""
    names = []
    for name, module in root.named_modules():
        if not name or not isinstance(module, (nn.Linear, *CONV_TYPES)):
            continue
        dotted = f".{name}"
        if any(p == "all-linear" and isinstance(module, nn.Linear) or fnmatch.fnmatchcase(dotted, p) or fnmatch.fnmatchcase(name, p) for p in patterns):
            names.append(name)
    if not names:
        raise CILValueError(
            f"lora.targets={list(patterns)} matched no Linear/Conv layer of {type(root).__name__}; "
            f"examples of layer names: {_example_names(root)}."
        )
    return names


def _example_names(root: nn.Module, n: int = 6) -> list[str]:
    return [name for name, m in root.named_modules() if isinstance(m, (nn.Linear, *CONV_TYPES))][:n]


def merged_weight(base_weight: torch.Tensor, down: torch.Tensor, up: torch.Tensor, alpha: float, strength: float = 1.0) -> torch.Tensor:
    """W + strength · alpha/r · up @ down (the merge rule ComfyUI applies when loading)."""
    rank = down.shape[0]
    delta = (up.flatten(1).double() @ down.flatten(1).double()).reshape(base_weight.shape)
    return base_weight.double() + strength * (alpha / rank) * delta
