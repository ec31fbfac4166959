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
            "--probe-videos", "2", "--probe-samples", "2", "--bootstrap", "10", "--reference-candidates", "32",
            "--regen-samples", "1", "--regen-steps", "2", "--quiet"]
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
    text = (report / "report.md").read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]  # the metrics section
    rows = [line for line in text.splitlines() if line.startswith("| ") and " ± " in line and not line.startswith("| method")]
    assert len(rows) == len(doc["rows"])
    for line, row in zip(rows, doc["rows"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == row["label"]
        speed = float(cells[4].split(" ± ")[0])
        fd = float(cells[10].split(" ± ")[0])
        assert speed == row["speed"] and fd == row["fd"]


def test_answers_cover_the_five_claims(report):
    doc = json.loads((report / "metrics.json").read_text())
    assert set(doc["answers"]) == {"leak", "late_start", "analytic_init", "timenoise", "start"}
    text = (report / "report.md").read_text()
    for key in doc["answers"]:
        assert f"— {doc['answers'][key]['verdict']}." in text
    # the requested M values and every rule's pick on every curve are generated, for both models
    picks = {p["m"] for rules in doc["probe"]["rule_picks"].values() for rule in rules.values() for p in rule.values()}
    assert set(doc["probe"]["rule_picks"]) == {"one_step", "corrected", "regen"}
    for model in doc["models"].values():
        ms = {r["M"] for r in doc["rows"] if r["model"] == model and (r["M"] == 1.0 or r["init"] == "analytic")}
        assert {1.0, 0.8, 0.55} | picks <= ms


def test_start_check_scores_every_candidate_and_places_each_rule(report):
    """The band holds the FD-best M and every M within se_factor SEs of it; each rule's M is
    looked up in its model's rows."""
    doc = json.loads((report / "metrics.json").read_text())
    k = doc["config"]["se_factor"]
    fd = {r["key"]: r["fd"] for r in doc["rows"]}
    for role, check in doc["start_check"].items():
        rows = {r["M"]: r for r in check["rows"]}
        assert min(rows.values(), key=lambda r: r["fd"])["M"] == check["best_M"]
        for m, r in rows.items():
            key = f"{role}_T" if m == 1.0 else f"{role}_analytic_{m:g}"
            assert r["fd"] == fd[key]  # the same FD as the metrics table
            assert r["in_band"] == (m == check["best_M"] or r["excess"] <= k * r["excess_se"] * (1 + 1e-3))
        assert sorted(check["band"]) == sorted(m for m, r in rows.items() if r["in_band"])
        for name, rule in check["rules"].items():
            assert name == f"{rule['curve']}/{rule['rule']}"
            assert rule["M"] == doc["probe"]["rule_picks"][rule["curve"]][rule["rule"]][role]["m"]
            assert rule["in_band"] == rows[min(rule["M"], 1.0)]["in_band"]
    text = (report / "report.md").read_text()
    assert "## Choosing M" in text


def test_probe_section_holds_the_reference_and_regeneration_curves(report):
    """metrics.json records the perfect-denoiser curve as reference_ratio and the regeneration
    curve as regen_ratio; the paired excess is model − reference per video, averaged."""
    p = json.loads((report / "metrics.json").read_text())["probe"]
    n = len(p["t"])
    assert len(p["reference_ratio"]) == n and set(p["regen_ratio"]) == {"baseline", "timenoise"}
    assert all(len(v) == n for v in p["regen_ratio"].values())
    pv = p["per_video"]["baseline"]
    for i in range(n):
        diffs = [a[i] - b[i] for a, b in zip(pv["one_step"], pv["reference"])]
        assert abs(sum(diffs) / len(diffs) - p["baseline_excess"][i]) <= 2e-3 * max(1.0, abs(p["baseline_excess"][i]))
