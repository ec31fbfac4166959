"""Wan 2.1 image-to-video: ComfyUI's image_to_video_wan template with the Late Start Sampler beside
its KSampler (same model files, 512x512, 33 frames, 20 steps, cfg 6, uni_pc, shift 8, 16 fps)."""

from __future__ import annotations

from ..graph import CIL_GREEN, Column, Workflow
from .common import WAN_NEGATIVE, Spec, decode_and_save, late_start, loader, prompts, start_image, stats_loader, timenoise

NOTE = """## Wan 2.1 image-to-video, with CIL

ComfyUI's **Wan 2.1 I2V template** (same models, 512x512, 33 frames, 20 steps, cfg 6, uni_pc,
shift 8) and, below it, the same graph sampled by the **Late Start Sampler**: sampling starts at
t = **M** (0.9 here) on Wan's shifted schedule from the Analytic-Init Gaussian instead of from pure
noise (paper Sec. 4.1). Both save a video; same seed, so you compare like with like.

* **Load Analytic Stats** (bypassed): without stats the start is the paper's naive late start (the
  sampler's `info` says which). Estimate stats with *Estimate Analytic Stats* (this model and Wan
  VAE, 16 channels), then un-bypass it (Ctrl+B).
* **TimeNoise Conditioning** (bypassed): for Wan models fine-tuned with TimeNoise; on stock Wan it
  is an experiment.
* `cil_late_start` spaces the steps as `simple` does on a flow model (shifted-linear), from M down.
"""


def build(cat) -> Workflow:
    wf = Workflow("wan_i2v_cil", cat)
    Column(wf, -480, 0).note((440, 520), NOTE)
    a = Column(wf, 0, 0)
    unet = loader(a, "UNETLoader", "unet_name", "wan2.1_i2v_480p_14B_fp16.safetensors", weight_dtype="default")
    clip = loader(a, "CLIPLoader", "clip_name", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan", device="default")
    vae = loader(a, "VAELoader", "vae_name", "wan_2.1_vae.safetensors")
    clip_vision = loader(a, "CLIPVisionLoader", "clip_name", "clip_vision_h.safetensors")
    shift = a.add("ModelSamplingSD3", links={"model": unet.out(0)}, shift=8.0)
    a.even()
    a.skip(40)
    image = start_image(a)
    b = Column(wf, a.right + 70, 0)
    pos, neg = prompts(b, clip, "a cute anime girl with massive fennec ears and a big fluffy tail wearing a maid outfit turning around",
                       WAN_NEGATIVE)
    b.skip(40)
    encoded = b.add("CLIPVisionEncode", links={"clip_vision": clip_vision.out(0), "image": image.out(0)}, crop="none")
    i2v = b.add("WanImageToVideo", links={"positive": pos.out(0), "negative": neg.out(0), "vae": vae.out(0),
                                          "clip_vision_output": encoded.out(0), "start_image": image.out(0)},
                width=512, height=512, length=33, batch_size=1)
    b.even()
    c = Column(wf, b.right + 70, 0)
    base = c.add("KSampler", title="Template: KSampler from pure noise", controls={"seed": "fixed"},
                 links={"model": shift.out(0), "positive": i2v.out(0), "negative": i2v.out(1), "latent_image": i2v.out(2)},
                 seed=987948718394761, steps=20, cfg=6.0, sampler_name="uni_pc", scheduler="simple", denoise=1.0)
    d = Column(wf, c.right + 70, 0)
    base_out = decode_and_save(d, base.out(0), vae.out(0), fps=16, prefix="video/wan2.1_i2v", preview=(0, 300))
    c.y = max(c.y, d.y) + 60
    d.y = c.y
    tn = timenoise(c, shift.out(0), title="TimeNoise (bypassed)")
    stats = stats_loader(c, "wan21_512x512_33f.safetensors")
    cil = late_start(c, tn.out(0), i2v.out(0), i2v.out(1), i2v.out(2), stats.out(0), seed=987948718394761, steps=20, cfg=6.0,
                     sampler="uni_pc", M=0.9)
    c.even()
    cil_out = decode_and_save(d, cil.out(0), vae.out(0), fps=16, prefix="video/wan2.1_i2v_cil", preview=(0, 300))
    info = d.add("PreviewAny", (0, 150), title="What the CIL sampler did", links={"source": cil.out(1)})
    wf.group("Models", a.nodes[:5])
    wf.group("Start image", [image])
    wf.group("Prompt and video size", b.nodes)
    wf.group("Template: Wan 2.1 I2V as ComfyUI ships it", [base, *base_out])
    wf.group("CIL: late start + Analytic-Init", [tn, stats, cil, *cil_out, info], color=CIL_GREEN)
    return wf


SPECS = [Spec(build, "wan_i2v_cil", False, "needs Wan 2.1 I2V 14B, umt5-xxl, Wan VAE and CLIP-vision-H weights")]
