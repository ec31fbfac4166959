"""Wan 2.2: ComfyUI's video_wan2_2_14B_i2v template (two experts; its subgraph flattened, the 4-step
LoRA switch left out, the original settings kept) and video_wan2_2_5B_ti2v (TI2V-5B, image to video),
each with the Late Start Sampler beside the template's sampler and a muted Leakage Probe group."""

from __future__ import annotations

from ..graph import CIL_GREEN, CIL_RED, Column, Node, Row, Workflow
from .common import WAN_NEGATIVE, Spec, decode_and_save, late_start, loader, muted, prompts, start_image, stats_loader, timenoise

ROW_GAP = 96
PROMPT_14B = ("The white dragon warrior stands still, eyes full of determination and strength. The camera slowly moves closer or "
              "circles around the warrior, highlighting the powerful presence and heroic spirit of the character.")
PROMPT_5B = ("Low contrast. In a retro 1970s-style subway station, a street musician plays in dim colors and rough textures. He wears "
             "an old jacket, playing guitar with focus. Commuters hurry by, and a small crowd gathers to listen. The camera slowly moves "
             "right, capturing the blend of music and city noise, with old subway signs and mottled walls in the background.")
REFERENCE = "cil_reference.mp4"

NOTE_14B = """## Wan 2.2 14B image-to-video (two experts), with CIL

ComfyUI's **Wan 2.2 14B I2V template** (640x640, 81 frames, 20 steps, cfg 3.5, euler/simple,
shift 5, high-noise expert for steps 0-10, low-noise for 10-20), its subgraph flattened. Below, one
**Late Start Sampler** replaces the pair of KSamplerAdvanced: the high-noise model on `model`, the
low-noise model on `model_low_noise`, switched at `boundary` = 0.900 (Wan 2.2's I2V boundary sigma).
It starts at **M** = 0.9 (σ_M ≈ 0.978 after shift 5, above the boundary, so both experts run) from
the Analytic-Init Gaussian.

* **Load Analytic Stats** (bypassed): estimate stats at 640x640x81 with *Estimate Analytic Stats*
  (Wan 2.1 VAE; either expert, same latent space), then un-bypass it (Ctrl+B).
* **TimeNoise Conditioning** (bypassed, one per expert): for TimeNoise-fine-tuned experts only;
  set β_m to the value they were trained with.
* **Leakage Probe** (muted, bottom): put a real clip in `input/` as `cil_reference.mp4`, select the
  group and un-mute it (Ctrl+M). It probes the high-noise expert (leakage lives at large t) and
  recommends M. Heavy at full size: lower `samples_per_t` or `grid_count` first.
* The template's 4-step LightX2V LoRA path is left out; add LoraLoaderModelOnly after each UNET
  loader (and 4 steps, cfg 1) if you use it.
"""

NOTE_5B = """## Wan 2.2 TI2V-5B image-to-video, with CIL

ComfyUI's **Wan 2.2 5B TI2V template** with its start image enabled (1280x704, 121 frames, 20 steps,
cfg 5, uni_pc/simple, shift 8, 24 fps). The start image *replaces* latent frame 0 (noise mask 0
there). Below, the **Late Start Sampler** starts the generated frames at **M** = 0.9 from the
Analytic-Init Gaussian; frame 0 stays your image bit for bit.

* **Load Analytic Stats** (bypassed): stats estimated with *Estimate Analytic Stats* for this model
  skip frame 0 (the file records it); un-bypass it (Ctrl+B) once you have them.
* **TimeNoise Conditioning** (bypassed): for TimeNoise-fine-tuned models; frame 0 is then held at
  flow level s = β/(1+β) and the network is told s there.
* **Leakage Probe** (muted, bottom): `input/cil_reference.mp4`, un-mute the group (Ctrl+M). Frame 0
  of the clip is held clean as the sampler holds it; frames 1.. are measured.
"""


def probe_group(wf: Workflow, x: float, y: float, model, vae, *, frames: int, width: int, height: int, prefix: str,
                conditioning) -> list[Node]:
    """A muted Leakage Probe on ``input/cil_reference.mp4``: its first ``frames`` frames at the workflow's
    size; ``conditioning(col, first_frame) -> (positive, negative)`` builds the model's own conditioning."""
    row = Row(wf, x, y)
    a = row.column()
    video = a.add("LoadVideo", file=REFERENCE)
    parts = a.add("GetVideoComponents", links={"video": video.out(0)})
    clip = a.add("ImageFromBatch", title="First frames of the clip", links={"image": parts.out(0)}, batch_index=0, length=frames)
    scaled = a.add("ImageScale", links={"image": clip.out(0)}, upscale_method="area", width=width, height=height, crop="center")
    a.even()
    b = row.column()
    positive, negative = conditioning(b, scaled)
    b.even()
    c = row.column()
    probe = c.add("CIL_LeakageProbe", controls={"seed": "fixed"},
                  links={"model": model, "positive": positive, "negative": negative, "video_frames": scaled.out(0), "vae": vae},
                  grid_count=10, t_min=0.1, t_max=1.0, samples_per_t=2, seed=0, cfg=1.0, start_rule="plateau", threshold=0.5,
                  plateau_tolerance=0.1, max_batch=1, preview_t="auto", pixel_metric="auto", probe_mode="one_step", regen_steps=10, regen_samples=2, sampler_name="euler", recommend_from="one_step",
                  filename_prefix=prefix)
    d = row.column()
    d.add("PreviewImage", (520, 380), title="Probe plot", links={"images": probe.out(0)})
    d.add("PreviewAny", (520, 240), title="Probe table", links={"source": probe.out(1)})
    muted(row.nodes)
    return row.nodes


def build_14b(cat) -> Workflow:
    wf = Workflow("wan22_14b_i2v_cil", cat)
    Column(wf, -520, 0).note((480, 640), NOTE_14B)
    top = Row(wf, 0, 0)
    a = top.column()
    high = loader(a, "UNETLoader", "unet_name", "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors", weight_dtype="default")
    high_s = a.add("ModelSamplingSD3", title="Shift (high noise)", links={"model": high.out(0)}, shift=5.0)
    low = loader(a, "UNETLoader", "unet_name", "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors", weight_dtype="default")
    low_s = a.add("ModelSamplingSD3", title="Shift (low noise)", links={"model": low.out(0)}, shift=5.0)
    clip = loader(a, "CLIPLoader", "clip_name", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan", device="default")
    vae = loader(a, "VAELoader", "vae_name", "wan_2.1_vae.safetensors")
    a.skip(60)
    image = start_image(a)
    a.even()
    b = top.column()
    pos, neg = prompts(b, clip, PROMPT_14B, WAN_NEGATIVE)
    i2v = b.add("WanImageToVideo", links={"positive": pos.out(0), "negative": neg.out(0), "vae": vae.out(0), "start_image": image.out(0)},
                width=640, height=640, length=81, batch_size=1)
    b.even()
    seed = 264244520398999
    c = top.column()
    first = c.add("KSamplerAdvanced", title="Template: high-noise steps 0-10", controls={"noise_seed": "fixed"},
                  links={"model": high_s.out(0), "positive": i2v.out(0), "negative": i2v.out(1), "latent_image": i2v.out(2)},
                  add_noise="enable", noise_seed=seed, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple",
                  start_at_step=0, end_at_step=10, return_with_leftover_noise="enable")
    d = top.column()
    second = d.add("KSamplerAdvanced", title="Template: low-noise steps 10-20", controls={"noise_seed": "fixed"},
                   links={"model": low_s.out(0), "positive": i2v.out(0), "negative": i2v.out(1), "latent_image": first.out(0)},
                   add_noise="disable", noise_seed=0, steps=20, cfg=3.5, sampler_name="euler", scheduler="simple",
                   start_at_step=10, end_at_step=10000, return_with_leftover_noise="disable")
    e = top.column()
    base_out = decode_and_save(e, second.out(0), vae.out(0), fps=16, prefix="video/Wan2.2_i2v", preview=(0, 360))
    cil_row = Row(wf, c.x, max(n.bottom for n in (first, second, *base_out)) + ROW_GAP)
    cc = cil_row.column()
    tn_high = timenoise(cc, high_s.out(0), title="TimeNoise, high noise (bypassed)")
    tn_low = timenoise(cc, low_s.out(0), title="TimeNoise, low noise (bypassed)")
    stats = stats_loader(cc, "wan22_a14b_640x640_81f.safetensors")
    cc.even()
    cd = cil_row.column(max(d.x, cc.right + 70))
    cil = late_start(cd, tn_high.out(0), i2v.out(0), i2v.out(1), i2v.out(2), stats.out(0), seed=seed, steps=20, cfg=3.5,
                     sampler="euler", M=0.9, low_noise=tn_low.out(0), boundary=0.9, title="CIL: one sampler, both experts")
    ce = cil_row.column(max(e.x, cd.right + 70))
    cil_out = decode_and_save(ce, cil.out(0), vae.out(0), fps=16, prefix="video/Wan2.2_i2v_cil", preview=(0, 360))
    info = ce.add("PreviewAny", (0, 150), title="What the CIL sampler did", links={"source": cil.out(1)})

    def conditioning(col, frames):
        first_frame = col.add("ImageFromBatch", title="Start frame of the clip", links={"image": frames.out(0)}, batch_index=0, length=1)
        cond = col.add("WanImageToVideo", title="Conditioning on the clip's start frame",
                       links={"positive": pos.out(0), "negative": neg.out(0), "vae": vae.out(0), "start_image": first_frame.out(0)},
                       width=640, height=640, length=81, batch_size=1)
        return cond.out(0), cond.out(1)

    probe = probe_group(wf, b.x, cil_row.bottom + ROW_GAP, high_s.out(0), vae.out(0), frames=81, width=640, height=640,
                        prefix="cil_probe/wan22_a14b_high_noise", conditioning=conditioning)
    wf.group("Models (two experts)", a.nodes[:6])
    wf.group("Start image", [image])
    wf.group("Prompt and video size", b.nodes)
    wf.group("Template: two KSamplerAdvanced, as ComfyUI ships it", [first, second, *base_out])
    wf.group("CIL: late start + Analytic-Init over both experts", [*cc.nodes, cil, *cil_out, info], color=CIL_GREEN)
    wf.group("Leakage Probe on a real clip (muted: Ctrl+M)", probe, color=CIL_RED)
    return wf


def build_5b(cat) -> Workflow:
    wf = Workflow("wan22_5b_ti2v_cil", cat)
    Column(wf, -520, 0).note((480, 520), NOTE_5B)
    top = Row(wf, 0, 0)
    a = top.column()
    unet = loader(a, "UNETLoader", "unet_name", "wan2.2_ti2v_5B_fp16.safetensors", weight_dtype="default")
    shift = a.add("ModelSamplingSD3", links={"model": unet.out(0)}, shift=8.0)
    clip = loader(a, "CLIPLoader", "clip_name", "umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan", device="default")
    vae = loader(a, "VAELoader", "vae_name", "wan2.2_vae.safetensors")
    a.skip(60)
    image = start_image(a)
    a.even()
    b = top.column()
    pos, neg = prompts(b, clip, PROMPT_5B, WAN_NEGATIVE)
    latent = b.add("Wan22ImageToVideoLatent", links={"vae": vae.out(0), "start_image": image.out(0)}, width=1280, height=704,
                   length=121, batch_size=1)
    b.even()
    seed = 898471028164125
    c = top.column()
    base = c.add("KSampler", title="Template: KSampler from pure noise", controls={"seed": "fixed"},
                 links={"model": shift.out(0), "positive": pos.out(0), "negative": neg.out(0), "latent_image": latent.out(0)},
                 seed=seed, steps=20, cfg=5.0, sampler_name="uni_pc", scheduler="simple", denoise=1.0)
    d = top.column()
    base_out = decode_and_save(d, base.out(0), vae.out(0), fps=24, prefix="video/wan2.2_ti2v_5b", preview=(0, 360))
    cil_row = Row(wf, c.x, max(n.bottom for n in (base, *base_out)) + ROW_GAP)
    cc = cil_row.column()
    tn = timenoise(cc, shift.out(0), title="TimeNoise (bypassed)")
    stats = stats_loader(cc, "wan22_ti2v5b_1280x704_121f.safetensors")
    cil = late_start(cc, tn.out(0), pos.out(0), neg.out(0), latent.out(0), stats.out(0), seed=seed, steps=20, cfg=5.0,
                     sampler="uni_pc", M=0.9)
    cc.even()
    cd = cil_row.column(max(d.x, cc.right + 70))
    cil_out = decode_and_save(cd, cil.out(0), vae.out(0), fps=24, prefix="video/wan2.2_ti2v_5b_cil", preview=(0, 360))
    info = cd.add("PreviewAny", (0, 150), title="What the CIL sampler did", links={"source": cil.out(1)})
    probe = probe_group(wf, b.x, cil_row.bottom + ROW_GAP, shift.out(0), vae.out(0), frames=121, width=1280, height=704,
                        prefix="cil_probe/wan22_ti2v_5b", conditioning=lambda col, frames: (pos.out(0), neg.out(0)))
    wf.group("Models", a.nodes[:4])
    wf.group("Start image", [image])
    wf.group("Prompt and video size", b.nodes)
    wf.group("Template: Wan 2.2 5B as ComfyUI ships it", [base, *base_out])
    wf.group("CIL: late start + Analytic-Init", [*cc.nodes, *cil_out, info], color=CIL_GREEN)
    wf.group("Leakage Probe on a real clip (muted: Ctrl+M)", probe, color=CIL_RED)
    return wf


SPECS = [
    Spec(build_14b, "wan22_14b_i2v_cil", False, "needs the Wan 2.2 I2V 14B high- and low-noise experts, umt5-xxl and the Wan 2.1 VAE"),
    Spec(build_5b, "wan22_5b_ti2v_cil", False, "needs Wan 2.2 TI2V-5B, umt5-xxl and the Wan 2.2 VAE"),
]
