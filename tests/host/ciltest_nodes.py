"""Test-only ComfyUI nodes (``CILTest_*``), registered in ComfyUI's own node table by the host
tier's fixtures so graphs can start from a tiny MODEL and record what flows through them:

* sources: CILTest_TinySVD, CILTest_TinyVP, CILTest_TinyWan (model + conditioning + empty latent);
* stand-ins for the loader nodes of the shipped workflows: CILTest_TinySVDCheckpoint,
  CILTest_TinyWanLoaders, CILTest_TinyTextEncode;
* capture: CILTest_CaptureApplyModel (model inputs) and CILTest_CaptureValue (any value) record
  into ``CAPTURES``; images: CILTest_RandomImages, CILTest_StoredImages (from ``IMAGE_STORE``);
* CILTest_InterruptingVAE presses ComfyUI's cancel after its first encode.

``TEST_NODES`` lists them all; ``release_cached_models`` drops the VAEs / CLIP vision models the
loader stand-ins build once per session.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tiny_models import WAN_TEXT_DIM, svd_conditioning, tiny_clip_vision, tiny_sd_vae, tiny_svd, tiny_vp, tiny_wan, tiny_wan_vae, wan_conditioning


# --- tiny model sources ------------------------------------------------------------------------

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


# --- stand-ins for the loader nodes of the shipped workflows ----------------------------------------

_CACHE: dict = {}


def _cached(key, build):
    """VAEs and CLIP vision models are only read by the graphs: build each once per session."""
    if key not in _CACHE:
        _CACHE[key] = build()
    return _CACHE[key]


def release_cached_models() -> None:
    """Forget the cached VAEs / CLIP vision models (while ComfyUI's modules still exist)."""
    _CACHE.clear()


_TINY_DIR: list[Path] = []


def _tiny_dir() -> Path:
    """A temporary folder for the tiny CLIP vision configs, made on first use."""
    if not _TINY_DIR:
        _TINY_DIR.append(Path(tempfile.mkdtemp(prefix="cil-tiny-")))
    return _TINY_DIR[0]


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
        clip_vision = _cached("cv_svd", lambda: tiny_clip_vision(_tiny_dir(), hidden=32, projection=64))
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
        clip_vision = _cached("cv_wan", lambda: tiny_clip_vision(_tiny_dir(), hidden=1280, projection=32))
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


# --- images ---------------------------------------------------------------------------------------

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


# --- cancelling a run ---------------------------------------------------------------------------

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
