"""Atomic file writes: write into a private temporary folder next to the target, fsync the file,
rename it over the target and fsync the folder, so a reader (or a kill) never sees a half-written
file and a failed write keeps the old one.

The temporary is a FOLDER, ``.<name>.<random>.tmp/``, holding the file under its final name: some
writers make temporaries of their own beside the path they are given (safetensors ≥ 0.6 writes
``.tmpXXXXXX`` and renames it), and those stay inside it. A kill mid-write leaves that folder
behind; ``leftover_temporaries`` finds it (and the single temporary files of earlier versions) and
``remove_temporaries`` deletes them.
"""

from __future__ import annotations

import os
import shutil
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
    """Yield a path to write ``path``'s new content to; on normal exit it replaces ``path``
    atomically (with the usual permissions for a new file); on an exception it is removed and
    ``path`` is left as it was."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a device, a FIFO or a folder is never replaced by a file
        raise CILValueError(f"{str(path)!r} exists and is not a regular file; write to a file path instead.")
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=temporary_prefix(path), suffix=TEMPORARY_SUFFIX, dir=path.parent))
    tmp = folder / path.name
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # writers that rename their own temporary leave it 0600
        os.replace(tmp, path)
        fsync_folder(path.parent)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
    """Temporaries that ``atomic_path`` left in ``folder`` (killed mid-write) for targets whose
    names match the glob ``name_pattern``: its folders, and the files of earlier versions."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{temporary_prefix(name_pattern)}*{TEMPORARY_SUFFIX}"))


def remove_temporaries(paths: list[Path]) -> list[Path]:
    """Delete the temporaries ``leftover_temporaries`` found; returns them."""
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return paths
