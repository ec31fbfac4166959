"""benchmarks/bench_train_loss.py runs; our loss keeps exactly as much for backward as the
official formulation, and gradient checkpointing keeps less. benchmarks/bench_distributed.py runs
1 vs 2 processes."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_train_loss.py"


def test_benchmark_runs_side_by_side(capsys):
    main = runpy.run_path(str(BENCH))["main"]
    rows = main(["--width", "8", "--depth", "2", "--frames", "2", "--size", "4", "--steps", "1", "--in-process"])
    out = capsys.readouterr().out
    assert "step ms" in out and "saved MB" in out and len(rows) == 4
    saved = {(r["loss"], r["checkpointing"]): r["saved_mb"] for r in rows}
    assert saved[("ours", False)] <= saved[("official", False)] * 1.05
    assert saved[("ours", True)] < saved[("ours", False)]


@pytest.mark.distributed
def test_distributed_benchmark_runs_one_and_two_processes(capsys):
    """benchmarks/bench_distributed.py: one round of 1 vs 2 processes (torchrun, gloo) prints its
    table; the numbers are wall times on a shared machine, so only their form is checked."""
    main = runpy.run_path(str(BENCH.parent / "bench_distributed.py"))["main"]
    rows = main(["--rounds", "1", "--steps", "3", "--warmup", "1", "--width", "8", "--frames", "2", "--size", "4", "--timeout", "240"])
    out = capsys.readouterr().out
    assert "scaling efficiency (2 processes)" in out and len(rows) == 1
    row = rows[0]
    assert row["total_2"] == pytest.approx(2 * row["per_proc_2"]) and row["efficiency"] > 0
