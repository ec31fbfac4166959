"""The pack's chart kit (PIL, no matplotlib): ``Axes`` maps data to pixels and draws the frame,
round ticks, grid, lines with markers, error bars, dashed reference lines, a legend and text
labels that never overlap one another; plus a font helper, PNG bytes / atomic saving and the
image → ComfyUI IMAGE tensor. The specific charts live with their data (``probe_plot``,
``loss_curve``, ``cil_toy.plots``)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from cil_core.atomic import atomic_write_bytes

PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207), (127, 127, 127))
BLACK, GREY, GRID, WHITE = (0, 0, 0), (70, 70, 70), (232, 232, 232), (255, 255, 255)
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels


def font(size: int):
    """PIL's default font at ``size`` px (a fixed-size bitmap font on Pillow < 10.1)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def fmt_tick(value: float) -> str:
    return f"{value:.3g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 × 10^k apart) inside [lo, hi], as close to ``n`` of them as
    such steps allow (the fewer on a tie)."""
    if hi <= lo:
        hi = lo + 1.0
    mag = 10 ** math.floor(math.log10((hi - lo) / max(1, n - 1)))

    def ticks(step: float) -> list[float]:
        first = math.ceil(lo / step - 1e-9) * step
        return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]

    return min((ticks(m * mag) for m in (1, 2, 5, 10)), key=lambda t: (abs(len(t) - n), len(t)))


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten inside [lo, hi] (lo > 0), with 2× and 5× added when fewer than three fit."""
    for mantissas in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1) for m in mantissas]
        ticks = [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
        if len(ticks) >= 3:
            return ticks
    return ticks


def padded_limits(values: Sequence[float], pad: float = 0.08, include: Sequence[float] = ()) -> tuple[float, float]:
    """(lo, hi) around ``values`` and ``include`` with ``pad`` of the span added on each side."""
    vals = [float(v) for v in list(values) + list(include)]
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or max(abs(hi), 1.0)
    return lo - pad * span, hi + pad * span


def text_box(draw, xy: tuple[float, float], text: str, text_font, anchor: str = "la") -> Box:
    """Where ``text`` lands when anchored at ``xy``: horizontally l/m/r, vertically a (top), m, b (bottom)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font)
    x = xy[0] - {"l": 0.0, "m": (right - left) / 2, "r": float(right - left)}[anchor[0]]
    y = xy[1] - {"a": 0.0, "m": (bottom - top) / 2, "b": float(bottom - top)}[anchor[1]]
    return round(x), round(y), round(x) + right - left, round(y) + bottom - top


def draw_text(draw, xy: tuple[float, float], text: str, text_font, fill=BLACK, anchor: str = "la") -> Box:
    """Text at ``xy`` (anchors as ``text_box``; works with TrueType and bitmap fonts, which do not
    take PIL's own ``anchor``); returns its box."""
    box = text_box(draw, xy, text, text_font, anchor)
    left, top, _, _ = draw.textbbox((0, 0), text, font=text_font)
    draw.text((box[0] - left, box[1] - top), text, fill=fill, font=text_font)
    return box


def separate_labels(boxes: Sequence[Box], obstacles: Sequence[Box] = (), gap: int = 2, height: int | None = None) -> list[int]:
    """New top edges that keep label boxes from overlapping one another (and ``obstacles``). Only
    vertical moves: taken in order of their wanted top, each box goes to the free top nearest its
    own (its own when free; else just above or below a box it would hit), inside [0, height] when
    such a place exists. A box just below everything it could hit is always free, so labels never
    overlap."""
    placed = [tuple(b) for b in obstacles]
    tops = [0] * len(boxes)
    for i in sorted(range(len(boxes)), key=lambda k: boxes[k][1]):
        x0, want, x1, y1 = boxes[i]
        h = y1 - want
        in_x = [p for p in placed if x0 < p[2] and p[0] < x1]
        candidates = {want} | {p[3] + gap for p in in_x} | {p[1] - gap - h for p in in_x}
        free = [c for c in candidates if all(not (c < p[3] + gap and p[1] < c + h + gap) for p in in_x)]
        outside = {c: height is not None and (c < 0 or c + h > height) for c in free}
        top = min(free, key=lambda c: (outside[c], abs(c - want), c))
        tops[i] = top
        placed.append((x0, top, x1, top + h))
    return tops


class Axes:
    """A white image with a plot box mapping data (x, y) to pixels.

    ``box`` (x0, y0, x1, y1) or ``margin`` (left, top, right, bottom) places the plot box; ticks
    are ``nice_ticks`` (``log_ticks`` with ``ylog``) unless given, labelled by ``xfmt``/``yfmt`` ("" =
    unlabelled). Values outside the limits are drawn at the edge. Text labels (``annotate``,
    ``label``) are placed when drawn (``draw_labels``, ``finish``) so that none overlaps another or
    the legend. The legend sits ``inside`` (top right) or ``below`` the plot, one row per entry
    unless entries share a ``row`` name.
    """

    def __init__(self, size: tuple[int, int] = (640, 420), *, box: Sequence[int] | None = None,
                 margin: Sequence[int] = (70, 40, 20, 60), xlim=(0.0, 1.0), ylim=(0.0, 1.0), ylog: bool = False,
                 xticks: Sequence[float] | None = None, yticks: Sequence[float] | None = None,
                 xfmt: Callable[[float], str] = fmt_tick, yfmt: Callable[[float], str] = fmt_tick,
                 title: str = "", subtitle: str = "", xlabel: str = "", ylabel: str = "", legend: str = "inside") -> None:
        from PIL import Image, ImageDraw

        self.image = Image.new("RGB", tuple(size), WHITE)
        self.draw = ImageDraw.Draw(self.image)
        self.width, self.height = size
        self.box = tuple(int(v) for v in box) if box is not None else (
            margin[0], margin[1], size[0] - margin[2], size[1] - margin[3])
        self.xlim, self.ylim, self.ylog = tuple(xlim), tuple(ylim), ylog
        self.small, self.big = font(max(11, self.height // 36)), font(max(14, self.height // 26))
        self.legend_place = legend
        self.legend_entries: list[tuple[str, tuple, str, str | None]] = []
        self.pending: list[tuple[tuple[float, float], str, tuple, str, object]] = []
        self.label_boxes: list[Box] = []  # drawn text that later labels keep clear of
        self._frame(xticks, yticks, xfmt, yfmt)
        self._titles(title, subtitle, xlabel, ylabel)

    # --- mapping --------------------------------------------------------------------------------

    def _ty(self, y: float) -> float:
        return math.log10(y) if self.ylog else y

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Pixel position of (x, y), clamped into the plot box."""
        x0, y0, x1, y1 = self.box
        (ax, bx), (ay, by) = self.xlim, (self._ty(self.ylim[0]), self._ty(self.ylim[1]))
        fx = (min(max(x, min(ax, bx)), max(ax, bx)) - ax) / ((bx - ax) or 1.0)
        ty = self._ty(y) if not self.ylog or y > 0 else ay
        fy = (min(max(ty, min(ay, by)), max(ay, by)) - ay) / ((by - ay) or 1.0)
        return x0 + fx * (x1 - x0), y1 - fy * (y1 - y0)

    def pixel(self, x: float, y: float) -> tuple[int, int]:
        px, py = self.px(x, y)
        return round(px), round(py)

    # --- frame and titles ----------------------------------------------------------------------

    def _frame(self, xticks, yticks, xfmt, yfmt) -> None:
        x0, y0, x1, y1 = self.box
        if yticks is None:
            yticks = log_ticks(*self.ylim) if self.ylog else nice_ticks(*self.ylim)
        for y in yticks:
            _, py = self.pixel(self.xlim[0], y)
            self.draw.line([(x0 + 1, py), (x1 - 1, py)], fill=GRID)
            self.draw.line([(x0 - 5, py), (x0, py)], fill=BLACK)
            draw_text(self.draw, (x0 - 8, py), yfmt(y), self.small, anchor="rm")
        for x in nice_ticks(*self.xlim) if xticks is None else xticks:
            px, _ = self.pixel(x, self.ylim[0])
            self.draw.line([(px, y1), (px, y1 + 5)], fill=BLACK)
            if xfmt(x):
                draw_text(self.draw, (px, y1 + 8), xfmt(x), self.small, anchor="ma")
        self.draw.rectangle([x0, y0, x1, y1], outline=BLACK, width=1)

    def _titles(self, title: str, subtitle: str, xlabel: str, ylabel: str) -> None:
        x0, y0, x1, y1 = self.box
        w, h = self.width, self.height
        if title:
            self.label_boxes.append(draw_text(self.draw, (w / 2, 0.015 * h), title, self.big, anchor="ma"))
        if subtitle:
            self.label_boxes.append(draw_text(self.draw, (w / 2, 0.07 * h), subtitle, self.small, GREY, anchor="ma"))
        self.xlabel_bottom = y1 + 8 + self.small_height()
        if xlabel:
            self.label_boxes.append(draw_text(self.draw, ((x0 + x1) / 2, self.xlabel_bottom + 0.02 * h), xlabel, self.small, anchor="ma"))
            self.xlabel_bottom = self.label_boxes[-1][3]
        if ylabel:
            self.label_boxes.append(draw_text(self.draw, (min(6, x0), y0 - 6 - self.small_height() / 2), ylabel, self.small, anchor="lm"))

    def _text_width(self, text: str) -> int:
        return self.draw.textbbox((0, 0), text, font=self.small)[2]

    def small_height(self) -> int:
        box = self.draw.textbbox((0, 0), "0.1", font=self.small)
        return box[3] - box[1]

    # --- data ------------------------------------------------------------------------------------

    def marker(self, xy: tuple[int, int], color, shape: str = "o", radius: int = 3, outline=None) -> None:
        x, y = xy
        if shape == "d":
            self.draw.polygon([(x, y - radius - 1), (x + radius + 1, y), (x, y + radius + 1), (x - radius - 1, y)], fill=color, outline=outline)
            return
        rect = [x - radius, y - radius, x + radius, y + radius]
        (self.draw.rectangle if shape == "s" else self.draw.ellipse)(rect, fill=color, outline=outline)

    def line(self, xs: Sequence[float], ys: Sequence[float], color, label: str = "", *, width: int = 2, marker: str | None = "o",
             radius: int = 3, legend_row: str | None = None, dash: int = 0) -> list[tuple[int, int]]:
        """A polyline through the points (dashed with ``dash`` px dashes), with markers (``o`` circle,
        ``s`` square, ``d`` diamond, None); returns the markers' pixel centres."""
        points = [self.pixel(x, y) for x, y in zip(xs, ys)]
        if len(points) > 1 and dash <= 0:
            self.draw.line(points, fill=color, width=width)
        elif len(points) > 1:
            for (ax, ay), (bx, by) in zip(points[:-1], points[1:]):
                length = math.hypot(bx - ax, by - ay) or 1.0
                for a, b in _dashes(0, round(length), dash):
                    self.draw.line([(ax + (bx - ax) * a / length, ay + (by - ay) * a / length),
                                    (ax + (bx - ax) * b / length, ay + (by - ay) * b / length)], fill=color, width=width)
        if marker:
            for p in points:
                self.marker(p, color, marker, radius)
        if label:
            self.add_legend(label, color, "dash" if dash > 0 else "line", legend_row)
        return points

    def error_bars(self, xs: Sequence[float], lows: Sequence[float], highs: Sequence[float], color, width: int = 1, cap: int = 0,
                   dx: int = 0) -> None:
        """Vertical bars from low to high at each x (shifted ``dx`` px, with ``cap`` px caps)."""
        for x, lo, hi in zip(xs, lows, highs):
            px, plo = self.pixel(x, lo)
            _, phi = self.pixel(x, hi)
            px += dx
            self.draw.line([(px, plo), (px, phi)], fill=color, width=width)
            if cap:
                for py in (plo, phi):
                    self.draw.line([(px - cap, py), (px + cap, py)], fill=color, width=width)

    def point(self, x: float, y: float, color, label: str = "", shape: str = "s", radius: int = 5) -> tuple[int, int]:
        xy = self.pixel(x, y)
        self.marker(xy, color, shape, radius, outline=BLACK)
        if label:
            self.add_legend(label, color, "box")
        return xy

    def hline(self, y: float, color, label: str = "", *, width: int = 1, dash: int = 0, legend_row: str | None = None) -> None:
        x0, _, x1, _ = self.box
        _, py = self.pixel(self.xlim[0], y)
        self._segments([(x, py, x2, py) for x, x2 in _dashes(x0, x1, dash)], color, width)
        if label:
            self.add_legend(label, color, "line", legend_row)

    def vline(self, x: float, color, label: str = "", *, width: int = 1, dash: int = 0, legend_row: str | None = None) -> None:
        _, y0, _, y1 = self.box
        px, _ = self.pixel(x, self.ylim[0])
        self._segments([(px, y, px, y2) for y, y2 in _dashes(y0, y1, dash)], color, width)
        if label:
            self.add_legend(label, color, "line", legend_row)

    def _segments(self, segments, color, width: int) -> None:
        for a, b, c, d in segments:
            self.draw.line([(a, b), (c, d)], fill=color, width=width)

    # --- text labels and legend ------------------------------------------------------------------

    def annotate(self, x: float, y: float, text: str, color=BLACK) -> None:
        """A label just above-right of the data point (x, y)."""
        px, py = self.px(x, y)
        self.label((px + 5, py - 5), text, color, "lb")

    def label(self, xy: tuple[float, float], text: str, color=BLACK, anchor: str = "la", text_font=None) -> None:
        """A label at pixel ``xy``, drawn by ``draw_labels``, moved vertically if it would overlap another."""
        self.pending.append((xy, text, color, anchor, text_font or self.small))

    def draw_labels(self, obstacles: Sequence[Box] = ()) -> list[Box]:
        """Draw the waiting labels apart from each other, from labels drawn before and ``obstacles``."""
        wanted = [text_box(self.draw, xy, text, f, anchor) for xy, text, _, anchor, f in self.pending]
        tops = separate_labels(wanted, [*self.label_boxes, *obstacles], height=self.height)
        drawn = []
        for (xy, text, color, anchor, f), box, top in zip(self.pending, wanted, tops):
            drawn.append(draw_text(self.draw, (box[0], top), text, f, color, "la"))
        self.label_boxes += drawn
        self.pending = []
        return drawn

    def add_legend(self, label: str, color, swatch: str = "line", row: str | None = None) -> None:
        self.legend_entries.append((label, tuple(color), swatch, row))

    def _legend_rows(self) -> list[list[tuple]]:
        rows: list[list[tuple]] = []
        names: dict[str, list[tuple]] = {}
        for entry in self.legend_entries:
            row = entry[3]
            if row is None or row not in names:
                rows.append([entry])
                if row is not None:
                    names[row] = rows[-1]
            else:
                names[row].append(entry)
        return rows

    def _draw_legend(self) -> Box | None:
        rows = self._legend_rows()
        if not rows:
            return None
        x0, y0, x1, _ = self.box
        row_h = max(self.small_height() + 6, round(0.045 * self.height)) if self.legend_place == "below" else self.small_height() + 6
        widths = [sum(28 + self._text_width(e[0]) + 32 for e in row) - 32 for row in rows]
        if self.legend_place == "below":
            left, top = x0, self.xlabel_bottom + row_h // 2
        else:
            left, top = x1 - max(widths) - 14, y0 + 6
            self.draw.rectangle([left - 6, top - 4, x1 - 4, top + len(rows) * row_h], fill=WHITE, outline=GRID)
        y = first = top + row_h // 2
        for row in rows:
            x = left
            for label, color, swatch, _ in row:
                if swatch == "box":
                    self.draw.rectangle([x + 5, y - 6, x + 17, y + 6], fill=color, outline=BLACK)
                elif swatch == "dash":
                    for a, b in _dashes(x, x + 22, 4):
                        self.draw.line([(a, y), (b, y)], fill=color, width=3)
                else:
                    self.draw.line([(x, y), (x + 22, y)], fill=color, width=3)
                draw_text(self.draw, (x + 28, y), label, self.small, anchor="lm")
                x += 28 + self._text_width(label) + 32
            y += row_h
        return left - 6, first - row_h // 2, left + max(widths) + 6, y - row_h + self.small_height() // 2 + 3

    def finish(self):
        """Draw the legend and the waiting labels (kept off the legend); returns the PIL image."""
        legend = self._draw_legend()
        self.draw_labels([legend] if legend else [])
        return self.image

    def save(self, path: str | os.PathLike) -> Path:
        return save_png(self.finish(), path)


def _dashes(start: int, end: int, dash: int) -> list[tuple[int, int]]:
    if dash <= 0:
        return [(start, end)]
    return [(a, min(a + dash, end)) for a in range(start, end, 2 * dash)]


# --- output --------------------------------------------------------------------------------------

def hstack(images: Sequence, gap: int = 8):
    """PIL images side by side on white (top-aligned), ``gap`` px apart: a multi-panel figure."""
    from PIL import Image

    width = sum(im.width for im in images) + gap * (len(images) - 1)
    out = Image.new("RGB", (width, max(im.height for im in images)), WHITE)
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def save_png(image, path: str | os.PathLike) -> Path:
    """Write a PIL image as PNG atomically (a reader never sees half a file)."""
    return atomic_write_bytes(path, png_bytes(image))


def image_to_tensor(image) -> torch.Tensor:
    """PIL RGB image → ComfyUI IMAGE [1, H, W, 3] float in [0, 1]."""
    data = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return data.reshape(1, image.height, image.width, 3).float() / 255.0
