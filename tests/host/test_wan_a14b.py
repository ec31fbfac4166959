"""Wan 2.2 A14B's two experts inside one Late Start Sampler run, against the official template's pair
of KSamplerAdvanced (high-noise expert for steps 0..10 with leftover noise, low-noise expert from
step 10 without added noise), on two tiny WAN21 image-to-video experts with WanImageToVideo
conditioning and ModelSamplingSD3 shift 5, as in the template."""

from __future__ import annotations


import pytest

import tiny_video_models as tvm  # tests/host is on sys.path (conftest)

pytestmark = pytest.mark.host

STEPS, SPLIT, SHIFT, CFG, SEED = 20, 10, 5.0, 3.5, 123


def simple_sigmas_flow(shift: float, steps: int) -> list[float]:
    """ComfyUI's `simple` scheduler on a 1000-step discrete-flow table, in float64, from its definition:
    σ(t) = shift·t / (1 + (shift − 1)·t), t = (1000 − ⌊i·1000/steps⌋)/1000, then 0."""
    def sigma(t: float) -> float:
        return shift * t / (1 + (shift - 1) * t)

    return [sigma((1000 - int(i * 1000 / steps)) / 1000) for i in range(steps)] + [0.0]


def base_prompt() -> dict:
    prompt = {
        "1": {"class_type": "CILTest_TinyVideoModel", "inputs": {"kind": "wan21_high", "seed": 0, "height": 16, "width": 16, "image_frames": 1}},
        "2": {"class_type": "CILTest_TinyVideoModel", "inputs": {"kind": "wan21_low", "seed": 0, "height": 16, "width": 16, "image_frames": 1}},
        "3": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["1", 0], "shift": SHIFT}},
        "4": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["2", 0], "shift": SHIFT}},
    }
    nodes, pos, neg, lat = tvm.conditioning_nodes("wan21_high", "1", height=16, width=16, length=9)
    prompt.update(nodes)
    return prompt, pos, neg, lat


def late_start(pos, neg, lat, *, m: float, boundary: float | None, low=("4", 0), high=("3", 0), steps=STEPS) -> dict:
    inputs = {"model": list(high), "positive": pos, "negative": neg, "latent_image": lat, "seed": SEED, "steps": steps,
              "cfg": CFG, "sampler_name": "euler", "scheduler": "simple", "M": m, "naive_mode": "empty_latent", "fit": "strict"}
    if boundary is not None:
        inputs.update(model_low_noise=list(low), boundary=boundary)
    return {"class_type": "CIL_LateStartSampler", "inputs": inputs}


def ksampler_advanced(model, pos, neg, latent, *, add_noise: str, seed: int, start: int, end: int, leftover: str) -> dict:
    return {"class_type": "KSamplerAdvanced", "inputs": {
        "model": model, "add_noise": add_noise, "noise_seed": seed, "steps": STEPS, "cfg": CFG, "sampler_name": "euler",
        "scheduler": "simple", "positive": pos, "negative": neg, "latent_image": latent, "start_at_step": start,
        "end_at_step": end, "return_with_leftover_noise": leftover}}


def test_two_experts_equal_the_templates_ksampler_advanced_pair_bit_for_bit(video_host, captures):
    import torch

    tvm.require("wan21_high")
    sigmas = simple_sigmas_flow(SHIFT, STEPS)
    boundary = 0.5 * (sigmas[SPLIT - 1] + sigmas[SPLIT])  # steps 0..9 start above it, step 10 below
    prompt, pos, neg, lat = base_prompt()
    prompt["10"] = late_start(pos, neg, lat, m=1.0, boundary=boundary)
    prompt["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "a14b_ours"}}
    prompt["12"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["10", 1], "key": "info"}}
    prompt["20"] = ksampler_advanced(["3", 0], pos, neg, lat, add_noise="enable", seed=SEED, start=0, end=SPLIT, leftover="enable")
    prompt["21"] = ksampler_advanced(["4", 0], pos, neg, ["20", 0], add_noise="disable", seed=0, start=SPLIT, end=10000, leftover="disable")
    prompt["22"] = {"class_type": "SaveLatent", "inputs": {"samples": ["21", 0], "filename_prefix": "a14b_template"}}
    video_host.run(prompt)
    ours, template = tvm.saved_latent(video_host, "a14b_ours"), tvm.saved_latent(video_host, "a14b_template")
    assert torch.isfinite(ours).all() and float(ours.abs().max()) > 0
    assert torch.equal(ours, template), f"max |diff| {float((ours - template).abs().max()):.3g}"
    info = captures["info"][0]
    assert f"high-noise model for {SPLIT} step(s), low-noise model for {STEPS - SPLIT}" in info, info


def test_both_experts_really_run(video_host):
    """The same graph with the two experts swapped gives another video (the switch is not a no-op)."""
    import torch

    tvm.require("wan21_high")
    sigmas = simple_sigmas_flow(SHIFT, STEPS)
    boundary = 0.5 * (sigmas[SPLIT - 1] + sigmas[SPLIT])
    prompt, pos, neg, lat = base_prompt()
    prompt["10"] = late_start(pos, neg, lat, m=1.0, boundary=boundary, steps=6)
    prompt["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "a14b_2hl"}}
    prompt["20"] = late_start(pos, neg, lat, m=1.0, boundary=boundary, high=("4", 0), low=("3", 0), steps=6)
    prompt["21"] = {"class_type": "SaveLatent", "inputs": {"samples": ["20", 0], "filename_prefix": "a14b_2lh"}}
    prompt["30"] = late_start(pos, neg, lat, m=1.0, boundary=None, steps=6)
    prompt["31"] = {"class_type": "SaveLatent", "inputs": {"samples": ["30", 0], "filename_prefix": "a14b_1h"}}
    video_host.run(prompt)
    hl, lh, h = (tvm.saved_latent(video_host, f"a14b_{k}") for k in ("2hl", "2lh", "1h"))
    assert not torch.equal(hl, lh)
    assert not torch.equal(hl, h)


def test_start_below_the_boundary_skips_the_high_noise_expert_and_says_so(video_host, captures):
    """σ_M < boundary: the run is the low-noise expert's own late start (bit for bit), and info warns."""
    import torch

    tvm.require("wan21_high")
    m = 0.5  # σ_M ≈ 5·0.5/(1 + 4·0.5) ≈ 0.83 < 0.9 under the `simple` denoise rule
    prompt, pos, neg, lat = base_prompt()
    prompt["10"] = late_start(pos, neg, lat, m=m, boundary=0.9, steps=4)
    prompt["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "a14b_2low"}}
    prompt["12"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["10", 1], "key": "info"}}
    prompt["20"] = late_start(pos, neg, lat, m=m, boundary=None, high=("4", 0), steps=4)
    prompt["21"] = {"class_type": "SaveLatent", "inputs": {"samples": ["20", 0], "filename_prefix": "a14b_1low"}}
    video_host.run(prompt)
    assert torch.equal(tvm.saved_latent(video_host, "a14b_2low"), tvm.saved_latent(video_host, "a14b_1low"))
    info = captures["info"][0]
    assert "below the boundary" in info and "skips the high-noise" in info, info
    assert "high-noise model for 0 step(s)" in info


def test_without_a_second_model_the_boundary_is_ignored(video_host):
    """Old graphs (no model_low_noise) are unchanged whatever boundary says."""
    import torch

    tvm.require("wan21_high")
    prompt, pos, neg, lat = base_prompt()
    prompt["10"] = late_start(pos, neg, lat, m=0.9, boundary=None, steps=3)
    prompt["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "a14b_b0"}}
    node = late_start(pos, neg, lat, m=0.9, boundary=None, steps=3)
    node["inputs"]["boundary"] = 0.3
    prompt["20"] = node
    prompt["21"] = {"class_type": "SaveLatent", "inputs": {"samples": ["20", 0], "filename_prefix": "a14b_b3"}}
    video_host.run(prompt)
    assert torch.equal(tvm.saved_latent(video_host, "a14b_b0"), tvm.saved_latent(video_host, "a14b_b3"))


def test_a_low_noise_model_of_another_latent_space_is_refused_in_one_line(video_host):
    tvm.require("wan21_high")
    tvm.require("wan22")
    prompt, pos, neg, lat = base_prompt()
    prompt["5"] = {"class_type": "CILTest_TinyVideoModel", "inputs": {"kind": "wan22", "seed": 0, "height": 16, "width": 16, "image_frames": 1}}
    prompt["10"] = late_start(pos, neg, lat, m=1.0, boundary=0.9, low=("5", 0), steps=2)
    prompt["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "a14b_bad"}}
    with pytest.raises(AssertionError) as info:  # the host's PromptFailed
        video_host.run(prompt)
    assert "model_low_noise has latent format Wan22 but model has Wan21" in str(info.value)
