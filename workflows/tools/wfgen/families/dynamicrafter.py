"""DynamiCrafter through kijai's ComfyUI-DynamiCrafterWrapper (a third-party pack), fed by the pack's
Analytic-Init for DynamiCrafterWrapper from your stats."""

from __future__ import annotations

from ..graph import CIL_GREEN, Column, Row, Workflow
from .common import Spec

NOTE = """## DynamiCrafter (kijai/ComfyUI-DynamiCrafterWrapper) with your own Analytic-Init stats

Needs the third-party pack **ComfyUI-DynamiCrafterWrapper**. *Analytic-Init for
DynamiCrafterWrapper* replaces *DynamiCrafter LoadInitNoise*: it turns stats of any
resolution (here the official 320x512 file, copied to `models/cil_stats`) and a start M
into the wrapper's `init_noise`, on DynamiCrafter's own ZSNR schedule.
M = 940 for the original model (paper); 1000 for CIL fine-tuned models.
"""


def build(cat) -> Workflow:
    wf = Workflow("dynamicrafter_wrapper_cil", cat)
    Column(wf, -460, 0).note((420, 340), NOTE)
    row = Row(wf, 0, 0)
    a = row.column()
    model = a.add("DownloadAndLoadDynamiCrafterModel", model="dynamicrafter_512_fp16_pruned.safetensors", dtype="auto", fp8_unet=False)
    clip = a.add("DownloadAndLoadCLIPModel", model="stable-diffusion-2-1-clip-fp16.safetensors")
    clip_vision = a.add("DownloadAndLoadCLIPVisionModel", model="CLIP-ViT-H-fp16.safetensors")
    image = a.add("LoadImage", (0, 340), image="example.png")
    a.even()
    b = row.column()
    pos = b.add("CLIPTextEncode", (380, 120), title="Prompt", color="#232", bgcolor="#353", links={"clip": clip.out(0)},
                text="a boat sailing on a calm lake, gentle waves")
    neg = b.add("CLIPTextEncode", (380, 120), title="Negative prompt", color="#322", bgcolor="#533", links={"clip": clip.out(0)}, text="")
    scaled = b.add("ImageScale", links={"image": image.out(0)}, upscale_method="lanczos", width=512, height=320, crop="center")
    b.even()
    c = row.column()
    i2v = c.add("DynamiCrafterI2V", controls={"seed": "fixed"},
                links={"model": model.out(0), "clip_vision": clip_vision.out(0), "positive": pos.out(0), "negative": neg.out(0),
                       "image": scaled.out(0)},
                steps=50, cfg=7.5, eta=1.0, frames=16, seed=123, fs=24, keep_model_loaded=True, vae_dtype="auto",
                frame_window_size=16, frame_window_stride=4, augmentation_level=0.0)
    d = row.column()
    vid = d.add("CreateVideo", links={"images": i2v.out(0)}, fps=8.0)
    save = d.add("SaveVideo", (380, 380), links={"video": vid.out(0)}, filename_prefix="video/dynamicrafter_cil", format="auto", codec="auto")
    low = Row(wf, b.x, row.bottom + 96)
    la = low.column()
    stats = la.add("CIL_LoadAnalyticStats", stats_name="dynamicrafter_320x512.safetensors")
    lb = low.column()
    init = lb.add("CIL_DynamiCrafterInitNoise", links={"stats": stats.out(0)}, M=940, analytic_init=True, frames=16, width=512,
                  height=320, fit="strict")
    lc = low.column()
    report = lc.add("PreviewAny", (340, 150), title="init_noise report", links={"source": init.out(3)})
    i2v.links["init_noise"] = init.out(0)
    wf.group("DynamiCrafterWrapper (third-party pack)", [*a.nodes, *b.nodes, i2v, vid, save])
    wf.group("CIL: your stats → init_noise", [stats, init, report], color=CIL_GREEN)
    return wf


SPECS = [Spec(build, "dynamicrafter_wrapper_cil", False, "needs DynamiCrafter 512 weights, SD2.1 CLIP, CLIP-ViT-H and DynamiCrafter stats",
              packs=("ComfyUI-DynamiCrafterWrapper",))]
