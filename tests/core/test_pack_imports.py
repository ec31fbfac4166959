"""Code that ComfyUI loads as part of the pack (a plain clone in custom_nodes, not pip-installed)
must reach cil_core relative to the pack: an absolute ``cil_core`` import may only be the
fallback in an ``except ImportError`` block (used when the package is installed top-level)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACK_CODE = sorted([*REPO.glob("nodes/*.py"), *REPO.glob("cil_toy/*.py"), *REPO.glob("cil_tools/train/*.py")])


def absolute_core_imports_outside_fallback(tree: ast.AST) -> list[int]:
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            for inner in ast.walk(node):
                allowed.add(id(inner))
    bad = []
    for node in ast.walk(tree):
        absolute = (isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in ("cil_core", "cil_toy")) or (
            isinstance(node, ast.Import) and any(a.name.split(".")[0] in ("cil_core", "cil_toy") for a in node.names)
        )
        if absolute and id(node) not in allowed:
            bad.append(node.lineno)
    return bad


@pytest.mark.parametrize("path", PACK_CODE, ids=lambda p: str(p.relative_to(REPO)))
def test_pack_code_imports_cil_core_relatively(path):
    bad = absolute_core_imports_outside_fallback(ast.parse(path.read_text()))
    assert not bad, f"{path.relative_to(REPO)} lines {bad}: import cil_core/cil_toy relatively (with an ImportError fallback)"


def test_the_check_catches_a_bare_absolute_import():
    assert absolute_core_imports_outside_fallback(ast.parse("from cil_core.families import EDM\n")) == [1]
    ok = "try:\n    from ..cil_core.families import EDM\nexcept ImportError:\n    from cil_core.families import EDM\n"
    assert absolute_core_imports_outside_fallback(ast.parse(ok)) == []
