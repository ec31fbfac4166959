"""Atomic file writes: write a temporary file in the target folder, fsync it, rename it over the
target and fsync the folder, so a reader (or a kill) never sees a half-written file and a failed
write keeps the old one. A kill mid-write leaves a temporary ``.<name>.<random>.tmp`` behind;
``leftover_temporaries`` finds them."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .validation import CILValueError

TEMPORARY_SUFFIX = ".tmp"


def temporary_prefix(path: str | os.PathLike) -> str:
    return f".{Path(path).name}."


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on normal exit it replaces ``path`` atomically;
    on an exception it is removed and ``path`` is left as it was."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a device, a FIFO or a folder is never replaced by a file
        raise CILValueError(f"{str(path)!r} exists and is not a regular file; write to a file path instead.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_folder(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (skipped where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def leftover_temporaries(folder: str | os.PathLike, name_pattern: str = "*") -> list[Path]:
    """Temporary files that ``atomic_path`` left in ``folder`` (killed mid-write) for targets whose
    names match the glob ``name_pattern``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{temporary_prefix(name_pattern)}*{TEMPORARY_SUFFIX}"))
