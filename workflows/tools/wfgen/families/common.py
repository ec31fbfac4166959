"""What the workflows share: the manifest entry (``Spec``), model download links as the official
templates give them, and the CIL blocks (Late Start Sampler, bypassed stats loader and TimeNoise,
decode-and-save, the muted Leakage Probe group)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..graph import MODE_BYPASS, MODE_NEVER, Column, Node, Workflow

HF = "https://huggingface.co"
WAN21_REPO = f"{HF}/Comfy-Org/Wan_2.1_ComfyUI_repackaged/resolve/main/split_files"
WAN22_REPO = f"{HF}/Comfy-Org/Wan_2.2_ComfyUI_Repackaged/resolve/main/split_files"
HY15_REPO = f"{HF}/Comfy-Org/HunyuanVideo_1.5_repackaged/resolve/main/split_files"
MODEL_LINKS = {  # file -> (url, models folder): the official templates' download links
    "wan_2.1_vae.safetensors": (f"{WAN21_REPO}/vae/wan_2.1_vae.safetensors", "vae"),
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors": (f"{WAN21_REPO}/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", "text_encoders"),
    "clip_vision_h.safetensors": (f"{WAN21_REPO}/clip_vision/clip_vision_h.safetensors", "clip_vision"),
    "wan2.1_i2v_480p_14B_fp16.safetensors": (f"{WAN21_REPO}/diffusion_models/wan2.1_i2v_480p_14B_fp16.safetensors", "diffusion_models"),
    "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors": (f"{WAN22_REPO}/diffusion_models/wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", "diffusion_models"),
    "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors": (f"{WAN22_REPO}/diffusion_models/wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors", "diffusion_models"),
    "wan2.2_ti2v_5B_fp16.safetensors": (f"{WAN22_REPO}/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors", "diffusion_models"),
    "wan2.2_vae.safetensors": (f"{WAN22_REPO}/vae/wan2.2_vae.safetensors", "vae"),
    "t5xxl_fp16.safetensors": (f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp16.safetensors", "text_encoders"),
    "ltx-video-2b-v0.9.5.safetensors": (f"{HF}/Lightricks/LTX-Video/resolve/main/ltx-video-2b-v0.9.5.safetensors", "checkpoints"),
    "sigclip_vision_patch14_384.safetensors": (f"{HF}/Comfy-Org/sigclip_vision_384/resolve/main/sigclip_vision_patch14_384.safetensors", "clip_vision"),
    "qwen_2.5_vl_7b_fp8_scaled.safetensors": (f"{HY15_REPO}/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors", "text_encoders"),
    "byt5_small_glyphxl_fp16.safetensors": (f"{HY15_REPO}/text_encoders/byt5_small_glyphxl_fp16.safetensors", "text_encoders"),
    "hunyuanvideo15_vae_fp16.safetensors": (f"{HY15_REPO}/vae/hunyuanvideo15_vae_fp16.safetensors", "vae"),
    "hunyuanvideo1.5_720p_i2v_fp16.safetensors": (f"{HY15_REPO}/diffusion_models/hunyuanvideo1.5_720p_i2v_fp16.safetensors", "diffusion_models"),
    "kandinsky5lite_i2v_5s.safetensors": (f"{HF}/kandinskylab/Kandinsky-5.0-I2V-Lite-5s/resolve/main/model/kandinsky5lite_i2v_5s.safetensors", "diffusion_models"),
    "hunyuan_video_vae_bf16.safetensors": (f"{HF}/Kijai/HunyuanVideo_comfy/resolve/main/hunyuan_video_vae_bf16.safetensors", "vae"),
    "clip_l.safetensors": (f"{HF}/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors", "text_encoders"),
    "sd_xl_base_1.0.safetensors": (f"{HF}/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors", "checkpoints"),
    "svd.safetensors": (f"{HF}/stabilityai/stable-video-diffusion-img2vid/resolve/main/svd.safetensors", "checkpoints"),
    "svd_xt.safetensors": (f"{HF}/stabilityai/stable-video-diffusion-img2vid-xt/resolve/main/svd_xt.safetensors", "checkpoints"),
}
WAN_NEGATIVE = ("色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，"
                "残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，"
                "三条腿，背景人很多，倒着走")
PROMPT_SIZE = (420, 150)


@dataclass(frozen=True)
class Spec:
    """One workflow and its manifest entry (workflows/api/manifest.json, read by tests/e2e)."""

    build: Callable
    name: str
    run: bool
    why: str
    packs: tuple = ()
    timeout_s: int = 300
    min_comfyui: str | None = None  # the first ComfyUI with every node and model class it needs

    def manifest(self) -> dict:
        entry = {"run": self.run, "why": self.why, "packs": list(self.packs), "timeout_s": self.timeout_s}
        return {**entry, "min_comfyui": self.min_comfyui} if self.min_comfyui else entry


def models(*files: str) -> list[dict]:
    """The ``models`` property of a loader: the frontend offers these downloads when files are missing."""
    return [{"name": f, "url": MODEL_LINKS[f][0], "directory": MODEL_LINKS[f][1]} for f in files]


def loader(col: Column, type_: str, field: str, file: str, **widgets) -> Node:
    """A model loader with its file's download link."""
    return col.add(type_, models=models(file), **{field: file}, **widgets)


def prompts(col: Column, clip: Node, positive: str, negative: str) -> tuple[Node, Node]:
    pos = col.add("CLIPTextEncode", PROMPT_SIZE, title="Prompt", color="#232", bgcolor="#353", links={"clip": clip.out(0)}, text=positive)
    neg = col.add("CLIPTextEncode", PROMPT_SIZE, title="Negative prompt", color="#322", bgcolor="#533", links={"clip": clip.out(0)}, text=negative)
    return pos, neg


def start_image(col: Column, height: float = 340) -> Node:
    return col.add("LoadImage", (0, height), image="example.png")


def timenoise(col: Column, model: tuple[Node, int], *, beta_m: float = 100.0, title: str | None = None) -> Node:
    """TimeNoise Conditioning, bypassed (for TimeNoise-fine-tuned models; on stock models an experiment)."""
    return col.add("CIL_TimeNoiseConditioning", title=title, node_mode=MODE_BYPASS, controls={"seed": "fixed"},
                   links={"model": model}, beta_m=beta_m, a=5.0, s=1.0, mode="sampled", quantile=0.5, seed=0,
                   noise_shape="per_element", noise_clip_tokens=False)


def stats_loader(col: Column, file: str) -> Node:
    """Load Analytic Stats, bypassed until the user has estimated stats for this model and size."""
    return col.add("CIL_LoadAnalyticStats", node_mode=MODE_BYPASS, stats_name=file)


def late_start(col: Column, model, positive, negative, latent, stats, *, seed: int, steps: int, cfg: float,
               sampler: str, M: float, low_noise=None, boundary: float = 0.9, scheduler: str = "cil_late_start",
               title: str = "CIL: late start + Analytic-Init") -> Node:
    links = {"model": model, "positive": positive, "negative": negative, "latent_image": latent}
    if stats is not None:  # a node's output (stats loader, estimator, toy loader)
        links["stats"] = stats
    if low_noise is not None:
        links["model_low_noise"] = low_noise
    return col.add("CIL_LateStartSampler", title=title, controls={"seed": "fixed"}, links=links, seed=seed, steps=steps, cfg=cfg,
                   sampler_name=sampler, scheduler=scheduler, M=M, naive_mode="paper", fit="strict", boundary=boundary)


def decode_and_save(col: Column, samples, vae, *, fps: float, prefix: str, preview=(0, 0), codec: str = "auto",
                    fmt: str = "auto", decoder: str = "VAEDecode") -> tuple[Node, Node, Node]:
    dec = col.add(decoder, links={"samples": samples, "vae": vae})
    vid = col.add("CreateVideo", links={"images": dec.out(0)}, fps=float(fps))
    save = col.add("SaveVideo", preview, links={"video": vid.out(0)}, filename_prefix=prefix, format=fmt, codec=codec)
    return dec, vid, save


def muted(nodes) -> None:
    """Mute nodes (mode 2, Ctrl+M): the page leaves them out of the prompt until un-muted."""
    for n in nodes:
        n.mode = MODE_NEVER
