"""CIL_LeakageProbe in a real ComfyUI on the tiny SVD model (frames as batch, EDM, v-pred).

Checks: the node runs in a graph; its plot IMAGE, saved PNG, JSON, CSV and text agree; the
recommended M is the documented rule's answer and lies on the grid; batching does not change
the numbers; the one-step prediction equals ComfyUI's own one-step Euler sample through
SamplerCustomAdvanced + CFGGuider; bad input gives clear errors; cancel stops the probe.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

FRAMES, H, W = 4, 8, 8


# --- test-only source nodes (registered in ComfyUI's node table) -----------------------------------

class CILTestProbe_MovingLatent:
    """A deterministic raw (VAE-space) video latent: a static texture plus a blob moving one
    latent pixel per frame, so the reference has motion. TCHW: [T, C, h, w] (SVD, VP);
    BCTHW: [1, C, T, h, w] (Wan)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("INT", {"default": FRAMES, "min": 1, "max": 64}),
                             "height": ("INT", {"default": H, "min": 2, "max": 256}),
                             "width": ("INT", {"default": W, "min": 2, "max": 256}),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
                             "channels": ("INT", {"default": 4, "min": 1, "max": 64}),
                             "layout": (["TCHW", "BCTHW"],)}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, frames, height, width, seed, channels=4, layout="TCHW"):
        import torch

        gen = torch.Generator().manual_seed(seed)
        texture = torch.randn(channels, height, width, generator=gen) * 2.0
        yy, xx = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
        video = []
        for f in range(frames):
            blob = torch.exp(-((yy - height / 2) ** 2 + (xx - 1 - f) ** 2) / 3.0) * 20.0
            video.append(texture + blob)
        video = torch.stack(video)  # [T, C, h, w]
        return ({"samples": video if layout == "TCHW" else video.permute(1, 0, 2, 3).unsqueeze(0).contiguous()},)


class CILTestProbe_ProbeNoise:
    """NOISE giving exactly the first ε the probe draws for ``seed`` (cil_core draws
    randn([n, C, F, h, w]) from a CPU generator), in ComfyUI's [T, C, h, w] layout."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    RETURN_TYPES = ("NOISE",)
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    class _Noise:
        def __init__(self, seed):
            self.seed = seed

        def generate_noise(self, latent):
            import torch

            samples = latent["samples"]
            c, f = (samples.shape[1], samples.shape[0]) if samples.dim() == 4 else (samples.shape[1], samples.shape[2])
            eps = torch.randn((1, c, f, *samples.shape[-2:]), generator=torch.Generator().manual_seed(self.seed), dtype=torch.float32)
            return eps[0].permute(1, 0, 2, 3).contiguous() if samples.dim() == 4 else eps

    def build(self, seed):
        return (self._Noise(seed),)


class CILTestProbe_OneStepSigmas:
    """SIGMAS [σ_t, 0] from ComfyUI's own model_sampling: percent_to_sigma(1 − t) for EDM and
    flow models; for discrete VP the table at index t·1000 − 1 (the official ddpm_from
    convention, t = 0.94 ↔ index 939; percent_to_sigma would use t·999)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "t": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.001})}}

    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, model, t):
        import comfy.model_sampling as cms
        import torch

        ms = model.get_model_object("model_sampling")
        if isinstance(ms, cms.ModelSamplingDiscrete):
            sigma = float(ms.sigma(torch.tensor(t * len(ms.sigmas) - 1.0)))
        else:
            sigma = float(ms.percent_to_sigma(1.0 - t))
        return (torch.tensor([sigma, 0.0]),)


class CILTestProbe_StrongTemporal:
    """Re-initialises the temporal layers of a (fresh, per-run) tiny SVD with larger weights so
    that mixing frames of different videos in the temporal layers changes the output a lot
    (with the default 0.05 init it changes the probe's motions by only ~1e-4)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, model):
        import torch

        gen = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for name, p in model.model.named_parameters():
                if ".time_stack." in name or "time_pos_embed" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        return (model,)


class CILTestProbe_OutOfMemoryAbove:
    """MODEL clone whose APPLY_MODEL wrapper raises torch's OutOfMemoryError for batches larger
    than ``frames`` (what a GPU does when a chunk does not fit)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "frames": ("INT", {"default": 8, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, model, frames):
        import comfy.patcher_extension as pe
        import torch

        error = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

        def wrapper(executor, x, *args, **kwargs):
            if x.shape[0] > frames:
                raise error(f"test: a batch of {x.shape[0]} frames does not fit")
            return executor(x, *args, **kwargs)

        patched = model.clone()
        patched.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "cil_test_oom", wrapper)
        return (patched,)


CALLS = {"n": 0}


class CILTestProbe_InterruptAfter:
    """MODEL clone whose APPLY_MODEL wrapper counts calls and requests a cancel after ``calls``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "calls": ("INT", {"default": 1, "min": 1, "max": 1000})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, model, calls):
        import comfy.model_management as mm
        import comfy.patcher_extension as pe

        CALLS["n"] = 0

        def wrapper(executor, *args, **kwargs):
            CALLS["n"] += 1
            if CALLS["n"] >= calls:
                mm.interrupt_current_processing(True)
            return executor(*args, **kwargs)

        patched = model.clone()
        patched.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, "cil_test_interrupt", wrapper)
        return (patched,)


@pytest.fixture(scope="module")
def probe_host(tiny_host):
    svd_host = tiny_host
    for cls in (CILTestProbe_MovingLatent, CILTestProbe_ProbeNoise, CILTestProbe_OneStepSigmas, CILTestProbe_InterruptAfter, CILTestProbe_StrongTemporal, CILTestProbe_OutOfMemoryAbove):
        svd_host.register(cls)
    assert "CIL_LeakageProbe" in svd_host.node_classes, "the pack did not register CIL_LeakageProbe"
    return svd_host


# --- graph helpers ------------------------------------------------------------------------------------

def probe_prompt(prefix: str, *, frames=FRAMES, cond_size=(H, W), video_size=(H, W), model_src=("1", 0), **widgets) -> dict:
    inputs = {
        "model": list(model_src), "positive": ["1", 1], "negative": ["1", 2], "video_latent": ["2", 0],
        "grid_count": 5, "t_min": 0.2, "t_max": 1.0, "samples_per_t": 2, "seed": 7, "cfg": 2.0,
        "start_rule": "plateau", "threshold": 0.5, "plateau_tolerance": 0.1, "max_batch": 4, "preview_t": "auto",
        "pixel_metric": "off", "filename_prefix": prefix,
    }
    inputs.update(widgets)
    return {
        "1": {"class_type": "CILTest_TinySVD", "inputs": {"seed": 0, "frames": max(frames, 2), "height": cond_size[0], "width": cond_size[1]}},
        "2": {"class_type": "CILTestProbe_MovingLatent", "inputs": {"frames": frames, "height": video_size[0], "width": video_size[1], "seed": 1, "channels": 4, "layout": "TCHW"}},
        "3": {"class_type": "CIL_LeakageProbe", "inputs": inputs},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": prefix + "_plotout"}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 3], "filename_prefix": prefix + "_pred"}},
    }


def newest(host, pattern: str) -> Path:
    files = sorted((host.root / "output").glob(pattern))
    assert files, f"nothing matches {pattern} in {host.root / 'output'}"
    return files[-1]


def load_report(host, prefix: str) -> dict:
    return json.loads(newest(host, f"{prefix}_*_.json").read_text())


def rule_answer(ts: list[float], means: list[float], rule: str, threshold: float, tol: float) -> float:
    """M by cil_core's start rule on the table's means (the rule itself is checked against
    brute-force readings of its definition in tests/core/test_start_rule.py)."""
    from cil_core.start_rule import StartRule, recommend_start

    return recommend_start(ts, means, StartRule(rule, threshold, tol)).m


def run_failure(host, prompt) -> str:
    with pytest.raises(AssertionError) as info:  # the host's PromptFailed
        host.run(prompt)
    return str(info.value)


# --- tests --------------------------------------------------------------------------------------------

def test_schema_has_tooltips_category_and_outputs(probe_host):
    cls = probe_host.node_classes["CIL_LeakageProbe"]
    schema = cls.define_schema()
    assert schema.category == "CIL/analysis" and schema.display_name == "Leakage Probe"
    missing = [i.id for i in schema.inputs if not getattr(i, "tooltip", None)]
    assert not missing, f"inputs without tooltip: {missing}"
    assert [o.display_name for o in schema.outputs] == ["plot", "table", "recommended_M", "predictions"]


def test_probe_runs_and_plot_table_json_csv_agree(probe_host):
    import numpy as np
    import torch
    from PIL import Image

    executor = probe_host.run(probe_prompt("probe_main"))
    report = load_report(probe_host, "probe_main")
    rows = report["rows"]
    ts = [r["t"] for r in rows]
    assert ts == pytest.approx([0.2 + 0.2 * i for i in range(5)], abs=1e-12)
    assert all(len(r["latent_energy_ratios"]) == 2 for r in rows)
    ref = report["metrics"]["latent_energy"]["reference_motion"]
    for r in rows:  # ratios are motions / reference motion
        assert r["latent_energy_ratios"] == pytest.approx([m / ref for m in r["latent_energy_motion"]], rel=1e-12)

    # the plotted numbers are the table's means, recomputed here from the per-sample ratios
    means = [sum(r["latent_energy_ratios"]) / 2 for r in rows]
    series = report["plot"]["series"][0]
    assert series["t"] == ts and series["ratio"] == pytest.approx(means, rel=1e-12)

    # the recommendation is the documented rule's answer and lies on the grid
    assert report["start_rule"] == "plateau" and report["plateau_tolerance"] == 0.1
    m = rule_answer(ts, means, "plateau", report["threshold"], report["plateau_tolerance"])
    assert report["recommended_start"] == pytest.approx(m, abs=1e-12)
    assert any(abs(report["recommended_start"] - t) < 1e-12 for t in ts)

    # the markers sit where the axes put those numbers, in the PNG the node saved ...
    plot = report["plot"]
    x0, y0, x1, y1 = plot["box"]
    top = plot["y_range"][1]
    png = np.asarray(Image.open(newest(probe_host, "probe_main_*_.png")).convert("RGB"))
    for t, ratio, marker in zip(ts, means, series["markers"]):
        px = x0 + t * (x1 - x0)
        py = y1 - min(ratio, top) / top * (y1 - y0)
        assert abs(marker[0] - px) <= 0.5 and abs(marker[1] - py) <= 0.5
        assert tuple(png[marker[1], marker[0]]) == tuple(series["color"]), f"no marker at {marker} for t={t}"
    # ... and the plot IMAGE output is that same picture
    out = np.asarray(Image.open(newest(probe_host, "probe_main_plotout_*.png")).convert("RGB"))
    assert out.shape == png.shape and np.abs(out.astype(int) - png.astype(int)).max() <= 1

    # the CSV holds the same numbers
    with open(newest(probe_host, "probe_main_*_.csv")) as fh:
        table = list(csv.DictReader(fh))
    assert [float(r["t"]) for r in table] == ts
    assert [float(r["latent_energy_ratio_mean"]) for r in table] == pytest.approx(means, rel=1e-12)

    # the node's text shows the same M, and the predictions latent is sample 0 at the chosen t
    ui = executor.history_result["outputs"]["3"]
    assert f"recommended start M = {report['recommended_start']:.4f}" in ui["text"][0]
    pred = probe_host.load_latent("probe_main_pred")
    n_preview = len({max(ts), report["recommended_start"]})
    assert pred.shape == (n_preview * FRAMES, 4, H, W) and torch.isfinite(pred).all()
    assert report["meta"]["model_calls"] == math.ceil(5 * 2 / 4)


def test_start_rule_widgets_reach_the_recommendation(probe_host):
    """The same probe (same seed) under the threshold rule and a wider plateau: each M is that
    rule's answer on the same table."""
    for rule, tol in (("threshold", 0.1), ("plateau", 0.6)):
        probe_host.run(probe_prompt(f"probe_rule_{rule}", start_rule=rule, plateau_tolerance=tol))
        report = load_report(probe_host, f"probe_rule_{rule}")
        ts = [r["t"] for r in report["rows"]]
        means = [r["latent_energy_ratio_mean"] for r in report["rows"]]
        assert report["start_rule"] == rule and report["recommendation"]["rule"] == rule
        assert report["recommended_start"] == pytest.approx(rule_answer(ts, means, rule, 0.5, tol), abs=1e-12)
        assert 0 < report["recommendation_stability"]["agreement"] <= 1


def test_batching_does_not_change_the_numbers(probe_host):
    """Frames-as-batch: 12 videos of 4 frames go through as one batch of 48 frames. With the
    strong temporal layers, treating the batch as one 48-frame video (wrong num_video_frames)
    changes these motions by 1e-3 to 3e-1 (checked once by hand); the right batching agrees
    with one video per call to float32 round-off."""
    for prefix, batch in (("probe_b1", 1), ("probe_b12", 12)):
        prompt = probe_prompt(prefix, model_src=("20", 0), max_batch=batch, samples_per_t=3, grid_count=4)
        prompt["20"] = {"class_type": "CILTestProbe_StrongTemporal", "inputs": {"model": ["1", 0]}}
        probe_host.run(prompt)
    one, all_at_once = load_report(probe_host, "probe_b1"), load_report(probe_host, "probe_b12")
    assert one["meta"]["model_calls"] == 12 and all_at_once["meta"]["model_calls"] == 1
    for a, b in zip(one["rows"], all_at_once["rows"]):
        assert a["latent_energy_motion"] == pytest.approx(b["latent_energy_motion"], rel=1e-4)


MODELS = {  # source node, its inputs, reference latent layout and channels
    "svd": ("CILTest_TinySVD", {"seed": 0, "frames": FRAMES, "height": H, "width": W}, "TCHW", 4),
    "vp": ("CILTest_TinyVP", {"seed": 0, "frames": FRAMES, "height": H, "width": W}, "TCHW", 4),
    "wan": ("CILTest_TinyWan", {"seed": 0, "frames": 3, "height": 4, "width": 4, "batch": 1, "clip_tokens": 0}, "BCTHW", 16),
}


def model_prompt(kind: str, prefix: str, **widgets) -> dict:
    source, inputs, layout, channels = MODELS[kind]
    prompt = probe_prompt(prefix, **widgets)
    prompt["1"] = {"class_type": source, "inputs": dict(inputs)}
    prompt["2"]["inputs"].update(frames=inputs["frames"], height=inputs["height"], width=inputs["width"], channels=channels, layout=layout)
    return prompt


@pytest.mark.parametrize("kind", ["svd", "vp", "wan"])
def test_one_step_prediction_equals_comfy_euler_step(probe_host, kind):
    """x̂0 at t through the probe == SamplerCustomAdvanced(euler, sigmas [σ_t, 0], CFGGuider) on
    the same x = a·x0 + b·ε: one Euler step to 0 returns the guider's denoised output. Checks the
    t → σ map, the noising, the layout handling and the CFG path for EDM, VP and flow models."""
    t, seed, cfg = 0.7, 11, 2.5
    prompt = model_prompt(kind, "probe_eq_" + kind, grid_count=1, t_min=t, t_max=t, samples_per_t=1, seed=seed, cfg=cfg, preview_t="all")
    prompt.update({
        "10": {"class_type": "CILTestProbe_ProbeNoise", "inputs": {"seed": seed}},
        "11": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["1", 1], "negative": ["1", 2], "cfg": cfg}},
        "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "13": {"class_type": "CILTestProbe_OneStepSigmas", "inputs": {"model": ["1", 0], "t": t}},
        "14": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["10", 0], "guider": ["11", 0], "sampler": ["12", 0], "sigmas": ["13", 0], "latent_image": ["2", 0]}},
        "15": {"class_type": "SaveLatent", "inputs": {"samples": ["14", 1], "filename_prefix": f"probe_eq_{kind}_comfy"}},
    })
    probe_host.run(prompt)
    ours, theirs = probe_host.load_latent(f"probe_eq_{kind}_pred"), probe_host.load_latent(f"probe_eq_{kind}_comfy")
    assert ours.shape == theirs.shape
    scale = float(theirs.abs().max())
    assert float((ours - theirs).abs().max()) <= 1e-4 * max(scale, 1.0), "probe prediction differs from ComfyUI's own one-step sample"


def test_wan_batches_along_dim0_and_recommended_m_output_is_the_json_value(probe_host, captures):
    for prefix, batch in (("probe_wan1", 1), ("probe_wan6", 6)):
        prompt = model_prompt("wan", prefix, max_batch=batch, samples_per_t=2, grid_count=3, cfg=1.5)
        prompt["40"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["3", 2], "key": prefix}}
        probe_host.run(prompt)
    one, six = load_report(probe_host, "probe_wan1"), load_report(probe_host, "probe_wan6")
    assert one["meta"]["layout"] == "BCTHW" and "rectified flow" in one["meta"]["family"]
    assert one["meta"]["model_calls"] == 6 and six["meta"]["model_calls"] == 1
    for a, b in zip(one["rows"], six["rows"]):
        assert a["latent_energy_motion"] == pytest.approx(b["latent_energy_motion"], rel=1e-4)
    assert captures["probe_wan6"] == [six["recommended_start"]]


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"frames": 1}, "at least 2"),
        ({"cond_size": (16, 16)}, "frame size mismatch"),
    ],
)
def test_bad_video_gives_a_clear_error(probe_host, kwargs, expected):
    message = run_failure(probe_host, probe_prompt("probe_bad", **kwargs))
    assert expected in message


@pytest.mark.parametrize(
    "widgets, expected",
    [
        ({"t_min": 0.0}, "outside (0, 1]"),
        ({"t_min": 0.9, "t_max": 0.5}, "swap them"),
        ({"preview_t": "soon"}, "preview_t"),
        ({"plateau_tolerance": 0.99, "threshold": -1.0}, "threshold=-1.0"),
    ],
)
def test_bad_grid_is_a_validation_error(probe_host, widgets, expected):
    ok, error, _, node_errors = probe_host.validate(probe_prompt("probe_badgrid", **widgets))
    assert not ok
    assert expected in json.dumps(node_errors)


def test_grid_above_one_is_rejected_by_validation(probe_host):
    ok, _, _, node_errors = probe_host.validate(probe_prompt("probe_badgrid", t_max=1.5))
    assert not ok and "t_max" in json.dumps(node_errors)


def test_cancel_stops_the_probe(probe_host):
    prompt = probe_prompt("probe_cancel", model_src=("20", 0), max_batch=1, grid_count=10, samples_per_t=4, cfg=1.0)
    prompt["20"] = {"class_type": "CILTestProbe_InterruptAfter", "inputs": {"model": ["1", 0], "calls": 2}}
    message = run_failure(probe_host, prompt)
    assert "execution_interrupted" in message
    assert CALLS["n"] <= 3, f"the probe kept calling the model after cancel ({CALLS['n']} calls of 40)"


# --- reference as IMAGE frames + VAE, and the pixel optical-flow metric -----------------------------------

class CILTestProbe_TinyVAE:
    """A real comfy.sd.VAE built from a randomly initialised TAESD state dict (4 latent channels,
    8× downscale): enough to exercise encode/decode paths, not to make pretty pictures."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    RETURN_TYPES = ("VAE",)
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, seed):
        import comfy.sd
        import comfy.taesd.taesd
        import torch

        gen = torch.Generator().manual_seed(seed)
        state = comfy.taesd.taesd.TAESD().state_dict()
        state = {  # fan-in scaled weights keep activations O(1) through the ~60 convolutions
            k: torch.randn(v.shape, generator=gen) * (2.0 / v[0].numel()) ** 0.5 if v.dim() > 1 else torch.zeros(v.shape)
            for k, v in state.items()
        }
        state["vae_scale"], state["vae_shift"] = torch.tensor(1.0), torch.tensor(0.0)
        return (comfy.sd.VAE(sd=state),)


class CILTestProbe_MovingFrames:
    """IMAGE [T, 64, 64, 3]: a bright square moving 4 px per frame over a gradient."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"frames": ("INT", {"default": FRAMES, "min": 1, "max": 64})}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, frames):
        import torch

        base = torch.linspace(0, 0.5, 64).reshape(1, 64, 1).expand(64, 64, 3).clone()
        video = []
        for f in range(frames):
            frame = base.clone()
            frame[24:40, 4 + 4 * f : 20 + 4 * f] = torch.tensor([0.9, 0.8, 0.2])
            video.append(frame)
        return (torch.stack(video),)


@pytest.fixture(scope="module")
def vae_host(probe_host):
    probe_host.register(CILTestProbe_TinyVAE)
    probe_host.register(CILTestProbe_MovingFrames)
    return probe_host


def frames_prompt(prefix: str, *, via_frames: bool, frames: int = FRAMES, pixel_metric: str = "auto") -> dict:
    prompt = probe_prompt(prefix, pixel_metric=pixel_metric, grid_count=3, samples_per_t=2, t_min=0.4)
    prompt["30"] = {"class_type": "CILTestProbe_TinyVAE", "inputs": {"seed": 0}}
    prompt["31"] = {"class_type": "CILTestProbe_MovingFrames", "inputs": {"frames": frames}}
    prompt["3"]["inputs"]["vae"] = ["30", 0]
    if via_frames:
        del prompt["3"]["inputs"]["video_latent"]
        prompt["3"]["inputs"]["video_frames"] = ["31", 0]
    else:
        prompt["32"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["31", 0], "vae": ["30", 0]}}
        prompt["3"]["inputs"]["video_latent"] = ["32", 0]
    del prompt["2"]
    return prompt


def test_frames_plus_vae_equals_vae_encode_latent(vae_host):
    vae_host.run(frames_prompt("probe_fr", via_frames=True, pixel_metric="off"))
    vae_host.run(frames_prompt("probe_lat", via_frames=False, pixel_metric="off"))
    a, b = load_report(vae_host, "probe_fr"), load_report(vae_host, "probe_lat")
    assert a["meta"]["reference"] == "frames+vae" and b["meta"]["reference"] == "latent"
    assert a["metrics"] == b["metrics"]
    for ra, rb in zip(a["rows"], b["rows"]):
        assert ra["latent_energy_motion"] == pytest.approx(rb["latent_energy_motion"], rel=1e-6)


def test_pixel_metric_follows_opencv_availability(vae_host):
    import importlib.util

    vae_host.run(frames_prompt("probe_px", via_frames=True))
    report = load_report(vae_host, "probe_px")
    series = [s["key"] for s in report["plot"]["series"]]
    if importlib.util.find_spec("cv2") is None:
        assert "OpenCV not installed" in report["meta"]["pixel_metric"] and series == ["latent_energy", "corrected"]
        return
    assert report["meta"]["pixel_metric"] == "on" and series == ["latent_energy", "corrected", "pixel_flow"]
    assert report["metrics"]["pixel_flow"]["reference_motion"] > 0
    for row in report["rows"]:
        ratios = row["pixel_flow_ratios"]
        assert len(ratios) == 2 and all(math.isfinite(r) and r >= 0 for r in ratios)
        assert row["pixel_flow_ratio_mean"] == pytest.approx(sum(ratios) / 2, rel=1e-12)


def test_single_frame_video_is_refused_before_encoding(vae_host):
    message = run_failure(vae_host, frames_prompt("probe_fr1", via_frames=True, frames=1))
    assert "at least 2 frame" in message


# --- the headless command's ComfyUI path (cil probe --checkpoint) -------------------------------------------
# No SVD checkpoint and no CLIP vision model exist here, so the loader and SVD_img2vid_Conditioning
# steps are not run; everything after them (video file → frames → the node's engine → report) is.

def write_gif(path: Path, frames) -> None:
    from PIL import Image

    images = [Image.fromarray((f.numpy() * 255).round().astype("uint8")) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)


def test_headless_probe_reads_a_video_file_and_runs_the_node_engine(vae_host, tmp_path):
    import argparse

    import torch

    from cil_core import probe_report
    from cil_tools import probe_cmd

    original = CILTestProbe_MovingFrames().build(5)[0]
    write_gif(tmp_path / "clip.gif", original)
    frames = probe_cmd.load_video(str(tmp_path / "clip.gif"), frames=4, stride=1, width=64, height=64)
    assert frames.shape == (4, 64, 64, 3)
    assert float((frames - original[:4]).abs().mean()) < 0.02  # GIF palette quantisation only
    strided = probe_cmd.load_video(str(tmp_path / "clip.gif"), frames=3, stride=2, width=32, height=48)
    assert strided.shape == (3, 48, 32, 3)

    model, positive, negative, _ = vae_host.node_classes["CILTest_TinySVD"]().build(0, 4, 8, 8)
    vae = CILTestProbe_TinyVAE().build(0)[0]
    args = argparse.Namespace(samples=2, seed=3, cfg=1.0, rule="plateau", threshold=0.5, plateau_tolerance=0.1, max_batch=4, pixel_metric="off")
    report = probe_cmd.probe_with_comfy(model, positive, negative, frames, vae, args, probe_report.grid(0.3, 1.0, 3), source="clip.gif")
    assert [r["t"] for r in report["rows"]] == pytest.approx([0.3, 0.65, 1.0])
    assert report["meta"]["reference"] == "frames+vae" and report["meta"]["source"] == "clip.gif"
    assert all(torch.isfinite(torch.tensor(r["latent_energy_ratios"])).all() for r in report["rows"])


def test_cli_refuses_bad_arguments_with_clear_errors(tmp_path, capsys):
    from cil_tools.cli import main

    assert main(["probe", "--checkpoint", str(tmp_path / "missing.safetensors"), "--video", "x.gif", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["probe", "--checkpoint", str(tmp_path / "m.safetensors"), "--out", str(tmp_path)]) == 2
    assert "needs --video" in capsys.readouterr().err
    assert main(["probe", "--toy", "baseline", "--t-min", "0", "--out", str(tmp_path)]) == 2
    assert "outside (0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["probe", "--out", str(tmp_path)])  # neither --toy nor --checkpoint


def test_frames_as_batch_model_with_a_cfg_hook_runs_one_video_per_call(probe_host):
    """VideoLinearCFGGuidance spreads CFG over the batch as if it were the frames; batching
    several videos would stretch that ramp over all of them, so the probe sends one at a time."""
    prompt = probe_prompt("probe_hook", model_src=("21", 0), max_batch=8, grid_count=2, samples_per_t=3, cfg=2.5)
    prompt["21"] = {"class_type": "VideoLinearCFGGuidance", "inputs": {"model": ["1", 0], "min_cfg": 1.0}}
    probe_host.run(prompt)
    meta = load_report(probe_host, "probe_hook")["meta"]
    assert meta["videos_per_model_call"] == 1 and meta["model_calls"] == 6


def test_wan_reference_with_other_length_than_the_conditioning_is_refused(probe_host):
    prompt = model_prompt("wan", "probe_wanlen")
    prompt["2"]["inputs"]["frames"] = 5  # the conditioning was built for 3 latent frames
    assert "frame count mismatch" in run_failure(probe_host, prompt)


def test_a_chunk_that_runs_out_of_memory_is_split_and_gives_the_same_numbers(probe_host):
    prompt = probe_prompt("probe_oom", model_src=("22", 0), max_batch=8, grid_count=4, samples_per_t=2, cfg=1.0)
    prompt["22"] = {"class_type": "CILTestProbe_OutOfMemoryAbove", "inputs": {"model": ["1", 0], "frames": 2 * FRAMES}}
    probe_host.run(prompt)
    probe_host.run(probe_prompt("probe_nooom", max_batch=8, grid_count=4, samples_per_t=2, cfg=1.0))
    split, whole = load_report(probe_host, "probe_oom"), load_report(probe_host, "probe_nooom")
    assert (whole["meta"]["model_calls"], whole["meta"]["largest_model_call"]) == (1, 8)
    assert (split["meta"]["model_calls"], split["meta"]["largest_model_call"]) == (4, 2)  # 8 -> 4 -> 2 videos
    for a, b in zip(split["rows"], whole["rows"]):
        assert a["latent_energy_motion"] == pytest.approx(b["latent_energy_motion"], rel=1e-4)


def test_cli_checkpoint_path_end_to_end_with_a_tiny_stand_in(probe_host, tmp_path, monkeypatch):
    """`cil probe --checkpoint … --video clip.gif` with ComfyUI's checkpoint loader standing in
    (no SVD checkpoint can exist here): the tiny SVD, a real tiny CLIP vision and a TAESD-bodied
    VAE from the host's ImageOnlyCheckpointLoader stand-in. Everything else is the real path:
    SVD_img2vid_Conditioning on the first frame, the node's engine, PNG + JSON + CSV."""
    import comfy.sd

    from cil_tools.cli import main

    model, clip_vision, vae = probe_host.node_classes["CILTest_TinySVDCheckpoint"]().load_checkpoint("svd.safetensors")
    calls = []

    def loader(path, **kwargs):
        calls.append((path, kwargs))
        return (model, None, vae, clip_vision)

    monkeypatch.setattr(comfy.sd, "load_checkpoint_guess_config", loader)
    (tmp_path / "svd.safetensors").write_bytes(b"")
    write_gif(tmp_path / "clip.gif", CILTestProbe_MovingFrames().build(6)[0])
    out = tmp_path / "report"
    code = main(["probe", "--checkpoint", str(tmp_path / "svd.safetensors"), "--video", str(tmp_path / "clip.gif"),
                 "--width", "64", "--height", "64", "--frames", "5", "--count", "3", "--samples", "2", "--cfg", "2.0",
                 "--pixel-metric", "off", "--out", str(out)])
    assert code == 0 and calls and calls[0][1]["output_clipvision"] is True
    report = json.loads((out / "svd.json").read_text())
    assert (out / "svd.png").is_file() and (out / "svd.csv").is_file()
    assert report["meta"]["latent_shape"] == [5, 4, 8, 8] and report["meta"]["cfg"] == 2.0
    assert report["plot"]["series"][0]["ratio"] == pytest.approx(pr_mean_ratios(report), rel=1e-12)


def pr_mean_ratios(report: dict) -> list[float]:
    return [sum(r["latent_energy_ratios"]) / len(r["latent_energy_ratios"]) for r in report["rows"]]


def test_an_error_deep_in_the_probe_engine_reaches_the_cli_user_as_one_line(probe_host, tmp_path, monkeypatch, capsys):
    """`cil probe --checkpoint … --video still/`: the error is raised inside cil_core's probe,
    inside the SAMPLER that ComfyUI's CFGGuider runs (a still video has no motion to compare);
    it must reach the user as the CLI's one-line error with exit code 2, not a traceback (one
    identity per module: the CILValueError raised there is the class cil_tools.cli catches)."""
    import comfy.sd

    from cil_tools.cli import main

    model, clip_vision, vae = probe_host.node_classes["CILTest_TinySVDCheckpoint"]().load_checkpoint("svd.safetensors")
    monkeypatch.setattr(comfy.sd, "load_checkpoint_guess_config", lambda path, **kw: (model, None, vae, clip_vision))
    (tmp_path / "svd.safetensors").write_bytes(b"")
    from PIL import Image

    still = CILTestProbe_MovingFrames().build(1)[0][0]
    (tmp_path / "still").mkdir()
    for i in range(5):  # a folder of identical frames (a GIF writer would merge them into one)
        Image.fromarray((still.numpy() * 255).round().astype("uint8")).save(tmp_path / "still" / f"{i:03d}.png")
    code = main(["probe", "--checkpoint", str(tmp_path / "svd.safetensors"), "--video", str(tmp_path / "still"),
                 "--width", "64", "--height", "64", "--frames", "5", "--count", "2", "--samples", "1",
                 "--pixel-metric", "off", "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]  # tqdm clears its line with \r
    assert code == 2 and "Traceback" not in err
    assert lines[-1].startswith("cil probe: error: ") and "no motion" in lines[-1], err
    assert err.endswith("\n") and err.count("cil probe: error:") == 1 and err.rstrip("\n").endswith(lines[-1])
    assert not (tmp_path / "report").exists() or not any((tmp_path / "report").iterdir())
