"""Overhead of the Late Start Sampler over ComfyUI's KSampler, same steps, same tiny model.

Runs a REAL ComfyUI in-process (COMFYUI_PATH, host venv), builds the tiny random SVD model of the
host tests, and times the two nodes' execute functions (same seed, steps, cfg, sampler; KSampler
with the karras schedule from sigma_max, the Late Start Sampler from M = 0.85 with Analytic-Init
stats). Repeats are interleaved (A B, B A, ...) after a warm-up; the median of per-repeat ratios
is printed. Target: <= 1.02.

    COMFYUI_PATH=/path/to/ComfyUI /path/to/host/venv/bin/python benchmarks/bench_late_start_overhead.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_host_helpers():
    """The host tier's modules (tests/host): ``host_boot`` (a real ComfyUI booted in-process with
    this pack) and ``tiny_models``, imported by their plain names as the tier's conftest does."""
    for entry in (REPO / "tests" / "host", REPO):  # appended: the boot puts ComfyUI's root first, the repo last
        if str(entry) not in sys.path:
            sys.path.append(str(entry))
    import host_boot
    import tiny_models

    problem = host_boot.unavailable()
    if problem:
        raise SystemExit(f"bench_late_start_overhead: {problem[1]}")
    return host_boot, tiny_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=8, help="latent height = width")
    parser.add_argument("--cfg", type=float, default=2.5)
    args = parser.parse_args(argv)

    host_boot, helpers = load_host_helpers()
    host = host_boot.Host(Path(tempfile.mkdtemp(prefix="cil-bench-")))
    import torch

    model = helpers.tiny_svd(0)
    positive, negative = helpers.svd_conditioning(args.frames, args.size, args.size, 0)
    latent = {"samples": torch.zeros(args.frames, 4, args.size, args.size)}
    stats_shape = (4, args.frames, args.size, args.size)
    stats = load_pack_stats(host, helpers.make_stats(stats_shape, tr_cov_d=0.5))
    ksampler = host.node_classes["KSampler"]()
    late = host.node_classes["CIL_LateStartSampler"]

    def run_ksampler():
        return ksampler.sample(model, 1, args.steps, args.cfg, "euler", "karras", positive, negative, latent, denoise=1.0)

    def run_late_start():
        return late.execute(model=model, seed=1, steps=args.steps, cfg=args.cfg, sampler_name="euler", scheduler="cil_late_start",
                            positive=positive, negative=negative, latent_image=latent, M=0.85, naive_mode="paper", fit="strict", stats=stats)

    def timed(fn) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():  # as ComfyUI's executor runs nodes
            fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    for fn in (run_ksampler, run_late_start, run_ksampler, run_late_start):  # warm-up: model load, caches
        timed(fn)
    runs = {run_ksampler: [], run_late_start: []}
    for repeat in range(args.repeats):
        order = (run_ksampler, run_late_start) if repeat % 2 == 0 else (run_late_start, run_ksampler)
        for fn in order:
            runs[fn].append(timed(fn))
    print(f"ComfyUI {host.version}, torch threads {torch.get_num_threads()}, tiny SVD {args.frames}x4x{args.size}x{args.size}, "
          f"{args.steps} euler steps, cfg {args.cfg}, {args.repeats} interleaved repeats")
    for label, index in (("wall-clock", 0), ("process CPU", 1)):
        k = [t[index] for t in runs[run_ksampler]]
        late_t = [t[index] for t in runs[run_late_start]]
        ratios = [b / a for a, b in zip(k, late_t)]
        print(f"{label:>11}: KSampler median {statistics.median(k) * 1000:.1f} ms, Late Start Sampler median "
              f"{statistics.median(late_t) * 1000:.1f} ms; ratio median {statistics.median(ratios):.4f} "
              f"(min {min(ratios):.4f}, max {max(ratios):.4f})")
    setup = setup_cost(host, model, latent, stats, args.steps)
    k_median = statistics.median(t[0] for t in runs[run_ksampler])
    ratio = statistics.median(b[0] / a[0] for a, b in zip(runs[run_ksampler], runs[run_late_start]))
    print(f"Late Start's own extra work (family, sigmas, Analytic-Init noise): {setup * 1000:.2f} ms per run "
          f"= {setup / k_median:.4%} of a KSampler run")
    print(f"RESULT ratio Late Start / KSampler (median, wall-clock) = {ratio:.4f}; target <= 1.02: {'met' if ratio <= 1.02 else 'NOT met'}")
    return 0


def setup_cost(host, model, latent, stats, steps: int, loops: int = 50) -> float:
    """Seconds per run of what the Late Start Sampler does besides ComfyUI's sampling."""
    import torch

    from cil_comfy.sampling import NATIVE_SCHEDULER, AnalyticInitNoise, LateStartPlan

    start = time.perf_counter()
    with torch.inference_mode():
        for _ in range(loops):
            plan = LateStartPlan.make(model, steps, 0.85, NATIVE_SCHEDULER, "paper", "strict", stats)
            AnalyticInitNoise(1, model, plan.spec).generate_noise(latent)
    return (time.perf_counter() - start) / loops


def load_pack_stats(host, stats):
    """Round-trip the stats through a file and the pack's own loader, as a graph would."""
    from cil_core.stats_io import save_stats

    folder = Path(tempfile.mkdtemp(prefix="cil-bench-stats-"))
    save_stats(stats, folder / "bench.safetensors")
    host.folder_paths.folder_names_and_paths["cil_stats"] = ([str(folder)], {".safetensors"})
    return host.node_classes["CIL_LoadAnalyticStats"].execute(stats_name="bench.safetensors")[0]


if __name__ == "__main__":
    sys.exit(main())
