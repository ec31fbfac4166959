"""Leakage Probe: batched evaluation vs. a per-t loop, same model, same (t, sample) pairs.

Runs in a real ComfyUI (COMFYUI_PATH) on the tiny random SVD model of the host tests, through
the node's own engine (``run_probe``: ComfyUI's CFGGuider + the probe's custom SAMPLER):

    batched   one guider preparation, all T·S noisy videos in ceil(T·S / max_batch) model calls
              (max_batch = the node's default, 8)
    one-call  one guider preparation, all T·S noisy videos in one model call
    per-t     one guider preparation per t (as a SamplerCustomAdvanced one-step loop would do),
              that t's S videos in one model call
    per-pair  one guider preparation per t and one model call per (t, sample)

Timings are interleaved (batched, one-call, per-t, per-pair, batched, …); the median and the best of
--repeats are reported, so the ratios are measured side by side in one run.

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfy-venv/bin/python benchmarks/bench_probe_batching.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def boot_host():
    """The host tier's in-process ComfyUI (tests/host/host_boot.py) with this pack loaded, its tiny
    models (tests/host/tiny_models.py) and the probe's engine."""
    for entry in (REPO / "tests" / "host", REPO):  # appended: the boot puts ComfyUI's root first, the repo last
        if str(entry) not in sys.path:
            sys.path.append(str(entry))
    import host_boot
    import tiny_models

    problem = host_boot.unavailable()
    if problem:
        sys.exit(f"bench_probe_batching: {problem[1]}")
    sys.argv = sys.argv[:1]
    host_boot.Host(Path(tempfile.mkdtemp(prefix="cil-bench-")))
    import cil_comfy.probe as engine

    return tiny_models, engine


def moving_latent(frames: int, size: int):
    import torch

    gen = torch.Generator().manual_seed(1)
    texture = torch.randn(4, size, size, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return torch.stack([texture + 5 * torch.exp(-((yy - size / 2) ** 2 + (xx - f) ** 2) / 3) for f in range(frames)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=10, help="number of probe times t")
    parser.add_argument("--samples", type=int, default=4, help="samples per t")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=8, help="latent height = width")
    parser.add_argument("--cfg", type=float, default=2.5, help="> 1: cond and uncond both run")
    parser.add_argument("--max-batch", type=int, default=8, help="videos per call in the batched run (the node's default)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    tiny_models, engine = boot_host()
    import torch

    model = tiny_models.tiny_svd(0)
    positive, negative = tiny_models.svd_conditioning(args.frames, args.size, args.size)
    latent = moving_latent(args.frames, args.size)
    family = engine.detect_family(model)
    ts = [0.1 + 0.9 * i / max(args.grid - 1, 1) for i in range(args.grid)]
    pairs = args.grid * args.samples
    batch = args.max_batch

    def probe(t_grid, max_batch):
        return engine.run_probe(model, positive, negative, args.cfg, latent, "TCHW", family, t_grid, args.samples, 0, max_batch)

    runs = {
        "batched": lambda: probe(ts, batch),
        "one-call": lambda: probe(ts, pairs),
        "per-t": lambda: [probe([t], args.samples) for t in ts],
        "per-pair": lambda: [probe([t], 1) for t in ts],
    }
    times = {name: [] for name in runs}
    with torch.inference_mode():
        for run in runs.values():  # warm-up: model load, first-call allocations
            run()
        for _ in range(args.repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)

    med = {name: statistics.median(v) for name, v in times.items()}
    best = {name: min(v) for name, v in times.items()}
    print(f"tiny SVD (0.6 M params), {args.frames} frames of {args.size}x{args.size} latents, cfg {args.cfg}, "
          f"{args.grid} t x {args.samples} samples = {pairs} one-step predictions; torch threads {torch.get_num_threads()}")
    print(f"batched  : {med['batched'] * 1e3:8.1f} ms  (1 guider preparation, {-(-pairs // batch)} model calls of <= {batch} videos)")
    print(f"one-call : {med['one-call'] * 1e3:8.1f} ms  (1 guider preparation, 1 model call)")
    print(f"per-t    : {med['per-t'] * 1e3:8.1f} ms  ({args.grid} preparations, {args.grid} calls)")
    print(f"per-pair : {med['per-pair'] * 1e3:8.1f} ms  ({args.grid} preparations, {pairs} calls)")
    print(f"batched / per-t loop    = {med['batched'] / med['per-t']:.3f}  (median)   {best['batched'] / best['per-t']:.3f}  (best of {args.repeats})")
    print(f"batched / per-pair loop = {med['batched'] / med['per-pair']:.3f}  (median)   {best['batched'] / best['per-pair']:.3f}  (best of {args.repeats})")
    print(f"one-call / per-t loop   = {med['one-call'] / med['per-t']:.3f}  (median)   {best['one-call'] / best['per-t']:.3f}  (best of {args.repeats})")
    print(f"(median of {args.repeats} interleaved repeats; raw seconds: " + ", ".join(f"{k}={[round(x, 4) for x in v]}" for k, v in times.items()) + ")")


if __name__ == "__main__":
    main()
