"""Numeric options of the ``cil`` commands, checked before any work: argparse turns "nan", "inf"
and 99999999999 into numbers, and a command must not carry them into minutes of work or into a
traceback from torch."""

from __future__ import annotations

import math

from cil_core.validation import CILValueError

SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes a signed 64-bit seed
THREADS_MAX = 1024


def check_range(args, **spec: tuple[float, float]) -> None:
    """``spec``: option attribute → (lowest, highest) allowed, inclusive. Lists (nargs) are checked
    item by item; None (an unset optional) is skipped."""
    for attr, (lo, hi) in spec.items():
        value = getattr(args, attr, None)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is None:
                continue
            flag = "--" + attr.replace("_", "-")
            if isinstance(v, float) and not math.isfinite(v):
                raise CILValueError(f"{flag}={v} is not a finite number; give one from {lo:g} to {hi:g}.")
            if not lo <= v <= hi:
                raise CILValueError(f"{flag}={v} is outside {lo:g}..{hi:g}.")
