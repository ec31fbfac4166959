"""benchmarks/bench_estimator.py runs, and its float64 estimator matches the two-pass reference."""

from __future__ import annotations

import runpy
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_estimator.py"


def test_benchmark_runs_and_ours_is_exact(capsys):
    main = runpy.run_path(str(BENCH))["main"]
    main(["--videos", "30", "--shape", "2,3,4,5", "--repeats", "1"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("realistic", "hard"))]
    ours = [r for r in rows if r[1] == "ours"]
    assert len(ours) == 2
    for r in ours:  # columns: case, "ours", "(f64", "Welford/Chan)", rel err E, rel err v, videos/s, MB/s
        assert float(r[4]) < 1e-12 and float(r[5]) < 1e-12
    assert any(r[1] == "naive" for r in rows)
