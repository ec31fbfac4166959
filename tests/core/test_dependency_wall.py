"""cil_core (and the cil CLI) must import with ComfyUI's modules made unimportable."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import cil_core

BLOCKED = ("comfy", "nodes", "folder_paths", "comfy_api", "comfy_extras", "server", "execution")

SCRIPT = r"""
import importlib, importlib.abc, sys

BLOCKED = {blocked!r}

class Wall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"dependency wall: {{name}} must not be imported by cil_core")
        return None

sys.meta_path.insert(0, Wall())
for mod in {modules!r}:
    importlib.import_module(mod)
import cil_tools.cli
cil_tools.cli.build_parser()
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print("imported", len({modules!r}), "modules")
"""


def core_modules():
    root = Path(cil_core.__file__).parent
    return ["cil_core"] + [f"cil_core.{m.name}" for m in pkgutil.iter_modules([str(root)])]


def test_wall_blocks_comfy_itself():
    code = SCRIPT.format(blocked=BLOCKED, modules=["comfy.model_sampling"])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode != 0 and "dependency wall" in proc.stderr


def test_every_core_module_imports_without_comfyui():
    modules = core_modules()
    assert len(modules) >= 12
    code = SCRIPT.format(blocked=BLOCKED, modules=modules)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert f"imported {len(modules)} modules" in proc.stdout
