"""Where the pack reads and writes: its models folders in ComfyUI's folder_paths
(``models/cil_stats``, ``models/cil_toy``), the files inside them looked up by name, and the one
check every read or write of a user-named path goes through.

Containment: a name is checked as text first (``check_name``: no NUL, valid Unicode, no absolute
path or ``..``, each part short enough for the file system), then the REAL path (symlinks
resolved) must stay inside the real path of a folder the user chose (``inside``): ComfyUI's own
check compares absolute paths only, so a symlink planted in ``output/`` or ``models/cil_stats``
would otherwise lead out of it.

``register_models_folders`` is called once, by the extension when ComfyUI loads the pack (never as
an import side effect). It is idempotent and keeps folders added by extra_model_paths.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path

from cil_core.validation import CILValueError, shown

STATS_FOLDER = "cil_stats"  # Analytic-Init stats files
TOY_FOLDER = "cil_toy"  # toy weights written by 'cil toy-train --out ...'
MODELS_FOLDERS = (STATS_FOLDER, TOY_FOLDER)


def register_models_folders() -> None:
    """Make each of MODELS_FOLDERS a ComfyUI models folder taking .safetensors files."""
    import folder_paths

    for name in MODELS_FOLDERS:
        default = os.path.join(folder_paths.models_dir, name)
        entry = folder_paths.folder_names_and_paths.get(name)
        if entry is None:
            folder_paths.folder_names_and_paths[name] = ([default], {".safetensors"})
            continue
        paths, extensions = entry
        if default not in paths:
            paths.append(default)
        if isinstance(extensions, set):
            extensions.add(".safetensors")


def folder_files(folder: str) -> list[str]:
    """The .safetensors names ComfyUI lists in a models folder (for a combo)."""
    import folder_paths

    return list(folder_paths.get_filename_list(folder))


def folder_file(folder: str, name: str, what: str) -> Path:
    """The full path of ``name`` in a models folder, or an error that says where to put it. A
    file whose real path leaves every folder of that kind (a planted symlink) is refused."""
    import folder_paths

    check_name(what, name)
    path = folder_paths.get_full_path(folder, name)
    roots = folder_paths.get_folder_paths(folder)
    if path is None:
        raise CILValueError(f"{what} {shown(name)} is not in the {folder} folder(s) ({', '.join(roots)}); put it there.")
    return inside(roots, path, what)


def first_folder(folder: str) -> Path:
    """The folder new files of this kind are written to."""
    import folder_paths

    return Path(folder_paths.get_folder_paths(folder)[0])


# --- names and real paths ------------------------------------------------------------------------

NAME_MAX_BYTES = 255  # one path component, on every common file system
PATH_MAX_CHARS = 1024  # a whole relative name


def check_name(what: str, name, *, subfolders: bool = True) -> str:
    """``name`` as a relative path inside a folder: text without NUL or invalid Unicode, not
    absolute, no ``..``, each part at most NAME_MAX_BYTES bytes. Returns it unchanged."""
    if not isinstance(name, str) or not name.strip():
        raise CILValueError(f"{what} {shown(name)} is empty or not text; give a file name.")
    if "\x00" in name:
        raise CILValueError(f"{what} {shown(name)} contains a NUL character; remove it.")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise CILValueError(f"{what} {shown(name)} contains invalid Unicode (a lone surrogate); retype it.") from None
    parts = name.replace("\\", "/").split("/")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in parts or ":" in name:
        raise CILValueError(f"{what} {shown(name)} must be a relative name inside its folder (no absolute path, drive or '..').")
    if not subfolders and len(parts) > 1:
        raise CILValueError(f"{what} {shown(name)} must be a plain file name, without folders.")
    if len(name) > PATH_MAX_CHARS:
        raise CILValueError(f"{what} {shown(name)} is {len(name)} characters long; use at most {PATH_MAX_CHARS}.")
    for part in parts:
        if len(part.encode("utf-8")) > NAME_MAX_BYTES:
            raise CILValueError(f"{what} {shown(name)}: the part {shown(part, 30)} is {len(part.encode('utf-8'))} bytes; "
                                f"file systems allow {NAME_MAX_BYTES} per name: shorten it.")
    return name


def _within(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def inside(roots, path, what: str) -> Path:
    """``path`` if its real path (every symlink resolved; for a path not there yet, that of its
    existing part) lies inside the real path of one of ``roots``; else a CILValueError."""
    roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    real = os.path.realpath(path)
    if any(_within(real, os.path.realpath(root)) for root in roots):
        return Path(path)
    raise CILValueError(
        f"{what} {shown(str(path), 120)} leads to {shown(real, 120)} (a symlink), outside {', '.join(map(str, roots))}; "
        "remove the link, or put the file itself there."
    )


def tree_inside(root, folder, what: str, limit: int = 10_000) -> Path:
    """``folder`` and every symlink under it (up to ``limit`` entries) stay inside ``root``:
    for folders whose files are appended to (a trainer's logs), not only replaced."""
    inside(root, folder, what)
    seen = 0
    for here, dirs, files in os.walk(folder):  # never follows links
        for entry in dirs + files:
            full = os.path.join(here, entry)
            if os.path.islink(full):
                inside(root, full, what)
            seen += 1
            if seen > limit:
                return Path(folder)
    return Path(folder)
