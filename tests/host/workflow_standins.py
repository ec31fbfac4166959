"""Running the shipped workflows' API twins on tiny models (host tier; imported by its plain name).

The template workflows load real model files. Here every loader becomes a test-only stand-in with the
same outputs, chosen by the file name the workflow asks for, that builds a tiny seeded model of the
same ComfyUI class (tiny_models / tiny_video_models), its VAE of the right latent geometry and CLIP
vision of the right width; text encoders become seeded token tensors of the model's text width.
Everything else in the graph (conditioning nodes, template samplers, our nodes, decode, save) runs
as shipped, at small sizes and few steps (``substitute``: TEST_SUBSTITUTIONS in workflows/README.md).

| workflow loader (file)                              | stand-in                                   |
|-----------------------------------------------------|--------------------------------------------|
| UNETLoader (Wan 2.1 I2V 14B)                        | tiny WAN21 I2V (CLIP-vision projection)     |
| UNETLoader (Wan 2.2 14B high / low noise)           | tiny WAN21 I2V experts, shift 5             |
| UNETLoader (Wan 2.2 TI2V-5B)                        | tiny WAN22                                  |
| UNETLoader (HunyuanVideo 1.5 720p I2V)              | tiny HunyuanVideo15 with vision tokens      |
| UNETLoader (Kandinsky 5 I2V Lite)                   | tiny Kandinsky5                             |
| CheckpointLoaderSimple (LTX-Video 2B / SDXL base)   | tiny LTXV + its VAE / tiny SDXL + SD VAE    |
| ImageOnlyCheckpointLoader (SVD, SVD-XT)             | CILTest_TinySVDCheckpoint (ciltest_nodes)   |
| VAELoader, CLIPVisionLoader                         | the tiny VAE / CLIP vision of that model    |
| CLIPLoader / DualCLIPLoader + CLIPTextEncode        | CILTest_TinyPrompt (seeded tokens)          |
"""

from __future__ import annotations

import json
import zlib

import tiny_video_models as tvm
from ciltest_nodes import _cached, _tiny_dir
from tiny_models import init_weights, tiny_clip_vision, tiny_sd_vae, tiny_wan

SDXL_TEXT, SDXL_POOLED = 32, 32
VISION_DIM = 32  # the tiny HunyuanVideo 1.5's vision_in_dim = its tiny SigLIP's width

# model file name fragment -> family
FAMILIES = {
    "wan2.1_i2v_480p_14B": "wan21",
    "wan2.2_i2v_high_noise_14B": "a14b_high",
    "wan2.2_i2v_low_noise_14B": "a14b_low",
    "wan2.2_ti2v_5B": "wan22",
    "hunyuanvideo1.5_720p_i2v": "hunyuan15",
    "kandinsky5lite_i2v": "kandinsky5",
    "ltx-video-2b": "ltxv",
    "sd_xl_base": "sdxl",
}
VAES = {"wan_2.1_vae": "wan21_high", "wan2.2_vae": "wan22", "hunyuanvideo15_vae": "hunyuan15", "hunyuan_video_vae": "kandinsky5"}
TEXT_KIND = {"wan21": "wan21_high", "a14b_high": "wan21_high", "a14b_low": "wan21_high", "wan22": "wan22",
             "hunyuan15": "hunyuan15", "kandinsky5": "kandinsky5", "ltxv": "ltxv", "sdxl": "sdxl"}
MODEL_CLASS = {"hunyuan15": "hunyuan15", "kandinsky5": "kandinsky5", "wan22": "wan22", "ltxv": "ltxv",
               "a14b_high": "wan21_high", "a14b_low": "wan21_high"}


def family(file_name: str) -> str:
    for fragment, name in FAMILIES.items():
        if fragment in file_name:
            return name
    raise KeyError(f"no tiny stand-in for the model file {file_name!r}")


def missing_class(prompt: dict) -> str | None:
    """One line when this ComfyUI lacks the model class one of the prompt's loaders needs."""
    for node in prompt.values():
        for key in ("unet_name", "ckpt_name"):
            name = node["inputs"].get(key)
            if isinstance(name, str) and any(f in name for f in FAMILIES) and family(name) in MODEL_CLASS:
                why = tvm.missing_class(MODEL_CLASS[family(name)])
                if why:
                    return why
    return None


# --- tiny models the other modules do not build ------------------------------------------------------

def tiny_hunyuan15_vision(seed: int = 0):
    """HunyuanVideo 1.5 I2V as the 720p template runs it: concat image + mask and SigLIP vision tokens
    (vision_in_dim = the tiny CLIP vision's width)."""
    import comfy.supported_models as sm

    return tvm._build(sm.HunyuanVideo15({
        "image_model": "hunyuan_video", "in_channels": 65, "out_channels": 32, "patch_size": [1, 1, 1],
        "vec_in_dim": None, "context_in_dim": tvm.TEXT_DIM["hunyuan15"], "hidden_size": 32, "mlp_ratio": 2.0, "num_heads": 2,
        "depth": 1, "depth_single_blocks": 1, "axes_dim": [4, 6, 6], "theta": 256, "qkv_bias": True,
        "guidance_embed": False, "byt5": False, "meanflow": False, "use_cond_type_embedding": False,
        "vision_in_dim": VISION_DIM, "meanflow_sum": False}), seed)


def tiny_sdxl(seed: int = 0):
    """A real comfy SDXL (EPS, pooled text + size ADM) with one 32-channel level."""
    import torch
    import comfy.supported_models as sm

    config = sm.SDXL({
        "image_size": 32, "use_checkpoint": False, "use_spatial_transformer": True, "legacy": False,
        "num_classes": "sequential", "adm_in_channels": SDXL_POOLED + 6 * 256, "model_channels": 32, "in_channels": 4,
        "out_channels": 4, "channel_mult": [1], "num_res_blocks": [1], "transformer_depth": [1],
        "transformer_depth_output": [1, 1], "transformer_depth_middle": 1, "context_dim": SDXL_TEXT, "num_head_channels": 16,
        "use_linear_in_transformer": True, "use_temporal_attention": False})
    config.unet_config["num_head_channels"] = 16  # SDXL's extra config sets 64: more than the tiny width
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_weights(model, seed)
    model.eval()
    return tvm._patcher(model)


UNETS = {"wan21": lambda: tiny_wan(0), "a14b_high": lambda: tvm.tiny_wan21_expert(0), "a14b_low": lambda: tvm.tiny_wan21_expert(1000),
         "wan22": lambda: tvm.tiny_wan22(0), "hunyuan15": lambda: tiny_hunyuan15_vision(0), "kandinsky5": lambda: tvm.tiny_kandinsky5(0)}


# --- the stand-in nodes --------------------------------------------------------------------------------

class _StandIn:
    CATEGORY = "CIL/testing"
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"name": ("STRING", {"default": ""})}}


class CILTest_TinyUNet(_StandIn):
    """Stands in for UNETLoader: the tiny model of the file's family."""

    RETURN_TYPES = ("MODEL",)

    def load(self, name):
        return (UNETS[family(name)](),)


class CILTest_TinyVAE(_StandIn):
    """Stands in for VAELoader: a tiny VAE of that model's latent geometry."""

    RETURN_TYPES = ("VAE",)

    def load(self, name):
        kind = next((k for fragment, k in VAES.items() if fragment in name), None)
        if kind is None:
            raise KeyError(f"no tiny VAE for {name!r}")
        return (tvm.tiny_vae(kind),)


class CILTest_TinyCLIPVision(_StandIn):
    """Stands in for CLIPVisionLoader: CLIP-ViT-H's 1280-wide tokens (Wan 2.1) or a narrow SigLIP (HunyuanVideo 1.5)."""

    RETURN_TYPES = ("CLIP_VISION",)

    def load(self, name):
        hidden = 1280 if "clip_vision_h" in name else VISION_DIM
        return (_cached(f"cv_{hidden}", lambda: tiny_clip_vision(_tiny_dir(), hidden=hidden, projection=32)),)


class CILTest_TinyCheckpoint(_StandIn):
    """Stands in for CheckpointLoaderSimple: LTX-Video (tiny LTXV + its VideoVAE) or SDXL (tiny SDXL + SD VAE);
    the CLIP output is None (the text encoders are stood in for separately)."""

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")

    def load(self, name):
        if family(name) == "ltxv":
            return (tvm.tiny_ltxv(0), None, tvm.tiny_vae("ltxv"))
        return (tiny_sdxl(0), None, _cached("vae_sd", tiny_sd_vae))


class CILTest_TinyPrompt:
    """Stands in for a text encoder + CLIPTextEncode: seeded tokens shaped like that model's encoder output."""

    CATEGORY = "CIL/testing"
    FUNCTION = "encode"
    RETURN_TYPES = ("CONDITIONING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True}), "kind": ("STRING", {"default": "wan21_high"})}}

    def encode(self, text, kind):
        import torch

        seed = zlib.crc32(text.encode("utf-8")) % 100003
        if kind == "sdxl":
            gen = torch.Generator().manual_seed(seed)
            return ([[torch.randn(1, 6, SDXL_TEXT, generator=gen), {"pooled_output": torch.randn(1, SDXL_POOLED, generator=gen)}]],)
        return (tvm.text_conditioning(kind, seed),)


STANDINS = (CILTest_TinyUNet, CILTest_TinyVAE, CILTest_TinyCLIPVision, CILTest_TinyCheckpoint, CILTest_TinyPrompt)


# --- the substitution ----------------------------------------------------------------------------------

TINY_SIZES = {  # conditioning node -> inputs at tiny size (latent frames enough for the node's own needs)
    "WanImageToVideo": {"width": 32, "height": 32, "length": 5},
    "Wan22ImageToVideoLatent": {"width": 32, "height": 32, "length": 9},  # the probe measures frames 1.. (2+)
    "HunyuanVideo15ImageToVideo": {"width": 32, "height": 32, "length": 5},
    "Kandinsky5ImageToVideo": {"width": 32, "height": 32, "length": 37},  # NormalizeVideoLatentStart reads 4 + 5 latent frames
    "LTXVImgToVideo": {"width": 64, "height": 64, "length": 9},
    "SVD_img2vid_Conditioning": {"width": 64, "height": 64, "video_frames": 4},
    "EmptyLatentImage": {"width": 64, "height": 64},
    "CIL_EstimateAnalyticStats": {"frames": 4, "width": 64, "height": 64, "frame_stride": 1},
    "CIL_LeakageProbe": {"grid_count": 3, "samples_per_t": 1},
}
STEPS = {"KSampler": 3, "CIL_LateStartSampler": 3, "BasicScheduler": 3, "LTXVScheduler": 3}
REFERENCE_CLIP = "cil_reference.mp4"


def substitute(prompt: dict) -> dict:
    """TEST_SUBSTITUTIONS: tiny stand-ins for the loaders and text encoders, small sizes and few steps."""
    prompt = json.loads(json.dumps(prompt))
    names = [n["inputs"].get(k) for n in prompt.values() for k in ("unet_name", "ckpt_name") if isinstance(n["inputs"].get(k), str)]
    kinds = {family(name) for name in names if any(f in name for f in FAMILIES)}
    text_kind = TEXT_KIND[sorted(kinds, key=lambda k: k == "sdxl")[0]] if kinds else "wan21_high"
    sizes = {}
    for node in prompt.values():  # the image size the conditioning node works at, for resizes feeding it
        for kind, tiny in TINY_SIZES.items():
            if node["class_type"] == kind and "width" in tiny:
                sizes = tiny
    for key, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "UNETLoader":
            prompt[key] = {"class_type": "CILTest_TinyUNet", "inputs": {"name": inputs["unet_name"]}}
        elif kind == "VAELoader":
            prompt[key] = {"class_type": "CILTest_TinyVAE", "inputs": {"name": inputs["vae_name"]}}
        elif kind == "CLIPVisionLoader":
            prompt[key] = {"class_type": "CILTest_TinyCLIPVision", "inputs": {"name": inputs["clip_name"]}}
        elif kind == "CheckpointLoaderSimple":
            prompt[key] = {"class_type": "CILTest_TinyCheckpoint", "inputs": {"name": inputs["ckpt_name"]}}
        elif kind == "ImageOnlyCheckpointLoader":
            prompt[key] = {"class_type": "CILTest_TinySVDCheckpoint", "inputs": {"ckpt_name": inputs["ckpt_name"]}}
        elif kind == "CLIPTextEncode":
            prompt[key] = {"class_type": "CILTest_TinyPrompt", "inputs": {"text": inputs["text"], "kind": text_kind}}
        elif kind in ("CLIPLoader", "DualCLIPLoader"):
            del prompt[key]
        else:
            inputs.update(TINY_SIZES.get(kind, {}))
            if kind in STEPS:
                inputs["steps"] = STEPS[kind]
            if kind == "KSamplerAdvanced":  # the expert pair: 4 steps, switched after 2
                inputs.update(steps=4, **({"end_at_step": 2} if inputs["start_at_step"] == 0 else {"start_at_step": 2}))
            if kind == "ImageScale" and sizes:
                inputs.update(width=sizes["width"], height=sizes["height"])
            if kind == "ImageFromBatch" and inputs["length"] > 1:
                inputs["length"] = sizes.get("length", 5)
            if kind == "LoadVideo":
                inputs["file"] = REFERENCE_CLIP
    return prompt


def write_reference_clip(input_dir, frames: int = 48, size: int = 64) -> None:
    """A short smooth moving clip (mpeg4 in mp4) as the Leakage Probe's reference video."""
    import av
    import numpy as np

    path = input_dir / REFERENCE_CLIP
    if path.is_file():
        return
    yy, xx = np.mgrid[0:size, 0:size]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(frames):
            blob = np.exp(-(((xx - 8 - t) ** 2 + (yy - size / 2) ** 2) / 60.0))
            rgb = np.stack([blob, 0.5 * np.ones_like(blob), 1 - blob], -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray((rgb * 255).astype(np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
