"""``cil demo``: run the whole paper on the toy I2V world and write a report folder.

With no arguments it uses the shipped toy weights and writes ./cil-report: report.md (metrics
table, probe numbers, and the answers to "does the toy reproduce the paper?"), metrics.json,
probe.png, motion_fidelity.png and samples.gif.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "run the whole paper on the toy I2V world and write a report folder"


def register(subparsers, name: str) -> None:
    from cil_toy.demo import DemoConfig

    d = DemoConfig()
    p = subparsers.add_parser(name, help=HELP, description=HELP + " (shipped toy weights by default).",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=d.out, help="report folder (created; files inside are replaced)")
    p.add_argument("--samples", type=int, default=d.samples, help="held-out videos generated per method")
    p.add_argument("--steps", type=int, default=d.steps, help="Euler sampling steps per video")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the initial noise and the probe's noise")
    p.add_argument("--m", type=float, nargs="+", default=list(d.m_values), metavar="M",
                   help="late-start times as fractions of T (every start rule's M is added)")
    p.add_argument("--rule", choices=("plateau", "threshold"), default=d.probe_rule, help="the start rule whose M the report recommends (both are checked)")
    p.add_argument("--threshold", type=float, default=d.probe_threshold, help="leak threshold of the start rules")
    p.add_argument("--plateau-tolerance", type=float, default=d.plateau_tolerance, help="plateau rule's tolerance (share of the collapse)")
    p.add_argument("--probe-videos", type=int, default=d.probe_videos, help="held-out videos the Leakage Probe averages over")
    p.add_argument("--probe-samples", type=int, default=d.probe_samples, help="noise draws per probe time (>= 2)")
    p.add_argument("--regen-samples", type=int, default=d.regen_samples, help="regeneration-probe draws per probe time")
    p.add_argument("--regen-steps", type=int, default=d.regen_steps, help="Euler steps of each regeneration")
    p.add_argument("--reference-candidates", type=int, default=d.reference_candidates,
                   help="candidate futures per replicate of the perfect-denoiser reference (0: no reference)")
    p.add_argument("--curve", choices=("one_step", "corrected", "regen"), default=d.probe_curve,
                   help="the probe curve the recommended M is read from (every curve is checked)")
    p.add_argument("--family", choices=("edm", "vp"), default=d.family, help="which shipped pair: EDM (SVD-like) or VP (DynamiCrafter-like)")
    p.add_argument("--weights-dir", type=Path, default=None, help="folder written by 'cil toy-train' (default: the shipped weights)")
    p.add_argument("--baseline", default=None, help="explicit baseline weights file (overrides --family/--weights-dir)")
    p.add_argument("--timenoise", default=None, help="explicit TimeNoise weights file")
    p.add_argument("--bootstrap", type=int, default=d.bootstrap, help="bootstrap resamples for the Fréchet distance's SE")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from cil_toy.demo import DemoConfig, run_demo
    from cil_toy.report import write_report

    from cil_core.validation import CILValueError

    from .numbers import SEED_MAX, THREADS_MAX, check_range
    from .outputs import output_folder

    check_range(args, samples=(1, 100_000), steps=(1, 100_000), seed=(0, SEED_MAX), m=(1e-6, 1), threshold=(1e-6, 100),
                plateau_tolerance=(0, 0.999), probe_videos=(1, 10_000), probe_samples=(1, 10_000), bootstrap=(1, 1_000_000),
                threads=(1, THREADS_MAX))
    output_folder("--out", args.out)  # before minutes of sampling
    for flag, folder in (("--weights-dir", args.weights_dir),):
        if folder is not None and not folder.is_dir():
            raise CILValueError(f"{flag} {str(folder)!r} is not a folder; give the folder 'cil toy-train --out' wrote.")
    torch.set_num_threads(max(1, args.threads))
    cfg = DemoConfig(out=args.out, samples=args.samples, steps=args.steps, seed=args.seed, m_values=tuple(args.m),
                     probe_videos=args.probe_videos, probe_samples=args.probe_samples, regen_samples=args.regen_samples,
                     regen_steps=args.regen_steps, reference_candidates=args.reference_candidates, probe_curve=args.curve, family=args.family,
                     weights_dir=args.weights_dir, baseline=args.baseline, timenoise=args.timenoise, bootstrap=args.bootstrap,
                     probe_rule=args.rule, probe_threshold=args.threshold, plateau_tolerance=args.plateau_tolerance)
    result = run_demo(cfg, progress=not args.quiet)
    paths = write_report(result)
    print(f"report written to {paths['report.md']}")
    doc = json.loads(paths["metrics.json"].read_text())
    for key in ("leak", "late_start", "analytic_init", "timenoise", "start"):
        print(f"  {key:>14}: {doc['answers'][key]['verdict']}")
    for role, check in doc["start_check"].items():
        picks = ", ".join(f"{name} M={v['M']:g} ({'in' if v['in_band'] else 'outside'} band)" for name, v in check["rules"].items())
        print(f"  {role:>14}: best M={check['best_M']:g}, band {check['band']}; {picks}")
    print(f"  ({doc['uncertainty']})")
    return 0
