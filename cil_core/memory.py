"""Will it fit? A size is checked against the memory this process can still take BEFORE the
tensor is allocated, and refused with the numbers, instead of ending in a traceback from the
allocator or in the OOM killer.

The budget is a share (``SHARE``) of the memory the operating system reports as available now
(``MemAvailable`` on Linux): other programs and ComfyUI's own models live in the same machine.
Sizes are computed with Python integers, so a shape like 2**40 x 2**40 cannot overflow.
"""

from __future__ import annotations

import math
import os

from .validation import CILValueError

SHARE = 0.5  # of the available memory, for one allocation plan
GIB = 1024**3


def available_bytes() -> int | None:
    """Memory the OS can give this process now (bytes), or None when it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def budget_bytes() -> int | None:
    avail = available_bytes()
    return None if avail is None else int(avail * SHARE)


def tensor_bytes(shape, itemsize: int = 4) -> int:
    """Bytes of a dense tensor of ``shape`` (exact integer arithmetic)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def human(nbytes: float) -> str:
    for unit, size in (("TB", 1024**4), ("GB", GIB), ("MB", 1024**2), ("KB", 1024)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{int(nbytes)} bytes"


def check_fits(what: str, nbytes: int, fix: str, *, budget: int | None = None) -> int:
    """Refuse ``what`` (needing ``nbytes``) when it exceeds the budget; the message carries the
    numbers and ``fix``. Returns ``nbytes``."""
    budget = budget_bytes() if budget is None else budget
    if budget is not None and nbytes > budget:
        raise CILValueError(
            f"{what} needs about {human(nbytes)} of memory, more than the {human(budget)} this process may use now "
            f"({SHARE:.0%} of the {human(budget / SHARE)} available); {fix}"
        )
    return nbytes
