"""benchmarks/bench_train_loss.py runs; our loss keeps exactly as much for backward as the
official formulation, and gradient checkpointing keeps less."""

from __future__ import annotations

import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train_loss.py"


def test_benchmark_runs_side_by_side(capsys):
    main = runpy.run_path(str(BENCH))["main"]
    rows = main(["--width", "8", "--depth", "2", "--frames", "2", "--size", "4", "--steps", "1", "--in-process"])
    out = capsys.readouterr().out
    assert "step ms" in out and "saved MB" in out and len(rows) == 4
    saved = {(r["loss"], r["checkpointing"]): r["saved_mb"] for r in rows}
    assert saved[("ours", False)] <= saved[("official", False)] * 1.05
    assert saved[("ours", True)] < saved[("ours", False)]
