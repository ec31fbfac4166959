"""benchmarks/bench_toy_demo.py runs on a tiny demo and its stage times add up to the total."""

from __future__ import annotations

import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_toy_demo.py"


def test_bench_toy_demo_runs(capsys):
    main = runpy.run_path(str(BENCH))["main"]
    timing = main(["--samples", "4", "--steps", "2", "--skip-train-step"])
    out = capsys.readouterr().out
    assert "probe" in out and "generate" in out and "forward" in out
    stages = sum(v for k, v in timing.items() if k in ("load_s", "probe_s", "generate_s", "metrics_s", "report_s"))
    assert 0 < stages <= timing["total_s"] * 1.01
