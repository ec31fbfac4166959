"""Data-parallel training on CPU: 1 process vs 2 (torchrun, gloo), measured side by side.

The trainer's built-in tiny model (``model.kind = "tiny"``) trains on a folder of pre-encoded
clips (no video decoding in the step), with the same per-process batch B in both runs, so the 2
process run trains twice the samples per step (weak scaling). Runs alternate 1, 2, 1, 2, … and
each 2-process run is compared with the 1-process run next to it, so slow drift of a shared
machine cancels. From each run's own log (rank 0; the first ``--warmup`` steps dropped):

  step ms        median wall time of one optimizer step (forward, backward, gradient all-reduce,
                 AdamW), inside the process: start-up is not counted
  samples/s/proc B / step time
  total samples/s W·B / step time
  efficiency     total samples/s of 2 processes / (2 × that of 1 process), pair by pair; 1.0 is
                 perfect scaling. On 2 CPU cores the 2 processes also compete for the cores the
                 1-process run had alone, so this is a lower bound for 2 real devices.

    python benchmarks/bench_distributed.py                 # ~3 minutes on 2 busy cores
    python benchmarks/bench_distributed.py --width 32 --size 32 --frames 8 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_clips(folder: Path, n: int, frames: int, size: int) -> None:
    import torch

    from cil_core.stats_io import atomic_save_safetensors

    gen = torch.Generator().manual_seed(0)
    for i in range(n):
        latent = torch.randn(3, frames, size, size, generator=gen)
        atomic_save_safetensors({"latent": latent, "image": latent[:, 0].clone()}, folder / f"clip{i:03d}.safetensors", {})


def config(root: Path, name: str, args) -> Path:
    cfg = {
        "mode": args.mode,
        "model": {"kind": "tiny", "family": "edm", "tiny_width": args.width, "tiny_depth": args.depth, "device": "cpu"},
        "data": {"source": str(root / "clips"), "kind": "latents", "workers": 0, "batch_size": args.batch},
        "optim": {"lr": 1e-4},
        "run": {"steps": args.steps, "checkpoint_every": args.steps, "output_dir": str(root / name), "progress": False},
    }
    path = root / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def run(cfg: Path, procs: int, timeout: float) -> list[float]:
    """Per-step wall times (s) from rank 0's log of one fresh run."""
    out = Path(json.loads(cfg.read_text())["run"]["output_dir"])
    if out.exists():
        import shutil

        shutil.rmtree(out)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else [sys.executable]
    done = subprocess.run([*head, "-m", "cil_tools.cli", "train", "--config", str(cfg), "--no-progress"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{procs}-process run failed:\n{done.stderr[-3000:]}")
    return [json.loads(line)["step_time"] for line in (out / "log.jsonl").read_text().splitlines()]


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="pairs of runs (1 process, then 2)")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2, help="first steps of each run left out")
    p.add_argument("--batch", type=int, default=2, help="clips per process and step")
    p.add_argument("--mode", default="full", choices=("full", "lora"))
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=16, help="latent height = width")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args(argv)
    if args.steps <= args.warmup:
        raise SystemExit(f"--steps {args.steps} must exceed --warmup {args.warmup}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="cil-bench-dist-") as tmp:
        root = Path(tmp)
        make_clips(root / "clips", 8, args.frames, args.size)
        cfgs = {1: config(root, "one", args), 2: config(root, "two", args)}
        for r in range(args.rounds):
            times = {w: statistics.median(run(cfgs[w], w, args.timeout)[args.warmup:]) for w in (1, 2)}
            rows.append({"round": r + 1, "step_ms_1": 1000 * times[1], "step_ms_2": 1000 * times[2],
                         "per_proc_1": args.batch / times[1], "per_proc_2": args.batch / times[2],
                         "total_1": args.batch / times[1], "total_2": 2 * args.batch / times[2],
                         "efficiency": (2 * args.batch / times[2]) / (2 * args.batch / times[1])})
    print(f"tiny model ({args.mode}, width {args.width}, depth {args.depth}), latents 3x{args.frames}x{args.size}x{args.size}, "
          f"batch {args.batch} per process, median of steps {args.warmup + 1}..{args.steps}")
    print(f"{'round':>5} {'step ms 1p':>11} {'step ms 2p':>11} {'samples/s/proc 1p':>18} {'samples/s/proc 2p':>18} "
          f"{'total 1p':>9} {'total 2p':>9} {'efficiency':>10}")
    for row in rows:
        print(f"{row['round']:>5} {row['step_ms_1']:>11.1f} {row['step_ms_2']:>11.1f} {row['per_proc_1']:>18.1f} "
              f"{row['per_proc_2']:>18.1f} {row['total_1']:>9.1f} {row['total_2']:>9.1f} {row['efficiency']:>10.2f}")
    eff = [r["efficiency"] for r in rows]
    print(f"scaling efficiency (2 processes): median {statistics.median(eff):.2f}, min {min(eff):.2f}, max {max(eff):.2f}")
    return rows


if __name__ == "__main__":
    main()
