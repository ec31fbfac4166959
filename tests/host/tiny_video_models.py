"""Tiny, seeded, randomly initialised models of the image-to-video classes people run today, and the
test-only source node that hands them to graphs (host tier; imported by its plain name).

Every model is a real ``comfy.supported_models`` config with few channels and layers, built with
its own ``get_model`` and wrapped in a ModelPatcher; ComfyUI builds layers without weight init, so
every parameter (and every buffer a layer reads) is filled from a seeded generator here.

| kind        | ComfyUI class (config)                 | image enters                                  |
|-------------|----------------------------------------|-----------------------------------------------|
| wan22       | WAN22 (WAN22_T2V: 48-ch Wan22 latent)  | replaces latent frame 0 (Wan22ImageToVideoLatent) |
| ltxv        | LTXV (LTXV, FLUX-type sampling)        | replaces frame 0, mask 1 − strength (LTXVImgToVideo[Inplace]) |
| hunyuan15   | HunyuanVideo15                         | concat 32 image ch + 1 mask ch (HunyuanVideo15ImageToVideo) |
| kandinsky5  | Kandinsky5                             | time_dim_replace + zeros/mask concat (Kandinsky5ImageToVideo) |
| wan21_high / wan21_low | WAN21 image_to_video (WAN21_I2V) | the Wan 2.2 A14B experts: concat 4 mask + 16 image ch (WanImageToVideo) |

Conditioning is built by running ComfyUI's own conditioning nodes in the graph with a tiny VAE of
the model's latent geometry (``tiny_vae``): LTX-Video gets a real ``VideoVAE`` from a tiny config
(ComfyUI's own metadata route); Wan 2.2, HunyuanVideo 1.5 and Kandinsky 5 get a real
``comfy.sd.VAE`` built through its ``config`` route (AutoencoderKL with 3-D convolutions and 4×
causal time compression: the architecture of ComfyUI's HunyuanVideo VAE, which Kandinsky 5 uses)
at tiny width, given the latent geometry ComfyUI's loader sets for that model's own VAE (channels,
spatial and temporal compression) — their full-size VAEs (160-dim Wan 2.2, 128…1024-channel
HunyuanVideo) are hundreds of millions of parameters. Wan 2.1 uses ComfyUI's Wan 2.1 VAE
(width 8; on 0.3.64, which hard-codes width 96, the 3-D KL VAE above).
Text conditioning stands in for the text encoders: seeded random tokens of each model's width.
"""

from __future__ import annotations

import json
import math

import pytest
from tiny_models import _patcher, init_weights

KINDS = ("wan22", "ltxv", "hunyuan15", "kandinsky5", "wan21_high", "wan21_low")
MODEL_CLASS = {"wan22": "WAN22", "ltxv": "LTXV", "hunyuan15": "HunyuanVideo15", "kandinsky5": "Kandinsky5",
               "wan21_high": "WAN21", "wan21_low": "WAN21"}
CONFIG_CLASS = {"wan22": "WAN22_T2V", "ltxv": "LTXV", "hunyuan15": "HunyuanVideo15", "kandinsky5": "Kandinsky5",
                "wan21_high": "WAN21_I2V", "wan21_low": "WAN21_I2V"}
TEXT_DIM = {"wan22": 32, "ltxv": 32, "hunyuan15": 32, "kandinsky5": 32, "wan21_high": 32, "wan21_low": 32}
POOLED_DIM = 16  # Kandinsky 5's pooled CLIP text vector (y)
LATENT_CHANNELS = {"wan22": 48, "ltxv": 128, "hunyuan15": 32, "kandinsky5": 16, "wan21_high": 16, "wan21_low": 16}
A14B_SHIFT = 5.0  # Wan 2.2 A14B's sample shift (official config; the ComfyUI template's ModelSamplingSD3)


def missing_class(kind: str) -> str | None:
    """One line when this ComfyUI lacks the model class (or its config) of ``kind``, else None."""
    import comfy.model_base
    import comfy.supported_models as sm

    from cil_comfy.host import comfyui_version

    if not hasattr(comfy.model_base, MODEL_CLASS[kind]) or not hasattr(sm, CONFIG_CLASS[kind]):
        return f"ComfyUI {comfyui_version()} has no {MODEL_CLASS[kind]} model class"
    return None


def require(kind: str) -> None:
    """Skip (one line) on a ComfyUI without this model class."""
    why = missing_class(kind)
    if why:
        pytest.skip(why)


def require_node(host, node_id: str) -> None:
    """Skip (one line) on a ComfyUI without this node."""
    if node_id not in host.node_classes:
        pytest.skip(f"ComfyUI {host.version} has no {node_id} node")


def _build(config, seed: int, scale: float = 0.05):
    import torch

    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_weights(model, seed, scale)
    model.eval()
    return _patcher(model)


def _wan_config(in_dim: int, out_dim: int) -> dict:
    return {"image_model": "wan2.1", "in_dim": in_dim, "dim": 32, "ffn_dim": 64, "freq_dim": 32,
            "text_dim": TEXT_DIM["wan22"], "out_dim": out_dim, "num_heads": 2, "num_layers": 1, "text_len": 8,
            "patch_size": [1, 2, 2], "window_size": [-1, -1], "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6}


def tiny_wan22(seed: int = 0):
    """Wan 2.2 TI2V-5B layout: WAN22 (48 noisy channels in and out, no concat), Wan22 latent format."""
    import comfy.supported_models as sm

    return _build(sm.WAN22_T2V({**_wan_config(48, 48), "model_type": "t2v"}), seed)


def tiny_wan21_expert(seed: int = 0):
    """One Wan 2.2 A14B I2V expert: WAN21 image_to_video (16 noisy + 4 mask + 16 image channels),
    sampling shift 5 (A14B's sample shift) set on its config."""
    import comfy.supported_models as sm

    config = sm.WAN21_I2V({**_wan_config(36, 16), "model_type": "i2v"})
    config.sampling_settings = dict(config.sampling_settings, shift=A14B_SHIFT)
    return _build(config, seed)


def tiny_ltxv(seed: int = 0):
    """LTX-Video: LTXV (128-channel latent, patch size 1, per-token timestep = noise_mask·t)."""
    import comfy.supported_models as sm

    return _build(sm.LTXV({"image_model": "ltxv", "num_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2,
                           "cross_attention_dim": 32, "caption_channels": TEXT_DIM["ltxv"]}), seed)


def tiny_hunyuan15(seed: int = 0):
    """HunyuanVideo 1.5 I2V: HunyuanVideo15 (32 noisy + 32 image + 1 mask channels, 3-D patches)."""
    import comfy.supported_models as sm

    return _build(sm.HunyuanVideo15({
        "image_model": "hunyuan_video", "in_channels": 65, "out_channels": 32, "patch_size": [1, 1, 1],
        "vec_in_dim": None, "context_in_dim": TEXT_DIM["hunyuan15"], "hidden_size": 32, "mlp_ratio": 2.0, "num_heads": 2,
        "depth": 1, "depth_single_blocks": 1, "axes_dim": [4, 6, 6], "theta": 256, "qkv_bias": True,
        "guidance_embed": False, "byt5": False, "meanflow": False, "use_cond_type_embedding": False,
        "vision_in_dim": None, "meanflow_sum": False}), seed)


def tiny_kandinsky5(seed: int = 0):
    """Kandinsky 5 I2V: Kandinsky5 (16 noisy + 16 zero + 1 mask channels; the image via time_dim_replace)."""
    import comfy.supported_models as sm

    return _build(sm.Kandinsky5({
        "image_model": "kandinsky5", "in_visual_dim": 16, "out_visual_dim": 16, "in_text_dim": TEXT_DIM["kandinsky5"],
        "in_text_dim2": POOLED_DIM, "time_dim": 32, "model_dim": 32, "ff_dim": 64, "visual_embed_dim": 33 * 4,
        "patch_size": (1, 2, 2), "num_text_blocks": 1, "num_visual_blocks": 1, "axes_dims": (4, 6, 6)}), seed)


BUILDERS = {"wan22": tiny_wan22, "ltxv": tiny_ltxv, "hunyuan15": tiny_hunyuan15, "kandinsky5": tiny_kandinsky5,
            "wan21_high": lambda seed=0: tiny_wan21_expert(seed), "wan21_low": lambda seed=0: tiny_wan21_expert(seed + 1000)}


def tiny_model(kind: str, seed: int = 0):
    return BUILDERS[kind](seed)


# --- VAEs of each model's latent geometry ---------------------------------------------------------

# (latent channels, spatial compression, temporal compression) of ComfyUI's own VAE for each model
GEOMETRY = {"wan22": (48, 16, 4), "hunyuan15": (32, 16, 4), "kandinsky5": (16, 8, 4), "ltxv": (128, 32, 8),
            "wan21_high": (16, 8, 4), "wan21_low": (16, 8, 4)}


def _video_geometry(vae, spatial: int, temporal: int) -> None:
    """The latent geometry ComfyUI's loader sets for a causal video VAE (comfy/sd.py)."""
    vae.latent_dim = 3
    vae.upscale_ratio = (lambda a: max(0, a * temporal - (temporal - 1)), spatial, spatial)
    vae.upscale_index_formula = (temporal, spatial, spatial)
    vae.downscale_ratio = (lambda a: max(0, math.floor((a + temporal - 1) / temporal)), spatial, spatial)
    vae.downscale_index_formula = (temporal, spatial, spatial)
    vae.not_video = False


def tiny_kl3d_vae(channels: int, spatial: int, temporal: int = 4, seed: int = 0):
    """A real comfy.sd.VAE through its ``config`` route: AutoencoderKL with 3-D convolutions (ComfyUI's
    HunyuanVideo VAE architecture) of width 32 (GroupNorm's 32 groups), ``channels`` latent channels, ``spatial``× space and
    ``temporal``× causal time compression."""
    import torch
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    levels = int(math.log2(spatial)) + 1
    ddconfig = {"double_z": True, "z_channels": channels, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1] * levels, "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
                "conv3d": True, "time_compress": temporal}
    params = {"embed_dim": channels, "ddconfig": ddconfig}
    body = AutoencoderKL(**json.loads(json.dumps(params)))
    init_weights(body, seed, scale=0.05)
    vae = comfy.sd.VAE(sd={k: v.detach().clone() for k, v in body.state_dict().items()}, config={"params": params},
                       dtype=torch.float32)
    vae.latent_channels = channels
    _video_geometry(vae, spatial, temporal)
    return vae


LTXV_VAE = {"_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3, "latent_channels": 128,
            "blocks": [["res_x", 1], ["compress_all", 1], ["compress_all", 1], ["compress_all", 1], ["res_x", 1]],
            "scaling_factor": 1.0, "norm_layer": "pixel_norm", "patch_size": 4, "latent_log_var": "uniform",
            "use_quant_conv": False, "causal_decoder": False}


def tiny_ltxv_vae(seed: int = 0):
    """A real comfy.sd.VAE for LTX-Video: ComfyUI's VideoVAE from a tiny config passed the way ComfyUI
    reads it from a checkpoint's metadata (128 latent channels, 32× space, 8× causal time)."""
    import torch
    import comfy.sd
    from comfy.ldm.lightricks.vae.causal_video_autoencoder import VideoVAE

    body = VideoVAE(config=json.loads(json.dumps(LTXV_VAE)))
    init_weights(body, seed, scale=0.02)
    gen = torch.Generator().manual_seed(seed + 1)
    sd = {k: v.detach().clone() for k, v in body.state_dict().items()}
    for key in sd:  # per-channel latent statistics are buffers: give them plausible values
        if key.endswith("std-of-means"):
            sd[key] = 0.5 + torch.rand(sd[key].shape, generator=gen)
        elif key.endswith("mean-of-means"):
            sd[key] = 0.1 * torch.randn(sd[key].shape, generator=gen)
    return comfy.sd.VAE(sd=sd, metadata={"config": json.dumps({"vae": LTXV_VAE})}, dtype=torch.float32)


def tiny_wan21_vae(seed: int = 0):
    """ComfyUI's Wan 2.1 VAE (16 channels, 8× space, 4× causal time); width read from the weights."""
    import comfy.sd
    import comfy.ldm.wan.vae as wan_vae

    body = wan_vae.WanVAE(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                          temperal_downsample=[False, True, True], dropout=0.0)
    init_weights(body, seed, scale=0.02)
    try:
        return comfy.sd.VAE(sd={k: v.detach().clone() for k, v in body.state_dict().items()})
    except RuntimeError:  # ComfyUI 0.3.64 hard-codes width 96 (127 M parameters): the 3-D KL VAE instead
        return tiny_kl3d_vae(16, 8, 4, seed)


_VAES: dict = {}


def tiny_vae(kind: str):
    """The (cached) tiny VAE of ``kind``'s latent geometry."""
    if kind not in _VAES:
        if kind == "ltxv":
            _VAES[kind] = tiny_ltxv_vae()
        elif kind.startswith("wan21"):
            _VAES[kind] = _VAES.get("wan21_high") or _VAES.get("wan21_low") or tiny_wan21_vae()
        else:
            channels, spatial, temporal = GEOMETRY[kind]
            _VAES[kind] = tiny_kl3d_vae(channels, spatial, temporal)
    return _VAES[kind]


# --- text conditioning and a start image ------------------------------------------------------------

def text_conditioning(kind: str, seed: int, negative: bool = False) -> list:
    """[[tokens, extras]] shaped like the model's text encoder output (seeded random tokens)."""
    import torch

    gen = torch.Generator().manual_seed(seed * 2 + int(negative))
    tokens = torch.randn(1, 6, TEXT_DIM[kind], generator=gen)
    extras: dict = {}
    if kind == "kandinsky5":
        extras["pooled_output"] = torch.randn(1, POOLED_DIM, generator=gen)
    elif kind == "hunyuan15":
        extras["pooled_output"] = None
    elif kind == "ltxv":  # LTX's T5 encoder hands its attention mask on
        extras["attention_mask"] = torch.ones(1, tokens.shape[1], dtype=torch.long)
    return [[tokens, extras]]


def start_image(seed: int, height: int, width: int, frames: int = 1):
    """A smooth seeded random IMAGE [frames, H, W, 3] in [0, 1]."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(frames, 3, max(1, height // 8), max(1, width // 8), generator=gen)
    return torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False).movedim(1, -1).clamp(0, 1)


class CILTest_TinyVideoModel:
    """Test-only source node: a tiny model of ``kind``, its VAE, text conditioning and a start image."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"kind": (list(KINDS),), "seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                             "height": ("INT", {"default": 32, "min": 8, "max": 1024}),
                             "width": ("INT", {"default": 32, "min": 8, "max": 1024}),
                             "image_frames": ("INT", {"default": 1, "min": 1, "max": 64})}}

    RETURN_TYPES = ("MODEL", "VAE", "CONDITIONING", "CONDITIONING", "IMAGE")
    RETURN_NAMES = ("model", "vae", "positive", "negative", "start_image")
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, kind, seed, height, width, image_frames):
        return (tiny_model(kind, seed), tiny_vae(kind), text_conditioning(kind, seed), text_conditioning(kind, seed, True),
                start_image(seed + 7, height, width, image_frames))


TIMESTEPS: dict[str, list] = {}


class CILTest_CaptureTimestep:
    """Adds a DIFFUSION_MODEL wrapper recording the timestep the network itself receives (after the
    model class's process_timestep: Wan 2.2's per-frame, LTX's per-token mask·t) under ``key``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "key": ("STRING", {"default": "timestep"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "CIL/testing"

    def patch(self, model, key):
        import comfy.patcher_extension as pe

        store = TIMESTEPS.setdefault(key, [])

        def wrapper(executor, x, timestep, *args, **kwargs):
            store.append(timestep.detach().to("cpu").clone())
            return executor(x, timestep, *args, **kwargs)

        out = model.clone()
        out.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, f"cil_test_timestep_{key}", wrapper)
        return (out,)


def conditioning_nodes(kind: str, source: str, *, height: int, width: int, length: int, batch: int = 1,
                       strength: float = 1.0, inplace: bool = False) -> tuple[dict, list, list, list]:
    """Prompt nodes running the model's own ComfyUI conditioning node on the ``source`` node's outputs:
    (nodes, positive ref, negative ref, latent ref)."""
    model, vae, pos, neg, image = ([source, i] for i in range(5))
    if kind == "wan22":
        nodes = {"c1": {"class_type": "Wan22ImageToVideoLatent", "inputs": {"vae": vae, "width": width, "height": height,
                                                                             "length": length, "batch_size": batch, "start_image": image}}}
        return nodes, pos, neg, ["c1", 0]
    if kind == "ltxv":
        if inplace:
            nodes = {"c0": {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": width, "height": height, "length": length, "batch_size": batch}},
                     "c1": {"class_type": "LTXVImgToVideoInplace", "inputs": {"vae": vae, "image": image, "latent": ["c0", 0], "strength": strength, "bypass": False}}}
            return nodes, pos, neg, ["c1", 0]
        nodes = {"c1": {"class_type": "LTXVImgToVideo", "inputs": {"positive": pos, "negative": neg, "vae": vae, "image": image, "width": width,
                                                                     "height": height, "length": length, "batch_size": batch, "strength": strength}}}
        return nodes, ["c1", 0], ["c1", 1], ["c1", 2]
    node = {"hunyuan15": "HunyuanVideo15ImageToVideo", "kandinsky5": "Kandinsky5ImageToVideo"}.get(kind, "WanImageToVideo")
    nodes = {"c1": {"class_type": node, "inputs": {"positive": pos, "negative": neg, "vae": vae, "width": width, "height": height,
                                                   "length": length, "batch_size": batch, "start_image": image}}}
    return nodes, ["c1", 0], ["c1", 1], ["c1", 2]


def saved_latent(host, prefix: str):
    """The newest SaveLatent output of exactly ``prefix`` (Host.load_latent's glob also matches longer
    prefixes that start with it: 'a_h' would find 'a_hl_00001_.latent')."""
    from safetensors.torch import load_file

    files = sorted((host.root / "output").glob(f"{prefix}_[0-9][0-9][0-9][0-9][0-9]_.latent"))
    if not files:
        raise AssertionError(f"no SaveLatent output with prefix {prefix!r}")
    return load_file(str(files[-1]))["latent_tensor"]
