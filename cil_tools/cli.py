"""The ``cil`` command: ``cil {stats,probe,train,demo,toy-train,readme-tables} --help``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cil_core.validation import CILValueError, shown

# subcommand -> module in cil_tools that defines register(subparsers) and run(args)
SUBCOMMANDS = {
    "stats": "stats_cmd",
    "probe": "probe_cmd",
    "train": "train_cmd",
    "demo": "demo_cmd",
    "toy-train": "toy_train_cmd",
    "readme-tables": "readme_tables_cmd",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cil",
        description="Conditional image leakage (CIL) tools for image-to-video diffusion models: "
        "Analytic-Init stats, the Leakage Probe, TimeNoise fine-tuning and the toy-world demo.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module in SUBCOMMANDS.items():
        importlib.import_module(f"cil_tools.{module}").register(subparsers, name)
    return parser


def rank_tag() -> str:
    """" (rank r of W)" in a process that torchrun started among several, else ""."""
    world, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK", "0")
    return f" (rank {rank} of {world})" if world.isdigit() and int(world) > 1 else ""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CILValueError as exc:
        print(f"cil {args.command}: error: {exc}{rank_tag()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cil {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the file system said no (a name too long, a full disk, no permission): one line too
        where = f": {shown(exc.filename, 120)}" if exc.filename else ""
        print(f"cil {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
