"""The toy image-to-video model inside ComfyUI (no downloads): baseline vs. CIL, and the Leakage Probe
with its recommended M wired into the Late Start Sampler."""

from __future__ import annotations

from ..graph import CIL_GREEN, CIL_RED, Column, Node, Row, Workflow
from .common import Spec, late_start

DEMO_NOTE = """## The paper on a CPU: toy I2V model, baseline vs. CIL

Runs as is, no downloads: the pack's **toy image-to-video model** (trained by `cil toy-train` on
procedural 32x32 sprite videos, 8 frames) in ComfyUI's own samplers, in seconds on a CPU.

Left to right in the saved WebP: the start image, **KSampler from pure noise** (the baseline),
and the **Late Start Sampler** starting at M = 0.7 from the Analytic-Init Gaussian with the toy
world's stats (paper Sec. 4.1).

* `example.png` is far from the toy's training videos: expect abstract results. For
  in-distribution start frames use **Toy World Video** (category CIL/toy) instead of Load Image.
* The toy has no unconditional mode: keep cfg at 1.
* `edm_timenoise` is the same model fine-tuned with TimeNoise (paper Sec. 4.2); sample it the
  same way (no TimeNoise node at inference).
"""

PROBE_NOTE = """## Leakage Probe on the toy model: measure, then start at the recommended M

Runs as is, no downloads. **Toy World Video** gives a real (held-out) toy video; the
**Leakage Probe** noises it to each t on the grid, lets the model predict the clean video in one
step and plots motion(prediction) / motion(video) against t. A leaking model's ratio collapses at
large t (the prediction is a still copy of the start image).

* The probe's **recommended_M** (plateau rule: the lower edge of the large-t plateau, where the
  model copies) is wired into the **Late Start Sampler**'s M; the baseline samples from T.
* Probe your own model the same way: a real video of the kind you generate, its first frame
  through your I2V conditioning node, and the same model patches and cfg as your sampler.
* Table and plot are also saved under `output/cil_probe/` (JSON, CSV, PNG).
"""


def comparison(wf: Workflow, x: float, y: float, loader: Node, cond: Node, first: Node, cil: Node, titles: tuple[str, str],
               prefix: str) -> list[Node]:
    """KSampler from pure noise beside the given CIL sampler, decoded and stitched first | baseline | CIL,
    saved as an animated WebP."""
    row = Row(wf, x, y)
    a = row.column()
    base = a.add("KSampler", title="Baseline: KSampler from pure noise", controls={"seed": "fixed"},
                 links={"model": loader.out(0), "positive": cond.out(0), "negative": cond.out(1), "latent_image": cond.out(2)},
                 seed=42, steps=20, cfg=1.0, sampler_name="euler", scheduler="karras", denoise=1.0)
    b = row.column()
    base_dec = b.add("VAEDecode", links={"samples": base.out(0), "vae": loader.out(1)})
    cil_dec = b.add("VAEDecode", links={"samples": cil.out(0), "vae": loader.out(1)})
    left = b.add("ImageStitch", title=titles[0], links={"image1": first.out(0), "image2": base_dec.out(0)},
                 direction="right", match_image_size=False, spacing_width=2, spacing_color="white")
    both = b.add("ImageStitch", title=titles[1], links={"image1": left.out(0), "image2": cil_dec.out(0)},
                 direction="right", match_image_size=False, spacing_width=2, spacing_color="white")
    big = b.add("ImageScaleBy", links={"image": both.out(0)}, upscale_method="nearest-exact", scale_by=4.0)
    b.even()
    c = row.column()
    c.add("SaveAnimatedWEBP", (420, 420), links={"images": big.out(0)}, filename_prefix=prefix, fps=4.0, lossless=True,
          quality=90, method="default")
    c.add("PreviewAny", (420, 160), title="What the CIL sampler did", links={"source": cil.out(1)})
    return row.nodes


def build_demo(cat) -> Workflow:
    wf = Workflow("toy_cil_demo", cat)
    Column(wf, -460, 0).note((420, 560), DEMO_NOTE)
    row = Row(wf, 0, 0)
    a = row.column()
    loader = a.add("CIL_ToyModelLoader", model_name="edm_baseline")
    image = a.add("LoadImage", (0, 340), image="example.png")
    info = a.add("PreviewAny", (0, 200), title="Toy model", links={"source": loader.out(3)})
    a.even()
    b = row.column()
    small = b.add("ImageScale", title="Start image at the toy size", links={"image": image.out(0)},
                  upscale_method="area", width=32, height=32, crop="center")
    cond = b.add("CIL_ToyImageToVideo", controls={"noise_seed": "fixed"}, links={"vae": loader.out(1), "start_image": small.out(0)},
                 width=32, height=32, frames=8, batch_size=1, crop="center", noise_level=0.0, noise_seed=0)
    b.even()
    c = Column(wf, b.right + 120, 0)
    cil = late_start(c, loader.out(0), cond.out(0), cond.out(1), cond.out(2), loader.out(2), seed=42, steps=20, cfg=1.0,
                     sampler="euler", M=0.7)
    right = comparison(wf, c.right + 70, 0, loader, cond, small, cil, ("start | baseline", "start | baseline | CIL"), "toy_cil_demo")
    wf.group("Toy I2V model and start image", [*a.nodes, *b.nodes, info])
    wf.group("Baseline vs. CIL", [cil, *right], color=CIL_GREEN)
    return wf


def build_probe(cat) -> Workflow:
    wf = Workflow("toy_leakage_probe", cat)
    Column(wf, -480, 0).note((440, 600), PROBE_NOTE)
    a = Column(wf, 0, 0)
    loader = a.add("CIL_ToyModelLoader", model_name="edm_baseline")
    video = a.add("CIL_ToyWorldVideo", title="Reference video (held out)", model_name="edm_baseline", index=3)
    cond = a.add("CIL_ToyImageToVideo", controls={"noise_seed": "fixed"}, links={"vae": loader.out(1), "start_image": video.out(1)},
                 width=32, height=32, frames=8, batch_size=1, crop="center", noise_level=0.0, noise_seed=0)
    a.even()
    b = Column(wf, a.right + 120, 0)
    probe = b.add("CIL_LeakageProbe", controls={"seed": "fixed"},
                  links={"model": loader.out(0), "positive": cond.out(0), "negative": cond.out(1), "video_frames": video.out(0), "vae": loader.out(1)},
                  grid_count=10, t_min=0.1, t_max=1.0, samples_per_t=4, seed=0, cfg=1.0, start_rule="plateau", threshold=0.5,
                  plateau_tolerance=0.1, max_batch=8, preview_t="auto", pixel_metric="auto", probe_mode="one_step+regen", regen_steps=8, regen_samples=2, sampler_name="euler", recommend_from="one_step",
                  filename_prefix="cil_probe/toy_edm_baseline")
    c = Column(wf, b.right + 70, 0)
    plot = c.add("PreviewImage", (520, 380), title="Probe plot", links={"images": probe.out(0)})
    table = c.add("PreviewAny", (520, 280), title="Probe table", links={"source": probe.out(1)})
    d = Column(wf, c.right + 120, 0)
    cil = late_start(d, loader.out(0), cond.out(0), cond.out(1), cond.out(2), loader.out(2), seed=42, steps=20, cfg=1.0, sampler="euler",
                     M=0.8, title="CIL: start at the probe's M")
    cil.links["M"] = probe.out(2)
    right = comparison(wf, d.right + 70, 0, loader, cond, video, cil, ("real | baseline", "real | baseline | CIL"), "toy_leakage_probe")
    wf.group("Toy model and a real video", a.nodes)
    wf.group("Leakage Probe", [probe, plot, table], color=CIL_RED)
    wf.group("Baseline vs. CIL at the probe's M", [cil, *right], color=CIL_GREEN)
    return wf


SPECS = [
    Spec(build_demo, "toy_cil_demo", True, "runs on the shipped toy I2V model (cil_toy/weights), no downloads: KSampler vs Late "
         "Start Sampler with Analytic-Init", timeout_s=240),
    Spec(build_probe, "toy_leakage_probe", True, "runs on the shipped toy I2V model, no downloads: Leakage Probe on a held-out toy "
         "video, its recommended M wired into the Late Start Sampler"),
]
