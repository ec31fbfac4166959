"""Convergence of the toy's perfect-denoiser reference (cil_toy.reference) in the number of
candidates K, and the bias of the naive estimator (prior futures + the real video).

For ``--videos`` moving held-out videos and the demo's t grid, one set of noisy inputs x_t (4
draws per t) is fixed; the reference ratio FDE(E[x0|x_t, y0])/FDE(x0) is estimated with each K
(4 replicates of K candidates each, so a Monte-Carlo SE comes from their spread), and the naive
estimator is run with the largest K. Printed per t: the mean over videos at each K with its MC SE,
the smallest effective sample size, and naive − reference (largest K) ± SE over videos.

    python benchmarks/bench_reference.py                 # 4 videos, K = 256, 1024, 4096
    python benchmarks/bench_reference.py --k 128 512 --videos 2
"""

from __future__ import annotations

import argparse
import math
import time


def main(argv: list[str] | None = None) -> dict:
    import torch

    from cil_core.probe import probe_leakage
    from cil_toy.probe_suite import DEFAULT_T, moving_held_out
    from cil_toy.reference import ReferenceConfig, reference_curves, reference_posterior
    from cil_toy.weights_io import load_toy_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="edm_baseline", help="shipped toy model name or weights path")
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--k", type=int, nargs="+", default=[256, 1024, 4096], help="candidates per replicate")
    p.add_argument("--samples", type=int, default=4, help="noise draws per t")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = load_toy_model(args.model)
    scenes, motion, latents = moving_held_out(model, args.videos)
    t = list(DEFAULT_T)
    ratios = {k: [] for k in args.k}
    mc = {k: [] for k in args.k}
    ess = {k: [] for k in args.k}
    naive, seconds = [], {k: 0.0 for k in args.k}
    for v in range(args.videos):
        x0 = latents[v]
        one = probe_leakage(model.denoiser.bind(x0[:, 0]), x0, model.family, t, args.samples, generator=torch.Generator().manual_seed(v),
                            max_batch=64, keep_inputs=True)
        x, sig = one.inputs.flatten(0, 1), one.sigma.repeat_interleave(args.samples)
        for k in args.k:
            t0 = time.perf_counter()
            est = reference_posterior(scenes[v : v + 1], motion[v], x, sig, model.family, model.world, model.codec,
                                      ReferenceConfig(candidates=k), generator=torch.Generator().manual_seed(100 + v))
            seconds[k] += time.perf_counter() - t0
            cur = reference_curves(est, x0, len(t))
            ratios[k].append(cur.raw.mean(1))
            mc[k].append(cur.raw_mc_se)
            ess[k].append(cur.ess_min)
        est = reference_posterior(scenes[v : v + 1], motion[v], x, sig, model.family, model.world, model.codec,
                                  ReferenceConfig(candidates=max(args.k), replicates=1, pilot=0), generator=torch.Generator().manual_seed(200 + v),
                                  naive=True)
        naive.append(reference_curves(est, x0, len(t)).raw.mean(1))
    big = max(args.k)
    head = "  t    " + "".join(f"  ref K={k:<5} (MC SE)  ess_min" for k in args.k) + "   naive - ref(K max) ± SE"
    print(f"reference ratio, mean over {args.videos} videos ({args.model}); MC SE from 4 replicates")
    print(head)
    out = {"t": t, "k": args.k, "seconds_per_video": {k: seconds[k] / args.videos for k in args.k}}
    for i, ti in enumerate(t):
        cells = ""
        for k in args.k:
            r = torch.stack(ratios[k])[:, i]
            m = torch.stack(mc[k])[:, i]
            cells += f"  {float(r.mean()):8.4f} ({float(m.pow(2).sum().sqrt() / len(m)):.4f})  {float(torch.stack(ess[k])[:, i].min()):7.1f}"
        d = torch.stack(naive)[:, i] - torch.stack(ratios[big])[:, i]
        print(f"{ti:5.2f}  {cells}   {float(d.mean()):+.4f} ± {float(d.std() / math.sqrt(len(d))):.4f}")
    print("seconds per video: " + ", ".join(f"K={k}: {out['seconds_per_video'][k]:.1f}" for k in args.k))
    out["ratio"] = {k: torch.stack(ratios[k]).mean(0).tolist() for k in args.k}
    out["naive_bias"] = (torch.stack(naive) - torch.stack(ratios[big])).mean(0).tolist()
    return out


if __name__ == "__main__":
    main()
