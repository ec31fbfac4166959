"""An animated GIF of videos side by side: labelled columns, one row per example, one GIF frame
per video frame."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cil_core.atomic import atomic_path
from cil_media.charts import draw_text, font


def sample_grid_gif(columns: list[tuple[str, torch.Tensor]], path: str | os.PathLike, scale: int = 3, frame_ms: int = 200) -> Path:
    """``columns``: (label, uint8 videos [R, F, H, W, 3]); each tile is upscaled ``scale``× (nearest);
    a label may hold two lines ("a\\nb")."""
    from PIL import Image, ImageDraw

    rows, frames, h, w, _ = columns[0][1].shape
    tile_w, tile_h, header, gap = w * scale, h * scale, 34, 4
    width = len(columns) * (tile_w + gap) + gap
    height = header + rows * (tile_h + gap) + gap
    tiles = [[[Image.fromarray(f.numpy()).resize((tile_w, tile_h), Image.NEAREST) for f in videos[r]] for r in range(rows)]
             for _, videos in columns]
    small = font(11)
    images = []
    for f in range(frames):
        canvas = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(canvas)
        for c, (label, _) in enumerate(columns):
            x = gap + c * (tile_w + gap)
            for i, part in enumerate(label.split("\n")[:2]):
                draw_text(draw, (x + tile_w / 2, 4 + 14 * i), part, small, anchor="ma")
            for r in range(rows):
                canvas.paste(tiles[c][r][f], (x, header + gap + r * (tile_h + gap)))
        draw_text(draw, (width - 4, height - 2), f"frame {f}", small, (90, 90, 90), anchor="rb")
        images.append(canvas)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return Path(path)
