"""The single registration path: one ComfyExtension listing every node of the pack."""

from __future__ import annotations

import importlib
import logging

from comfy_api.latest import ComfyExtension, io

from cil_comfy.paths import register_models_folders

# Modules of this package that define NODES: list[type[io.ComfyNode]].
NODE_MODULES = ("late_start", "timenoise", "stats", "probe", "train", "dynamicrafter", "toy")


class CILExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        register_models_folders()  # before any schema lists the folders' files (ComfyUI calls no on_load)
        found: list[type[io.ComfyNode]] = []
        for name in NODE_MODULES:
            try:
                module = importlib.import_module(f".{name}", __package__)
            except Exception:  # one broken module must not hide the others
                logging.warning("comfyui-cil: could not load nodes.%s", name, exc_info=True)
                continue
            found.extend(module.NODES)
        return found
