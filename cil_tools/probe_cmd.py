"""``cil probe``: measure conditional image leakage of a model on a video (Leakage Probe).

Two sources of a model:
    --toy baseline|timenoise   the toy world's shipped models (cil_toy: EDM/SVD-like by default;
                               also vp_baseline, vp_timenoise, or a toy .safetensors path),
                               probed on held-out videos; pure torch, no ComfyUI.
    --checkpoint FILE --video V  an SVD image-to-video checkpoint, loaded and conditioned with
                               ComfyUI's own code (comfy.sd.load_checkpoint_guess_config,
                               SVD_img2vid_Conditioning) from $COMFYUI_PATH, and probed by the
                               Leakage Probe node's own engine (cil_comfy.probe.measure).
--mode one_step+regen adds the regeneration probe (x_t sampled back to 0 in --regen-steps
steps: the toy's Euler sampler, or ComfyUI's --sampler for a checkpoint); --recommend-from
picks the curve the start rule reads. Writes <out>/<name>.png (plot), .json and .csv (table)
and prints the table (± is one standard error).
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

HELP = "measure conditional image leakage of a model on a video (Leakage Probe)"


def register(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--toy", metavar="MODEL", help="probe a toy-world model on held-out videos: baseline, timenoise (EDM), "
                     "vp_baseline, vp_timenoise or a toy .safetensors file")
    src.add_argument("--checkpoint", metavar="FILE", help="an SVD image-to-video checkpoint (needs $COMFYUI_PATH)")
    p.add_argument("--video", metavar="PATH", help="reference video (--checkpoint): a GIF/WebP, a folder of frame images, or mp4/webm/… (needs PyAV)")
    p.add_argument("--videos", type=int, default=4, help="--toy: number of held-out videos (their ratios are pooled; default 4)")
    g = p.add_argument_group("probe")
    g.add_argument("--count", type=int, default=10, help="number of probe times t (default 10)")
    g.add_argument("--t-min", type=float, default=0.1, help="smallest t in (0, 1] (default 0.1)")
    g.add_argument("--t-max", type=float, default=1.0, help="largest t in (0, 1] (default 1.0)")
    g.add_argument("--samples", type=int, default=4, help="noise draws per t (default 4)")
    g.add_argument("--seed", type=int, default=0, help="seed of the forward-process noise (default 0)")
    g.add_argument("--cfg", type=float, default=1.0, help="CFG of the one-step prediction; 1 = conditional model, as in the paper (default 1)")
    g.add_argument("--rule", choices=("plateau", "threshold"), default="plateau", help="how M is read off the curve: plateau (lower edge of the "
                   "large-t plateau; default) or threshold (largest t whose ratio stays >= threshold)")
    g.add_argument("--threshold", type=float, default=0.5, help="leak threshold: a mean motion ratio below it counts as leaking (default 0.5)")
    g.add_argument("--plateau-tolerance", type=float, default=0.1, help="plateau rule: share of the collapse still ahead on the plateau (default 0.1)")
    g.add_argument("--max-batch", type=int, default=8, help="noisy videos per model call (default 8)")
    g.add_argument("--mode", choices=("one_step", "one_step+regen"), default="one_step",
                   help="one_step: the paper's probe; one_step+regen: also regenerate x_t back to 0 and compare motion (default one_step)")
    g.add_argument("--regen-steps", type=int, default=10, help="sampling steps of each regeneration (default 10)")
    g.add_argument("--regen-samples", type=int, default=2, help="regenerations per t (default 2)")
    g.add_argument("--sampler", default="euler", help="--checkpoint: the ComfyUI sampler that regenerates (default euler; the toy uses Euler)")
    g.add_argument("--recommend-from", choices=("one_step", "corrected", "regen"), default="one_step",
                   help="the curve the start rule reads (default one_step, the paper's)")
    g.add_argument("--pixel-metric", choices=("auto", "off"), default="auto", help="auto: add the OpenCV optical-flow ratio when OpenCV is installed")
    g.add_argument("--out", default="cil_probe", help="output folder (default ./cil_probe)")
    g.add_argument("--name", default="", help="file stem (default: toy_<model> or the checkpoint's name)")
    s = p.add_argument_group("--checkpoint (SVD) conditioning")
    s.add_argument("--frames", type=int, default=14, help="frames taken from the video (default 14)")
    s.add_argument("--stride", type=int, default=1, help="take every n-th frame (default 1)")
    s.add_argument("--width", type=int, default=1024, help="frame width (default 1024)")
    s.add_argument("--height", type=int, default=576, help="frame height (default 576)")
    s.add_argument("--fps", type=int, default=6, help="SVD fps conditioning (default 6)")
    s.add_argument("--motion-bucket", type=int, default=127, help="SVD motion_bucket_id (default 127)")
    s.add_argument("--augmentation", type=float, default=0.0, help="SVD augmentation_level (default 0)")
    s.add_argument("--device", choices=("auto", "cpu"), default="auto", help="ComfyUI device (default auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cil_core import probe_report as report_lib
    from cil_media.charts import png_bytes
    from cil_media.probe_plot import render_report

    from .numbers import SEED_MAX, check_range
    from .outputs import output_folder, plain_name

    for name in ("count", "samples", "max_batch", "videos", "regen_steps", "regen_samples"):
        if getattr(args, name) < 1:
            raise _error(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1.")
    check_range(args, seed=(0, SEED_MAX - 10_000), cfg=(0, 100), frames=(2, 10_000), stride=(1, 10_000), width=(8, 16384),
                height=(8, 16384), fps=(1, 1000), motion_bucket=(0, 1023), augmentation=(0, 10))
    if args.count > MAX_COUNT:
        raise _error(f"--count={args.count} is more than {MAX_COUNT} probe times; a curve needs tens (default 10).")
    t_grid = report_lib.grid(args.t_min, args.t_max, args.count)
    start_rule(args)  # refuse a bad rule before any model work
    if args.recommend_from == "regen" and args.mode != "one_step+regen":
        raise _error("--recommend-from regen needs --mode one_step+regen (the regeneration probe).")
    if args.recommend_from == "corrected" and args.samples < 2:
        raise _error(f"--recommend-from corrected needs --samples >= 2 (got {args.samples}): the noise is removed by comparing draws.")
    output_folder("--out", args.out)
    plain_name("--name", args.name)
    if args.toy:
        report, stem = probe_toy(args, t_grid), args.name or f"toy_{Path(TOY_ALIASES.get(args.toy, args.toy)).stem}"
    else:
        report, stem = probe_checkpoint(args, t_grid), args.name or Path(args.checkpoint).stem
    paths = report_lib.save_report(report, Path(args.out) / stem, png_bytes(render_report(report)))
    print(report_lib.report_text(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


MAX_COUNT = 10_000


def start_rule(args: argparse.Namespace):
    from cil_core.start_rule import StartRule

    return StartRule(args.rule, args.threshold, args.plateau_tolerance)


def _error(message: str):
    from cil_core.validation import CILValueError

    return CILValueError(message)


@contextmanager
def progress_bar(total: int, label: str):
    """A tqdm bar driven by the probe's progress(done, total) callback; closed (and its line
    cleared) however the block ends, so an error message starts on a clean line."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="video", leave=False)
    try:
        yield lambda done, _total: bar.update(done - bar.n)
    finally:
        bar.close()


# --- the toy world ---------------------------------------------------------------------------------

TOY_ALIASES = {"baseline": "edm_baseline", "timenoise": "edm_timenoise"}


def load_toy(which: str):
    """A cil_toy ToyModel (net, family, codec, world) by shipped name, alias or path."""
    from cil_toy.weights_io import SHIPPED, load_toy_model, weights_path

    name = TOY_ALIASES.get(which, which)
    if name in SHIPPED and not weights_path(name).is_file():
        vp = name.startswith("vp_")
        make = "cil toy-train --vp --out DIR" if vp else "cil toy-train --out DIR"
        raise _error(f"--toy {which}: the {'VP toy models are not shipped' if vp else 'shipped weights are missing'}; make them with "
                     f"'{make}' and probe the file: --toy DIR/{SHIPPED[name]}.")
    if name not in SHIPPED and not Path(name).is_file():
        raise _error(f"--toy {which!r} is neither a toy model name ({', '.join(sorted(set(SHIPPED) | set(TOY_ALIASES)))}) "
                     "nor an existing .safetensors file.")
    return load_toy_model(name)


def moving_held_out_latents(toy, count: int):
    """The first ``count`` held-out videos that move at all (the toy world has static scenes,
    whose motion ratio is undefined), as model-space latents [count, C, F, h, w]."""
    from cil_core.motion import frame_difference_energy
    from cil_toy.data import held_out_set

    pixels, _ = held_out_set(4 * count, toy.world)
    latents = toy.codec.encode(pixels)
    moving = frame_difference_energy(latents, time_dim=2, batch_dims=1) > 0
    if int(moving.sum()) < count:
        raise _error(f"only {int(moving.sum())} of {4 * count} held-out toy videos move; ask for fewer --videos.")
    return latents[moving][:count]


def probe_toy(args, t_grid: list[float]) -> dict:
    """Probe a toy model on ``args.videos`` held-out videos; ratios pooled over videos."""
    import torch

    from cil_core import probe_report as report_lib
    from cil_core.probe import probe_leakage
    from cil_core.regen_probe import regeneration_probe
    from cil_media.flow import optical_flow_available, optical_flow_motion
    from cil_toy.probe_suite import regen_sampler

    from cil_core.memory import check_fits, tensor_bytes

    toy = load_toy(args.toy)
    use_flow = args.pixel_metric == "auto" and optical_flow_available()
    video = tensor_bytes(toy.latent_shape)  # float32; one video's predictions are alive at once
    pixels = tensor_bytes((3, toy.world.frames, toy.world.height, toy.world.width))
    check_fits(f"probing {args.videos} videos x {len(t_grid)} times x {args.samples} samples",
               video * len(t_grid) * args.samples * (2 if use_flow else 1) + video * 2 * min(args.max_batch, len(t_grid) * args.samples)
               + 4 * args.videos * (pixels + video), "lower --videos, --count, --samples or --max-batch.")
    latents = moving_held_out_latents(toy, args.videos)
    results, regens, flow_pred, flow_ref = [], [], [], []
    regen = args.mode == "one_step+regen"
    per_video = len(t_grid) * (args.samples + (args.regen_samples * args.regen_steps if regen else 0))
    with progress_bar(args.videos * per_video, f"probing toy {args.toy}") as tick:
        for v, x0 in enumerate(latents):
            gen = torch.Generator().manual_seed(args.seed + v)
            denoise = toy.denoiser.bind(x0[:, 0])  # conditional image: the clean first latent frame (as in training)
            done = v * per_video
            with torch.no_grad():
                r = probe_leakage(denoise, x0, toy.family, t_grid, args.samples, generator=gen, max_batch=args.max_batch,
                                  keep_predictions=use_flow, progress=lambda d, _t, o=done: tick(o + d, 0))
            results.append(r)
            if regen:
                sample, schedule = regen_sampler(toy, x0[:, 0], args.regen_steps)
                o = done + len(t_grid) * args.samples
                regens.append(regeneration_probe(sample, x0, toy.family, t_grid, args.regen_samples, schedule,
                                                 generator=torch.Generator().manual_seed(args.seed + v + 10_000), max_batch=args.max_batch,
                                                 progress=lambda d, _t, o=o: tick(o + d, 0)))
            if use_flow:
                to_frames = lambda z: ((toy.codec.decode(z) + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0)  # noqa: E731  CFHW→[F,H,W,3]
                flow_ref.append(optical_flow_motion(to_frames(x0)))
                flow_pred.append(torch.tensor([[optical_flow_motion(to_frames(p)) for p in row] for row in r.predictions], dtype=torch.float64) / flow_ref[-1])
    pooled = report_lib.pool_videos(results)
    pixel = (torch.cat(flow_pred, dim=1), 1.0) if use_flow else None
    meta = {
        "model": f"toy {toy.name}", "source": toy.meta.get("command", ""), "family": toy.family.describe(),
        "videos": f"the first {args.videos} moving held-out videos",
        "pooling": "ratios of every (video, sample); each video's motion divided by its own reference motion",
        "seed": args.seed, "cfg": 1.0, "pixel_metric": "on" if use_flow else "off",
        "regeneration": f"{args.regen_samples} per t, {args.regen_steps} Euler steps over the Karras/trailing schedule from t" if regen else "off",
    }
    return report_lib.build_report(pooled, start_rule(args), pixel_motion=pixel, meta=meta,
                                   regen=report_lib.pool_videos(regens) if regen else None,
                                   recommend_from={"one_step": "latent_energy"}.get(args.recommend_from, args.recommend_from))


# --- a real checkpoint through ComfyUI ------------------------------------------------------------------

def load_video(path: str, frames: int, stride: int, width: int, height: int):
    """[F, H, W, 3] in [0, 1]: the first ``frames`` frames (every ``stride``-th) of a video file,
    an animated image or a folder of frames, scaled to cover width×height and centre-cropped
    (the pack's one reader, ``cil_media.video``)."""
    import torch

    from cil_media.video import ClipSpec, VideoDecodeError, decode_clip

    if not Path(path).exists():
        raise _error(f"--video {path!r} does not exist.")
    if frames < 2 or stride < 1:
        raise _error(f"--frames={frames} must be >= 2 and --stride={stride} >= 1: the probe needs a moving video.")
    try:
        clip = decode_clip(path, ClipSpec(frames, height, width, stride=stride, clip_start="first"))
    except VideoDecodeError as exc:
        fix = ("use a longer video or lower --frames / --stride" if exc.too_short
               else "give a video file, an animated GIF/WebP/APNG or a folder of frame images")
        raise _error(f"--video {path!r} gives no clip of {frames} frames (stride {stride}): {exc}; {fix}.") from None
    return clip["pixels"].to(torch.float32) / 255.0


def probe_checkpoint(args, t_grid: list[float]) -> dict:
    """Load an SVD checkpoint and condition on the video's first frame with ComfyUI's own code,
    then run the node's engine."""
    if not args.video:
        raise _error("--checkpoint needs --video (the reference video).")
    if not Path(args.video).exists():
        raise _error(f"--video {args.video!r} does not exist.")
    if not Path(args.checkpoint).is_file():
        raise _error(f"--checkpoint {args.checkpoint!r} does not exist.")
    from cil_comfy.host import boot

    boot(device=args.device)
    frames = load_video(args.video, args.frames, args.stride, args.width, args.height)
    from cil_comfy.loaders import load_svd_conditioned

    model, positive, negative, vae = load_svd_conditioned(args.checkpoint, frames, args.width, args.height, args.motion_bucket,
                                                          args.fps, args.augmentation)
    return probe_with_comfy(model, positive, negative, frames, vae, args, t_grid, source=args.checkpoint)


def probe_with_comfy(model, positive, negative, frames, vae, args, t_grid: list[float], source: str = "") -> dict:
    """The node's engine (``measure``) on a ComfyUI MODEL + conditioning + IMAGE frames."""
    import torch

    from cil_comfy.probe import ProbeSettings, measure
    from cil_media.flow import optical_flow_available

    from cil_comfy.probe_regen import RegenPlan

    mode = getattr(args, "mode", "one_step")  # a caller's Namespace may predate the regeneration options
    plan = RegenPlan(args.regen_samples, args.regen_steps, args.sampler) if mode == "one_step+regen" else None
    settings = ProbeSettings(t_grid, args.samples, args.seed, args.cfg, start_rule(args), args.max_batch, args.pixel_metric, plan,
                             getattr(args, "recommend_from", "one_step"))
    flow = args.pixel_metric == "auto" and vae is not None and optical_flow_available()
    total = len(t_grid) * (args.samples * (2 if flow else 1) + (plan.samples * plan.steps if plan else 0))
    with progress_bar(total, "probing") as tick, torch.inference_mode():
        run = measure(model, positive, negative, settings, video_frames=frames, vae=vae, progress=tick)
    run.report["meta"]["source"] = source
    return run.report
