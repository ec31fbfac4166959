"""The one way this pack boots ComfyUI outside ComfyUI's own ``main.py``: the headless commands
(``cil train``, ``cil probe --checkpoint``, ``cil stats estimate``), the host test tier and the
workflow generator all call it.

``find_comfyui`` looks at, in order: an explicit path (a config's ``model.comfyui_path``),
``$COMFYUI_PATH``, a ``comfy`` package that is already imported or importable. ``boot`` puts that
folder FIRST on ``sys.path`` and this pack's root (when it is there at all) LAST, so ComfyUI's
top-level ``nodes`` module is never shadowed by the pack's ``nodes/`` folder; it sets ComfyUI's
command-line args *before* the first ``import comfy.model_management`` (else ComfyUI parses our
argv and asks for CUDA). ``boot_with_nodes`` also imports the server side and ComfyUI's node table,
points the user folders somewhere, and loads custom node packs exactly as ComfyUI does.

Nothing here imports ComfyUI at module level.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from cil_core.validation import CILValueError

PACK_ROOT = Path(__file__).resolve().parents[1]
_EXTRAS_LOADED: list[bool] = []  # ComfyUI's extras nodes are loaded once per process
MODEL_MODULES = ("comfy.model_management", "comfy.sd", "comfy.utils", "comfy.model_base", "comfy.model_patcher",
                 "comfy.clip_vision", "comfy.lora")


def is_comfyui(path: Path) -> bool:
    return (path / "comfy" / "model_sampling.py").is_file()


def find_comfyui(explicit: str = "") -> Path:
    """The ComfyUI folder to use (the one holding ``comfy/``)."""
    for source, value in (("model.comfyui_path", explicit), ("$COMFYUI_PATH", os.environ.get("COMFYUI_PATH", ""))):
        if value:
            path = Path(value).expanduser().resolve()
            if not is_comfyui(path):
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


def order_sys_path(comfy_root: Path) -> None:
    """ComfyUI's root first; this pack's root (or '' when the process runs from it) last."""
    def is_pack(entry: str) -> bool:
        return Path(entry or os.getcwd()).resolve() == PACK_ROOT

    pack = [e for e in sys.path if is_pack(e)]
    rest = [e for e in sys.path if not is_pack(e) and Path(e or os.getcwd()).resolve() != comfy_root]
    sys.path[:] = [str(comfy_root), *rest, *pack[:1]]


def boot(explicit: str = "", device: str = "auto") -> SimpleNamespace:
    """Import ComfyUI's model code with its args set for a headless run; returns the modules."""
    root = find_comfyui(explicit)
    order_sys_path(root)
    if "comfy.model_management" not in sys.modules:
        import comfy.options

        comfy.options.enable_args_parsing(False)  # never parse `cil train …` as ComfyUI's argv
        from comfy.cli_args import args

        import torch

        if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
            args.cpu = True
        if hasattr(args, "disable_api_nodes"):
            args.disable_api_nodes = True
    modules = SimpleNamespace(root=root)
    for name in MODEL_MODULES:
        setattr(modules, name.split(".")[-1], importlib.import_module(name))
    return modules


def boot_with_nodes(explicit: str = "", device: str = "cpu", *, user_root: Path | None = None,
                    packs: tuple[Path, ...] = ()) -> SimpleNamespace:
    """``boot`` plus ComfyUI's server side and node table (core + extras nodes), with the output,
    input, temp and user folders under ``user_root`` (when given), then each custom node pack of
    ``packs`` loaded by ComfyUI's own loader. Returns the modules (+ ``nodes``, ``execution``,
    ``folder_paths``, ``loaded``: pack → whether it loaded)."""
    modules = boot(explicit, device)
    import folder_paths

    if user_root is not None:
        for name in ("output", "input", "temp", "user"):
            (user_root / name).mkdir(parents=True, exist_ok=True)
            getattr(folder_paths, f"set_{name}_directory")(str(user_root / name))
    try:
        import utils.extra_config  # noqa: F401  (ComfyUI's utils package, before comfy/ shadows it)
    except ImportError:  # older ComfyUI
        pass
    import server  # noqa: F401
    import execution
    import nodes

    if not _EXTRAS_LOADED:
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        _EXTRAS_LOADED.append(True)
    loaded = {pack: bool(asyncio.run(nodes.load_custom_node(str(pack)))) for pack in packs}
    modules.nodes, modules.execution, modules.folder_paths, modules.loaded = nodes, execution, folder_paths, loaded
    return modules


def comfyui_version() -> str:
    try:
        import comfyui_version as version

        return version.__version__
    except ImportError:
        return "unknown"
