"""A shortened ``cil demo`` on the shipped weights: every report file, and markdown == JSON."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from cil_tools import cli
from cil_toy.report import FILES

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")


def _json_numbers(node, out: set[float]) -> set[float]:
    if isinstance(node, bool):
        return out
    if isinstance(node, (int, float)):
        out.add(float(node))
    elif isinstance(node, dict):
        for v in node.values():
            _json_numbers(v, out)
    elif isinstance(node, list):
        for v in node:
            _json_numbers(v, out)
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("cil-report")
    argv = ["demo", "--out", str(out), "--samples", "6", "--steps", "3", "--m", "0.8", "0.55",
            "--probe-videos", "2", "--probe-samples", "2", "--bootstrap", "10", "--quiet"]
    assert cli.main(argv) == 0
    return out


def test_every_report_file_is_written(report):
    for name in FILES:
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    with Image.open(report / "samples.gif") as gif:
        assert gif.n_frames == 8  # one GIF frame per video frame
    for png in ("probe.png", "motion_fidelity.png"):
        with Image.open(report / png) as img:
            assert img.size[0] >= 400


def test_every_number_in_the_markdown_is_in_the_json(report):
    doc = json.loads((report / "metrics.json").read_text())
    allowed = _json_numbers(doc, set())
    text = (report / "report.md").read_text()
    text = re.sub(r"\(([\w.]+\.(png|gif))\)", "", text)  # image links
    found = [float(tok) for tok in NUMBER.findall(text)]
    assert len(found) > 50
    missing = sorted({v for v in found if v not in allowed})
    assert not missing, f"numbers in report.md that metrics.json does not hold: {missing[:10]}"


def test_table_rows_match_json_rows(report):
    doc = json.loads((report / "metrics.json").read_text())
    text = (report / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and " ± " in line][1:]  # [0] is the header
    assert len(rows) == len(doc["rows"])
    for line, row in zip(rows, doc["rows"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == row["label"]
        speed = float(cells[4].split(" ± ")[0])
        fd = float(cells[10].split(" ± ")[0])
        assert speed == row["speed"] and fd == row["fd"]


def test_answers_cover_the_four_questions(report):
    doc = json.loads((report / "metrics.json").read_text())
    assert set(doc["answers"]) == {"leak", "late_start", "analytic_init", "timenoise"}
    text = (report / "report.md").read_text()
    for key in doc["answers"]:
        assert f"— {doc['answers'][key]['verdict']}." in text
    # the requested M values and the probe's recommendation are all generated
    ms = {r["M"] for r in doc["rows"] if r["M"] is not None}
    assert {1.0, 0.8, 0.55, doc["probe"]["recommended_M"]} <= ms
