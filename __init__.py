"""comfyui-cil: the ComfyUI entry point.

ComfyUI imports this folder as a package and calls ``comfy_entrypoint``. The pack's libraries
(``cil_core``, ``cil_media``, ``cil_toy``, ``cil_train``, ``cil_comfy``, ``cil_tools``) are
top-level packages, imported by one name only, whether the pack is pip-installed or a plain clone
in ``custom_nodes/``; for a plain clone this file puts the pack folder LAST on ``sys.path``, after
ComfyUI's own root, so ComfyUI's top-level ``nodes`` module is never shadowed by ``nodes/``.
"""

import importlib.util
import logging
import os
import sys

PACK_ROOT = os.path.dirname(os.path.abspath(__file__))
LIBRARIES = ("cil_core", "cil_media", "cil_toy", "cil_train", "cil_comfy", "cil_tools")


def _make_libraries_importable() -> None:
    specs = {name: importlib.util.find_spec(name) for name in LIBRARIES}
    if any(spec is None for spec in specs.values()):
        sys.path.append(PACK_ROOT)
        return
    elsewhere = sorted({os.path.dirname(os.path.dirname(os.path.realpath(s.origin))) for s in specs.values()}
                       - {os.path.realpath(PACK_ROOT)})
    if elsewhere:
        logging.warning("comfyui-cil: its libraries are installed from %s, not this folder %s; reinstall the pack "
                        "(pip install -e %s) if the two differ.", ", ".join(elsewhere), PACK_ROOT, PACK_ROOT)


_make_libraries_importable()

WEB_DIRECTORY = None


async def comfy_entrypoint():
    """V3 registration: ComfyUI calls this and asks the extension for its node list."""
    from .nodes.extension import CILExtension

    return CILExtension()
