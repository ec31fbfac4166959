"""Tiny randomly initialised models built with ComfyUI's own model code (never fakes), and the
conditioning their graphs need: the tiny SVD (EDM, v-prediction, concat image), a VP v-prediction
ZSNR concat model (DynamiCrafter-like), Wan 2.1 I2V (rectified flow), SD- and Wan-style VAEs, CLIP
vision; ``make_stats`` makes random Analytic-Init stats.

ComfyUI must be booted first (``host_boot.Host``): every builder imports ``comfy`` when called.
"""

from __future__ import annotations

from pathlib import Path


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


# --- the tiny SVD -------------------------------------------------------------------------------

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


# --- a VP v-prediction concat model and Wan 2.1 I2V -----------------------------------------------

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


# --- tiny VAEs and CLIP vision --------------------------------------------------------------------

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


# --- Analytic-Init stats --------------------------------------------------------------------------

def make_stats(shape, *, tr_cov_d: float = 0.5, seed: int = 0, scale: float = 0.7, meta: dict | None = None):
    """AnalyticStats with a random E[x0] of CFHW ``shape`` (for tests)."""
    import torch
    from cil_core.analytic_init import AnalyticStats

    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    c = shape[0]
    return AnalyticStats(mean=mean, tr_cov_d=tr_cov_d, channel_var=torch.full((c,), tr_cov_d, dtype=torch.float64),
                         count=100, meta=dict(meta or {}))
