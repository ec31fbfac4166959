"""The trained weights' storage: ordinary tensors autograd can save (ComfyUI builds models under
``torch.inference_mode``), and EMA values swapped in for export."""

from __future__ import annotations

import torch


class swapped_weights:
    """Context: parameters hold the EMA values inside, their own values again after."""

    def __init__(self, params: dict[str, torch.nn.Parameter], ema: dict[str, torch.Tensor] | None) -> None:
        self.params, self.ema, self.saved = params, ema, None

    def __enter__(self):
        if self.ema is not None:
            with torch.no_grad():
                self.saved = {n: p.detach().clone() for n, p in self.params.items()}
                for n, p in self.params.items():
                    p.copy_(self.ema[n].to(p.dtype))
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            with torch.no_grad():
                for n, p in self.params.items():
                    p.copy_(self.saved[n])
        return False


def make_trainable_storage(root: torch.nn.Module) -> int:
    """Replace inference-mode tensors (ComfyUI builds and loads models under
    ``torch.inference_mode``) with ordinary copies of equal value, which autograd can save.
    Returns how many were replaced."""
    count = 0
    with torch.inference_mode(False), torch.no_grad():
        for module in root.modules():
            for name, p in list(module._parameters.items()):
                if p is not None and p.is_inference():
                    module._parameters[name] = torch.nn.Parameter(p.clone(), requires_grad=p.requires_grad)
                    count += 1
            for name, b in list(module._buffers.items()):
                if b is not None and b.is_inference():
                    module._buffers[name] = b.clone()
                    count += 1
    return count

