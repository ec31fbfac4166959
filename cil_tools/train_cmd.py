"""``cil train``: TimeNoise fine-tuning through ComfyUI's model code (--config FILE)."""

from __future__ import annotations

HELP = "TimeNoise fine-tuning through ComfyUI's model code (--config FILE)"
DESCRIPTION = (
    "Fine-tune an image-to-video model with TimeNoise (LoRA or full) from a TOML/JSON config. "
    "ComfyUI is found from model.comfyui_path, $COMFYUI_PATH or an importable ComfyUI. "
    "Checkpoints go to <run.output_dir>/checkpoints; --resume continues from the newest one. "
    "Several GPUs (or CPU processes): start it with torchrun --nproc_per_node N -m cil_tools.cli train ... "
    "(or accelerate launch); data.batch_size is per process."
)


def register(subparsers, name: str) -> None:
    p = subparsers.add_parser(name, help=HELP, description=DESCRIPTION)
    p.add_argument("--config", required=True, metavar="FILE", help="training config (.toml or .json); see train_configs/train_svd_lora.toml")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in run.output_dir")
    p.add_argument("--steps", type=int, default=None, help="override run.steps")
    p.add_argument("--output-dir", default=None, help="override run.output_dir")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar (logs still written)")
    p.set_defaults(func=run)


MAX_CONFIG_BYTES = 1024**2  # a training config is a page of TOML/JSON


def readable_config(path: str) -> None:
    """--config is a text file of sane size (before the trainer's reader sees it)."""
    from pathlib import Path

    from cil_core.validation import CILValueError, shown

    file = Path(path)
    if not file.exists():
        return  # the trainer's reader says it does not exist
    if not file.is_file():
        raise CILValueError(f"--config {shown(path)} is a folder or a special file; give a .toml or .json config file.")
    if file.stat().st_size > MAX_CONFIG_BYTES:
        raise CILValueError(f"--config {shown(path)} is {file.stat().st_size} bytes; a training config is a small .toml or .json file.")
    try:
        file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CILValueError(f"--config {shown(path)} is not UTF-8 text (byte {exc.start}); give a .toml or .json config, "
                            "e.g. train_configs/train_svd_lora.toml.") from None


def run(args) -> int:
    from dataclasses import replace

    from cil_train.config import load_config
    from cil_train.distributed import from_env
    from cil_train.run import run_training

    from .outputs import output_folder

    readable_config(args.config)
    if args.output_dir is not None:
        output_folder("--output-dir", args.output_dir)
    cfg = load_config(args.config)
    run_section = cfg.run
    if args.steps is not None:
        run_section = replace(run_section, steps=args.steps)
    if args.output_dir is not None:
        run_section = replace(run_section, output_dir=args.output_dir)
    if args.no_progress:
        run_section = replace(run_section, progress=False)
    cfg = replace(cfg, run=run_section).validate()
    output_folder("--output-dir" if args.output_dir is not None else "run.output_dir", cfg.run.output_dir)
    with from_env(cfg.model.device, cfg.run.dist_timeout) as dist:  # before ComfyUI boots: it picks this process's GPU
        if cfg.model.kind == "tiny":
            run_training(cfg, resume=args.resume, dist=dist)
        else:
            from cil_comfy.training import adapter_from_config

            run_training(cfg, resume=args.resume, adapter=adapter_from_config(cfg), dist=dist)
    return 0
