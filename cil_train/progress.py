"""Training logs: JSONL + CSV rows per optimizer step, a skipped-videos list, a loss-curve PNG.

``TrainLog.truncate(step)`` drops rows after a resumed checkpoint, so the final log of a killed
and resumed run reads like the log of one uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from cil_core.atomic import atomic_write_bytes

CSV_FIELDS = ("step", "loss", "sigma", "beta", "lr", "grad_norm", "step_time", "skipped")


class TrainLog:
    def __init__(self, output_dir: str | Path) -> None:
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.dir / "log.jsonl"
        self.csv = self.dir / "log.csv"
        self.skipped_file = self.dir / "skipped_videos.txt"

    def rows(self) -> list[dict]:
        if not self.jsonl.is_file():
            return []
        rows = []
        for line in self.jsonl.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                break
        return rows

    def truncate(self, step: int) -> None:
        """Keep rows with step <= ``step`` (rewritten atomically)."""
        rows = [r for r in self.rows() if r["step"] <= step]
        atomic_write_bytes(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))
        self._rewrite_csv(rows)

    def append(self, row: dict) -> None:
        with open(self.jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        new = not self.csv.is_file()
        with open(self.csv, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _rewrite_csv(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.csv, buf.getvalue().encode("utf-8"))

    def write_skipped(self, skipped: dict[str, str]) -> None:
        lines = [f"{path}\t{reason}" for path, reason in sorted(skipped.items())]
        atomic_write_bytes(self.skipped_file, "".join(line + "\n" for line in lines).encode("utf-8"))


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    out, acc = [], None
    for v in values:
        acc = v if acc is None else weight * acc + (1 - weight) * v
        out.append(acc)
    return out


def draw_loss_curve(steps: list[int], losses: list[float], size: tuple[int, int] = (640, 360)):
    """A PIL RGB image: raw loss (light) and its EMA (dark) against step, log-scaled y when spread."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 60, w - 15, 20, h - 35
    draw.rectangle([left, top, right, bottom], outline=(80, 80, 80))
    good = [(s, v) for s, v in zip(steps, losses) if math.isfinite(v) and v > 0]
    if not good:
        draw.text((left + 10, top + 10), "no finite loss yet", fill=(0, 0, 0))
        return img
    xs, ys = zip(*good)
    use_log = max(ys) / min(ys) > 20
    f = (lambda v: math.log10(v)) if use_log else (lambda v: v)
    lo, hi = min(map(f, ys)), max(map(f, ys))
    hi = hi if hi > lo else lo + 1.0
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def point(s, v):
        return (left + (s - x0) / (x1 - x0) * (right - left), bottom - (f(v) - lo) / (hi - lo) * (bottom - top))

    if len(good) > 1:
        draw.line([point(s, v) for s, v in good], fill=(170, 190, 230), width=1)
        draw.line([point(s, v) for s, v in zip(xs, smooth(list(ys)))], fill=(20, 60, 160), width=2)
    else:
        px, py = point(xs[0], ys[0])
        draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(20, 60, 160))
    fmt = (lambda e: f"{10 ** e:.3g}") if use_log else (lambda v: f"{v:.3g}")
    draw.text((4, top - 6), fmt(hi), fill=(0, 0, 0))
    draw.text((4, bottom - 6), fmt(lo), fill=(0, 0, 0))
    draw.text((left, bottom + 8), f"step {x0}", fill=(0, 0, 0))
    draw.text((right - 70, bottom + 8), f"step {x1}", fill=(0, 0, 0))
    draw.text((w // 2 - 40, bottom + 20), "loss" + (" (log)" if use_log else ""), fill=(0, 0, 0))
    return img


def save_loss_curve(path: str | Path, steps: list[int], losses: list[float]) -> Path:
    buf = io.BytesIO()
    draw_loss_curve(steps, losses).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
