"""A REAL ComfyUI (from COMFYUI_PATH) booted in this process, with this pack loaded the way
ComfyUI loads any custom node (from a custom_nodes folder): ``Host.run(prompt)`` sends API-format
prompts through ComfyUI's own validator and executor.

Used by the host tier's conftest and by the benchmarks that time nodes in a real ComfyUI. Nothing
here imports ComfyUI (or torch) at module level; ``cil_comfy.host.boot_with_nodes`` is the boot.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACK_FOLDER = "comfyui-cil"


def comfyui_path() -> str:
    return os.environ.get("COMFYUI_PATH", "")


def unavailable(path: str | None = None) -> tuple[str, str] | None:
    """None when this python can boot the ComfyUI at ``path`` (default $COMFYUI_PATH); else
    (kind, one line saying why). kind "skip": no host here (COMFYUI_PATH unset, or this python has
    no torchvision, so it is not a host venv); kind "fail": a host was asked for but is broken
    (COMFYUI_PATH is not a ComfyUI checkout, or torchvision is installed but does not import)."""
    import importlib.util

    path = comfyui_path() if path is None else path
    if not path:
        return "skip", "COMFYUI_PATH is not set (point it at a ComfyUI checkout to run real graphs)"
    if not (Path(path) / "comfy" / "model_sampling.py").is_file():
        return "fail", f"COMFYUI_PATH={path!r} is not a ComfyUI checkout (no comfy/model_sampling.py)"
    if importlib.util.find_spec("torchvision") is None:
        return "skip", f"{sys.executable} has no torchvision (ComfyUI needs it): run this tier with the host venv's pytest"
    try:
        import torchvision  # noqa: F401  (ComfyUI's core imports it)
    except Exception as exc:  # pragma: no cover - environment dependent
        return "fail", f"torchvision is installed in {sys.executable} but does not import ({type(exc).__name__}: {exc})"
    return None


class HostServer:
    """The minimal server object PromptExecutor talks to; it records every message."""

    def __init__(self) -> None:
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list[tuple[str, dict]] = []

    def send_sync(self, event, data, sid=None) -> None:
        self.messages.append((event, data))

    def queue_updated(self) -> None:
        pass


class PromptFailed(AssertionError):
    pass


class Host:
    """A booted ComfyUI: ``run(prompt)`` validates and executes an API-format prompt.

    ``root`` (an empty folder) holds the custom_nodes folder (a link to this repo) and ComfyUI's
    output, input, temp and user folders. Torch runs single-threaded (CIL_HOST_THREADS to change):
    far faster for tiny models on a shared CPU."""

    def __init__(self, root: Path, comfyui: str | None = None) -> None:
        self.root = root
        import torch

        # Tiny models on a shared CPU: one thread is 5-50x faster than two contended ones.
        torch.set_num_threads(int(os.environ.get("CIL_HOST_THREADS", "1")))
        if str(REPO) not in sys.path:  # the pack's libraries by their one name, AFTER ComfyUI's root (the boot keeps it last)
            sys.path.append(str(REPO))
        from cil_comfy.host import boot_with_nodes, comfyui_version

        custom = root / "custom_nodes"
        custom.mkdir()
        (custom / PACK_FOLDER).symlink_to(REPO, target_is_directory=True)
        comfy = boot_with_nodes(comfyui_path() if comfyui is None else comfyui, "cpu", user_root=root,
                                packs=(custom / PACK_FOLDER,))
        self.folder_paths, self.execution, self.nodes = comfy.folder_paths, comfy.execution, comfy.nodes
        self.version = comfyui_version()
        self.pack_loaded = comfy.loaded[custom / PACK_FOLDER]
        self.server = HostServer()

    @property
    def node_classes(self) -> dict:
        return self.nodes.NODE_CLASS_MAPPINGS

    @contextlib.contextmanager
    def models_folder(self, name: str, folder: Path):
        """Serve ``folder`` as ComfyUI's ``models/<name>`` for the duration of the block."""
        fp = self.folder_paths
        saved = fp.folder_names_and_paths.get(name)
        fp.folder_names_and_paths[name] = ([str(folder)], {".safetensors"})
        try:
            yield folder
        finally:
            if saved is not None:
                fp.folder_names_and_paths[name] = saved

    def register(self, cls, node_id: str | None = None) -> None:
        """Register a test-only source node (V1 or V3 class) in ComfyUI's node table."""
        node_id = node_id or getattr(cls, "NODE_ID", None) or cls.__name__
        self.nodes.NODE_CLASS_MAPPINGS[node_id] = cls
        self.nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id] = node_id

    def validate(self, prompt: dict) -> tuple:
        return asyncio.run(self.execution.validate_prompt(str(uuid.uuid4()), prompt, None))

    def run(self, prompt: dict):
        """Validate then execute; raise PromptFailed with ComfyUI's own messages on failure."""
        ok, error, outputs, node_errors = self.validate(prompt)
        if not ok or node_errors:  # ComfyUI runs the valid outputs and drops the others: a test must not
            raise PromptFailed(f"validation failed: {error} {node_errors}")
        executor = self._executor()
        self.server.messages.clear()
        executor.execute(prompt, str(uuid.uuid4()), {}, outputs)
        if not executor.success:
            errors = [d for e, d in executor.status_messages if e == "execution_error"]
            brief = [f"{d.get('node_type')} (node {d.get('node_id')}): {d.get('exception_type')}: {d.get('exception_message')}" for d in errors]
            raise PromptFailed(f"execution failed: {' | '.join(brief) if brief else executor.status_messages}")
        return executor

    def _executor(self):
        cls = self.execution.PromptExecutor
        try:
            return cls(self.server, cache_type=False, cache_args={"lru": 0, "ram": 16.0})
        except TypeError:  # ComfyUI 0.3.x
            return cls(self.server, cache_type=False, cache_size=0)

    def saved_latents(self, prefix: str) -> list[Path]:
        """Files written by SaveLatent with ``filename_prefix=prefix``, oldest first."""
        return sorted(Path(p) for p in glob.glob(str(self.root / "output" / f"{prefix}*.latent")))

    def load_latent(self, prefix: str):
        """The latent tensor of the newest SaveLatent file with this prefix (raw VAE space)."""
        from safetensors.torch import load_file

        files = self.saved_latents(prefix)
        if not files:
            raise PromptFailed(f"no SaveLatent output with prefix {prefix!r} in {self.root / 'output'}")
        return load_file(str(files[-1]))["latent_tensor"]
