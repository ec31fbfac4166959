"""The Leakage Probe plot (cil_media.probe_plot): its markers sit where its axes and the report's
plot section say, M and the plateau level are drawn in their colours, the IMAGE tensor is the
picture, and the plot section matches ``to_pixel``."""

from __future__ import annotations

import pytest
import torch

from cil_core import probe_report as pr
from cil_core.families import svd_family
from cil_core.probe import ProbeResult
from cil_core.start_rule import StartRule
from cil_core.validation import CILValueError
from cil_media import probe_plot as pp
from cil_media.charts import image_to_tensor


def make_result(ratios: list[list[float]], ts: list[float] | None = None, ref: float = 2.0) -> ProbeResult:
    ts = ts or pr.grid(0.1, 1.0, len(ratios))
    t = torch.tensor(ts, dtype=torch.float64)
    return ProbeResult(t=t, sigma=svd_family().sigma_at(t), motion_pred=torch.tensor(ratios, dtype=torch.float64) * ref, motion_ref=ref)


LEAKY = [[1.0, 0.9], [0.95, 0.85], [0.4, 0.5], [0.1, 0.05], [0.1, 0.12]]  # plateau from the 4th t


def test_plot_markers_sit_where_the_axes_put_the_table_means():
    report = pr.build_report(make_result(LEAKY), pixel_motion=(torch.tensor(LEAKY, dtype=torch.float64) * 0.5, 2.0))
    image = pp.render_report(report, 900, 560)
    assert image.size == (900, 560)
    plot = report["plot"]
    x0, y0, x1, y1 = plot["box"]
    top = plot["y_range"][1]
    assert top >= max(v for r in LEAKY for v in r)
    for series in plot["series"]:
        means = pr.mean_ratios(report, series["key"])
        assert series["ratio"] == pytest.approx(means, rel=1e-12)
        for t, m, (px, py) in zip(series["t"], means, series["markers"]):
            assert abs(px - (x0 + t * (x1 - x0))) <= 0.5
            assert abs(py - (y1 - m / top * (y1 - y0))) <= 0.5
            assert image.getpixel((px, py)) == tuple(series["color"])
    # the recommended M is a vertical line of the "found" colour
    mx = round(x0 + report["recommended_start"] * (x1 - x0))
    column = [image.getpixel((mx, y)) for y in range(y0 + 40, y1 - 5)]
    assert sum(p == pp.COLORS["found"] for p in column) > 0.8 * len(column)
    # the plateau level is a dashed horizontal line at its ratio
    assert report["recommendation"]["verdict"] == "late_start" and report["recommended_start"] == pytest.approx(0.775)
    level = report["recommendation"]["plateau_level"]
    assert plot["plateau_level"] == level == pytest.approx(0.075 + 0.1 * (0.95 - 0.075))
    py = round(y1 - level / top * (y1 - y0))
    row = [image.getpixel((x, py)) for x in range(x0 + 2, x1 - 2)]
    assert sum(p == pp.COLORS["plateau"] for p in row) > 0.3 * len(row)



def test_plot_marks_a_missing_recommendation_in_red():
    report = pr.build_report(make_result([[0.1], [0.05]], [0.5, 1.0]), StartRule("threshold"))
    assert report["recommendation_found"] is False and report["recommended_start"] == 0.5
    image = pp.render_report(report)
    x0, y0, x1, y1 = report["plot"]["box"]
    mx = round(x0 + 0.5 * (x1 - x0))
    column = [image.getpixel((mx, y)) for y in range(y0 + 40, y1 - 40)]
    assert sum(p == pp.COLORS["missing"] for p in column) > 0.8 * len(column)
    assert "every grid t leaks" in pr.report_text(report)



def test_image_tensor_is_comfy_layout():
    report = pr.build_report(make_result(LEAKY))
    image = pp.render_report(report, 640, 400)
    tensor = image_to_tensor(image)
    assert tensor.shape == (1, 400, 640, 3) and tensor.dtype == torch.float32
    assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
    x, y = report["plot"]["series"][0]["markers"][0]
    assert tuple(round(255 * float(v)) for v in tensor[0, y, x]) == image.getpixel((x, y))


def test_too_small_a_plot_is_refused():
    with pytest.raises(CILValueError, match="too small"):
        pp.draw_plot(pr.build_report(make_result(LEAKY)), 200, 100)


def test_section_markers_are_to_pixel_of_the_means_and_the_report_is_unchanged():
    report = pr.build_report(make_result(LEAKY, ref=3.0))
    before = {k: v for k, v in report.items()}
    pp.render_report(report)
    assert {k: v for k, v in report.items() if k != "plot"} == before
    plot = report["plot"]
    assert set(plot) == {"width", "height", "box", "x_range", "y_range", "series", "recommended_start", "threshold", "plateau_level"}
    for series in plot["series"]:
        assert series["markers"] == [list(pp.to_pixel(plot, t, r)) for t, r in zip(series["t"], series["ratio"])]


def test_a_warning_and_the_start_label_do_not_hide_markers():
    """Ratios clearly above 1 add a warning line inside the plot; every marker keeps its colour."""
    report = pr.build_report(make_result([[1.0, 0.98, 1.02], [1.4, 0.7, 1.3], [2.0, 2.1, 1.9]], [0.1, 0.5, 1.0]))
    assert report["noise_not_motion"]
    image = pp.render_report(report)
    for series in report["plot"]["series"]:
        for x, y in series["markers"]:
            assert image.getpixel((x, y)) == tuple(series["color"])
