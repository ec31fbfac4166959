"""Kandinsky 5: ComfyUI's video_kandinsky5_i2v template (Kandinsky 5.0 I2V Lite 5 s, 768x512, 121 frames,
50 steps, cfg 5, euler_ancestral/beta, shift 5; its subgraph flattened) with the Late Start Sampler beside
its KSampler. No TimeNoise here: the TimeNoise node refuses Kandinsky 5 by design."""

from __future__ import annotations

from ..graph import CIL_GREEN, Column, Row, Workflow
from .common import Spec, late_start, loader, models, prompts, start_image, stats_loader

ROW_GAP = 96
POSITIVE = ("Cinematic dynamic scene in deep blue dream haze: The camera glides slowly forward, focusing on tightly closed crystal "
            "flower buds (starlight-sparkled, translucent) that sway gently with misty currents. As the lens pans right, more closed "
            "blooms blur into pulsing bokeh; sequined leaves tremble, scattering glimmers that trail light streaks.")

NOTE = """## Kandinsky 5 image-to-video, with CIL

ComfyUI's **Kandinsky 5 I2V template** (Lite 5 s, 768x512, 121 frames, 50 steps, cfg 5,
euler_ancestral/beta, shift 5, 24 fps), its subgraph flattened. The network writes the start image
over latent frame 0 itself. Below, the **Late Start Sampler** starts the generated frames at
**M** = 0.9 from the Analytic-Init Gaussian; the template's frame-0 replacement and start
normalisation follow both samplers.

* **Load Analytic Stats** (bypassed): stats from *Estimate Analytic Stats* skip frame 0 (the file
  records it).
* **No TimeNoise Conditioning**: every Kandinsky 5 token gets one timestep, so a noisy frame 0
  could not be told its noise level; the node refuses this model, saying so.
* `cil_late_start` spaces the steps linearly on the shifted schedule; the template's `beta`
  spacing stays with the template's KSampler.
"""


def finish(col: Column, samples, i2v, vae, *, prefix: str):
    """The template's tail: frame 0 put back from the conditioning latent, start normalised, decoded, saved."""
    put_back = col.add("ReplaceVideoLatentFrames", links={"destination": samples, "source": i2v.out(3)}, index=0)
    normal = col.add("NormalizeVideoLatentStart", links={"latent": put_back.out(0)}, start_frame_count=4, reference_frame_count=5)
    dec = col.add("VAEDecode", links={"samples": normal.out(0), "vae": vae})
    vid = col.add("CreateVideo", links={"images": dec.out(0)}, fps=24.0)
    save = col.add("SaveVideo", (0, 360), links={"video": vid.out(0)}, filename_prefix=prefix, format="mp4", codec="h264")
    col.even()
    return [put_back, normal, dec, vid, save]


def build(cat) -> Workflow:
    wf = Workflow("kandinsky5_i2v_cil", cat)
    Column(wf, -520, 0).note((480, 480), NOTE)
    top = Row(wf, 0, 0)
    a = top.column()
    unet = loader(a, "UNETLoader", "unet_name", "kandinsky5lite_i2v_5s.safetensors", weight_dtype="default")
    shift = a.add("ModelSamplingSD3", links={"model": unet.out(0)}, shift=5.0)
    vae = loader(a, "VAELoader", "vae_name", "hunyuan_video_vae_bf16.safetensors")
    clip = a.add("DualCLIPLoader", models=models("qwen_2.5_vl_7b_fp8_scaled.safetensors", "clip_l.safetensors"),
                 clip_name1="qwen_2.5_vl_7b_fp8_scaled.safetensors", clip_name2="clip_l.safetensors", type="kandinsky5", device="default")
    a.skip(60)
    image = start_image(a)
    scaled = a.add("ImageScale", links={"image": image.out(0)}, upscale_method="lanczos", width=768, height=512, crop="center")
    a.even()
    b = top.column()
    pos, neg = prompts(b, clip, POSITIVE, "")
    i2v = b.add("Kandinsky5ImageToVideo", links={"positive": pos.out(0), "negative": neg.out(0), "vae": vae.out(0),
                                                 "start_image": scaled.out(0)}, width=768, height=512, length=121, batch_size=1)
    b.even()
    seed = 611409204875324
    c = top.column()
    base = c.add("KSampler", title="Template: KSampler from pure noise", controls={"seed": "fixed"},
                 links={"model": shift.out(0), "positive": i2v.out(0), "negative": i2v.out(1), "latent_image": i2v.out(2)},
                 seed=seed, steps=50, cfg=5.0, sampler_name="euler_ancestral", scheduler="beta", denoise=1.0)
    d = top.column()
    base_out = finish(d, base.out(0), i2v, vae.out(0), prefix="video/Kandinsky5")
    low = Row(wf, c.x, max(n.bottom for n in (base, *base_out)) + ROW_GAP)
    lc = low.column()
    stats = stats_loader(lc, "kandinsky5_768x512_121f.safetensors")
    cil = late_start(lc, shift.out(0), i2v.out(0), i2v.out(1), i2v.out(2), stats.out(0), seed=seed, steps=50, cfg=5.0,
                     sampler="euler_ancestral", M=0.9)
    lc.even()
    ld = low.column(max(d.x, lc.right + 70))
    cil_out = finish(ld, cil.out(0), i2v, vae.out(0), prefix="video/Kandinsky5_cil")
    info = ld.add("PreviewAny", (0, 150), title="What the CIL sampler did", links={"source": cil.out(1)})
    ld.even()
    wf.group("Models", a.nodes[:4])
    wf.group("Start image", [image, scaled])
    wf.group("Prompt and video size", b.nodes)
    wf.group("Template: Kandinsky 5 as ComfyUI ships it", [base, *base_out])
    wf.group("CIL: late start + Analytic-Init", [stats, cil, *cil_out, info], color=CIL_GREEN)
    return wf


SPECS = [Spec(build, "kandinsky5_i2v_cil", False, "needs Kandinsky 5.0 I2V Lite 5 s, Qwen 2.5 VL + CLIP-L and the HunyuanVideo VAE",
              min_comfyui="0.8.0")]
