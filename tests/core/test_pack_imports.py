"""The pack's one import rule (README, "Layout"), checked on the source:

- libraries (cil_core, cil_media, cil_toy, cil_train, cil_comfy, cil_tools) import each other by
  their absolute top-level names, never relatively across packages and never inside an
  ``except ImportError`` fallback;
- ``nodes/`` is only ever ``<pack>.nodes``: its modules import each other relatively, the
  libraries absolutely, and no library imports ``nodes``;
- only ``cil_comfy`` and ``nodes`` import ComfyUI;
- loaded the way ComfyUI loads a custom node, next to the ``cil`` command, every module of the pack
  exists once in ``sys.modules`` (one file, one name).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIBRARIES = ("cil_core", "cil_media", "cil_toy", "cil_train", "cil_comfy", "cil_tools")
PACK_TOP = (*LIBRARIES, "nodes")
COMFY_MODULES = ("comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "server", "execution",
                 "latent_preview", "node_helpers", "comfyui_version", "nodes")  # a top-level ``nodes`` is ComfyUI's
SOURCES = sorted(p for top in PACK_TOP for p in (REPO / top).rglob("*.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def imports(tree: ast.AST):
    """(node, level, top-level module name) of every import statement, nested ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, 0, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            yield node, node.level, (node.module or "").split(".")[0]


def import_fallbacks(tree: ast.AST) -> list[int]:
    """Lines of ``try: import <pack module> except ImportError`` blocks."""
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        catches = any(isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers)
        pack_import = any(level > 0 or top in PACK_TOP for stmt in node.body for _, level, top in imports(stmt))
        if catches and pack_import:
            bad.append(node.lineno)
    return bad


@pytest.mark.parametrize("path", SOURCES, ids=rel)
def test_the_import_rule(path):
    tree = ast.parse(path.read_text())
    package = path.relative_to(REPO).parts[0]
    problems = [f"line {line}: an ImportError fallback around a pack import" for line in import_fallbacks(tree)]
    for node, level, top in imports(tree):
        where = f"line {node.lineno}"
        if package == "nodes":
            if level == 0 and top == "nodes":
                problems.append(f"{where}: 'import nodes' is ComfyUI's module; import this package's modules relatively")
            if level > 1:
                problems.append(f"{where}: a relative import out of nodes/; import the libraries by name")
        else:
            if level > 0 and len(path.relative_to(REPO / package).parts) < level:
                problems.append(f"{where}: a relative import out of {package}/; import other libraries by name")
            if package != "cil_comfy" and level == 0 and top in COMFY_MODULES:
                problems.append(f"{where}: imports ComfyUI ({top}); only cil_comfy and nodes/ do")
    assert not problems, f"{rel(path)}: " + "; ".join(problems)


def test_the_fallback_check_catches_a_fallback():
    code = "try:\n    from ..cil_core.families import EDM\nexcept ImportError:\n    from cil_core.families import EDM\n"
    assert import_fallbacks(ast.parse(code)) == [1]
    assert import_fallbacks(ast.parse("try:\n    import cv2\nexcept ImportError:\n    cv2 = None\n")) == []


ONE_IDENTITY = r"""
import importlib, importlib.util, json, os, sys
repo = sys.argv[1]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.getcwd()) != os.path.realpath(repo)]
# ComfyUI's loader: the folder is a package named after itself, loaded from its __init__.py
spec = importlib.util.spec_from_file_location("comfyui-cil", os.path.join(repo, "__init__.py"),
                                              submodule_search_locations=[repo])
pack = importlib.util.module_from_spec(spec)
sys.modules["comfyui-cil"] = pack
spec.loader.exec_module(pack)
import cil_tools.cli
cli = cil_tools.cli
for name in cli.SUBCOMMANDS.values():
    importlib.import_module("cil_tools." + name)
for lib in ("cil_core", "cil_media", "cil_toy", "cil_train"):
    for f in sorted(os.listdir(os.path.join(repo, lib))):
        if f.endswith(".py") and f != "__init__.py":
            importlib.import_module(f"{lib}.{f[:-3]}")
files = {}
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None)
    top = os.path.relpath(os.path.realpath(path), os.path.realpath(repo)).split(os.sep)[0] if path else ""
    if top in ("cil_core", "cil_media", "cil_toy", "cil_train", "cil_comfy", "cil_tools", "nodes", "__init__.py"):
        files.setdefault(os.path.realpath(path), []).append(name)
print(json.dumps(files))
"""


def test_every_module_has_one_name_when_the_cli_and_the_comfyui_entry_share_a_process():
    done = subprocess.run([sys.executable, "-c", ONE_IDENTITY, str(REPO)], capture_output=True, text=True, timeout=300,
                          cwd=str(REPO.parent))
    assert done.returncode == 0, done.stderr[-2000:]
    files = json.loads(done.stdout.strip().splitlines()[-1])
    twice = {rel(Path(f)): names for f, names in files.items() if len(names) > 1}
    assert not twice, f"modules imported under two names: {twice}"
    assert any(f.endswith("cil_core/validation.py") for f in files)  # the check saw the libraries at all
