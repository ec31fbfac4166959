"""ComfyUI from COMFYUI_PATH (CPU) with this pack loaded, for its node definitions."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the pack's repository root


def boot_comfyui():
    """ComfyUI's ``nodes`` module after booting COMFYUI_PATH with this pack loaded and, when
    CIL_DCWRAPPER_PATH names its folder, kijai's DynamiCrafterWrapper (a temporary copy), through
    the pack's one boot sequence (cil_comfy.host)."""
    if not os.environ.get("COMFYUI_PATH"):
        raise SystemExit("set COMFYUI_PATH to a ComfyUI checkout")
    sys.argv = [sys.argv[0]]
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))  # the pack's libraries, behind ComfyUI's root (cil_comfy.host)
    from cil_comfy.host import boot_with_nodes

    custom = Path(tempfile.mkdtemp(prefix="cil-wf-"))
    (custom / "comfyui-cil").symlink_to(ROOT, target_is_directory=True)
    packs = [custom / "comfyui-cil"]
    wrapper = os.environ.get("CIL_DCWRAPPER_PATH", "")
    if wrapper and Path(wrapper, "nodes.py").is_file():
        shutil.copytree(wrapper, custom / "ComfyUI-DynamiCrafterWrapper")
        packs.append(custom / "ComfyUI-DynamiCrafterWrapper")
    return boot_with_nodes(os.environ["COMFYUI_PATH"], "cpu", packs=tuple(packs)).nodes


def object_info(nodes, node_type: str) -> dict:
    """The /object_info entry of a node type (server.py node_info), V1 and V3 alike."""
    from comfy_api.internal import _ComfyNodeInternal

    cls = nodes.NODE_CLASS_MAPPINGS[node_type]
    if issubclass(cls, _ComfyNodeInternal):
        info = dict(cls.GET_NODE_INFO_V1())
        info["display_name"] = info.get("display_name") or node_type
        return info
    inputs = cls.INPUT_TYPES()
    return {
        "display_name": nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_type, node_type),
        "input": inputs,
        "input_order": {k: list(v.keys()) for k, v in inputs.items()},
        "output": cls.RETURN_TYPES,
        "output_name": getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES),
    }


class MissingNodeType(KeyError):
    """A workflow needs a node type this host does not have (an older ComfyUI, or a third-party pack)."""


class Catalog:
    """The node definitions a workflow description is checked and sized against: /object_info
    entries by type, read once from the booted host."""

    def __init__(self, nodes) -> None:
        self.nodes = nodes
        self._infos: dict[str, dict] = {}

    def has(self, node_type: str) -> bool:
        return node_type in self.nodes.NODE_CLASS_MAPPINGS

    def info(self, node_type: str) -> dict:
        if node_type not in self._infos:
            if not self.has(node_type):
                raise MissingNodeType(f"node type {node_type!r} is not in this host")
            self._infos[node_type] = object_info(self.nodes, node_type)
        return self._infos[node_type]
