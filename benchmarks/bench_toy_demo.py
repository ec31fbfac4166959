"""Where ``cil demo``'s time goes: each stage timed in one run, with shares of the total.

Stages: loading weights + stats, the held-out set, the Leakage Probe (both models), generation
(per method), metrics + Fréchet distances, writing the report. Also times one network forward
pass at the demo's batch size, so "generation ≈ methods × steps × batches × forward" can be
checked, and one training step at the shipped batch size (what ``cil toy-train`` repeats).

    python benchmarks/bench_toy_demo.py                # the full default demo (minutes)
    python benchmarks/bench_toy_demo.py --samples 16 --steps 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def time_forward(model, batch: int, repeats: int = 3) -> float:
    import torch

    x = torch.randn(batch, *model.latent_shape)
    cond = torch.randn(batch, model.latent_shape[0], *model.latent_shape[2:])
    sigma, beta = torch.full((batch,), 1.0), torch.zeros(batch)
    with torch.no_grad():
        model.denoiser(x, sigma, {"image": cond, "noise_level": beta})
        t0 = time.perf_counter()
        for _ in range(repeats):
            model.denoiser(x, sigma, {"image": cond, "noise_level": beta})
    return (time.perf_counter() - t0) / repeats


def time_train_step(repeats: int = 3) -> float:
    from cil_toy.train import TrainConfig, train

    result = train(TrainConfig(steps=repeats))
    return result.seconds / repeats


def main(argv: list[str] | None = None) -> dict[str, float]:
    import torch

    from cil_toy.demo import DemoConfig, run_demo
    from cil_toy.report import write_report
    from cil_toy.weights_io import load_toy_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=DemoConfig.samples)
    p.add_argument("--steps", type=int, default=DemoConfig.steps)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-train-step", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    out = Path(tempfile.mkdtemp(prefix="cil-bench-demo-"))
    cfg = DemoConfig(out=out, samples=args.samples, steps=args.steps)
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_demo(cfg, progress=False)
    t1 = time.perf_counter()
    write_report(result)
    timing = dict(result.timing)
    timing["report_s"] = time.perf_counter() - t1
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0

    print(f"cil demo: {args.samples} samples, {args.steps} steps, {len(result.methods)} methods, threads={args.threads}")
    print(f"{'stage':<14}{'seconds':>10}{'share':>9}")
    for key, sec in timing.items():
        print(f"{key[:-2]:<14}{sec:>10.2f}{sec / total:>9.1%}")
    print(f"{'total':<14}{total:>10.2f}{1:>9.0%}   (process CPU {cpu:.1f} s)")

    fwd = time_forward(load_toy_model("edm_baseline"), cfg.batch)
    n_batches = -(-args.samples // cfg.batch)
    predicted = len(result.methods) * args.steps * n_batches * fwd
    print(f"one forward at batch {cfg.batch}: {fwd * 1000:.1f} ms; methods×steps×batches×forward = {predicted:.2f} s "
          f"vs measured generation {timing['generate_s']:.2f} s (ratio {timing['generate_s'] / predicted:.2f})")
    timing.update(total_s=total, cpu_s=cpu, forward_s=fwd)
    if not args.skip_train_step:
        step = time_train_step()
        print(f"one training step (batch 16): {step:.3f} s")
        timing["train_step_s"] = step
    return timing


if __name__ == "__main__":
    main()
