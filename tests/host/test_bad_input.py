"""Bad input gives a ComfyUI validation error (widgets) or an execution error with a clear message
naming the value (shapes and model families, known only at run time) — never a silent wrong result."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.host

SVD = {"class_type": "CILTest_TinySVD", "inputs": {"seed": 0, "frames": 4, "height": 8, "width": 8}}


def sampler(m: float, *, model=("1", 0), stats=None, fit="strict") -> dict:
    inputs = {"model": list(model), "positive": ["1", 1], "negative": ["1", 2], "latent_image": ["1", 3], "seed": 0, "steps": 2,
              "cfg": 1.0, "sampler_name": "euler", "scheduler": "cil_late_start", "M": m, "naive_mode": "empty_latent", "fit": fit}
    if stats:
        inputs["stats"] = list(stats)
    return {"class_type": "CIL_LateStartSampler", "inputs": inputs}


def save(ref) -> dict:
    return {"class_type": "SaveLatent", "inputs": {"samples": list(ref), "filename_prefix": "bad"}}


@pytest.mark.parametrize("m", [0.0, -0.5, 1.5])
@pytest.mark.parametrize("node", ["CIL_LateStartSampler", "CIL_LateStartSigmas", "CIL_AnalyticInitLatent"])
def test_m_outside_unit_interval_is_a_validation_error(tiny_host, m, node):
    if node == "CIL_LateStartSampler":
        prompt = {"1": SVD, "2": sampler(m), "3": save(("2", 0))}
    elif node == "CIL_LateStartSigmas":
        prompt = {"1": SVD, "2": {"class_type": node, "inputs": {"model": ["1", 0], "steps": 2, "M": m, "scheduler": "karras", "noise_seed": 0,
                                                               "naive_mode": "paper", "fit": "strict"}},
                  "3": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["2", 1], "guider": ["4", 0], "sampler": ["5", 0], "sigmas": ["2", 0], "latent_image": ["1", 3]}},
                  "4": {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["1", 1]}},
                  "5": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}, "6": save(("3", 0))}
    else:
        prompt = {"1": SVD, "2": {"class_type": node, "inputs": {"model": ["1", 0], "latent": ["1", 3], "M": m, "seed": 0, "naive_mode": "paper", "fit": "strict"}},
                  "3": save(("2", 0))}
    ok, error, _, node_errors = tiny_host.validate(prompt)
    assert not ok
    assert "outside (0, 1]" in str(node_errors) and f"M={m!r}" in str(node_errors)


def run_error(host, prompt) -> str:
    with pytest.raises(AssertionError) as info:
        host.run(prompt)
    return str(info.value)


def test_stats_of_another_size_need_resampling(tiny_host, write_stats):
    name, _ = write_stats("other_size.safetensors", (4, 8, 16, 16))
    load = {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": name}}
    message = run_error(tiny_host, {"1": SVD, "5": load, "2": sampler(0.8, stats=("5", 0)), "3": save(("2", 0))})
    assert "[4, 8, 16, 16]" in message and "[4, 4, 8, 8]" in message and "fit to 'resample'" in message
    tiny_host.run({"1": SVD, "5": load, "2": sampler(0.8, stats=("5", 0), fit="resample"), "3": save(("2", 0))})


def test_stats_of_another_channel_count_are_refused(tiny_host, write_stats):
    name, _ = write_stats("wan_stats.safetensors", (16, 4, 8, 8))
    load = {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": name}}
    message = run_error(tiny_host, {"1": SVD, "5": load, "2": sampler(0.8, stats=("5", 0), fit="resample"), "3": save(("2", 0))})
    assert "channel count" in message and "estimate stats with this model's VAE" in message


@pytest.mark.parametrize("sampling,named", [("lcm", "LCM"), ("x0", "X0")])
def test_unsupported_model_family_is_named(tiny_host, sampling, named):
    patched = {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["1", 0], "sampling": sampling, "zsnr": False}}
    message = run_error(tiny_host, {"1": SVD, "4": patched, "2": sampler(0.8, model=("4", 0)), "3": save(("2", 0))})
    assert named in message and "VP discrete" in message
