"""README's toy-world tables are generated from the shipped demo results (docs/toy_results/*.json,
each the metrics.json of one `cil demo` run) and must equal what those results produce."""

from __future__ import annotations

from pathlib import Path

import pytest

from cil_core.validation import CILValueError
from cil_toy.readme_tables import BLOCK, load_results, render_blocks, rewrite, stale_blocks

ROOT = Path(__file__).resolve().parents[2]


def test_readme_tables_equal_what_the_shipped_results_produce():
    results = load_results(ROOT / "docs" / "toy_results")
    assert len(results) >= 2, "the claims table compares two training seeds"
    blocks = render_blocks(results)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert {m.group("name") for m in BLOCK.finditer(text)} == set(blocks)
    assert stale_blocks(text, blocks) == [], "README tables are stale: run 'cil readme-tables'"
    assert rewrite(text, blocks) == text


def test_rewrite_replaces_only_marked_blocks_and_refuses_missing_markers():
    text = "intro\n<!-- cil-demo:a:begin -->\nold\n<!-- cil-demo:a:end -->\nmiddle\n<!-- cil-demo:b:begin -->\n<!-- cil-demo:b:end -->\n"
    new = rewrite(text, {"a": "| x |\n", "b": "| y |\n"})
    assert new == text.replace("old\n", "| x |\n").replace("b:begin -->\n", "b:begin -->\n| y |\n")
    assert stale_blocks(new, {"a": "| x |\n", "b": "| y |\n"}) == [] and stale_blocks(text, {"a": "| x |\n"}) == ["a"]
    with pytest.raises(CILValueError, match="markers"):
        rewrite("no markers here\n", {"a": "x\n"})
