"""Small PIL-only charts and the animated sample grid (no matplotlib dependency)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207), (127, 127, 127))


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 × 10^k apart), about ``n`` of them inside [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


class Axes:
    """A plot area mapping data (x, y) to pixels, with axes, ticks and labels drawn."""

    def __init__(self, size=(640, 420), margin=(70, 40, 20, 60), xlim=(0, 1), ylim=(0, 1), title="", xlabel="", ylabel=""):
        self.img = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.img)
        self.left, self.top, self.right, self.bottom = margin[0], margin[1], size[0] - margin[2], size[1] - margin[3]
        self.xlim, self.ylim = xlim, ylim
        font, small = _font(14), _font(11)
        self.draw.rectangle([self.left, self.top, self.right, self.bottom], outline="black")
        for x in _ticks(*xlim):
            px = self.px(x, ylim[0])[0]
            self.draw.line([px, self.bottom, px, self.bottom + 4], fill="black")
            self.draw.text((px, self.bottom + 6), _fmt(x), fill="black", font=small, anchor="mt")
        for y in _ticks(*ylim):
            py = self.px(xlim[0], y)[1]
            self.draw.line([self.left - 4, py, self.left, py], fill="black")
            self.draw.line([self.left + 1, py, self.right - 1, py], fill=(235, 235, 235))
            self.draw.text((self.left - 6, py), _fmt(y), fill="black", font=small, anchor="rm")
        self.draw.text(((self.left + self.right) / 2, 8), title, fill="black", font=font, anchor="mt")
        self.draw.text(((self.left + self.right) / 2, size[1] - 22), xlabel, fill="black", font=font, anchor="mt")
        self.draw.text((6, self.top - 22), ylabel, fill="black", font=font)
        self._legend_y = self.top + 6

    def px(self, x: float, y: float) -> tuple[float, float]:
        fx = (x - self.xlim[0]) / ((self.xlim[1] - self.xlim[0]) or 1.0)
        fy = (y - self.ylim[0]) / ((self.ylim[1] - self.ylim[0]) or 1.0)
        return self.left + fx * (self.right - self.left), self.bottom - fy * (self.bottom - self.top)

    def line(self, xs: Sequence[float], ys: Sequence[float], color, label: str = "", width: int = 2, markers: bool = True) -> None:
        pts = [self.px(x, y) for x, y in zip(xs, ys)]
        if len(pts) > 1:
            self.draw.line(pts, fill=color, width=width)
        if markers:
            for px, py in pts:
                self.draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=color)
        if label:
            self.legend(label, color)

    def point(self, x: float, y: float, color, label: str = "", shape: str = "square") -> None:
        px, py = self.px(x, y)
        box = [px - 5, py - 5, px + 5, py + 5]
        (self.draw.rectangle if shape == "square" else self.draw.ellipse)(box, fill=color, outline="black")
        if label:
            self.legend(label, color)

    def hline(self, y: float, color, label: str = "") -> None:
        py = self.px(self.xlim[0], y)[1]
        self.draw.line([self.left, py, self.right, py], fill=color, width=1)
        if label:
            self.legend(label, color)

    def vline(self, x: float, color, label: str = "") -> None:
        px = self.px(x, self.ylim[0])[0]
        self.draw.line([px, self.top, px, self.bottom], fill=color, width=1)
        if label:
            self.legend(label, color)

    def text(self, x: float, y: float, s: str, color="black") -> None:
        px, py = self.px(x, y)
        self.draw.text((px + 5, py - 5), s, fill=color, font=_font(10), anchor="lb")

    def legend(self, label: str, color) -> None:
        x = self.right - 190
        self.draw.rectangle([x, self._legend_y + 2, x + 12, self._legend_y + 12], fill=color)
        self.draw.text((x + 18, self._legend_y), label, fill="black", font=_font(12))
        self._legend_y += 17

    def save(self, path: str | Path) -> Path:
        self.img.save(path)
        return Path(path)


def padded_limits(values: Sequence[float], pad: float = 0.08, include: Sequence[float] = ()) -> tuple[float, float]:
    vals = [float(v) for v in list(values) + list(include)]
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or max(abs(hi), 1.0)
    return lo - pad * span, hi + pad * span


def to_uint8_frames(video: torch.Tensor, scale: int) -> list[Image.Image]:
    """[3, F, H, W] in [-1, 1] → F PIL images upscaled ``scale``× (nearest)."""
    arr = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).contiguous()
    return [Image.fromarray(f.numpy()).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in arr]


def sample_grid_gif(columns: list[tuple[str, torch.Tensor]], path: str | Path, scale: int = 3, frame_ms: int = 200) -> Path:
    """Animated grid: one column per (label, videos [R, 3, F, H, W]), one row per example."""
    rows, _, frames, h, w = columns[0][1].shape
    tile_w, tile_h, header, gap = w * scale, h * scale, 34, 4
    width = len(columns) * (tile_w + gap) + gap
    height = header + rows * (tile_h + gap) + gap
    tiles = [[to_uint8_frames(videos[r], scale) for r in range(rows)] for _, videos in columns]
    font = _font(11)
    images = []
    for f in range(frames):
        canvas = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(canvas)
        for c, (label, _) in enumerate(columns):
            x = gap + c * (tile_w + gap)
            for i, part in enumerate(label.split("\n")[:2]):
                draw.text((x + tile_w / 2, 4 + 14 * i), part, fill="black", font=font, anchor="mt")
            for r in range(rows):
                canvas.paste(tiles[c][r][f], (x, header + gap + r * (tile_h + gap)))
        draw.text((width - 4, height - 2), f"frame {f}", fill=(90, 90, 90), font=font, anchor="rb")
        images.append(canvas)
    images[0].save(path, save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return Path(path)
