"""Leakage Probe engine (paper Sec. 3.1, Fig. 2/6): how much motion survives a one-step prediction.

For each t on a grid the reference video x0 (model space) is corrupted with the model's own
forward process, x = a(σ_t)·x0 + b(σ_t)·ε, and ComfyUI's real guider (CFGGuider: conds, CFG,
model patches and wrappers) predicts x̂0 in one call. motion(x̂0)/motion(x0) → 0 at large t
means the model copies the conditional image instead of reading the noisy video: leakage.

Batching: a custom SAMPLER runs inside ONE ``guider.sample`` preparation and sends all (t,
sample) pairs through the model in chunks of ``max_batch`` noisy videos. Frames-as-batch
models (SVD, DynamiCrafter: latents [T, C, h, w]) get a chunk of k videos as one [k·T, C, h, w]
batch: ComfyUI keeps ``num_video_frames = T`` (set from the reference) and tiles the conds to
k·T, so the temporal layers see k separate videos. A model patched with a CFG function that
reads the batch as frames (e.g. VideoLinearCFGGuidance) is run one video per call instead.
5-D models (Wan: [B, C, T, h, w]) batch along dim 0. Replacement models (Wan 2.2 TI2V-5B,
LTX-Video, Kandinsky 5) keep their start frame clean as their sampler does and are measured on
the frames after it (``probe_reference``).

Regeneration probe (``probe_mode = one_step+regen``; cil_core.regen_probe): in the same
preparation, x_t is sampled back to 0 by ComfyUI's own KSAMPLER (``sampler_object(sampler_name)``:
its noise scaling, its inpaint handling of held frames, its step function) over the pack's
late-start schedule from t, ``regen_steps`` model calls per (t, sample), batched like the one-step
calls, cancellable after every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import comfy.samplers
import torch

from cil_core import probe_report as report_lib
from cil_core.families import DiffusionFamily
from cil_core.layouts import from_cfhw, to_cfhw
from cil_core.probe import ProbeResult
from cil_core.start_rule import StartRule
from cil_core.validation import CILValueError
from cil_media.charts import image_to_tensor, png_bytes
from cil_media.flow import optical_flow_available, optical_flow_motion
from cil_media.probe_plot import render_report

from cil_core.regen_probe import regeneration_probe

from .models import detect_family, family_label
from .paths import check_name, inside
from .probe_blocks import plan, probe_in_blocks
from .probe_reference import Reference, pixel_frames, reference_for
from .probe_regen import OUT_OF_MEMORY, RegenPlan, from_model_layout, regen_sampler, to_model_layout
from .sampling import NATIVE_SCHEDULER, late_start_schedule

CFG_HOOKS = ("sampler_cfg_function", "sampler_pre_cfg_function", "sampler_post_cfg_function")



# --- running the probe inside one guider preparation -------------------------------------------------

class ProbeSampler(comfy.samplers.Sampler):
    """A ComfyUI SAMPLER whose ``sample`` runs the whole probe with the prepared guider
    (``model_wrap`` is the CFGGuider; ``latent_image`` the reference in model space)."""

    def __init__(self, run_probe, run_regen=None):
        self.run_probe, self.run_regen = run_probe, run_regen
        self.result: ProbeResult | None = None
        self.regen: ProbeResult | None = None

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False):
        def call(x, sigma):
            if denoise_mask is None:
                return model_wrap(x, sigma.to(x.device), **extra_args)
            # KSamplerX0Inpaint's rule: held elements clean in the model input and in the prediction
            keep = 1.0 - denoise_mask
            x = x * denoise_mask + latent_image * keep
            return model_wrap(x, sigma.to(x.device), **extra_args) * denoise_mask + latent_image * keep

        self.result = self.run_probe(call, latent_image)
        if self.run_regen is not None:
            self.regen = self.run_regen(model_wrap, extra_args, latent_image, denoise_mask)
        return latent_image


def layout_denoiser(call, layout: str, calls: list[int] | None = None):
    """Adapt ``call(x in the model's layout, σ per batch item)`` to cil_core's
    ``denoise(x [B, C, F, H, W], σ [B])``. Checks for cancel before every model call; a chunk
    that runs out of GPU memory is split in halves and retried (the noise is already drawn, so
    the numbers do not change). ``calls`` receives the video count of every successful call."""
    import comfy.model_management as mm

    def one_call(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        mm.throw_exception_if_processing_interrupted()
        if layout == "BCTHW":
            out = call(x, sigma)
        else:
            out = from_model_layout(call(to_model_layout(x, layout), sigma.repeat_interleave(x.shape[2])), layout, x.shape[0])
        if calls is not None:
            calls.append(x.shape[0])
        return out

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        try:
            return one_call(x, sigma)
        except OUT_OF_MEMORY:
            if x.shape[0] == 1:
                raise
        mm.soft_empty_cache()
        half = x.shape[0] // 2
        return torch.cat([denoise(x[:half], sigma[:half]), denoise(x[half:], sigma[half:])])

    return denoise


def videos_per_call(model, layout: str, max_batch: int) -> int:
    """Frames-as-batch models with a CFG hook run one video per call (the hook may read the
    batch as the frame axis, as VideoLinearCFGGuidance does)."""
    options = model.model_options
    if layout == "TCHW" and any(options.get(k) for k in CFG_HOOKS):
        return 1
    return max_batch


def run_probe(model, positive, negative, cfg: float, latent: torch.Tensor, layout: str, family: DiffusionFamily,
              t_grid: list[float], samples_per_t: int, seed: int, max_batch: int, progress=None,
              calls: list[int] | None = None, *, hold_mask: torch.Tensor | None = None, skip_frames: int = 0,
              keep_all: bool = False, regen: RegenPlan | None = None, regen_step=None) -> tuple[ProbeResult, ProbeResult | None]:
    """All (t, sample) pairs through ComfyUI's CFGGuider in one preparation; noise from ``seed``.
    ``calls`` (optional) receives the number of videos of every model call. ``hold_mask``: the noise
    mask of a replacement model's held start frame (passed to guider.sample as its sampler does);
    ``skip_frames`` leading frames are left out of the motion. Predictions kept: sample 0 of each t,
    or all of them (``keep_all``, for the pixel metric); memory is checked first (``probe_blocks``).
    With ``regen``, the regeneration probe runs in the same preparation (``regen_step(b)`` after
    every sampling step of b videos)."""
    def probe(call, x0_model):
        return probe_in_blocks(
            layout_denoiser(call, layout, calls), to_cfhw(x0_model, layout).float(), family, t_grid, samples_per_t,
            generator=torch.Generator().manual_seed(seed), max_batch=max_batch, progress=progress,
            skip_frames=skip_frames, keep_all=keep_all,
        )

    def regenerate(model_wrap, extra_args, x0_model, denoise_mask):
        sample = regen_sampler(model_wrap, extra_args, x0_model, denoise_mask, layout, regen.sampler_name, calls, regen_step)
        schedule = lambda t: late_start_schedule(model, family, regen.steps, t, NATIVE_SCHEDULER)  # noqa: E731
        return regeneration_probe(sample, to_cfhw(x0_model, layout).float(), family, t_grid, regen.samples, schedule,
                                  generator=torch.Generator().manual_seed(seed + 1), max_batch=max_batch, skip_frames=skip_frames)

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    sampler = ProbeSampler(probe, regenerate if regen is not None else None)
    schedule = torch.cat([family.sigma_at(torch.tensor(sorted(t_grid, reverse=True))).float(), torch.zeros(1)])
    reference = latent[:1] if layout == "BCTHW" else latent
    guider.sample(torch.zeros_like(reference), reference, sampler, schedule, denoise_mask=hold_mask, disable_pbar=True, seed=seed)
    return sampler.result, sampler.regen


# --- pixel metric and previews ----------------------------------------------------------------------

def decode_video(vae, latent_format, video_cfhw: torch.Tensor, layout: str) -> torch.Tensor:
    """Model-space CFHW latent → frames [F, H, W, 3] in [0, 1] through the VAE."""
    raw = latent_format.process_out(from_cfhw(video_cfhw, layout))
    images = vae.decode(raw)
    return images.reshape(-1, *images.shape[-3:])


def pixel_motion(result: ProbeResult, reference_cfhw, vae, latent_format, layout: str, progress=None):
    """(motion_pred [T, S], motion_ref) of the pixel optical-flow metric, on the decoded frames
    after those of the held start frames."""
    import comfy.model_management as mm

    skip = pixel_frames(vae, result.skip_frames)
    ref = optical_flow_motion(decode_video(vae, latent_format, reference_cfhw, layout)[skip:])
    preds = result.predictions.flatten(0, 1)
    motion = torch.zeros(preds.shape[0], dtype=torch.float64)
    for i, video in enumerate(preds):
        mm.throw_exception_if_processing_interrupted()
        motion[i] = optical_flow_motion(decode_video(vae, latent_format, video, layout)[skip:])
        if progress is not None:
            progress(i + 1, preds.shape[0])
    return motion.reshape(result.motion_pred.shape), ref


def parse_preview_times(text: str) -> str | list[float]:
    """"auto", "all", "none" or comma-separated times in (0, 1]."""
    text = text.strip().lower()
    if text in ("auto", "all", "none", ""):
        return text or "none"
    try:
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not (0.0 < v <= 1.0) for v in values):
        raise CILValueError(f"preview_t={text!r}: expected auto, all, none or comma-separated times in (0, 1], e.g. 0.5, 0.9.")
    return values


def preview_latent(result: ProbeResult, report: dict, preview, latent_format, layout: str) -> dict:
    """Sample 0 of the one-step predictions at the chosen grid times, as a raw LATENT.
    Frames-as-batch models: the videos one after another along the frame axis."""
    t_grid = [float(t) for t in result.t]
    if preview == "none":
        indices = []
    elif preview == "all":
        indices = list(range(len(t_grid)))
    elif preview == "auto":  # the most leaking grid t and the recommended start
        indices = sorted(set(report_lib.nearest_grid_indices(t_grid, [max(t_grid), report["recommended_start"]])))
    else:
        indices = report_lib.nearest_grid_indices(t_grid, preview)
    if not indices:
        indices = [len(t_grid) - 1]
    videos = result.predictions[indices, 0]
    if layout == "TCHW":
        raw = torch.cat([latent_format.process_out(from_cfhw(v, layout)) for v in videos])
    else:
        raw = latent_format.process_out(from_cfhw(videos, layout))
    return {"samples": raw.float().cpu()}


# --- saving -------------------------------------------------------------------------------------------

def check_prefix(filename_prefix: str) -> str:
    """The probe's filename_prefix: a name inside ComfyUI's output folder, also after symlinks
    (checked before the probe runs, and again before writing)."""
    import os

    import folder_paths

    check_name("filename_prefix", filename_prefix)
    out_dir = folder_paths.get_output_directory()
    inside(out_dir, os.path.dirname(os.path.join(out_dir, filename_prefix)) or out_dir, "filename_prefix")
    return filename_prefix


def save_outputs(report: dict, image, filename_prefix: str) -> tuple[dict, str]:
    import os

    import folder_paths

    out_dir = folder_paths.get_output_directory()
    check_prefix(filename_prefix)
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, out_dir, image.width, image.height)
    inside(out_dir, folder, "filename_prefix")
    stem = os.path.join(folder, f"{name}_{counter:05}_")
    paths = report_lib.save_report(report, stem, png_bytes(image))
    return {"filename": paths["png"].name, "subfolder": subfolder, "type": "output"}, str(paths["json"])


PROBE_MODES = ("one_step", "one_step+regen")
RECOMMEND_FROM = {"one_step": "latent_energy", "corrected": "corrected", "regen": "regen"}  # widget → report curve


@dataclass(frozen=True)
class ProbeSettings:
    t_grid: list[float]
    samples_per_t: int = 4
    seed: int = 0
    cfg: float = 1.0
    rule: StartRule = StartRule()
    max_batch: int = 8
    pixel_metric: str = "auto"  # "auto" | "off"
    regen: RegenPlan | None = None  # None: one-step probe only
    recommend_from: str = "one_step"  # a key of RECOMMEND_FROM

    def __post_init__(self) -> None:
        if self.recommend_from not in RECOMMEND_FROM:
            raise CILValueError(f"recommend_from={self.recommend_from!r}; expected one of {', '.join(RECOMMEND_FROM)}.")
        if self.recommend_from == "regen" and self.regen is None:
            raise CILValueError("recommend_from=regen needs the regeneration probe: set probe_mode to one_step+regen.")
        if self.recommend_from == "corrected" and self.samples_per_t < 2:
            raise CILValueError(f"recommend_from=corrected needs samples_per_t >= 2 (got {self.samples_per_t}): the noise is "
                                "removed by comparing draws.")
        if self.regen is not None:
            if self.regen.samples < 1 or self.regen.steps < 1:
                raise CILValueError(f"regen_samples={self.regen.samples} and regen_steps={self.regen.steps} must be >= 1.")
            if self.regen.sampler_name not in comfy.samplers.SAMPLER_NAMES:
                raise CILValueError(f"sampler_name={self.regen.sampler_name!r} is not one of ComfyUI's samplers "
                                    f"({', '.join(comfy.samplers.SAMPLER_NAMES[:6])}, ...).")

    @classmethod
    def from_widgets(cls, grid_count: int, t_min: float, t_max: float, samples_per_t: int, seed: int, cfg: float,
                     start_rule: str, threshold: float, plateau_tolerance: float, max_batch: int,
                     pixel_metric: str, probe_mode: str = "one_step", regen_steps: int = 10, regen_samples: int = 2,
                     sampler_name: str = "euler", recommend_from: str = "one_step") -> "ProbeSettings":
        if probe_mode not in PROBE_MODES:
            raise CILValueError(f"probe_mode={probe_mode!r}; expected one of {', '.join(PROBE_MODES)}.")
        rule = StartRule(start_rule, threshold, plateau_tolerance)
        regen = RegenPlan(regen_samples, regen_steps, sampler_name) if probe_mode == "one_step+regen" else None
        return cls(report_lib.grid(t_min, t_max, grid_count), samples_per_t, seed, cfg, rule, max_batch, pixel_metric, regen,
                   recommend_from)


@dataclass
class ProbeRun:
    report: dict
    result: ProbeResult
    latent_format: object
    layout: str


def measure(model, positive, negative, settings: ProbeSettings, *, video_latent=None, video_frames=None, vae=None,
            progress=None) -> ProbeRun:
    """The whole probe for the node and for ``cil probe``: checks, batched one-step predictions,
    optional pixel metric, the report dict (no plot drawn, nothing saved)."""
    ref = reference_for(model, positive, negative, video_latent=video_latent, video_frames=video_frames, vae=vae)
    latent, layout = ref.latent, ref.layout
    family = detect_family(model)  # the same t -> sigma map as the Late Start nodes' M
    per_call = videos_per_call(model, layout, settings.max_batch)
    use_flow, flow_note = _pixel_metric_plan(settings.pixel_metric, vae)
    pairs = len(settings.t_grid) * settings.samples_per_t
    regen_evals = len(settings.t_grid) * settings.regen.samples * settings.regen.steps if settings.regen else 0
    total = pairs * (2 if use_flow else 1) + regen_evals
    tick = (lambda done, offset: progress(offset + done, total)) if progress else (lambda done, offset: None)
    video_numel = (latent[:1] if layout == "BCTHW" else latent).numel()
    plan(video_numel, len(settings.t_grid), settings.samples_per_t, use_flow, per_call)  # refused before any model work
    regen_done = [0]

    def regen_step(b: int) -> None:
        regen_done[0] += b
        tick(regen_done[0], pairs)

    calls: list[int] = []
    result, regen = run_probe(model, positive, negative, settings.cfg, latent, layout, family, settings.t_grid,
                              settings.samples_per_t, settings.seed, per_call, progress=lambda done, _: tick(done, 0), calls=calls,
                              hold_mask=ref.hold_mask, skip_frames=ref.skip_frames, keep_all=use_flow, regen=settings.regen,
                              regen_step=regen_step)
    latent_format = model.get_model_object("latent_format")
    pixel = None
    if use_flow:
        reference = to_cfhw(latent_format.process_in(latent[:1] if layout == "BCTHW" else latent), layout).float()
        pixel = pixel_motion(result, reference, vae, latent_format, layout, progress=lambda done, _: tick(done, pairs + regen_evals))
    meta = {
        "model": type(model.model).__name__, "family": family_label(family), "family_params": family.describe(),
        "layout": layout, "latent_shape": list(latent.shape), "cfg": settings.cfg,
        "reference": ref.source + (f" (first of {latent.shape[0]} videos)" if layout == "BCTHW" and latent.shape[0] > 1 else ""),
        "measured_frames": _measured(ref),
        "seed": settings.seed, "videos_per_model_call": per_call, "model_calls": len(calls), "largest_model_call": max(calls),
        "pixel_metric": flow_note,
        "regeneration": (f"{settings.regen.samples} per t, {settings.regen.steps} steps of ComfyUI's {settings.regen.sampler_name} "
                         "over the pack's late-start schedule from t; noise from seed + 1") if settings.regen else "off",
    }
    report = report_lib.build_report(result, settings.rule, pixel_motion=pixel, meta=meta, regen=regen,
                                     recommend_from=RECOMMEND_FROM[settings.recommend_from])
    return ProbeRun(report, result, latent_format, layout)


def _measured(ref: Reference) -> str:
    frames = f"latent frames {ref.skip_frames}..{ref.frames - 1} of {ref.frames}"
    return f"{frames} (frame(s) before: {ref.note})" if ref.skip_frames else f"{frames} (all)"


def _pixel_metric_plan(mode: str, vae) -> tuple[bool, str]:
    if mode == "off":
        return False, "off (pixel_metric=off)"
    if vae is None:
        return False, "off (no vae connected)"
    if not optical_flow_available():
        return False, "off (OpenCV not installed: pip install opencv-python-headless)"
    return True, "on"




@dataclass
class ProbeOutputs:
    """What the node hands on: the plot (IMAGE), the table text, M, the preview LATENT, the UI dict."""

    image: torch.Tensor
    text: str
    recommended_m: float
    preview: dict
    ui: dict


def probe_and_save(model, positive, negative, settings: ProbeSettings, preview_t: str, filename_prefix: str, *,
                   video_latent=None, video_frames=None, vae=None) -> ProbeOutputs:
    """The Leakage Probe node's whole run: measure with ComfyUI's progress bar, draw, save, preview."""
    import comfy.utils

    preview = parse_preview_times(preview_t)
    bar = comfy.utils.ProgressBar(1)
    run = measure(model, positive, negative, settings, video_latent=video_latent, video_frames=video_frames, vae=vae,
                  progress=lambda done, total: bar.update_absolute(done, total))
    image = render_report(run.report)
    saved, json_path = save_outputs(run.report, image, filename_prefix)
    text = report_lib.report_text(run.report) + f"\nsaved: {json_path} (+ .csv, .png)"
    return ProbeOutputs(image_to_tensor(image), text, float(run.report["recommended_start"]),
                        preview_latent(run.result, run.report, preview, run.latent_format, run.layout),
                        {"images": [saved], "text": [text]})
