"""The chart kit (cil_media.charts): round ticks, data → pixels, dashed lines, labels that never
overlap one another (nor the legend), PNG output and the IMAGE tensor; the animated sample grid."""

from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cil_media import charts
from cil_media.grid_gif import sample_grid_gif


def overlap(a, b, gap: int = 0) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] + gap and b[1] < a[3] + gap


@pytest.mark.parametrize("lo,hi,expected", [(0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]), (0, 1.2, [0, 0.5, 1.0]), (-3, 17, [0, 5, 10, 15]),
                                            (0.0123, 0.0131, [0.0124, 0.0126, 0.0128, 0.013])])
def test_nice_ticks_are_1_2_5_steps_inside_the_range(lo, hi, expected):
    assert charts.nice_ticks(lo, hi) == pytest.approx(expected)


def test_log_ticks_are_decades_or_their_1_2_5_multiples():
    assert charts.log_ticks(0.05, 200) == pytest.approx([0.1, 1, 10, 100])
    assert charts.log_ticks(0.3, 4) == pytest.approx([0.5, 1, 2])


boxes = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(5, 120), st.integers(5, 20)), max_size=25)


@given(boxes, boxes)
@settings(max_examples=200, deadline=None)
def test_separated_labels_never_overlap_each_other_or_obstacles(raw, raw_obstacles):
    labels = [(x, y, x + w, y + h) for x, y, w, h in raw]
    obstacles = [(x, y, x + w, y + h) for x, y, w, h in raw_obstacles[:3]]
    tops = charts.separate_labels(labels, obstacles, gap=2, height=400)
    placed = [(b[0], t, b[2], t + b[3] - b[1]) for b, t in zip(labels, tops)]
    for i, a in enumerate(placed):
        assert not any(overlap(a, o, 2) for o in obstacles)
        assert not any(overlap(a, b, 2) for b in placed[i + 1:])


def test_a_label_that_hits_nothing_stays_where_it_was_asked():
    labels = [(0, 10, 50, 20), (100, 10, 150, 20), (0, 15, 50, 25)]
    tops = charts.separate_labels(labels, gap=2)
    assert tops[:2] == [10, 10] and tops[2] in (22, -7)


def test_annotations_at_one_point_are_pushed_apart_vertically_and_drawn():
    ax = charts.Axes((400, 300), xlim=(0, 1), ylim=(0, 1), title="t", xlabel="x", ylabel="y")
    for m in (0.4, 0.55, 0.6, 0.8):
        ax.annotate(0.5, 0.5, f"M={m}", charts.PALETTE[1])
    ax.add_legend("a series", charts.PALETTE[0])
    image = ax.finish()
    labels = ax.label_boxes[-4:]
    assert len({b[0] for b in labels}) == 1  # moved only vertically
    assert all(not overlap(a, b) for i, a in enumerate(labels) for b in labels[i + 1:])
    for x0, y0, x1, y1 in labels:
        assert any(image.getpixel((x, y)) == charts.PALETTE[1] for x in range(x0, x1) for y in range(y0, y1))


def test_data_maps_to_the_box_and_values_outside_the_limits_sit_on_its_edge():
    ax = charts.Axes((300, 200), box=(40, 20, 280, 170), xlim=(0, 10), ylim=(-1, 1))
    assert ax.pixel(0, -1) == (40, 170) and ax.pixel(10, 1) == (280, 20) and ax.pixel(5, 0) == (160, 95)
    assert ax.pixel(20, 5) == (280, 20) and ax.pixel(-3, -9) == (40, 170)
    log = charts.Axes((300, 200), box=(40, 20, 280, 170), ylim=(1, 100), ylog=True)
    assert log.pixel(0, 10)[1] == 95


def test_markers_dashes_and_error_bars_are_drawn_where_asked():
    ax = charts.Axes((300, 200), box=(40, 20, 280, 170), xlim=(0, 1), ylim=(0, 1))
    ax.hline(0.5, (200, 0, 0), dash=5)
    ax.error_bars([0.25], [0.2], [0.8], (0, 0, 200))
    points = ax.line([0.5, 1.0], [0.25, 0.75], (0, 150, 0), "line", marker="s", radius=4)
    image = ax.finish()
    row = [image.getpixel((x, 95)) == (200, 0, 0) for x in range(41, 140)]
    assert 0.35 < sum(row) / len(row) < 0.65  # dashes: about half of the line
    assert all(image.getpixel((100, y)) == (0, 0, 200) for y in range(50, 140))
    assert points == [(160, 132), (280, 58)] and all(image.getpixel(p) == (0, 150, 0) for p in points)


def test_png_output_is_atomic_and_the_tensor_is_comfy_layout(tmp_path):
    from PIL import Image

    ax = charts.Axes((320, 240))
    ax.line([0, 1], [0, 1], charts.PALETTE[0])
    path = ax.save(tmp_path / "sub" / "chart.png")
    with Image.open(path) as saved:
        assert saved.size == (320, 240)
        image = saved.convert("RGB")
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name.endswith(".tmp")]
    assert Image.open(io.BytesIO(charts.png_bytes(image))).size == (320, 240)
    tensor = charts.image_to_tensor(image)
    assert tensor.shape == (1, 240, 320, 3) and tensor.dtype == torch.float32
    assert tuple(round(255 * float(v)) for v in tensor[0, 100, 200]) == image.getpixel((200, 100))


def test_the_sample_grid_gif_has_one_frame_per_video_frame(tmp_path):
    from PIL import Image

    videos = torch.zeros(2, 3, 4, 5, 3, dtype=torch.uint8)  # 2 rows, 3 frames of 4×5
    videos[..., 0] = torch.arange(3, dtype=torch.uint8).view(1, 3, 1, 1) * 100
    path = sample_grid_gif([("real", videos), ("model\nM=0.8", videos)], tmp_path / "grid.gif", scale=2)
    with Image.open(path) as gif:
        assert gif.n_frames == 3 and gif.size == (2 * (10 + 4) + 4, 34 + 2 * (8 + 4) + 4)
        gif.seek(2)
        assert gif.convert("RGB").getpixel((4 + 5, 34 + 4 + 3))[0] == 200
    assert math.isfinite(path.stat().st_size)
