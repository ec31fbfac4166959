"""HunyuanVideo 1.5: ComfyUI's video_hunyuan_video_1.5_720p_i2v template (720p I2V, 1280x720, 121 frames,
20 steps, cfg 6, euler/simple, shift 7) with the Late Start Sampler beside its SamplerCustomAdvanced;
the template's optional 1080p super-resolution group is left out."""

from __future__ import annotations

from ..graph import CIL_GREEN, MODE_BYPASS, Column, Row, Workflow
from .common import Spec, decode_and_save, late_start, loader, models, prompts, start_image, stats_loader, timenoise

ROW_GAP = 96
POSITIVE = ("A feathered young dinosaur (with ruffled brown-and-white plumage, sharp claws, and a spiky crested head) moves alertly "
            "through a sun-dappled, dense coniferous forest. Sunbeams filter through the tall tree canopy, casting warm golden rays over "
            "the mossy undergrowth and ferns. The dinosaur lifts one clawed foot mid-step, head tilted sharply to scan for prey (or "
            "predators), its tail fanning slightly for balance.")

NOTE = """## HunyuanVideo 1.5 720p image-to-video, with CIL

ComfyUI's **HunyuanVideo 1.5 720p I2V template** (1280x720, 121 frames, 20 steps, cfg 6,
euler/simple, shift 7, 24 fps; EasyCache bypassed as there). The start image enters as 32 concat
channels + a mask on frame 0, plus SigLIP vision tokens. Below, the **Late Start Sampler** starts at
**M** = 0.9 from the Analytic-Init Gaussian with the same guidance.

* **Load Analytic Stats** (bypassed): 32-channel stats from *Estimate Analytic Stats* with this VAE.
* **TimeNoise Conditioning** (bypassed): noises the image channels on the start frame only; for
  TimeNoise-fine-tuned models.
* The template's 1080p super-resolution group is left out; run its output through it as before.
"""


def build(cat) -> Workflow:
    wf = Workflow("hunyuan15_720p_i2v_cil", cat)
    Column(wf, -520, 0).note((480, 480), NOTE)
    top = Row(wf, 0, 0)
    a = top.column()
    unet = loader(a, "UNETLoader", "unet_name", "hunyuanvideo1.5_720p_i2v_fp16.safetensors", weight_dtype="default")
    cache = a.add("EasyCache", title="EasyCache (bypassed, as in the template)", node_mode=MODE_BYPASS, links={"model": unet.out(0)},
                  reuse_threshold=0.2, start_percent=0.15, end_percent=0.95, verbose=False)
    shift = a.add("ModelSamplingSD3", links={"model": cache.out(0)}, shift=7.0)
    clip = a.add("DualCLIPLoader", models=models("qwen_2.5_vl_7b_fp8_scaled.safetensors", "byt5_small_glyphxl_fp16.safetensors"),
                 clip_name1="qwen_2.5_vl_7b_fp8_scaled.safetensors", clip_name2="byt5_small_glyphxl_fp16.safetensors",
                 type="hunyuan_video_15", device="default")
    vae = loader(a, "VAELoader", "vae_name", "hunyuanvideo15_vae_fp16.safetensors")
    vision = loader(a, "CLIPVisionLoader", "clip_name", "sigclip_vision_patch14_384.safetensors")
    a.skip(60)
    image = start_image(a)
    a.even()
    b = top.column()
    pos, neg = prompts(b, clip, POSITIVE, "")
    encoded = b.add("CLIPVisionEncode", links={"clip_vision": vision.out(0), "image": image.out(0)}, crop="center")
    i2v = b.add("HunyuanVideo15ImageToVideo", links={"positive": pos.out(0), "negative": neg.out(0), "vae": vae.out(0),
                                                     "start_image": image.out(0), "clip_vision_output": encoded.out(0)},
                width=1280, height=720, length=121, batch_size=1)
    b.even()
    seed = 887963123424675
    c = top.column()
    guider = c.add("CFGGuider", links={"model": shift.out(0), "positive": i2v.out(0), "negative": i2v.out(1)}, cfg=6.0)
    sched = c.add("BasicScheduler", links={"model": cache.out(0)}, scheduler="simple", steps=20, denoise=1.0)
    noise = c.add("RandomNoise", controls={"noise_seed": "fixed"}, noise_seed=seed)
    select = c.add("KSamplerSelect", sampler_name="euler")
    c.even()
    d = top.column()
    base = d.add("SamplerCustomAdvanced", title="Template: SamplerCustomAdvanced from pure noise",
                 links={"noise": noise.out(0), "guider": guider.out(0), "sampler": select.out(0), "sigmas": sched.out(0),
                        "latent_image": i2v.out(2)})
    e = top.column()
    base_out = decode_and_save(e, base.out(0), vae.out(0), fps=24, prefix="video/hunyuan_video_1.5", codec="h264", preview=(0, 360))
    low = Row(wf, c.x, max(n.bottom for n in (*c.nodes, base, *base_out)) + ROW_GAP)
    lc = low.column()
    tn = timenoise(lc, shift.out(0), title="TimeNoise (bypassed)")
    stats = stats_loader(lc, "hunyuan15_1280x720_121f.safetensors")
    lc.even()
    ld = low.column(max(d.x, lc.right + 70))
    cil = late_start(ld, tn.out(0), i2v.out(0), i2v.out(1), i2v.out(2), stats.out(0), seed=seed, steps=20, cfg=6.0, sampler="euler", M=0.9)
    le = low.column(max(e.x, ld.right + 70))
    cil_out = decode_and_save(le, cil.out(0), vae.out(0), fps=24, prefix="video/hunyuan_video_1.5_cil", codec="h264", preview=(0, 360))
    info = le.add("PreviewAny", (0, 150), title="What the CIL sampler did", links={"source": cil.out(1)})
    wf.group("Models", a.nodes[:6])
    wf.group("Start image", [image])
    wf.group("Prompt and video size", b.nodes)
    wf.group("Template: HunyuanVideo 1.5 as ComfyUI ships it", [*c.nodes, base, *base_out])
    wf.group("CIL: late start + Analytic-Init", [tn, stats, cil, *cil_out, info], color=CIL_GREEN)
    return wf


SPECS = [Spec(build, "hunyuan15_720p_i2v_cil", False, "needs HunyuanVideo 1.5 720p I2V, Qwen 2.5 VL + byT5 text encoders, "
              "the HunyuanVideo 1.5 VAE and SigLIP vision weights", min_comfyui="0.8.0")]
