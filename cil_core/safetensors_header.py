"""A safetensors file's header, read and checked before any tensor is: a reader then loads only
the tensors it needs, knowing they are whole and fit in memory.

Layout: 8 bytes (little-endian u64) header length N, N bytes of JSON ``{"__metadata__": {str:
str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}``, then the data. A truncated file,
a header that claims more bytes than the file has (or than any header needs), a shape that does
not match its byte range, or an unknown dtype is one CILValueError naming the file.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .validation import CILValueError

MAX_HEADER_BYTES = 16 * 1024**2  # stats and checkpoint headers are kilobytes; safetensors' own limit is 100 MB
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
            "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class Entry:
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def read_header(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, Entry]]:
    """(metadata, tensors by name) of a safetensors file, every entry checked against the file."""
    path = Path(path)

    def bad(why: str) -> CILValueError:
        return CILValueError(f"{path.name} is not a readable safetensors file ({why}); re-save or re-estimate it.")

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes: too short for a header")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise bad(f"its header claims {n} bytes, the file has {size}")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"its header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise bad("its metadata is not a string-to-string map")
    data = size - 8 - n
    entries = {name: _entry(name, info, data, bad) for name, info in header.items()}
    return meta, entries


def _entry(name: str, info, data: int, bad) -> Entry:
    if not isinstance(info, dict):
        raise bad(f"entry {name!r} is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in ITEMSIZE:
        raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise bad(f"tensor {name!r} has shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data):
        raise bad(f"tensor {name!r} lies at {offsets!r}, outside the file's {data} data bytes (truncated?)")
    nbytes = math.prod(shape) * ITEMSIZE[dtype]
    if offsets[1] - offsets[0] != nbytes:
        raise bad(f"tensor {name!r} of shape {shape} {dtype} needs {nbytes} bytes, the file gives it {offsets[1] - offsets[0]}")
    return Entry(dtype, tuple(shape), nbytes)
