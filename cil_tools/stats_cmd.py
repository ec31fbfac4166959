"""``cil stats``: inspect, convert and fit Analytic-Init stats files."""

from __future__ import annotations

import argparse
import json

HELP = "inspect, convert (official → ours) and resample Analytic-Init stats files"


def register(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help=HELP, description=HELP + ". Files are safetensors; pickles are never read.")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="print shape, v = tr Cov/d, per-channel variances and metadata as JSON")
    show.add_argument("file", help="a stats .safetensors file (ours or an official DynamiCrafter/SVD one)")
    conv = sub.add_parser("convert", help="rewrite any readable stats file in this pack's format")
    conv.add_argument("file", help="input stats .safetensors")
    conv.add_argument("output", help="output .safetensors (written atomically)")
    conv.add_argument("--family", default="", help="family name to record, e.g. vp_discrete for DynamiCrafter")
    fit = sub.add_parser("fit", help="resample E[x0] to another frame count / latent size (documented rule)")
    fit.add_argument("file", help="input stats .safetensors")
    fit.add_argument("output", help="output .safetensors")
    fit.add_argument("--shape", required=True, help="target latent shape C,F,H,W, e.g. 4,16,40,64")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cil_core.stats_io import check_shape, fit_stats_to_latent, load_stats, save_stats
    from cil_core.validation import CILValueError

    from .outputs import output_file

    if args.action in ("convert", "fit"):
        output_file("OUTPUT", args.output)
    shape = parse_shape(args.shape, CILValueError) if args.action == "fit" else None
    if shape is not None:
        check_shape(shape)  # before the input is read
    stats = load_stats(args.file)
    if args.action == "show":
        info = {
            "shape_CFHW": list(stats.shape),
            "tr_cov_d": stats.tr_cov_d,
            "channel_var": [round(float(v), 6) for v in stats.channel_var],
            "mean_of_E": float(stats.mean.mean()),
            "count": stats.count,
            "resumable": stats.m2 is not None,
            "meta": stats.meta,
        }
        print(json.dumps(info, indent=2))
        return 0
    if args.action == "convert":
        if args.family:
            stats.meta["family"] = args.family
        print(save_stats(stats, args.output))
        return 0
    print(save_stats(fit_stats_to_latent(stats, shape, policy="resample"), args.output))
    return 0


def parse_shape(text: str, error) -> tuple[int, ...]:
    """--shape C,F,H,W: four whole numbers, each at least 1."""
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4:
        raise error(f"--shape {text!r}: expected four integers C,F,H,W such as 4,16,40,64.")
    if min(shape) < 1:
        raise error(f"--shape {text!r}: every dimension must be at least 1 (C,F,H,W = channels, frames, latent height, width).")
    return shape
