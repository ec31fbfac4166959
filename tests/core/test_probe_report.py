"""The Leakage Probe report: table numbers, the documented M rule, CSV/JSON round trips, the
time grid's validation, pooling videos and ``cil probe --toy`` (the plot: tests/media)."""

from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cil_core import probe_report as pr
from cil_core.families import svd_family
from cil_core.probe import ProbeResult, probe_leakage
from cil_core.start_rule import StartRule, recommend_start
from cil_core.validation import CILValueError
from cil_media.charts import png_bytes
from cil_media.probe_plot import render_report


def make_result(ratios: list[list[float]], ts: list[float] | None = None, ref: float = 2.0) -> ProbeResult:
    ts = ts or pr.grid(0.1, 1.0, len(ratios))
    t = torch.tensor(ts, dtype=torch.float64)
    return ProbeResult(t=t, sigma=svd_family().sigma_at(t), motion_pred=torch.tensor(ratios, dtype=torch.float64) * ref, motion_ref=ref)


LEAKY = [[1.0, 0.9], [0.95, 0.85], [0.4, 0.5], [0.1, 0.05], [0.1, 0.12]]  # plateau from the 4th t


def test_rows_hold_the_ratios_and_their_statistics():
    report = pr.build_report(make_result(LEAKY))
    for row, expected in zip(report["rows"], LEAKY):
        assert row["latent_energy_ratios"] == pytest.approx(expected, rel=1e-12)
        assert row["latent_energy_motion"] == pytest.approx([2.0 * v for v in expected], rel=1e-12)
        mean = sum(expected) / len(expected)
        std = math.sqrt(sum((v - mean) ** 2 for v in expected) / len(expected))
        assert row["latent_energy_ratio_mean"] == pytest.approx(mean, rel=1e-12)
        assert row["latent_energy_ratio_std"] == pytest.approx(std, rel=1e-12, abs=1e-15)
        assert (row["latent_energy_ratio_min"], row["latent_energy_ratio_max"]) == (min(expected), max(expected))
    assert report["metrics"]["latent_energy"]["reference_motion"] == 2.0
    assert report["samples_per_t"] == 2


@given(
    means=st.lists(st.floats(0.0, 1.5, allow_nan=False), min_size=1, max_size=12),
    threshold=st.floats(0.05, 1.2),
)
@settings(max_examples=60, deadline=None)
def test_recommendation_follows_the_documented_rule(means, threshold):
    """The report's M is the start rule's answer on the table's means (the rules themselves are
    checked against brute-force readings of their definitions in test_start_rule.py)."""
    ts = pr.grid(0.05, 1.0, len(means))
    t, r = torch.tensor(ts, dtype=torch.float64), torch.tensor(means, dtype=torch.float64)
    for rule in (StartRule("threshold", threshold), StartRule("plateau", threshold, 0.1)):
        report = pr.build_report(make_result([[m] for m in means], ts), rule)
        rec = recommend_start(t, r, rule)
        assert report["recommended_start"] == rec.m and report["recommendation_found"] is rec.found
        assert report["start_rule"] == rule.rule and report["rule"] == rule.describe()
        assert any(abs(report["recommended_start"] - v) < 1e-12 for v in ts)


def test_csv_and_json_carry_the_same_numbers(tmp_path):
    report = pr.build_report(make_result(LEAKY), pixel_motion=(torch.tensor(LEAKY, dtype=torch.float64) * 3.0, 4.0))
    paths = pr.save_report(report, tmp_path / "sub" / "probe", png_bytes(render_report(report)))
    assert {p.name for p in paths.values()} == {"probe.json", "probe.csv", "probe.png"}
    loaded = json.loads(paths["json"].read_text())
    assert loaded == json.loads(json.dumps(report))
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    for row, ref in zip(rows, loaded["rows"]):
        for key in ("t", "sigma", "latent_energy_ratio_mean", "pixel_flow_ratio_std", "pixel_flow_ratio_max"):
            assert float(row[key]) == ref[key]
        assert [float(row[f"pixel_flow_ratio_s{i}"]) for i in range(2)] == ref["pixel_flow_ratios"]
    assert [r["pixel_flow_ratio_mean"] for r in loaded["rows"]] == pytest.approx([0.75 * sum(v) / 2 for v in LEAKY], rel=1e-12)
    assert not list(tmp_path.rglob("*.tmp")), "atomic writes left temporary files behind"


def test_text_table_lists_every_t_and_the_recommendation():
    report = pr.build_report(make_result(LEAKY))
    text = pr.report_text(report)
    for row in report["rows"]:
        assert f"{row['t']:.3f}" in text
    assert f"recommended start M = {report['recommended_start']:.4f}" in text


@pytest.mark.parametrize(
    "t_min, t_max, count, message",
    [
        (0.0, 1.0, 5, "t_min=0.0 is outside (0, 1]"),
        (0.1, 1.5, 5, "t_max=1.5 is outside (0, 1]"),
        (float("nan"), 1.0, 5, "outside (0, 1]"),
        (0.9, 0.2, 5, "swap them"),
        (0.1, 0.9, 0, "count=0"),
    ],
)
def test_grid_rejects_bad_ranges(t_min, t_max, count, message):
    with pytest.raises(CILValueError, match=re.escape(message)):
        pr.grid(t_min, t_max, count)


@given(st.floats(1e-3, 1.0), st.floats(1e-3, 1.0), st.integers(1, 50))
@settings(max_examples=80, deadline=None)
def test_grid_stays_inside_its_range(a, b, count):
    lo, hi = min(a, b), max(a, b)
    ts = pr.grid(lo, hi, count)
    assert len(ts) == count and ts[-1] == hi
    assert all(lo <= t <= hi for t in ts) and ts == sorted(ts)
    if count > 1:
        assert ts[0] == lo


def test_bad_threshold_and_mismatched_pixel_metric_are_refused():
    with pytest.raises(CILValueError, match="threshold"):
        pr.build_report(make_result(LEAKY), StartRule(threshold=0.0))
    with pytest.raises(CILValueError, match="pixel_flow motion has shape"):
        pr.build_report(make_result(LEAKY), pixel_motion=(torch.ones(3, 2), 1.0))
    with pytest.raises(CILValueError, match="no optical flow"):
        pr.build_report(make_result(LEAKY), pixel_motion=(torch.ones(5, 2), 0.0))


def test_nearest_grid_indices():
    assert pr.nearest_grid_indices([0.2, 0.4, 0.6], [0.0, 0.41, 0.59, 1.0]) == [0, 1, 2, 2]


def test_perfect_denoiser_gives_ratio_one_and_the_largest_t():
    """End to end with cil_core.probe: a denoiser that returns x0 exactly keeps all motion."""
    x0 = torch.randn(4, 5, 6, 6, generator=torch.Generator().manual_seed(0))
    result = probe_leakage(lambda x, s: x0.expand_as(x), x0, svd_family(), pr.grid(0.2, 1.0, 5), 3, max_batch=4)
    report = pr.build_report(result)
    assert all(r["latent_energy_ratios"] == pytest.approx([1.0] * 3, rel=1e-12) for r in report["rows"])
    assert report["recommended_start"] == 1.0 and report["recommendation_found"]


def test_pooling_videos_divides_each_by_its_own_reference():
    a = make_result([[0.9, 0.8], [0.3, 0.1]], [0.5, 1.0], ref=2.0)
    b = make_result([[1.0, 1.0], [0.5, 0.5]], [0.5, 1.0], ref=7.0)
    pooled = pr.pool_videos([a, b])
    assert pooled.motion_ref == 1.0
    assert torch.allclose(pooled.ratio, torch.tensor([[0.9, 0.8, 1.0, 1.0], [0.3, 0.1, 0.5, 0.5]], dtype=torch.float64), rtol=1e-12)
    with pytest.raises(CILValueError, match="same t grid"):
        pr.pool_videos([a, make_result([[1.0], [1.0]], [0.4, 1.0])])


# --- cil probe --toy (pure torch) ------------------------------------------------------------------------

def test_cli_probes_a_toy_model_and_writes_png_json_csv(tmp_path, capsys):
    """A small random toy net saved in the toy format goes through `cil probe --toy FILE`."""
    import cil_toy.model as toy_model  # the pack's own module: an import error is a failure, never a skip
    from cil_toy.codec import LatentCodec
    from cil_toy.data import WorldConfig
    from cil_toy.weights_io import save_toy_model

    from cil_tools.cli import main

    codec, world, family = LatentCodec(), WorldConfig(), svd_family()
    cfg = toy_model.ToyNetConfig(latent_channels=codec.channels, frames=world.frames, width=8, mid_width=8, embed_dim=8, groups=4)
    torch.manual_seed(0)
    meta = {"name": "random", "role": "test", "command": "cil toy-train (test: random weights)", "seed": "0", **world.describe()}
    path = save_toy_model(tmp_path / "random.safetensors", toy_model.ToyVideoNet(cfg, family), family, codec, meta)
    out = tmp_path / "report"
    code = main(["probe", "--toy", str(path), "--videos", "2", "--count", "3", "--samples", "2", "--pixel-metric", "off", "--out", str(out), "--name", "r"])
    assert code == 0
    report = json.loads((out / "r.json").read_text())
    assert (out / "r.png").is_file() and (out / "r.csv").is_file()
    assert [row["t"] for row in report["rows"]] == pytest.approx([0.1, 0.55, 1.0])
    assert all(len(row["latent_energy_ratios"]) == 4 for row in report["rows"])  # 2 videos x 2 samples pooled
    series = {s["key"]: s for s in report["plot"]["series"]}
    assert series["latent_energy"]["ratio"] == pytest.approx(pr.mean_ratios(report, "latent_energy"), rel=1e-12)
    assert set(series) == {"latent_energy", "corrected"}  # 2 draws per t: the noise-removed curve too
    assert f"recommended start M = {report['recommended_start']:.4f}" in capsys.readouterr().out


def test_ratios_clearly_above_one_are_flagged_as_noise():
    """Mean − 2·SE > 1 at t = 1 only; t = 0.5 is above 1 but within noise."""
    report = pr.build_report(make_result([[1.0, 0.98, 1.02], [1.4, 0.7, 1.3], [2.0, 2.1, 1.9]], [0.1, 0.5, 1.0]))
    flagged = report["noise_not_motion"]
    assert [w["t"] for w in flagged] == [1.0]
    assert flagged[0]["ratio"] == pytest.approx(2.0) and flagged[0]["se"] == pytest.approx(0.1 / math.sqrt(3))
    assert "warning: at t = 1.000 the ratio 2.000" in pr.report_text(report)
    assert pr.build_report(make_result(LEAKY))["noise_not_motion"] == []


def test_ratios_above_one_needs_a_finite_standard_error():
    flagged = pr.ratios_above_one([0.5, 0.9, 1.0], [1.5, 3.0, 3.0], [0.1, None, float("nan")])
    assert flagged == [{"t": 0.5, "ratio": 1.5, "se": 0.1}]
    assert pr.ratios_above_one([0.5], [1.5], [0.3]) == []  # 1.5 − 2·0.3 < 1: within noise


def test_the_report_holds_the_corrected_and_regeneration_curves_and_reads_m_off_the_chosen_one():
    t = [0.2, 0.6, 1.0]
    one = make_result([[1.0, 0.9], [0.5, 0.7], [0.2, 0.1]], t)
    one.motion_mean = torch.tensor([[0.9], [0.5], [0.05]], dtype=torch.float64) * one.motion_ref
    regen = ProbeResult(t=one.t, sigma=one.sigma, motion_pred=torch.tensor([[1.0, 1.0, 1.0], [0.9, 1.0, 1.1], [0.95, 1.0, 1.05]]) * 2.0,
                        motion_ref=2.0, mode="regen")
    report = pr.build_report(one, pr_rule(), regen=regen, recommend_from="regen")
    assert report["recommendation_metric"] == "regen" and report["regen_samples_per_t"] == 3
    row = report["rows"][1]
    assert row["regen_ratio_mean"] == pytest.approx(1.0) and row["regen_ratio_se"] == pytest.approx(0.1 / math.sqrt(3))
    assert row["corrected_ratio_mean"] == pytest.approx(0.5) and row["corrected_ratio_se"] is None  # one video: no SE
    assert row["latent_energy_ratio_se"] == pytest.approx(0.1)  # [0.5, 0.7]: std 0.1414, SE over 2 draws 0.1
    assert report["recommendation"]["verdict"] == "no_leakage"  # regenerated videos keep their motion
    assert pr.build_report(one, pr_rule(), regen=regen)["recommendation"]["verdict"] in ("late_start", "plateau_at_top")  # one-step leaks
    text, table = pr.report_text(report), pr.report_csv(report)
    assert "regen" in text and "n/a" in text and "± is one standard error" in text
    assert "regen_ratio_se" in table.splitlines()[0] and "nan" in table
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN
    with pytest.raises(CILValueError, match="recommend_from"):
        pr.build_report(one, pr_rule(), recommend_from="regen")
    with pytest.raises(CILValueError, match="t grid"):
        pr.build_report(one, pr_rule(), regen=make_result([[1.0], [1.0]], [0.2, 1.0]))


def pr_rule():
    from cil_core.start_rule import StartRule

    return StartRule()
