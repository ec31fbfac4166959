"""Stable Video Diffusion: the baseline-vs-CIL graph on a start image, stats estimation, and ComfyUI's
txt_to_image_to_video template (SDXL text-to-image, then SVD-XT) with the Late Start Sampler."""

from __future__ import annotations

from ..graph import CIL_GREEN, CIL_RED, Column, Row, Workflow
from .common import Spec, decode_and_save, late_start, loader, start_image, stats_loader, timenoise

ROW_GAP = 96  # between the bottom of one group's nodes and the next group's first title bar

BASELINE_NOTE = """## SVD: baseline vs. CIL (Analytic-Init + late start)

Top: stock SVD sampling from pure noise (KSampler). Bottom: the paper's fix for conditional
image leakage at inference — start at **M** (σ_M ≈ 100 for SVD, M ≈ 0.85) from the
Analytic-Init Gaussian instead of from pure noise.

* **Load Analytic Stats** is bypassed: without stats the Late Start Sampler uses the naive
  late start it names in its `info` output. Estimate stats once with *svd_stats_estimation*,
  then un-bypass it (Ctrl+B) and pick the file.
* **TimeNoise Conditioning** is bypassed: it is for SVD models **fine-tuned with TimeNoise**;
  on stock SVD it is an experiment.
"""

STATS_NOTE = """## Estimate Analytic-Init stats for SVD

Put a few hundred short videos of the kind you generate in `ComfyUI/input/cil_videos`
(mp4/webm/mov/mkv/gif). **Estimate Analytic Stats** streams one clip per video through the
VAE (progress bar; Cancel stops it) and **Save Analytic Stats** writes
`models/cil_stats/svd_1024x576_14f.safetensors`. Use the same width, height and frames as
your generations. The stats feed the Late Start Sampler right away.
"""

T2I2V_NOTE = """## Text to image to video (SDXL, then SVD-XT), with CIL

ComfyUI's **txt_to_image_to_video** template: SDXL makes the start image, SVD-XT animates it
(1024x576, 25 frames, 20 steps, cfg 2.5, euler/karras, 10 fps). Below the template's KSampler,
the **Late Start Sampler** samples the same conditioning from **M** = 0.85 (σ_M ≈ 100, the
paper's SVD setting) with Analytic-Init.

* **Load Analytic Stats** (bypassed): stats for SVD-XT at 1024x576x25 (*Estimate Analytic
  Stats*, see *svd_stats_estimation*); without them the naive late start.
* **TimeNoise Conditioning** (bypassed): for TimeNoise-fine-tuned SVD models only.
"""


def svd_inputs(col: Column, ckpt_file: str = "svd.safetensors"):
    ckpt = loader(col, "ImageOnlyCheckpointLoader", "ckpt_name", ckpt_file)
    guided = col.add("VideoLinearCFGGuidance", links={"model": ckpt.out(0)}, min_cfg=1.0)
    return ckpt, guided


def svd_conditioning(col: Column, ckpt, image, frames: int):
    return col.add("SVD_img2vid_Conditioning", links={"clip_vision": ckpt.out(1), "init_image": image, "vae": ckpt.out(2)},
                   width=1024, height=576, video_frames=frames, motion_bucket_id=127, fps=6, augmentation_level=0.0)


def cil_half(wf: Workflow, x_sampler: float, x_out: float, y: float, model, cond, vae, *, stats_file: str, seed: int,
             steps: int, fps: float, prefix: str):
    """TimeNoise + stats (bypassed) and the Late Start Sampler at M = 0.85, decoded and saved, with its info."""
    c = Column(wf, x_sampler, y)
    tn = timenoise(c, model, beta_m=15.0, title="TimeNoise (bypassed)")
    stats = stats_loader(c, stats_file)
    cil = late_start(c, tn.out(0), cond.out(0), cond.out(1), cond.out(2), stats.out(0), seed=seed, steps=steps, cfg=2.5,
                     sampler="euler", M=0.85)
    c.even()
    d = Column(wf, max(x_out, c.right + 70), y)
    out = decode_and_save(d, cil.out(0), vae, fps=fps, prefix=prefix, preview=(0, 300))
    info = d.add("PreviewAny", (0, 150), title="What the CIL sampler did", links={"source": cil.out(1)})
    return [*c.nodes, *d.nodes], [*out, info]


def build_baseline(cat) -> Workflow:
    wf = Workflow("svd_baseline_vs_cil", cat)
    Column(wf, -460, 0).note((420, 420), BASELINE_NOTE)
    top = Row(wf, 0, 0)
    a = top.column()
    ckpt, guided = svd_inputs(a)
    image = start_image(a)
    a.even()
    b = top.column()
    cond = svd_conditioning(b, ckpt, image.out(0), 14)
    c = top.column()
    base = c.add("KSampler", title="Baseline: KSampler from pure noise", controls={"seed": "fixed"},
                 links={"model": guided.out(0), "positive": cond.out(0), "negative": cond.out(1), "latent_image": cond.out(2)},
                 seed=42, steps=25, cfg=2.5, sampler_name="euler", scheduler="karras", denoise=1.0)
    d = top.column()
    base_out = decode_and_save(d, base.out(0), ckpt.out(2), fps=6, prefix="video/svd_baseline", preview=(0, 300))
    cil_nodes, _ = cil_half(wf, c.x, d.x, top.bottom + ROW_GAP, guided.out(0), cond, ckpt.out(2), stats_file="svd_1024x576_14f.safetensors",
                            seed=42, steps=25, fps=6, prefix="video/svd_cil")
    wf.group("Load SVD and the start image", [*a.nodes, *b.nodes])
    wf.group("Baseline", [base, *base_out], color=CIL_RED)
    wf.group("CIL: Analytic-Init late start", cil_nodes, color=CIL_GREEN)
    return wf


def build_stats_estimation(cat) -> Workflow:
    wf = Workflow("svd_stats_estimation", cat)
    Column(wf, -460, 0).note((420, 340), STATS_NOTE)
    top = Row(wf, 0, 0)
    a = top.column()
    ckpt, guided = svd_inputs(a)
    image = start_image(a)
    a.even()
    b = top.column()
    est = b.add("CIL_EstimateAnalyticStats", links={"model": ckpt.out(0), "vae": ckpt.out(2)},
                frames=14, width=1024, height=576, folder="cil_videos", frame_stride=2, max_videos=0)
    c = top.column()
    save = c.add("CIL_SaveAnalyticStats", links={"stats": est.out(0)}, filename="svd_1024x576_14f", overwrite=False)
    report = c.add("PreviewAny", (0, 150), title="Estimate report", links={"source": est.out(1)})
    low = Row(wf, b.x, top.bottom + ROW_GAP)
    lb = low.column()
    cond = svd_conditioning(lb, ckpt, image.out(0), 14)
    lc = low.column(max(c.x, lb.right + 70))
    cil = late_start(lc, guided.out(0), cond.out(0), cond.out(1), cond.out(2), est.out(0), seed=7, steps=25, cfg=2.5, sampler="euler", M=0.85)
    ld = low.column()
    out = decode_and_save(ld, cil.out(0), ckpt.out(2), fps=6, prefix="video/svd_cil_own_stats", preview=(0, 300))
    wf.group("Load SVD", a.nodes)
    wf.group("1. Estimate stats from a folder of videos", [est, save, report], color=CIL_GREEN)
    wf.group("2. Sample with them", [cond, cil, *out])
    return wf


def build_t2i2v(cat) -> Workflow:
    wf = Workflow("svd_xt_txt_to_image_to_video_cil", cat)
    Column(wf, -460, 0).note((420, 420), T2I2V_NOTE)
    t2i = Row(wf, 0, 0)
    a = t2i.column()
    sdxl = loader(a, "CheckpointLoaderSimple", "ckpt_name", "sd_xl_base_1.0.safetensors")
    empty = a.add("EmptyLatentImage", width=1024, height=576, batch_size=1)
    b = t2i.column()
    pos = b.add("CLIPTextEncode", (420, 130), title="Prompt", color="#232", bgcolor="#353", links={"clip": sdxl.out(1)},
                text="photograph beautiful scenery nature mountains alps river rapids snow sky cumulus clouds")
    neg = b.add("CLIPTextEncode", (420, 130), title="Negative prompt", color="#322", bgcolor="#533", links={"clip": sdxl.out(1)},
                text="text, watermark")
    c = t2i.column()
    first = c.add("KSampler", title="Text to image (SDXL)", controls={"seed": "fixed"},
                  links={"model": sdxl.out(0), "positive": pos.out(0), "negative": neg.out(0), "latent_image": empty.out(0)},
                  seed=144698910769133, steps=15, cfg=8.0, sampler_name="uni_pc_bh2", scheduler="normal", denoise=1.0)
    d = t2i.column()
    picture = d.add("VAEDecode", links={"samples": first.out(0), "vae": sdxl.out(2)})
    d.add("PreviewImage", (300, 220), links={"images": picture.out(0)})
    i2v = Row(wf, 0, t2i.bottom + ROW_GAP)
    ia = i2v.column()
    ckpt, guided = svd_inputs(ia, "svd_xt.safetensors")
    ib = i2v.column(max(b.x, ia.right + 70))
    cond = svd_conditioning(ib, ckpt, picture.out(0), 25)
    ic = i2v.column(max(c.x, ib.right + 70))
    base = ic.add("KSampler", title="Template: KSampler from pure noise", controls={"seed": "fixed"},
                  links={"model": guided.out(0), "positive": cond.out(0), "negative": cond.out(1), "latent_image": cond.out(2)},
                  seed=237514639057514, steps=20, cfg=2.5, sampler_name="euler", scheduler="karras", denoise=1.0)
    idd = i2v.column(max(d.x, ic.right + 70))
    base_out = decode_and_save(idd, base.out(0), ckpt.out(2), fps=10, prefix="video/svd_xt", preview=(0, 300))
    cil_nodes, _ = cil_half(wf, ic.x, idd.x, i2v.bottom + ROW_GAP, guided.out(0), cond, ckpt.out(2),
                            stats_file="svd_xt_1024x576_25f.safetensors", seed=237514639057514, steps=20, fps=10, prefix="video/svd_xt_cil")
    wf.group("Text to image (SDXL)", t2i.nodes)
    wf.group("Image to video (SVD-XT)", [*ia.nodes, *ib.nodes])
    wf.group("Template: SVD-XT as ComfyUI ships it", [base, *base_out])
    wf.group("CIL: Analytic-Init late start", cil_nodes, color=CIL_GREEN)
    return wf


SPECS = [
    Spec(build_baseline, "svd_baseline_vs_cil", False, "needs SVD weights (svd.safetensors) and SVD Analytic-Init stats"),
    Spec(build_stats_estimation, "svd_stats_estimation", False, "needs SVD weights (svd.safetensors)"),
    Spec(build_t2i2v, "svd_xt_txt_to_image_to_video_cil", False, "needs SDXL base 1.0 and SVD-XT weights"),
]
