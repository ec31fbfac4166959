"""Test-only custom node pack for the host tier's server tests (linked into the server's
custom_nodes next to this pack): ``CILFuzz_Finite`` reports in its UI output whether every number
of whatever reaches it (a LATENT, IMAGE, FLOAT, CONDITIONING, stats …) is finite, so a prompt that
"succeeds" with NaN can be told from one that succeeds with numbers."""

from __future__ import annotations

import math


class _AnyType(str):
    def __ne__(self, other):
        return False

    __hash__ = str.__hash__


def _finite(value, depth: int = 0) -> bool:
    import torch

    if depth > 6:
        return True
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all()) if value.is_floating_point() else True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v, depth + 1) for v in value)
    for name in ("mean", "channel_var", "tr_cov_d"):  # AnalyticStats
        if hasattr(value, name) and not _finite(getattr(value, name), depth + 1):
            return False
    return True


class CILFuzz_Finite:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (_AnyType("*"),)}}

    RETURN_TYPES = ()
    FUNCTION = "check"
    OUTPUT_NODE = True
    CATEGORY = "CIL/testing"

    def check(self, value):
        return {"ui": {"cil_finite": [_finite(value)]}}


NODE_CLASS_MAPPINGS = {"CILFuzz_Finite": CILFuzz_Finite}
NODE_DISPLAY_NAME_MAPPINGS = {"CILFuzz_Finite": "CIL fuzz: finite?"}
