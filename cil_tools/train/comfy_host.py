"""Use ComfyUI's own model code from a headless process (no server, no UI).

``find_comfyui`` looks at, in order: the config's ``model.comfyui_path``, ``$COMFYUI_PATH``, a
``comfy`` package that is already imported or importable. ``boot`` puts that folder on
``sys.path`` (never this repository: ComfyUI's top-level ``nodes`` module would clash with ours),
sets ComfyUI's command-line args *before* the first ``import comfy.model_management`` and
returns the loaded ``comfy`` modules. ``load_models`` loads a checkpoint the way
ImageOnlyCheckpointLoader / UNETLoader / VAELoader / CLIPVisionLoader do.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from ._core import CILValueError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _is_comfyui(path: Path) -> bool:
    return (path / "comfy" / "model_sampling.py").is_file()


def find_comfyui(explicit: str = "") -> Path:
    """The ComfyUI folder to use (the one holding ``comfy/``)."""
    for source, value in (("model.comfyui_path", explicit), ("$COMFYUI_PATH", os.environ.get("COMFYUI_PATH", ""))):
        if value:
            path = Path(value).expanduser().resolve()
            if not _is_comfyui(path):
                raise CILValueError(f"{source}={value!r} is not a ComfyUI folder (no comfy/model_sampling.py).")
            return path
    module = sys.modules.get("comfy")
    if module is not None and getattr(module, "__file__", None):
        return Path(module.__file__).resolve().parents[1]
    spec = importlib.util.find_spec("comfy")
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parents[1]
    raise CILValueError(
        "ComfyUI not found: set model.comfyui_path in the config or $COMFYUI_PATH to your ComfyUI folder "
        "(the one with main.py and comfy/)."
    )


def boot(explicit: str = "", device: str = "auto") -> SimpleNamespace:
    """Import ComfyUI's model code with args set for a headless run; returns the modules."""
    root = find_comfyui(explicit)
    _guard_sys_path()
    if "comfy.model_management" not in sys.modules:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        import comfy.options

        comfy.options.enable_args_parsing(False)  # never parse `cil train …` as ComfyUI's argv
        from comfy.cli_args import args

        if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
            args.cpu = True
        if hasattr(args, "disable_api_nodes"):
            args.disable_api_nodes = True
    modules = SimpleNamespace(root=root)
    for name in ("comfy.model_management", "comfy.sd", "comfy.utils", "comfy.model_base", "comfy.model_patcher",
                 "comfy.clip_vision", "comfy.lora"):
        setattr(modules, name.split(".")[-1], importlib.import_module(name))
    return modules


def _guard_sys_path() -> None:
    """Drop this repository (or '' when run from it) from sys.path: its ``nodes/`` folder would
    shadow ComfyUI's ``nodes`` module."""
    keep = []
    for entry in sys.path:
        resolved = Path(entry or os.getcwd()).resolve()
        if resolved == REPO_ROOT and (REPO_ROOT / "nodes" / "extension.py").is_file():
            continue
        keep.append(entry)
    sys.path[:] = keep


@dataclass
class LoadedModels:
    model: object  # comfy ModelPatcher
    vae: object | None = None
    clip_vision: object | None = None
    text_encoder: object | None = None
    source: str = ""


def load_models(cfg, comfy: SimpleNamespace) -> LoadedModels:
    """Load what ``cfg.model`` names, with ComfyUI's loaders."""
    m = cfg.model
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[m.weight_dtype]
    options = {"dtype": dtype}
    vae = clip_vision = None
    if m.checkpoint:
        _must_exist("model.checkpoint", m.checkpoint)
        out = comfy.sd.load_checkpoint_guess_config(m.checkpoint, output_vae=True, output_clip=False,
                                                    output_clipvision=True, model_options=options)
        if out[0] is None:
            raise CILValueError(f"ComfyUI did not recognise a diffusion model in {m.checkpoint}.")
        model, vae, clip_vision = out[0], out[2], out[3]
        source = m.checkpoint
    elif m.unet:
        _must_exist("model.unet", m.unet)
        model = comfy.sd.load_diffusion_model(m.unet, model_options=options)
        source = m.unet
    else:
        raise CILValueError("set model.checkpoint (full checkpoint) or model.unet (diffusion model only) in [model].")
    if m.vae:
        _must_exist("model.vae", m.vae)
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(m.vae))
    if m.clip_vision:
        _must_exist("model.clip_vision", m.clip_vision)
        clip_vision = comfy.clip_vision.load(m.clip_vision)
    text_encoder = None
    if m.text_encoder:
        for p in m.text_encoder:
            _must_exist("model.text_encoder", p)
        clip_type = getattr(comfy.sd.CLIPType, m.text_encoder_type.upper(), None)
        if clip_type is None:
            raise CILValueError(f"model.text_encoder_type={m.text_encoder_type!r} is not a ComfyUI CLIPType.")
        text_encoder = comfy.sd.load_clip(ckpt_paths=list(m.text_encoder), clip_type=clip_type)
    return LoadedModels(model, vae, clip_vision, text_encoder, source)


def _must_exist(name: str, path: str) -> None:
    if not Path(path).is_file():
        raise CILValueError(f"{name}={path!r} does not exist.")
