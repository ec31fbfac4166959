"""``cil readme-tables``: rewrite README's toy-world tables from the demo's saved metrics.json files.

    cil demo --out cil-report && cp cil-report/metrics.json docs/toy_results/seed0.json
    cil readme-tables                 # rewrite README.md's marked blocks from docs/toy_results/*.json
    cil readme-tables --check         # exit 1 (naming the blocks) when README differs from the results
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "rewrite (or --check) README's toy-world tables from saved 'cil demo' metrics.json files"


def register(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("docs/toy_results"), help="folder of metrics .json files (default docs/toy_results)")
    p.add_argument("--readme", type=Path, default=Path("README.md"), help="the README to rewrite (default README.md)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs from the results")
    p.set_defaults(func=run)


def run(args) -> int:
    from cil_core.atomic import atomic_write_bytes
    from cil_core.validation import CILValueError
    from cil_toy.readme_tables import load_results, render_blocks, rewrite, stale_blocks

    if not args.readme.is_file():
        raise CILValueError(f"--readme {str(args.readme)!r} does not exist.")
    text = args.readme.read_text(encoding="utf-8")
    blocks = render_blocks(load_results(args.results))
    new = rewrite(text, blocks)  # also refuses a README without the markers
    if args.check:
        stale = stale_blocks(text, blocks)
        print("README tables match the results" if not stale else f"README blocks out of date: {', '.join(stale)} (run 'cil readme-tables')")
        return 1 if stale else 0
    atomic_write_bytes(args.readme, new.encode("utf-8"))
    print(f"rewrote {len(blocks)} blocks of {args.readme} from {args.results}")
    return 0
