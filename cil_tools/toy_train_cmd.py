"""``cil toy-train``: train the toy world's model pair with the shipped recipe.

With the defaults this makes a pair equivalent to ``cil_toy/weights/`` (same recipe and world
distribution; the shipped files predate the scene/motion world, so not the same bits; pass
``--out cil_toy/weights`` to replace them): Analytic-Init stats, an EDM pre-train, the EDM baseline and TimeNoise fine-tunes (and
the VP pair with ``--vp``). Every file records this exact command and its seed.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

HELP = "train the toy world's model pair (baseline, TimeNoise) with the shipped recipe"


def register(subparsers, name: str) -> None:
    from cil_toy.train import Recipe

    d = Recipe()
    p = subparsers.add_parser(name, help=HELP, description=HELP + ". The defaults are the shipped recipe (the shipped files predate the scene/motion world: a rerun gives an equivalent pair, not the same bits).",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("toy-weights"), help="folder for the weights and stats (created)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of data, initialisation and noise")
    p.add_argument("--pretrain-steps", type=int, default=d.pretrain_steps, help="EDM pre-training steps (shared by both models)")
    p.add_argument("--finetune-steps", type=int, default=d.finetune_steps, help="steps of each EDM fine-tune (baseline, TimeNoise)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="videos per step")
    p.add_argument("--stats-videos", type=int, default=d.stats_videos, help="training videos for the Analytic-Init stats")
    p.add_argument("--beta-m", type=float, default=d.edm_beta_m, help="TimeNoise β_m of the EDM model, in latent std units")
    p.add_argument("--vp", action="store_true", help="also train the VP (DynamiCrafter-like) baseline and TimeNoise pair")
    p.add_argument("--vp-beta-m", type=float, default=100.0,
                   help="TimeNoise β_m of the VP model (with --vp); DynamiCrafter's official value on a latent of std ≈ 1")
    p.add_argument("--vp-steps", type=int, default=d.vp_steps, help="steps of each VP fine-tune (with --vp)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest on a shared 2-core machine; bit-exact reruns need the same value)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from cil_toy.train import Recipe, train_shipped_set

    from .numbers import SEED_MAX, THREADS_MAX, check_range
    from .outputs import output_folder

    check_range(args, seed=(0, SEED_MAX), pretrain_steps=(1, 10_000_000), finetune_steps=(1, 10_000_000), batch_size=(1, 65_536),
                stats_videos=(1, 10_000_000), beta_m=(0, 1e6), vp_beta_m=(0, 1e6), vp_steps=(1, 10_000_000), threads=(1, THREADS_MAX))
    output_folder("--out", args.out)
    torch.set_num_threads(max(1, args.threads))
    recipe = Recipe(
        seed=args.seed, pretrain_steps=args.pretrain_steps, finetune_steps=args.finetune_steps, batch_size=args.batch_size,
        stats_videos=args.stats_videos, edm_beta_m=args.beta_m, vp_beta_m=args.vp_beta_m if args.vp else None,
        vp_steps=args.vp_steps,
    )
    written = train_shipped_set(recipe, args.out, command=canonical_command(args), threads=args.threads, progress=not args.quiet)
    for path, seconds in written:
        print(f"wrote {path}  ({seconds:.0f} s)")
    return 0


def canonical_command(args) -> str:
    """The full command line of ``args``, every option explicit (stored in the weights' metadata,
    so the files stay reproducible even if the defaults change)."""
    parts = ["cil toy-train", f"--out {shlex.quote(str(args.out))}", f"--seed {args.seed}",
             f"--pretrain-steps {args.pretrain_steps}", f"--finetune-steps {args.finetune_steps}",
             f"--batch-size {args.batch_size}", f"--stats-videos {args.stats_videos}", f"--beta-m {args.beta_m:g}",
             f"--threads {args.threads}"]
    if args.vp:
        parts += ["--vp", f"--vp-beta-m {args.vp_beta_m:g}", f"--vp-steps {args.vp_steps}"]
    return " ".join(parts)
