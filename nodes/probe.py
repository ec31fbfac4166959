"""Leakage Probe node (paper Sec. 3.1, Fig. 2/6); the engine is cil_comfy.probe."""

from __future__ import annotations

from comfy_api.latest import io

from cil_comfy.probe import PROBE_MODES, RECOMMEND_FROM, ProbeSettings, check_prefix, parse_preview_times, probe_and_save
from cil_comfy.sampling import sampler_names
from cil_core import probe_report as report_lib
from cil_core.start_rule import START_RULES, StartRule
from cil_core.validation import CILValueError

from .common import check_inputs, require_inputs

NODE_ID = "CIL_LeakageProbe"

DESCRIPTION = """Measures conditional image leakage (paper Sec. 3.1, Fig. 2): for each t on the grid the
reference video is noised with the model's own forward process and the model predicts the clean
video in one step (through ComfyUI's guider, with your conditioning and CFG). The plot shows
motion(prediction) / motion(reference) against t; a leaking model's ratio collapses toward 0 at
large t (the prediction is a still copy of the conditional image).
Models that hold the start image in the latent (Wan 2.2 TI2V-5B, LTX-Video, Kandinsky 5) keep it
clean as their sampler does, and the frames after it are measured (the report's meta says which).

Recommended start M (plateau rule, the default): if the ratio at the largest t is below the leak
threshold, M is the lower edge of the plateau where the curve has settled at its large-t value
(ratio <= r_top + tolerance x (r_bottom - r_top)). Steps on the plateau add no motion and pull the
sample toward a still copy; a late start there (Late Start Sampler, Analytic-Init prior; paper
Sec. 4.1) skips the whole copying regime and no more. Skipping steps still costs some fidelity on
some models (on the toy world every late start does): compare with sampling from T. The threshold
rule (M = largest t whose ratio stays >= threshold) is kept for comparison; it starts far too low. Ratio on the latent frame-difference energy; with a VAE and OpenCV installed
the pixel optical-flow ratio is reported too. With samples_per_t >= 2 the table also holds the one-step ratio with the
prediction noise removed (motion of x0 averaged over the noise draws: noise left in a prediction would otherwise count
as motion). probe_mode one_step+regen adds the regeneration probe: x_t is sampled back to 0 with the chosen ComfyUI
sampler in regen_steps steps and the motion of the result is compared with the video's; a perfect model keeps it near 1
(on average over videos) at every t, a model that copies the image loses it at large t. It needs no reference, costs
regen_steps model calls per (t, sample), and shows in the same plot and table. recommend_from picks the curve the start
rule reads. Table saved as JSON + CSV (+ the plot PNG) in the output folder; ± is one standard error."""


class LeakageProbe(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id=NODE_ID,
            display_name="Leakage Probe",
            category="CIL/analysis",
            description=DESCRIPTION,
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The image-to-video model to probe (SVD, DynamiCrafter, Wan, …), with any patches your graph applies."),
                io.Conditioning.Input("positive", tooltip="Positive conditioning from the model's I2V conditioning node (e.g. SVD_img2vid_Conditioning), built from the reference video's first frame."),
                io.Conditioning.Input("negative", tooltip="Negative conditioning from the same I2V conditioning node (used when cfg > 1)."),
                io.Latent.Input("video_latent", optional=True, tooltip="The reference video as a LATENT from VAE Encode (raw VAE space; ComfyUI maps it into model space). Connect this OR video_frames + vae. Wan 2.2 TI2V-5B / LTX-Video: a noise_mask on it (e.g. LTXVImgToVideoInplace) sets how the start frame is held; without one it is held fully."),
                io.Image.Input("video_frames", optional=True, tooltip="The reference video as IMAGE frames (at least 2), encoded here with the vae. Connect this + vae OR video_latent."),
                io.Vae.Input("vae", optional=True, tooltip="The model's VAE: encodes video_frames, and decodes predictions for the pixel optical-flow metric (needs OpenCV)."),
                io.Int.Input("grid_count", default=10, min=1, max=200, tooltip="Number of probe times t, evenly spaced from t_min to t_max (1 = only t_max)."),
                io.Float.Input("t_min", default=0.1, min=0.0, max=1.0, step=0.01, round=False, tooltip="Smallest probe time, in (0, 1] (fraction of the diffusion time T; 1 = pure noise)."),
                io.Float.Input("t_max", default=1.0, min=0.0, max=1.0, step=0.01, round=False, tooltip="Largest probe time, in (0, 1], >= t_min. Leakage shows at large t."),
                io.Int.Input("samples_per_t", default=4, min=1, max=256, tooltip="Noise draws per t; the plot shows their mean ± one standard error. 2 or more also give the noise-removed curve. More = smoother curve, proportionally slower."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the forward-process noise ε; the same seed gives the same table whatever max_batch is."),
                io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance of the one-step prediction. 1 = conditional model only, as in the paper's probe; set your sampler's cfg to probe what your graph runs."),
                io.Combo.Input("start_rule", options=list(START_RULES), default="plateau", tooltip="How M is read off the curve. plateau: the lower edge of the large-t plateau where the model copies the image (skips only the copying steps). threshold: the largest t whose ratio stays >= threshold (starts lower; kept for comparison)."),
                io.Float.Input("threshold", default=0.5, min=0.01, max=2.0, step=0.05, tooltip="Leak threshold: a mean motion ratio below this counts as leaking. plateau rule: no late start unless the ratio at the largest t is below it. threshold rule: M = largest grid t with ratio >= threshold there and at every smaller grid t."),
                io.Float.Input("plateau_tolerance", default=0.1, min=0.0, max=0.99, step=0.01, round=False, tooltip="plateau rule only: a t is on the plateau when its ratio is within this share of the collapse (r_bottom - r_top) above the ratio at the largest t. 0.1 = the 10-90% convention: 90% of the collapse has happened. Larger = earlier M."),
                io.Int.Input("max_batch", default=8, min=1, max=1024, tooltip="Noisy videos per model call: all (t, sample) pairs go through in ceil(grid_count*samples_per_t/max_batch) calls. A call that runs out of GPU memory is split in halves automatically (same numbers)."),
                io.String.Input("preview_t", default="auto", tooltip="Which one-step predictions the predictions output holds (sample 0): auto = largest t and the recommended M; all; none; or times such as 0.5, 0.9 (nearest grid t)."),
                io.Combo.Input("pixel_metric", options=["auto", "off"], default="auto", tooltip="auto: also report the pixel optical-flow ratio (OpenCV Farneback) when a vae is connected and opencv is installed; decodes every prediction (slower). off: latent metric only."),
                io.String.Input("filename_prefix", default="cil_probe/leakage_probe", tooltip="Where the table (JSON, CSV) and plot (PNG) are saved, relative to ComfyUI's output folder."),
                io.Combo.Input("probe_mode", options=list(PROBE_MODES), default="one_step", optional=True, tooltip="one_step: the paper's probe (one model call per t and sample). one_step+regen: also regenerate each noisy video x_t back to 0 with the sampler below and compare its motion with the video's (regen_steps model calls per t and regeneration); a model that copies the conditional image loses motion as t grows, a perfect one does not."),
                io.Int.Input("regen_steps", default=10, min=1, max=200, optional=True, tooltip="one_step+regen: sampling steps from each t down to 0 (the pack's late-start schedule from t, as the Late Start Sampler uses)."),
                io.Int.Input("regen_samples", default=2, min=1, max=64, optional=True, tooltip="one_step+regen: regenerations per t (their own noise, from seed + 1). Each costs regen_steps model calls; they are batched like the one-step calls (max_batch)."),
                io.Combo.Input("sampler_name", options=sampler_names(), default="euler", optional=True, tooltip="one_step+regen: the ComfyUI sampler that regenerates (KSampler's names). Use the one your graph samples with."),
                io.Combo.Input("recommend_from", options=list(RECOMMEND_FROM), default="one_step", optional=True, tooltip="The curve the start rule reads: one_step (the paper's raw ratio), corrected (the prediction noise removed; needs samples_per_t >= 2) or regen (needs one_step+regen). The one-step curves fall at large t even for a perfect model, which averages over the possible futures; the regeneration curve does not."),
            ],
            outputs=[
                io.Image.Output(display_name="plot", tooltip="Motion ratio vs t with the leak threshold, the plateau level and the recommended M."),
                io.String.Output(display_name="table", tooltip="The probe's table as text (also saved as JSON + CSV)."),
                io.Float.Output(display_name="recommended_M", tooltip="Recommended start M in (0, 1]: wire into the Late Start Sampler's M."),
                io.Latent.Output(display_name="predictions", tooltip="One-step predictions at preview_t (raw VAE space) for VAE Decode; frames-as-batch models get the videos one after another."),
            ],
        )

    @classmethod
    def validate_inputs(cls, **values) -> bool | str:
        return check_inputs(cls, values, probe_checks)

    @classmethod
    def execute(cls, model, positive, negative, grid_count, t_min, t_max, samples_per_t, seed, cfg, start_rule, threshold,
                plateau_tolerance, max_batch, preview_t, pixel_metric, filename_prefix, video_latent=None, video_frames=None,
                vae=None, probe_mode="one_step", regen_steps=10, regen_samples=2, sampler_name="euler",
                recommend_from="one_step") -> io.NodeOutput:
        require_inputs(cls, locals(), probe_checks)
        out = probe_and_save(model, positive, negative, ProbeSettings.from_widgets(
            grid_count, t_min, t_max, samples_per_t, seed, cfg, start_rule, threshold, plateau_tolerance, max_batch,
            pixel_metric, probe_mode, regen_steps, regen_samples, sampler_name, recommend_from), preview_t, filename_prefix,
            video_latent=video_latent, video_frames=video_frames, vae=vae)
        return io.NodeOutput(out.image, out.text, out.recommended_m, out.preview, ui=out.ui)


MAX_GRID = 200  # grid_count's declared maximum: a larger count is refused by the bounds check, not built


def probe_checks(v) -> bool:
    """The probe's own checks (each skipped while one of its values is a link): the time grid, the
    start rule, preview_t and where the report goes."""
    t_min, t_max, count = v.get("t_min"), v.get("t_max"), v.get("grid_count")
    if None not in (t_min, t_max, count) and 1 <= count <= MAX_GRID:
        report_lib.grid(float(t_min), float(t_max), int(count))
    if v.get("preview_t") is not None:
        parse_preview_times(v["preview_t"])
    rule = (v.get("start_rule"), v.get("threshold"), v.get("plateau_tolerance"))
    if None not in rule and rule[0] in START_RULES:
        StartRule(rule[0], float(rule[1]), float(rule[2]))
    if v.get("filename_prefix") is not None:
        check_prefix(v["filename_prefix"])
    modes = (v.get("probe_mode", "one_step"), v.get("recommend_from", "one_step"), v.get("samples_per_t"))
    if None not in modes and modes[0] in PROBE_MODES and modes[1] in RECOMMEND_FROM:
        if modes[1] == "regen" and modes[0] != "one_step+regen":
            raise CILValueError("recommend_from=regen needs the regeneration probe: set probe_mode to one_step+regen.")
        if modes[1] == "corrected" and modes[2] < 2:
            raise CILValueError(f"recommend_from=corrected needs samples_per_t >= 2 (got {modes[2]}): the noise is removed by "
                                "averaging the samples of one t.")
    return True


NODES = [LeakageProbe]
