"""Where a ``cil`` command writes, checked before any work: a command must not sample for minutes
and then fail on a folder that is a file."""

from __future__ import annotations

import os
from pathlib import Path

from cil_core.validation import CILValueError, shown


def _nearest_existing(path: Path) -> Path:
    here = path.absolute()
    while not here.exists() and here != here.parent:
        here = here.parent
    return here


def _check_writable_from(flag: str, path: Path) -> None:
    """Every existing ancestor of ``path`` must be a folder, and the nearest one writable."""
    for parent in path.absolute().parents:
        if parent.exists() and not parent.is_dir():
            raise CILValueError(f"{flag} {shown(str(path))}: {shown(str(parent))} is a file, not a folder; choose another path.")
    base = _nearest_existing(path.parent)
    if not os.access(base, os.W_OK | os.X_OK):
        raise CILValueError(f"{flag} {shown(str(path))}: the folder {shown(str(base))} is not writable; choose another path.")


def output_folder(flag: str, path: str | os.PathLike) -> Path:
    """A folder the command creates or writes into; refused when it is an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CILValueError(f"{flag} {shown(str(path))} is an existing file, not a folder; give a folder (it is created).")
    _check_writable_from(flag, path / "x")
    return path


def output_file(flag: str, path: str | os.PathLike) -> Path:
    """A file the command writes (atomically replacing an old one); refused when it is a folder."""
    path = Path(path)
    if path.is_dir():
        raise CILValueError(f"{flag} {shown(str(path))} is a folder; give a file name such as {shown(str(path / 'stats.safetensors'))}.")
    if path.exists() and not path.is_file():
        raise CILValueError(f"{flag} {shown(str(path))} is a device or other special file, not a file to write; give a file name.")
    _check_writable_from(flag, path)
    return path


def plain_name(flag: str, name: str) -> str:
    """A file stem without folders (``--name``)."""
    if name and (os.sep in name or "/" in name or name in (".", "..") or "\x00" in name):
        raise CILValueError(f"{flag} {shown(name)} must be a plain file name, without folders; use --out for the folder.")
    return name
