"""The Leakage Probe's regeneration mode (probe_mode one_step+regen) in a real ComfyUI on the tiny
models: each regenerated video is what ComfyUI's own SamplerCustomAdvanced makes from the same
start (NOISE = the probe's ε, latent = the reference, SIGMAS = the Late Start Sigmas node's), the
numbers do not depend on the batching, cancel stops it within a step, and bad settings are
refused at validation."""

from __future__ import annotations

import json

import pytest

from test_probe_node import CALLS, load_report, model_prompt, probe_host, run_failure  # noqa: F401  (probe_host: fixture)
import tiny_video_models as tvm  # tests/host is on sys.path (conftest)

pytestmark = pytest.mark.host

REGEN = {"probe_mode": "one_step+regen", "regen_steps": 3, "regen_samples": 1, "sampler_name": "euler"}


def _energy(video) -> float:
    v = video.double()
    return float(((v[:, 1:] - v[:, :-1]) ** 2).mean())


def _model_space(kind: str, raw):
    """CFHW model-space latent of a raw LATENT (SVD/VP: SD15 scaling, frames as batch; Wan: Wan21)."""
    import comfy.latent_formats as lf

    if kind == "wan":
        return lf.Wan21().process_in(raw.float())[0]
    return lf.SD15().process_in(raw.float()).permute(1, 0, 2, 3)


@pytest.mark.parametrize("kind,sampler", [("svd", "euler"), ("vp", "euler"), ("wan", "euler"), ("svd", "dpmpp_2m")])
def test_regenerated_video_is_comfys_own_sample_from_the_same_start(probe_host, kind, sampler):
    t, seed, cfg, steps = 0.6, 5, 1.5, 3
    prefix = f"regen_eq_{kind}_{sampler}"
    prompt = model_prompt(kind, prefix, grid_count=1, t_min=t, t_max=t, samples_per_t=1, seed=seed, cfg=cfg, preview_t="none",
                          **dict(REGEN, regen_steps=steps, sampler_name=sampler))
    prompt.update({
        "10": {"class_type": "CILTestProbe_ProbeNoise", "inputs": {"seed": seed + 1}},  # the regeneration's first ε
        "11": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["1", 1], "negative": ["1", 2], "cfg": cfg}},
        "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
        "13": {"class_type": "CIL_LateStartSigmas", "inputs": {"model": ["1", 0], "steps": steps, "M": t, "scheduler": "cil_late_start",
                                                               "noise_seed": 0, "naive_mode": "empty_latent", "fit": "strict"}},
        "14": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["10", 0], "guider": ["11", 0], "sampler": ["12", 0],
                                                                 "sigmas": ["13", 0], "latent_image": ["2", 0]}},
        "15": {"class_type": "SaveLatent", "inputs": {"samples": ["14", 0], "filename_prefix": prefix + "_comfy"}},
        "16": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": prefix + "_ref"}},
    })
    probe_host.run(prompt)
    report = load_report(probe_host, prefix)
    theirs = _energy(_model_space(kind, probe_host.load_latent(prefix + "_comfy")))
    ref = _energy(_model_space(kind, probe_host.load_latent(prefix + "_ref")))
    row = report["rows"][0]
    assert report["metrics"]["regen"]["reference_motion"] == pytest.approx(ref, rel=1e-5)
    assert row["regen_motion"][0] == pytest.approx(theirs, rel=1e-4), "the regeneration differs from ComfyUI's own sample"
    assert report["regen_samples_per_t"] == 1 and sampler in report["meta"]["regeneration"]


def test_regen_numbers_do_not_depend_on_batching_and_m_can_be_read_off_it(probe_host):
    runs = {}
    for batch in (1, 4):
        prefix = f"regen_batch{batch}"
        probe_host.run(model_prompt("svd", prefix, grid_count=3, samples_per_t=2, max_batch=batch, recommend_from="regen",
                                    **dict(REGEN, regen_samples=3)))
        runs[batch] = load_report(probe_host, prefix)
    for a, b in zip(runs[1]["rows"], runs[4]["rows"]):
        assert a["regen_motion"] == pytest.approx(b["regen_motion"], rel=1e-4)
    report = runs[4]
    assert report["recommendation_metric"] == "regen"
    from cil_core.start_rule import StartRule, recommend_start

    means = [r["regen_ratio_mean"] for r in report["rows"]]
    want = recommend_start([r["t"] for r in report["rows"]], means, StartRule("plateau", 0.5, 0.1)).m
    assert report["recommended_start"] == want
    # one model call per sampling step and batch: 3 t x 3 regenerations x 3 steps in batches of <= 4
    assert report["meta"]["model_calls"] == 3 * 2 // 4 + (1 if 3 * 2 % 4 else 0) + 3 * 1 * 3


def test_cancel_stops_the_regeneration_within_a_step(probe_host):
    prompt = model_prompt("svd", "regen_cancel", grid_count=2, samples_per_t=1, max_batch=1, cfg=1.0,
                          **dict(REGEN, regen_steps=10))
    prompt["1b"] = {"class_type": "CILTestProbe_InterruptAfter", "inputs": {"model": ["1", 0], "calls": 4}}
    prompt["3"]["inputs"]["model"] = ["1b", 0]
    message = run_failure(probe_host, prompt)
    assert "execution_interrupted" in message
    assert CALLS["n"] <= 5, f"the regeneration kept calling the model after cancel ({CALLS['n']} calls of 22)"


@pytest.mark.parametrize("widgets, expected", [
    ({"recommend_from": "regen"}, "one_step+regen"),
    ({"recommend_from": "corrected", "samples_per_t": 1}, "samples_per_t >= 2"),
])
def test_settings_that_cannot_work_are_refused_at_validation(probe_host, widgets, expected):
    ok, _, _, node_errors = probe_host.validate(model_prompt("svd", "regen_bad", **widgets))
    assert not ok and expected in json.dumps(node_errors)


def test_a_replacement_model_regenerates_with_its_start_frame_held(video_host):
    """Wan 2.2 TI2V-like tiny model: the regeneration runs through ComfyUI's inpaint rule for the
    held frame and its motion is measured on the frames after it, like the one-step probe's."""
    from test_probe_replace import load_report as load_replace, probe_graph

    tvm.require("wan22")
    prompt = probe_graph("wan22", "regen_wan22")
    prompt["10"]["inputs"].update(REGEN)
    video_host.run(prompt)
    report = load_replace(video_host, "regen_wan22")
    assert "frame(s) before" in report["meta"]["measured_frames"]
    assert all(len(r["regen_ratios"]) == 1 and r["regen_ratio_mean"] >= 0 for r in report["rows"])
