"""Host tier: boots a REAL ComfyUI (from COMFYUI_PATH) in this process, loads this pack the way
ComfyUI loads any custom node (from a custom_nodes folder), and runs API-format prompts through
ComfyUI's own validator and executor.

Nothing here fakes ComfyUI. Tiny randomly initialised models come from test-only source nodes
(``CILTest_*``) registered in ComfyUI's own node table, so graphs can start from a MODEL.

Fixtures: ``host`` (booted ComfyUI; ``run``/``validate``/``load_latent``/``register``), ``svd_host``
(+ CILTest_TinySVD), ``tiny_host`` (+ every CILTest_* node: tiny SVD / VP v-pred ZSNR concat model /
Wan 2.1 I2V sources, loader stand-ins for the shipped workflows, CILTest_CaptureApplyModel,
CILTest_CaptureValue, image sources), ``captures`` (what the capture nodes recorded),
``stats_dir`` / ``write_stats`` (a temporary ``cil_stats`` models folder), ``tiny_models``,
``image_store``, ``dc_wrapper`` (kijai's DynamiCrafterWrapper from a temporary copy, or skip).
Plain helpers: ``tiny_svd``, ``tiny_vp``, ``tiny_wan``, ``svd_conditioning``, ``wan_conditioning``,
``init_weights``, ``make_stats``, ``tiny_sd_vae``, ``tiny_wan_vae``, ``tiny_clip_vision``.
Torch runs single-threaded here (CIL_HOST_THREADS to change): far faster on a shared CPU.

Without COMFYUI_PATH every host test file except test_00_host.py is left out, and that file
skips with one line saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
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
if str(REPO) not in sys.path:  # the pack's libraries by their one name; after ComfyUI's root (cil_comfy.host)
    sys.path.append(str(REPO))
if SKIP_REASON:
    collect_ignore_glob = ["test_[!0]*.py", "test_0[!0]*.py"]


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
        import torch

        # Tiny models on a shared CPU: one thread is 5-50x faster than two contended ones.
        torch.set_num_threads(int(os.environ.get("CIL_HOST_THREADS", "1")))
        from cil_comfy.host import boot_with_nodes, comfyui_version

        custom = root / "custom_nodes"
        custom.mkdir()
        (custom / "comfyui-cil").symlink_to(REPO, target_is_directory=True)
        comfy = boot_with_nodes(COMFYUI_PATH, "cpu", user_root=root, packs=(custom / "comfyui-cil",))
        self.folder_paths, self.execution, self.nodes = comfy.folder_paths, comfy.execution, comfy.nodes
        self.version = comfyui_version()
        self.pack_loaded = comfy.loaded[custom / "comfyui-cil"]
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


def _patcher(model):
    import comfy.model_management as mm
    import comfy.model_patcher

    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def _tiny_svd_config():
    import comfy.supported_models as sm

    return sm.SVD_img2vid(
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


def tiny_svd(seed: int = 0):
    """A real comfy SVD_img2vid model (EDM, v-prediction, concat image) with 0.6 M parameters,
    wrapped in a ModelPatcher. Frames are the batch dimension: latents are [T, 4, h, w]."""
    import torch

    config = _tiny_svd_config()
    config.unet_config["num_head_channels"] = 16
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_weights(model, seed)
    model.eval()
    return _patcher(model)


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

    @staticmethod
    def make_model(seed):
        return tiny_svd(seed)

    def build(self, seed, frames, height, width):
        import torch

        positive, negative = svd_conditioning(frames, height, width, seed)
        latent = {"samples": torch.zeros(frames, 4, height, width)}
        return (self.make_model(seed), positive, negative, latent)


@pytest.fixture(scope="session")
def svd_host(host) -> Host:
    """The host with the CILTest_TinySVD source node registered."""
    host.register(CILTest_TinySVD)
    return host


# --- more tiny models: a VP v-prediction concat model and Wan 2.1 I2V ------------------------------

def tiny_vp(seed: int = 0, zsnr: bool = True):
    """A DynamiCrafter-like model: the tiny SVD UNet (concat conditional image, frames as batch)
    built as a real comfy BaseModel with a VP v-prediction ModelSamplingDiscrete (scaled-linear
    0.00085–0.012, 1000 steps, zero terminal SNR by default)."""
    import torch
    import comfy.model_base

    config = _tiny_svd_config()
    config.unet_config["num_head_channels"] = 16
    config.sampling_settings = {"zsnr": zsnr}
    config.set_inference_dtype(torch.float32, None)
    model = comfy.model_base.SVD_img2vid(config, model_type=comfy.model_base.ModelType.V_PREDICTION)
    init_weights(model, seed)
    model.eval()
    return _patcher(model)


WAN_TEXT_DIM = 32


def tiny_wan(seed: int = 0):
    """A real comfy WAN21 image-to-video model (rectified flow, shift 8, 36 input channels:
    16 noisy + 4 mask + 16 image) with dim 32, 2 heads, 1 layer (1.7 M parameters, most in the
    1280→dim CLIP projection). Latents are [B, 16, T, h, w]."""
    import torch
    import comfy.supported_models as sm

    config = sm.WAN21_I2V(
        {
            "image_model": "wan2.1", "model_type": "i2v", "in_dim": 36, "dim": 32, "ffn_dim": 64,
            "freq_dim": 32, "text_dim": WAN_TEXT_DIM, "out_dim": 16, "num_heads": 2, "num_layers": 1,
            "text_len": 8, "patch_size": [1, 2, 2], "window_size": [-1, -1], "qk_norm": True,
            "cross_attn_norm": True, "eps": 1e-6,
        }
    )
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_weights(model, seed)
    model.eval()
    return _patcher(model)


def wan_conditioning(frames: int, height: int, width: int, seed: int = 0, *, batch: int = 1, clip_tokens: int = 0):
    """Conditioning shaped like WanImageToVideo's: text tokens, ``concat_latent_image`` (raw
    VAE space, [1, 16, T, h, w]) and ``concat_mask`` (0 on the conditioned first latent frame,
    1 elsewhere), the same on positive and negative; optional CLIP vision output with
    ``clip_tokens`` penultimate tokens of width 1280. The empty latent is [batch, 16, T, h, w]."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    text = torch.randn(1, 4, WAN_TEXT_DIM, generator=gen)
    concat = torch.randn(1, 16, frames, height, width, generator=gen)
    mask = torch.ones(1, 1, frames, height, width)
    mask[:, :, :1] = 0.0
    extra = {"concat_latent_image": concat, "concat_mask": mask}
    if clip_tokens:
        import comfy.clip_vision

        out = comfy.clip_vision.Output()
        out["penultimate_hidden_states"] = torch.randn(1, clip_tokens, 1280, generator=gen)
        extra["clip_vision_output"] = out
    positive = [[text, dict(extra)]]
    negative = [[torch.zeros_like(text), dict(extra)]]
    latent = {"samples": torch.zeros(batch, 16, frames, height, width)}
    return positive, negative, latent


class CILTest_TinyVP(CILTest_TinySVD):
    """Test-only source node: tiny VP v-prediction (ZSNR) concat model + SVD-style conditioning."""

    @staticmethod
    def make_model(seed):
        return tiny_vp(seed)


class CILTest_TinyWan:
    """Test-only source node: tiny Wan 2.1 I2V model + WanImageToVideo-style conditioning."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                "frames": ("INT", {"default": 3, "min": 1, "max": 64}),
                "height": ("INT", {"default": 4, "min": 2, "max": 256}),
                "width": ("INT", {"default": 4, "min": 2, "max": 256}),
                "batch": ("INT", {"default": 1, "min": 1, "max": 16}),
                "clip_tokens": ("INT", {"default": 0, "min": 0, "max": 257}),
            }
        }

    RETURN_TYPES = ("MODEL", "CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("model", "positive", "negative", "latent")
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, seed, frames, height, width, batch, clip_tokens):
        positive, negative, latent = wan_conditioning(frames, height, width, seed, batch=batch, clip_tokens=clip_tokens)
        return (tiny_wan(seed), positive, negative, latent)


# --- tiny VAEs and CLIP vision: stand-ins for the loader nodes of the shipped workflows ----------

_CACHE: dict = {}


def _cached(key, build):
    """VAEs and CLIP vision models are only read by the graphs: build each once per session."""
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def tiny_sd_vae(seed: int = 0):
    """A real comfy VAE with a random TAESD body: 4 latent channels, 8× downscale (SD-style)."""
    import comfy.sd
    import comfy.taesd.taesd as taesd

    body = taesd.TAESD(latent_channels=4)
    init_weights(body, seed)
    return comfy.sd.VAE(sd={k: v.detach().clone() for k, v in body.state_dict().items()})


def tiny_wan_vae(seed: int = 0):
    """A real comfy Wan 2.1 VAE (16 channels, 8× space, 4× causal time). ComfyUI 0.8.0 reads the
    width from the weights (dim 8 here, 0.9 M parameters); 0.3.64 hard-codes dim 96 (127 M)."""
    import comfy.sd
    import comfy.ldm.wan.vae as wan_vae

    dim = 8
    body = wan_vae.WanVAE(dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                          temperal_downsample=[False, True, True], dropout=0.0)
    try:
        init_weights(body, seed, scale=0.02)
        return comfy.sd.VAE(sd={k: v.detach().clone() for k, v in body.state_dict().items()})
    except RuntimeError:  # 0.3.64: fixed dim 96
        body = wan_vae.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                              temperal_downsample=[False, True, True], dropout=0.0)
        init_weights(body, seed, scale=0.02)
        return comfy.sd.VAE(sd={k: v.detach().clone() for k, v in body.state_dict().items()})


def tiny_clip_vision(root: Path, *, hidden: int, projection: int, seed: int = 0):
    """A real comfy ClipVisionModel from a tiny json config (1 layer, 28-px images, 2×2 patches)."""
    import json
    import comfy.clip_vision

    config = {
        "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "gelu", "hidden_size": hidden,
        "image_size": 28, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 64,
        "layer_norm_eps": 1e-05, "model_type": "clip_vision_model", "num_attention_heads": 2,
        "num_channels": 3, "num_hidden_layers": 2, "patch_size": 14, "projection_dim": projection,
        "torch_dtype": "float32",
    }
    path = root / f"tiny_clip_vision_{hidden}_{projection}.json"
    path.write_text(json.dumps(config))
    clip_vision = comfy.clip_vision.ClipVisionModel(str(path))
    init_weights(clip_vision.model, seed)
    return clip_vision


_TINY_DIR = Path(tempfile.mkdtemp(prefix="cil-tiny-"))


class CILTest_TinySVDCheckpoint:
    """Stands in for ImageOnlyCheckpointLoader (same outputs MODEL, CLIP_VISION, VAE): tiny SVD UNet,
    tiny CLIP vision (64-d image embeds, the tiny UNet's context width), TAESD-bodied VAE."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": ("STRING", {"default": "svd.safetensors"})}}

    RETURN_TYPES = ("MODEL", "CLIP_VISION", "VAE")
    FUNCTION = "load_checkpoint"
    CATEGORY = "CIL/testing"

    def load_checkpoint(self, ckpt_name):
        clip_vision = _cached("cv_svd", lambda: tiny_clip_vision(_TINY_DIR, hidden=32, projection=64))
        return (tiny_svd(0), clip_vision, _cached("vae_sd", tiny_sd_vae))


class CILTest_TinyWanLoaders:
    """Stands in for UNETLoader + VAELoader + CLIPVisionLoader of a Wan 2.1 I2V workflow."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": ("STRING", {"default": "wan2.1_i2v.safetensors"})}}

    RETURN_TYPES = ("MODEL", "VAE", "CLIP_VISION")
    FUNCTION = "load"
    CATEGORY = "CIL/testing"

    def load(self, unet_name):
        clip_vision = _cached("cv_wan", lambda: tiny_clip_vision(_TINY_DIR, hidden=1280, projection=32))
        return (tiny_wan(0), _cached("vae_wan", tiny_wan_vae), clip_vision)


class CILTest_TinyTextEncode:
    """Stands in for CLIPLoader + CLIPTextEncode: a seeded random text embedding [1, 4, width]."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True}), "width": ("INT", {"default": WAN_TEXT_DIM, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "CIL/testing"

    def encode(self, text, width):
        import zlib
        import torch

        gen = torch.Generator().manual_seed(zlib.crc32(text.encode("utf-8")))
        return ([[torch.randn(1, 4, width, generator=gen), {}]],)


# --- capturing what the model sees -------------------------------------------------------------

CAPTURES: dict[str, list[dict]] = {}


class CILTest_CaptureApplyModel:
    """Adds an APPLY_MODEL wrapper (after any added upstream, so it runs inside them) that records
    the inputs of every model call under ``key`` in ``CAPTURES``: x, sigma, c_concat,
    c_crossattn, cond_or_uncond and the extra kwargs (y, clip_fea, …), all cloned to the CPU."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "key": ("STRING", {"default": "capture"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "CIL/testing"

    def patch(self, model, key):
        import torch
        import comfy.patcher_extension as pe

        store = CAPTURES.setdefault(key, [])

        def grab(value):
            return value.detach().to("cpu").clone() if torch.is_tensor(value) else value

        def wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
            store.append(
                {
                    "x": grab(x), "sigma": grab(t), "c_concat": grab(c_concat), "c_crossattn": grab(c_crossattn),
                    "cond_or_uncond": list(transformer_options.get("cond_or_uncond", [])),
                    "kwargs": {k: grab(v) for k, v in kwargs.items()},
                }
            )
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

        out = model.clone()
        out.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, f"cil_test_capture_{key}", wrapper)
        return (out,)


class _AnyType(str):
    """ComfyUI's classic wildcard socket type: compares equal to every type (0.3.x has no IO.AnyType)."""

    def __ne__(self, other):
        return False

    __hash__ = str.__hash__


class CILTest_CaptureValue:
    """Output node that records whatever reaches it (any type) under ``key`` in ``CAPTURES``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (_AnyType("*"),), "key": ("STRING", {"default": "value"})}}

    RETURN_TYPES = ()
    FUNCTION = "capture"
    OUTPUT_NODE = True
    CATEGORY = "CIL/testing"

    def capture(self, value, key):
        CAPTURES.setdefault(key, []).append(value)
        return {}


IMAGE_STORE: dict[str, object] = {}


class CILTest_RandomImages:
    """A seeded random IMAGE batch [count, height, width, 3] in [0, 1] (smooth-ish: upsampled noise)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31}), "count": ("INT", {"default": 8, "min": 1, "max": 4096}),
                             "height": ("INT", {"default": 64, "min": 8, "max": 4096}), "width": ("INT", {"default": 64, "min": 8, "max": 4096})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"
    CATEGORY = "CIL/testing"

    def make(self, seed, count, height, width):
        import torch

        gen = torch.Generator().manual_seed(seed)
        low = torch.rand(count, 3, max(1, height // 8), max(1, width // 8), generator=gen)
        return (torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False).movedim(1, -1).clamp(0, 1),)


class CILTest_StoredImages:
    """The IMAGE a test put in ``IMAGE_STORE[key]`` (e.g. frames it decoded itself)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"key": ("STRING", {"default": "frames"})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "get"
    CATEGORY = "CIL/testing"

    @classmethod
    def IS_CHANGED(cls, key):
        return float("nan")

    def get(self, key):
        return (IMAGE_STORE[key],)


class InterruptingVAE:
    """A VAE proxy that presses ComfyUI's cancel (interrupt_current_processing) after its first encode."""

    def __init__(self, vae, counter: list) -> None:
        self.vae, self.counter = vae, counter

    def __getattr__(self, name):
        return getattr(self.vae, name)

    def encode(self, pixels):
        import comfy.model_management

        self.counter.append(1)
        out = self.vae.encode(pixels)
        comfy.model_management.interrupt_current_processing(True)
        return out


class CILTest_InterruptingVAE:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": ("VAE",), "key": ("STRING", {"default": "encodes"})}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "wrap"
    CATEGORY = "CIL/testing"

    def wrap(self, vae, key):
        return (InterruptingVAE(vae, CAPTURES.setdefault(key, [])),)


TEST_NODES = (
    CILTest_TinySVD, CILTest_TinyVP, CILTest_TinyWan, CILTest_TinySVDCheckpoint, CILTest_TinyWanLoaders,
    CILTest_TinyTextEncode, CILTest_CaptureApplyModel, CILTest_CaptureValue, CILTest_RandomImages,
    CILTest_StoredImages, CILTest_InterruptingVAE,
)


@pytest.fixture(scope="session")
def tiny_host(host) -> Host:
    """The host with every CILTest_* source node registered (tiny SVD, VP, Wan, loader stand-ins,
    capture nodes)."""
    import gc

    for cls in TEST_NODES:
        host.register(cls)
    yield host
    _CACHE.clear()  # release cached model patchers while ComfyUI's modules still exist
    gc.collect()


@pytest.fixture
def captures() -> dict[str, list[dict]]:
    """What CILTest_CaptureApplyModel / CILTest_CaptureValue recorded, emptied before each test."""
    CAPTURES.clear()
    return CAPTURES


@pytest.fixture
def image_store() -> dict:
    """Put an IMAGE tensor here under a key; CILTest_StoredImages(key) hands it to the graph."""
    IMAGE_STORE.clear()
    return IMAGE_STORE


@pytest.fixture
def stats_dir(host, tmp_path) -> Path:
    """A fresh folder registered as ComfyUI's ``cil_stats`` models folder for this test."""
    folder = tmp_path / "cil_stats"
    folder.mkdir()
    with host.models_folder("cil_stats", folder):
        yield folder


def make_stats(shape, *, tr_cov_d: float = 0.5, seed: int = 0, scale: float = 0.7, meta: dict | None = None):
    """AnalyticStats with a random E[x0] of CFHW ``shape`` (for tests)."""
    import torch
    from cil_core.analytic_init import AnalyticStats

    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    c = shape[0]
    return AnalyticStats(mean=mean, tr_cov_d=tr_cov_d, channel_var=torch.full((c,), tr_cov_d, dtype=torch.float64),
                         count=100, meta=dict(meta or {}))


@pytest.fixture
def write_stats(stats_dir):
    """``write_stats(name, CFHW shape, tr_cov_d=, seed=, scale=, meta=)`` saves random stats (our
    format) into the test's ``cil_stats`` folder and returns (file name, the AnalyticStats)."""
    from cil_core.stats_io import save_stats

    def write(name: str, shape, **kw):
        stats = make_stats(shape, **kw)
        save_stats(stats, stats_dir / name)
        return name, stats

    return write


@pytest.fixture(scope="session")
def tiny_models(host) -> dict:
    """Builders of the tiny models by kind: {"svd", "vp", "wan"} → ModelPatcher."""
    return {"svd": tiny_svd, "vp": tiny_vp, "wan": tiny_wan}


# --- kijai/ComfyUI-DynamiCrafterWrapper, when available ------------------------------------------

DC_WRAPPER = Path(os.environ.get("CIL_DCWRAPPER_PATH", "") or "CIL_DCWRAPPER_PATH-is-not-set")


@pytest.fixture(scope="session")
def dc_wrapper(host):
    """The real DynamiCrafterWrapper loaded into the host from a TEMPORARY custom_nodes copy (never
    the repo). Skips, saying why, when its source (CIL_DCWRAPPER_PATH) or requirements are missing."""
    import shutil

    if not (DC_WRAPPER / "nodes.py").is_file():
        pytest.skip(f"DynamiCrafterWrapper interop skipped: no wrapper source at {DC_WRAPPER} (set CIL_DCWRAPPER_PATH)")
    if "DynamiCrafterI2V" not in host.node_classes:
        target = Path(tempfile.mkdtemp(prefix="cil-dcwrapper-")) / "ComfyUI-DynamiCrafterWrapper"
        shutil.copytree(DC_WRAPPER, target)
        loaded = asyncio.run(host.nodes.load_custom_node(str(target)))
        if not loaded or "DynamiCrafterI2V" not in host.node_classes:
            pytest.skip("DynamiCrafterWrapper interop skipped: the wrapper does not import in this host (see the log; "
                        "its requirements: omegaconf, pytorch_lightning, timm, accelerate)")

    root = next(m for m in sys.modules if m.endswith("DynamiCrafterWrapper") and "." not in m)

    def module(suffix: str):
        """A module of the loaded wrapper package, e.g. module('lvdm.models.ddpm3d')."""
        import importlib

        return importlib.import_module(f"{root}.{suffix}")

    return module
