"""Training logs: JSONL + CSV rows per optimizer step, a skipped-videos list, a loss-curve PNG
(``cil_media.loss_curve``); rewrites are atomic (``cil_core.atomic``).

``TrainLog.truncate(step)`` drops rows after a resumed checkpoint, so the final log of a killed
and resumed run reads like the log of one uninterrupted run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cil_core.atomic import atomic_write_bytes
from cil_media.charts import save_png
from cil_media.loss_curve import draw_loss_curve

CSV_FIELDS = ("step", "loss", "sigma", "beta", "lr", "grad_norm", "step_time", "skipped")
# what a run writes into its output folder (besides checkpoints/ and the LoRA file)
OUTPUT_FILES = ("log.jsonl", "log.csv", "skipped_videos.txt", "loss.png", "config.json", "model.safetensors")


class TrainLog:
    """The run's logs; ``write=False`` (ranks other than 0 of a multi-process run) reads only."""

    def __init__(self, output_dir: str | Path, write: bool = True) -> None:
        self.dir = Path(output_dir)
        self.write = write
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
        if not self.write:
            return
        rows = [r for r in self.rows() if r["step"] <= step]
        atomic_write_bytes(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))
        self._rewrite_csv(rows)

    def append(self, row: dict) -> None:
        if not self.write:
            return
        with open(self.jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        new = not self.csv.is_file()
        with open(self.csv, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _rewrite_csv(self, rows: list[dict]) -> None:
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.csv, buf.getvalue().encode("utf-8"))

    def write_skipped(self, skipped: dict[str, str]) -> None:
        if not self.write:
            return
        lines = [f"{path}\t{reason}" for path, reason in sorted(skipped.items())]
        atomic_write_bytes(self.skipped_file, "".join(line + "\n" for line in lines).encode("utf-8"))


def save_loss_curve(path: str | Path, steps: list[int], losses: list[float]) -> Path:
    return save_png(draw_loss_curve(steps, losses), path)
