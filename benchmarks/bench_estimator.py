"""Analytic-Init estimator: accuracy and throughput against a float64 two-pass reference.

Compares, on the same synthetic video latents (stored in --dtype, fp16 by default, as a VAE in
half precision would give them):

  ours        cil_core.estimate_stats: float64 Welford/Chan streaming update, one latent of memory
  naive fp16  the official code's approach: Σx and Σx² accumulated in the latent dtype, then
              E[x²] − E[x]²
  naive fp32  the same with float32 accumulators

against a float64 two-pass reference (mean first, then the mean squared deviation) over the
exact same values. Reports the relative error of E[x0] (‖Ê − E‖/‖E‖) and of v = tr Cov/d, and
the throughput of each estimator measured in the same run on the same in-memory latents.

    python benchmarks/bench_estimator.py                      # defaults, < 1 minute on 2 cores
    python benchmarks/bench_estimator.py --videos 1000 --shape 4,16,72,128
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from cil_core.analytic_init import estimate_stats

CASES = {
    # channel means in [0.5, 1], a small spatial pattern, per-element std ~1 (SD-VAE-like scaled latents)
    "realistic": dict(mean_lo=0.5, mean_hi=1.0, pattern=0.3, std=1.0),
    # a large offset with a small spread: where E[x²] − E[x]² cancels catastrophically
    "hard": dict(mean_lo=50.0, mean_hi=50.0, pattern=0.0, std=0.5),
}


def make_latents(case: str, n: int, shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    p = CASES[case]
    g = torch.Generator().manual_seed(seed)
    c = shape[0]
    channel_mean = p["mean_lo"] + (p["mean_hi"] - p["mean_lo"]) * torch.rand(c, generator=g, dtype=torch.float64)
    mean = channel_mean.reshape(c, 1, 1, 1) + p["pattern"] * torch.randn(shape, generator=g, dtype=torch.float64)
    return [(mean + p["std"] * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype) for _ in range(n)]


def two_pass_reference(latents: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
    n = len(latents)
    mean = sum(x.to(torch.float64) for x in latents) / n
    var = sum((x.to(torch.float64) - mean) ** 2 for x in latents) / n
    return mean, float(var.mean())


def ours(latents: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
    stats = estimate_stats(iter(latents))
    return stats.mean, stats.tr_cov_d


def naive(acc_dtype: torch.dtype):
    def run(latents: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
        sx = torch.zeros(latents[0].shape, dtype=acc_dtype)
        sx2 = torch.zeros(latents[0].shape, dtype=acc_dtype)
        for x in latents:
            x = x.to(acc_dtype)
            sx += x
            sx2 += x * x
        n = len(latents)
        e = sx / n
        return e.to(torch.float64), float((sx2 / n - e * e).to(torch.float64).mean())

    return run


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def fmt(x: float) -> str:
    return f"{x:10.2e}" if math.isfinite(x) else f"{str(x):>10}"


def timed(fn, latents, repeats: int):
    best, result = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn(latents)
        best = min(best, time.perf_counter() - t0)
    return result, best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=200, help="number of synthetic video latents per case (default 200)")
    ap.add_argument("--shape", default="4,16,40,64", help="latent shape C,F,H,W (default DynamiCrafter 320x512: 4,16,40,64)")
    ap.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16", help="dtype of the latents")
    ap.add_argument("--cases", default="realistic,hard", help=f"comma-separated cases from {sorted(CASES)}")
    ap.add_argument("--repeats", type=int, default=2, help="timing repeats; the best is reported")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, for a fair side-by-side)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    shape = tuple(int(s) for s in args.shape.split(","))
    dtype = getattr(torch, args.dtype)
    methods = {"ours (f64 Welford/Chan)": ours, "naive Σx,Σx² fp16": naive(torch.float16), "naive Σx,Σx² fp32": naive(torch.float32)}

    print(f"latents: {args.videos} videos of shape {list(shape)} in {args.dtype}, torch threads {args.threads}")
    print(f"{'case':10} {'estimator':24} {'rel err E':>10} {'rel err v':>10} {'videos/s':>10} {'MB/s':>9}")
    for case in args.cases.split(","):
        latents = make_latents(case, args.videos, shape, dtype, args.seed)
        mbytes = sum(x.numel() * x.element_size() for x in latents) / 1e6
        ref_mean, ref_v = two_pass_reference(latents)
        for name, fn in methods.items():
            (mean, v), seconds = timed(fn, latents, args.repeats)
            err_e = float((mean - ref_mean).norm() / ref_mean.norm())
            print(f"{case:10} {name:24} {fmt(err_e)} {fmt(rel(v, ref_v))} {args.videos / seconds:10.1f} {mbytes / seconds:9.1f}")
        print(f"{case:10} {'(reference v = tr Cov/d)':24} {'':>10} {ref_v:10.4g}")


if __name__ == "__main__":
    main()
