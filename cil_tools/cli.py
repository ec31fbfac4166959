"""The ``cil`` command: ``cil {stats,probe,train,demo,toy-train,readme-tables} --help``."""

from __future__ import annotations

import argparse
import importlib
import sys

from cil_core.validation import CILValueError

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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CILValueError as exc:
        print(f"cil {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cil {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
