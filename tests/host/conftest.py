"""Host tier: boots a REAL ComfyUI (from COMFYUI_PATH) in this process, loads this pack the way
ComfyUI loads any custom node (from a custom_nodes folder), and runs API-format prompts through
ComfyUI's own validator and executor.

Nothing here fakes ComfyUI. Tiny randomly initialised models come from test-only source nodes
(``CILTest_*``) registered in ComfyUI's own node table, so graphs can start from a MODEL.

Without COMFYUI_PATH every host test file except test_00_host.py is left out, and that file
skips with one line saying why.
"""

from __future__ import annotations

import asyncio
import glob
import os
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMFYUI_PATH = os.environ.get("COMFYUI_PATH", "")


def _skip_reason() -> str | None:
    if not COMFYUI_PATH:
        return "host tier skipped: COMFYUI_PATH is not set (point it at a ComfyUI checkout to run real graphs)"
    if not (Path(COMFYUI_PATH) / "comfy" / "model_sampling.py").is_file():
        return f"host tier skipped: COMFYUI_PATH={COMFYUI_PATH!r} is not a ComfyUI checkout (no comfy/model_sampling.py)"
    try:
        import torchvision  # noqa: F401  (ComfyUI's core imports it)
    except Exception as exc:  # pragma: no cover - environment dependent
        return f"host tier skipped: this python cannot import torchvision ({exc}); use the host venv"
    return None


SKIP_REASON = _skip_reason()
if SKIP_REASON:
    collect_ignore_glob = ["test_[!0]*.py"]


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
    """A booted ComfyUI: ``run(prompt)`` validates and executes an API-format prompt."""

    def __init__(self, root: Path) -> None:
        self.root = root
        sys.path.insert(0, COMFYUI_PATH)
        import comfy.options

        comfy.options.enable_args_parsing(False)
        from comfy.cli_args import args

        args.cpu = True
        if hasattr(args, "disable_api_nodes"):
            args.disable_api_nodes = True
        import comfy.model_management  # noqa: F401  (after args.cpu, or it asks for CUDA)
        import folder_paths

        for name in ("output", "input", "temp", "user"):
            (root / name).mkdir(parents=True, exist_ok=True)
            getattr(folder_paths, f"set_{name}_directory")(str(root / name))
        try:
            import utils.extra_config  # noqa: F401
        except ImportError:
            pass
        import server  # noqa: F401
        import execution
        import nodes

        self.folder_paths, self.execution, self.nodes = folder_paths, execution, nodes
        self.version = self._version()
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
        custom = root / "custom_nodes"
        custom.mkdir()
        (custom / "comfyui-cil").symlink_to(REPO, target_is_directory=True)
        self.pack_loaded = asyncio.run(nodes.load_custom_node(str(custom / "comfyui-cil")))
        self.server = HostServer()

    @staticmethod
    def _version() -> str:
        try:
            import comfyui_version

            return comfyui_version.__version__
        except ImportError:
            return "unknown"

    @property
    def node_classes(self) -> dict:
        return self.nodes.NODE_CLASS_MAPPINGS

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
        if not ok:
            raise PromptFailed(f"validation failed: {error} {node_errors}")
        executor = self._executor()
        self.server.messages.clear()
        executor.execute(prompt, str(uuid.uuid4()), {}, outputs)
        if not executor.success:
            errors = [d for e, d in executor.status_messages if e == "execution_error"]
            raise PromptFailed(f"execution failed: {errors or executor.status_messages}")
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


_HOST: Host | None = None


@pytest.fixture(scope="session")
def host() -> Host:
    """The booted ComfyUI, shared by every host test in this process."""
    global _HOST
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    if _HOST is None:
        _HOST = Host(Path(tempfile.mkdtemp(prefix="cil-host-")))
    return _HOST


# --- tiny models -------------------------------------------------------------------------------

def init_weights(module, seed: int = 0, scale: float = 0.05) -> None:
    """ComfyUI builds layers without weight init (uninitialised memory samples NaN): fill every
    parameter, biases included, from a seeded generator."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)


def tiny_svd(seed: int = 0):
    """A real comfy SVD_img2vid model (EDM, v-prediction, concat image) with 0.6 M parameters,
    wrapped in a ModelPatcher. Frames are the batch dimension: latents are [T, 4, h, w]."""
    import torch
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm

    config = sm.SVD_img2vid(
        {
            "image_size": 32,
            "use_checkpoint": False,
            "use_spatial_transformer": True,
            "legacy": False,
            "num_classes": "sequential",
            "model_channels": 32,
            "in_channels": 8,
            "out_channels": 4,
            "channel_mult": [1],
            "num_res_blocks": [1],
            "transformer_depth": [1],
            "transformer_depth_output": [1, 1],
            "transformer_depth_middle": 1,
            "context_dim": 64,
            "num_head_channels": 16,
            "adm_in_channels": 768,
            "use_linear_in_transformer": True,
            "use_temporal_attention": True,
            "use_temporal_resblock": True,
            "extra_ff_mix_layer": True,
            "use_spatial_context": True,
            "merge_strategy": "learned_with_images",
            "merge_factor": 0.0,
            "video_kernel_size": [3, 1, 1],
            "disable_temporal_crossattention": False,
            "max_ddpm_temb_period": 10000,
        }
    )
    config.unet_config["num_head_channels"] = 16
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_weights(model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def svd_conditioning(frames: int, height: int, width: int, seed: int = 0, *, fps: int = 6, motion_bucket_id: int = 127, augmentation_level: float = 0.0):
    """Positive/negative conditioning shaped like SVD_img2vid_Conditioning's, without CLIP
    vision: a random CLIP embedding [1, 1, 64] and a random concat latent [1, 4, h, w] (raw VAE
    space, as ComfyUI passes it)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(1, 1, 64, generator=gen)
    concat = torch.randn(1, 4, height, width, generator=gen)
    extra = {"motion_bucket_id": motion_bucket_id, "fps": fps, "augmentation_level": augmentation_level}
    positive = [[emb, dict(extra, concat_latent_image=concat)]]
    negative = [[torch.zeros_like(emb), dict(extra, concat_latent_image=torch.zeros_like(concat))]]
    return positive, negative


class CILTest_TinySVD:
    """Test-only source node: a tiny random SVD model, its conditioning and an empty video latent."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                "frames": ("INT", {"default": 4, "min": 2, "max": 64}),
                "height": ("INT", {"default": 8, "min": 2, "max": 256}),
                "width": ("INT", {"default": 8, "min": 2, "max": 256}),
            }
        }

    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("model", "positive", "negative", "latent")
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, seed, frames, height, width):
        import torch

        positive, negative = svd_conditioning(frames, height, width, seed)
        latent = {"samples": torch.zeros(frames, 4, height, width)}
        return (tiny_svd(seed), positive, negative, latent)


@pytest.fixture(scope="session")
def svd_host(host) -> Host:
    """The host with the CILTest_TinySVD source node registered."""
    host.register(CILTest_TinySVD)
    return host
