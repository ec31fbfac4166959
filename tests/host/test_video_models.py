"""The graphs people run today, on tiny models of the real classes (tiny_video_models): Wan 2.2
TI2V-5B (WAN22), LTX-Video (LTXV), HunyuanVideo 1.5, Kandinsky 5 and a Wan 2.2 A14B expert (WAN21
I2V), conditioned by ComfyUI's own nodes.

- the Late Start Sampler's first state on the GENERATED elements is the Analytic-Init Gaussian
  N(a·E[x0], a²·v + b²) (no stats: ComfyUI's N(0, b²)), by Monte Carlo (z-scores);
- replacement models (WAN22, LTXV): the held start frame is the user's latent, bit for bit, at
  every model call and in the output; ComfyUI's own sampler output is only close;
- results are deterministic per seed; the Leakage Probe runs.
"""

from __future__ import annotations

import math

import pytest

import tiny_video_models as tvm  # tests/host is on sys.path (conftest)

pytestmark = pytest.mark.host

KINDS = ["wan22", "ltxv", "hunyuan15", "kandinsky5", "wan21_high"]
HELD_BY_MASK = {"wan22", "ltxv"}  # the start image is latent frame 0, held by the noise mask
SIZES = {"wan22": (64, 64, 9), "ltxv": (128, 128, 17), "hunyuan15": (64, 64, 9), "kandinsky5": (32, 32, 9),
         "wan21_high": (32, 32, 9)}  # height, width, length: 3 latent frames of 4x4 each


def latent_shape(kind: str) -> tuple[int, int, int, int]:
    h, w, length = SIZES[kind]
    _, spatial, temporal = tvm.GEOMETRY[kind]
    return tvm.LATENT_CHANNELS[kind], (length - 1) // temporal + 1, h // spatial, w // spatial


def graph(kind: str, *, batch: int = 1, inplace: bool = False, strength: float = 1.0, seed: int = 0):
    h, w, length = SIZES[kind]
    prompt = {"1": {"class_type": "CILTest_TinyVideoModel", "inputs": {"kind": kind, "seed": seed, "height": h, "width": w, "image_frames": 1}}}
    nodes, pos, neg, lat = tvm.conditioning_nodes(kind, "1", height=h, width=w, length=length, batch=batch, strength=strength, inplace=inplace)
    prompt.update(nodes)
    return prompt, pos, neg, lat


def late_start(model, pos, neg, lat, *, seed=1, steps=1, cfg=1.0, m=0.8, stats_ref=None, scheduler="cil_late_start") -> dict:
    inputs = {"model": model, "positive": pos, "negative": neg, "latent_image": lat, "seed": seed, "steps": steps, "cfg": cfg,
              "sampler_name": "euler", "scheduler": scheduler, "M": m, "naive_mode": "empty_latent", "fit": "strict"}
    if stats_ref is not None:
        inputs["stats"] = stats_ref
    return {"class_type": "CIL_LateStartSampler", "inputs": inputs}


def model_sampling(kind: str):
    return tvm.tiny_model(kind).get_model_object("model_sampling")


def is_flux(ms) -> bool:
    import comfy.model_sampling as cms

    return isinstance(ms, cms.ModelSamplingFlux)


def sigma_of(ms, m: float) -> float:
    """σ at the paper's time M from the model's own shift, float64 (DiscreteFlow: s·t/(1+(s−1)t);
    Flux: e^μ/(e^μ + 1/t − 1))."""
    shift = float(ms.shift)
    if is_flux(ms):
        return math.exp(shift) / (math.exp(shift) + 1.0 / m - 1.0)
    return shift * m / (1.0 + (shift - 1.0) * m)


def m_for_sigma(ms, sigma: float) -> float:
    """The inverse of ``sigma_of`` (rounded to the widget's 0.001 step)."""
    shift = float(ms.shift)
    if is_flux(ms):
        e = math.exp(shift)
        m = 1.0 / (1.0 + e * (1.0 - sigma) / sigma)
    else:
        m = sigma / (shift - (shift - 1.0) * sigma)
    return round(m, 3)


def z_check(x, mean, std: float, what: str) -> None:
    """(x − mean)/std must look standard normal: |mean(z)| < 5/√d, |std(z) − 1| < 5/√(2d)."""
    z = ((x - mean) / std).reshape(-1)
    d = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(d), f"{what}: residual mean {float(z.mean()):.4f} (d={d})"
    assert abs(float(z.std()) - 1) < 5 / math.sqrt(2 * d), f"{what}: residual std {float(z.std()):.4f} (d={d})"


def process_in(kind: str, raw):
    return tvm.tiny_model(kind).get_model_object("latent_format").process_in(raw.float())


# --- (a) the initial state against the Analytic-Init formula ----------------------------------------

@pytest.mark.parametrize("with_stats", [True, False], ids=["stats", "no_stats"])
@pytest.mark.parametrize("kind", KINDS)
def test_initial_state_on_generated_frames_is_the_analytic_init_gaussian(video_host, captures, write_stats, kind, with_stats):
    """x_M = a·E[x0] + sqrt(a²v + b²)·ε on generated elements (a = 1 − σ_M, b = σ_M), E[x0] over the
    frames after the held one for replacement models (stats with skip_frames); without stats
    N(0, b²). σ_M ≈ 0.5 with stats makes the mean term visible: its slope on E[x0] must be a."""
    import torch

    tvm.require(kind)
    ms = model_sampling(kind)
    m = m_for_sigma(ms, 0.5 if with_stats else 0.9)
    c, f, h, w = latent_shape(kind)
    skip = 1 if kind in HELD_BY_MASK else 0
    prompt, pos, neg, lat = graph(kind, batch=2)
    v, stats_ref, stats = 0.2, None, None
    if with_stats:
        name, stats = write_stats(f"mc_{kind}.safetensors", (c, f - skip, h, w), tr_cov_d=v, scale=3.0,
                                  meta={"skip_frames": str(skip)} if skip else None)
        prompt["2"] = {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": name}}
        stats_ref = ["2", 0]
    prompt["3"] = {"class_type": "CILTest_CaptureApplyModel", "inputs": {"model": ["1", 0], "key": "first"}}
    prompt["4"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": lat, "key": "latent"}}
    prompt["10"] = late_start(["3", 0], pos, neg, lat, seed=11, m=m, stats_ref=stats_ref)
    prompt["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": f"mc_{kind}_{int(with_stats)}"}}
    video_host.run(prompt)
    call = captures["first"][0]
    x, sigma = call["x"].double(), float(call["sigma"].reshape(-1)[0])
    assert x.shape == (2, c, f, h, w)
    assert sigma == pytest.approx(sigma_of(ms, m), rel=1e-5)
    a, b = 1.0 - sigma, sigma
    gen = x[:, :, skip:]
    if with_stats:
        mean = a * stats.mean.double().unsqueeze(0).expand_as(gen)
        z_check(gen, mean, math.sqrt(a * a * v + b * b), f"{kind} Analytic-Init")
        e = stats.mean.double().unsqueeze(0).expand_as(gen)
        de = e - e.mean()
        slope = float(((gen - gen.mean()) * de).sum() / (de ** 2).sum())
        assert slope == pytest.approx(a, abs=6 * math.sqrt(a * a * v + b * b) / math.sqrt(float((de ** 2).sum())))
    else:
        z_check(gen, 0.0, b, f"{kind} naive late start")
    if skip:  # the held start frame is the user's latent at the first call already
        held = process_in(kind, captures["latent"][0]["samples"])[:, :, :skip].double()
        assert torch.equal(x[:, :, :skip], held.expand_as(x[:, :, :skip]))


# --- (b) the held start frame, bit for bit ----------------------------------------------------------

@pytest.mark.parametrize("kind,inplace", [("wan22", False), ("ltxv", False), ("ltxv", True)],
                         ids=["wan22", "ltxv", "ltxv_inplace"])
def test_held_frames_stay_the_users_latent_at_every_call_and_in_the_output(video_host, captures, kind, inplace):
    """cfg 2 (cond and uncond rows), 4 steps: every model input holds process_in(user latent) on the
    held frame exactly; our output holds the user's latent exactly. ComfyUI's own KSampler ends
    there only up to rounding (checked to be close, printed)."""
    import torch

    tvm.require(kind)
    if inplace:
        tvm.require_node(video_host, "LTXVImgToVideoInplace")
    prompt, pos, neg, lat = graph(kind, inplace=inplace)
    prompt["3"] = {"class_type": "CILTest_CaptureApplyModel", "inputs": {"model": ["1", 0], "key": "calls"}}
    prompt["4"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": lat, "key": "latent"}}
    prompt["10"] = late_start(["3", 0], pos, neg, lat, seed=3, steps=4, cfg=2.0, m=0.9)
    prompt["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": f"held_{kind}_{int(inplace)}"}}
    prompt["20"] = {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": pos, "negative": neg, "latent_image": lat, "seed": 3,
                                                          "steps": 4, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}}
    prompt["21"] = {"class_type": "SaveLatent", "inputs": {"samples": ["20", 0], "filename_prefix": f"heldks_{kind}_{int(inplace)}"}}
    video_host.run(prompt)
    user = captures["latent"][0]
    assert float(user["noise_mask"][:, :, 0].max()) == 0.0 and float(user["noise_mask"][:, :, 1:].min()) == 1.0
    held_in = process_in(kind, user["samples"])[:, :, :1]
    calls = captures["calls"]
    assert len(calls) == 4 and all(sorted(call["cond_or_uncond"]) == [0, 1] for call in calls)
    for i, call in enumerate(calls):
        x = call["x"]
        assert torch.equal(x[:, :, :1], held_in.expand_as(x[:, :, :1]).to(x.dtype)), f"call {i}: the held frame changed"
        assert not torch.equal(x[:, :, 1:], torch.zeros_like(x[:, :, 1:]))
    ours = tvm.saved_latent(video_host, f"held_{kind}_{int(inplace)}")
    assert torch.equal(ours[:, :, :1], user["samples"][:, :, :1]), "our output's held frame is not the user's latent"
    assert not torch.equal(ours[:, :, 1:], user["samples"][:, :, 1:])
    theirs = tvm.saved_latent(video_host, f"heldks_{kind}_{int(inplace)}")
    gap = float((theirs[:, :, :1] - user["samples"][:, :, :1]).abs().max())
    scale = float(user["samples"][:, :, :1].abs().max())
    print(f"{kind}{' inplace' if inplace else ''}: ComfyUI's KSampler held frame max |out - user| = {gap:.3g} (|user| ≤ {scale:.3g})")
    assert gap <= 1e-5 * max(scale, 1.0), "ComfyUI's own sampler should hold the frame up to rounding"


# --- (e) deterministic for a seed -------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_late_start_is_deterministic_per_seed(video_host, kind):
    import torch

    tvm.require(kind)
    prompt, pos, neg, lat = graph(kind)
    for tag, seed in (("a", 5), ("b", 5), ("c", 6)):
        prompt[f"1{tag}"] = late_start(["1", 0], pos, neg, lat, seed=seed, steps=2, cfg=2.0, m=0.9)
        prompt[f"2{tag}"] = {"class_type": "SaveLatent", "inputs": {"samples": [f"1{tag}", 0], "filename_prefix": f"det_{kind}_{tag}"}}
    video_host.run(prompt)
    a, b, c = (tvm.saved_latent(video_host, f"det_{kind}_{t}") for t in "abc")
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --- (d) the Leakage Probe runs -----------------------------------------------------------------------

def probe_graph(kind: str, prefix: str, *, cfg: float = 1.0) -> dict:
    """Reference = random smooth frames; the conditioning node gets the video's first frame."""
    h, w, length = SIZES[kind]
    prompt = {"1": {"class_type": "CILTest_TinyVideoModel", "inputs": {"kind": kind, "seed": 0, "height": h, "width": w, "image_frames": 1}},
              "2": {"class_type": "CILTest_RandomImages", "inputs": {"seed": 4, "count": length, "height": h, "width": w}},
              "3": {"class_type": "ImageFromBatch", "inputs": {"image": ["2", 0], "batch_index": 0, "length": 1}}}
    nodes, pos, neg, _ = tvm.conditioning_nodes(kind, "1", height=h, width=w, length=length)
    for node in nodes.values():
        for key in ("start_image", "image"):
            if key in node["inputs"]:
                node["inputs"][key] = ["3", 0]
    prompt.update(nodes)
    prompt["9"] = {"class_type": "CILTest_CaptureApplyModel", "inputs": {"model": ["1", 0], "key": "probe"}}
    prompt["10"] = {"class_type": "CIL_LeakageProbe", "inputs": {
        "model": ["9", 0], "positive": pos, "negative": neg, "video_frames": ["2", 0], "vae": ["1", 1], "grid_count": 3,
        "t_min": 0.3, "t_max": 1.0, "samples_per_t": 2, "seed": 7, "cfg": cfg, "start_rule": "plateau", "threshold": 0.5,
        "plateau_tolerance": 0.1, "max_batch": 3, "preview_t": "auto", "pixel_metric": "off", "filename_prefix": prefix}}
    prompt["11"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["10", 1], "key": "table"}}
    return prompt


def load_report(host, prefix: str) -> dict:
    import json

    files = sorted((host.root / "output").glob(f"{prefix}_[0-9][0-9][0-9][0-9][0-9]_.json"))
    assert files, f"no probe report {prefix}"
    return json.loads(files[-1].read_text())


@pytest.mark.parametrize("kind", KINDS)
def test_leakage_probe_runs(video_host, captures, kind):
    tvm.require(kind)
    video_host.run(probe_graph(kind, f"probe_{kind}"))
    report = load_report(video_host, f"probe_{kind}")
    assert report["meta"]["model"] == tvm.MODEL_CLASS[kind]
    assert len(report["rows"]) == 3 and all(math.isfinite(r["latent_energy_ratio_mean"]) for r in report["rows"])
    assert 0.0 < report["recommended_start"] <= 1.0
    assert len(captures["probe"]) == 2, "3 times × 2 samples in calls of at most 3 videos"
    assert "recommended start M" in captures["table"][0]
