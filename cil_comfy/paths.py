"""The pack's models folders in ComfyUI's folder_paths (``models/cil_stats``, ``models/cil_toy``)
and the files inside them, looked up by name.

``register_models_folders`` is called once, by the extension when ComfyUI loads the pack (never as
an import side effect). It is idempotent and keeps folders added by extra_model_paths.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path

from cil_core.validation import CILValueError

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
    """The full path of ``name`` in a models folder, or an error that says where to put it."""
    import folder_paths

    path = folder_paths.get_full_path(folder, name) if name else None
    if path is None:
        where = ", ".join(folder_paths.get_folder_paths(folder))
        raise CILValueError(f"{what} {name!r} is not in the {folder} folder(s) ({where}); put it there.")
    return Path(path)


def first_folder(folder: str) -> Path:
    """The folder new files of this kind are written to."""
    import folder_paths

    return Path(folder_paths.get_folder_paths(folder)[0])
