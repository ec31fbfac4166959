"""LTX-Video: ComfyUI's ltxv_image_to_video template (LTXV 2B 0.9.5, 768x512, 97 frames, LTXVScheduler
30 steps, cfg 3, euler, image strength 0.15) with the Late Start Sampler beside its SamplerCustom."""

from __future__ import annotations

from ..graph import CIL_GREEN, Column, Row, Workflow
from .common import Spec, decode_and_save, late_start, loader, prompts, start_image, stats_loader, timenoise

ROW_GAP = 96
POSITIVE = ("A red fox moving gracefully, its russet coat vibrant against the white landscape, leaving perfect star-shaped prints "
            "behind as steam rises from its breath in the crisp winter air. The scene is wrapped in snow-muffled silence, broken only "
            "by the gentle murmur of water still flowing beneath the ice.")
NEGATIVE = ("low quality, worst quality, deformed, distorted, disfigured, motion smear, motion artifacts, fused fingers, bad anatomy, "
            "weird hand, ugly")

NOTE = """## LTX-Video image-to-video, with CIL

ComfyUI's **LTX-Video I2V template** (LTXV 2B 0.9.5, 768x512, 97 frames, 30 steps, cfg 3, euler,
24 fps). The start image replaces latent frame 0 with strength 0.15 (noise mask 0.85 there).
Below, the **Late Start Sampler** samples the same conditioning from **M** = 0.9 with
Analytic-Init; the partly held frame starts as ComfyUI's own sampler starts it.

* The template's **LTXVScheduler** (resolution-dependent shift, stretched to 0.1) stays with the
  template; `cil_late_start` spaces steps linearly on the model's own shift (2.37), from M down.
* **Load Analytic Stats** (bypassed): LTX stats are 128 channels at 1/32 size, 1/8 frames; estimate
  them with *Estimate Analytic Stats* through this VAE.
* **TimeNoise Conditioning** (bypassed): acts on *fully* held frames only (strength 1); at the
  template's 0.15 it leaves the frame as you set it. For TimeNoise-fine-tuned models.
* LTX-2 (audio + video) is not here: its latent is nested and Analytic-Init refuses it (see
  workflows/README.md).
"""


def build(cat) -> Workflow:
    wf = Workflow("ltxv_i2v_cil", cat)
    Column(wf, -520, 0).note((480, 560), NOTE)
    top = Row(wf, 0, 0)
    a = top.column()
    ckpt = loader(a, "CheckpointLoaderSimple", "ckpt_name", "ltx-video-2b-v0.9.5.safetensors")
    clip = loader(a, "CLIPLoader", "clip_name", "t5xxl_fp16.safetensors", type="ltxv", device="default")
    a.skip(60)
    image = start_image(a)
    a.even()
    b = top.column()
    pos, neg = prompts(b, clip, POSITIVE, NEGATIVE)
    i2v = b.add("LTXVImgToVideo", links={"positive": pos.out(0), "negative": neg.out(0), "vae": ckpt.out(2), "image": image.out(0)},
                width=768, height=512, length=97, batch_size=1, strength=0.15)
    cond = b.add("LTXVConditioning", links={"positive": i2v.out(0), "negative": i2v.out(1)}, frame_rate=25.0)
    b.even()
    seed = 712395695050634
    c = top.column()
    select = c.add("KSamplerSelect", sampler_name="euler")
    sigmas = c.add("LTXVScheduler", links={"latent": i2v.out(2)}, steps=30, max_shift=2.05, base_shift=0.95, stretch=True, terminal=0.1)
    c.even()
    d = top.column()
    base = d.add("SamplerCustom", title="Template: SamplerCustom from pure noise", controls={"noise_seed": "fixed"},
                 links={"model": ckpt.out(0), "positive": cond.out(0), "negative": cond.out(1), "sampler": select.out(0),
                        "sigmas": sigmas.out(0), "latent_image": i2v.out(2)},
                 add_noise=True, noise_seed=seed, cfg=3.0)
    e = top.column()
    base_out = decode_and_save(e, base.out(0), ckpt.out(2), fps=24, prefix="video/ltxv_i2v", preview=(0, 360))
    low = Row(wf, c.x, max(n.bottom for n in (select, sigmas, base, *base_out)) + ROW_GAP)
    lc = low.column()
    tn = timenoise(lc, ckpt.out(0), title="TimeNoise (bypassed)")
    stats = stats_loader(lc, "ltxv_768x512_97f.safetensors")
    lc.even()
    ld = low.column(max(d.x, lc.right + 70))
    cil = late_start(ld, tn.out(0), cond.out(0), cond.out(1), i2v.out(2), stats.out(0), seed=seed, steps=30, cfg=3.0,
                     sampler="euler", M=0.9)
    le = low.column(max(e.x, ld.right + 70))
    cil_out = decode_and_save(le, cil.out(0), ckpt.out(2), fps=24, prefix="video/ltxv_i2v_cil", preview=(0, 360))
    info = le.add("PreviewAny", (0, 150), title="What the CIL sampler did", links={"source": cil.out(1)})
    wf.group("Models", [ckpt, clip])
    wf.group("Start image", [image])
    wf.group("Prompt, image and video size", b.nodes)
    wf.group("Template: LTX-Video as ComfyUI ships it", [select, sigmas, base, *base_out])
    wf.group("CIL: late start + Analytic-Init", [tn, stats, cil, *cil_out, info], color=CIL_GREEN)
    return wf


SPECS = [Spec(build, "ltxv_i2v_cil", False, "needs LTX-Video 2B 0.9.5 and T5-XXL weights")]
