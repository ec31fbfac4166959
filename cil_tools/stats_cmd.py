"""``cil stats``: estimate (headless), merge, inspect, convert and fit Analytic-Init stats files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "estimate (headless, resumable, several processes), merge, inspect, convert and resample Analytic-Init stats files"
ESTIMATE_HELP = (
    "E[x0] and tr Cov/d of a folder or CSV of videos, through ComfyUI's own VAE and the model's latent format "
    "(stats live in model space: latent_format.process_in(vae.encode(frames))). Needs ComfyUI ($COMFYUI_PATH). "
    "The output is rewritten atomically every --every videos; --resume continues it and never counts a video twice. "
    "Several processes: torchrun --nproc_per_node N -m cil_tools.cli stats estimate ... (rank 0 writes)."
)


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
    est = sub.add_parser("estimate", help="estimate stats from videos through ComfyUI's VAE (headless)", description=ESTIMATE_HELP)
    est.add_argument("--videos", required=True, metavar="FOLDER|CSV", help="a folder of videos (searched recursively) or a CSV "
                     "(WebVid-style: a path/video column, or videoid + page_dir)")
    est.add_argument("--checkpoint", default="", metavar="FILE", help="a model checkpoint with its VAE (ComfyUI's checkpoint loader)")
    est.add_argument("--vae", default="", metavar="FILE", help="a VAE file (ComfyUI's VAELoader); with --checkpoint it replaces the checkpoint's VAE")
    est.add_argument("--model-kind", default="", help="with --vae alone: the model whose latent format to use: svd, dynamicrafter, "
                     "wan2.1, wan2.2-a14b, wan2.2-5b, ltxv, hunyuanvideo, or a comfy.latent_formats class (SD15, Wan21, ...)")
    est.add_argument("--frames", type=int, required=True, help="pixel frames per clip (the first ones of each video)")
    est.add_argument("--width", type=int, required=True, help="clip width in pixels (resize to cover, centre crop)")
    est.add_argument("--height", type=int, required=True, help="clip height in pixels")
    est.add_argument("--fps", type=float, default=0.0, help="resample videos to this rate first (0: their own)")
    est.add_argument("--stride", type=int, default=1, help="then take every n-th frame")
    est.add_argument("--out", default="analytic_stats.safetensors", help="output .safetensors (written atomically)")
    est.add_argument("--resume", action="store_true", help="add the videos not yet in --out to it (through its Welford state)")
    est.add_argument("--every", type=int, default=50, help="rewrite --out every N videos per process (a kill loses at most N)")
    est.add_argument("--shard", default="0/1", metavar="K/N", help="only every N-th video from the K-th (K = 0..N-1): one job "
                     "of a cluster array; join the shard files with cil stats merge")
    est.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where ComfyUI runs the VAE")
    est.add_argument("--comfyui-path", default="", help="ComfyUI folder (else $COMFYUI_PATH or an importable ComfyUI)")
    merge = sub.add_parser("merge", help="merge stats estimated apart (disjoint shards) into one, through their Welford state")
    merge.add_argument("files", nargs="+", help="stats files of this pack (with m2), of one latent format, size and frame count")
    merge.add_argument("--out", required=True, help="output .safetensors (written atomically)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cil_core.stats_io import check_shape, fit_stats_to_latent, load_stats, save_stats
    from cil_core.validation import CILValueError

    from .outputs import output_file

    if args.action in ("convert", "fit"):
        output_file("OUTPUT", args.output)
    if args.action in ("estimate", "merge"):
        output_file("--out", args.out)
    if args.action == "estimate":
        return estimate(args)
    if args.action == "merge":
        from cil_core.stats_merge import merge_stats

        merged = merge_stats([(f, load_stats(f)) for f in args.files])
        print(save_stats(merged, args.out))
        return 0
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


def estimate(args: argparse.Namespace) -> int:
    from cil_comfy.stats_headless import Job, estimate_videos, load_encoder
    from cil_core.validation import CILValueError
    from cil_train.distributed import from_env

    for name in ("frames", "width", "height", "stride", "every"):
        if getattr(args, name) < 1:
            raise CILValueError(f"--{name} {getattr(args, name)}: must be an integer >= 1.")
    k, _, n = args.shard.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise CILValueError(f"--shard {args.shard!r}: expected K/N with 0 <= K < N, e.g. 0/8.")
    job = Job(args.videos, Path(args.out), args.frames, args.width, args.height, args.fps, args.stride, args.every,
              (int(k), int(n)), args.resume)
    with from_env(args.device) as dist:  # before ComfyUI boots: it picks this process's GPU
        model, vae, fmt = load_encoder(args.checkpoint, args.vae, args.model_kind, args.comfyui_path, args.device)
        stats = estimate_videos(job, model, vae, fmt, dist)
    if stats is not None:
        skipped = json.loads(stats.meta["skipped"])
        print(f"cil stats estimate: {stats.count} video(s) in {job.out} ({len(skipped)} skipped, listed in its metadata); "
              f"tr Cov/d = {stats.tr_cov_d:.6g}")
    return 0
