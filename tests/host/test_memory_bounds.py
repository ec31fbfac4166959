"""Sizes a node cannot hold are refused with the numbers before anything is allocated
(cil_core.memory: a share of the memory available now), and what can be streamed is: the
Leakage Probe runs in blocks of grid times and keeps sample 0 of each t, not every prediction.

Where the refusal depends on the machine, ``available_bytes`` is pinned (``budget`` fixture) so
the test says the same on every machine; sizes at the nodes' declared maxima are refused on any."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

GB = 1024**3
WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows" / "api"


@pytest.fixture
def budget(monkeypatch):
    """``budget(n_bytes)``: the memory this process may use (half of what the OS reports available)."""
    import cil_core.memory as memory

    def pin(nbytes: int) -> None:
        monkeypatch.setattr(memory, "available_bytes", lambda: int(nbytes / memory.SHARE))

    return pin


def run_error(host, prompt) -> str:
    with pytest.raises(AssertionError) as info:
        host.run(prompt)
    return str(info.value)


def estimate(width: int, height: int, frames: int, *, vae_ref=("8", 0)) -> dict:
    return {
        "1": {"class_type": "CIL_ToyModelLoader", "inputs": {"model_name": "edm_baseline"}},
        "2": {"class_type": "CILTest_RandomImages", "inputs": {"seed": 0, "count": 16, "height": 32, "width": 32}},
        "8": {"class_type": "CILTest_InterruptingVAE", "inputs": {"vae": ["1", 1], "key": "encodes"}},
        "3": {"class_type": "CIL_EstimateAnalyticStats", "inputs": {
            "model": ["1", 0], "vae": list(vae_ref), "frames": frames, "width": width, "height": height, "folder": "",
            "frame_stride": 1, "max_videos": 0, "images": ["2", 0]}},
        "4": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["3", 1], "key": "info"}},
    }


def test_estimate_refuses_a_clip_it_cannot_hold_before_the_first_encode(tiny_host, captures, budget):
    """4096x4096 clips of 16 frames (the issue: 12 GB in 23 s) with 8 GB to spend: refused with the
    numbers, and no clip is encoded; 64x64 with the same budget runs."""
    budget(8 * GB)
    message = run_error(tiny_host, estimate(4096, 4096, 16))
    assert "CILValueError" in message and "16 frames at 4096x4096" in message and "more than the 8 GB" in message, message
    assert captures.get("encodes", []) == []
    import comfy.model_management

    try:  # the interrupting VAE presses cancel after its first encode: a run that reaches it proves the size passed
        assert "interrupted" in run_error(tiny_host, estimate(64, 64, 4))
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert len(captures["encodes"]) == 1


def test_estimate_at_its_declared_maxima_is_refused_on_any_machine(tiny_host, captures):
    message = run_error(tiny_host, estimate(16384, 16384, 4096))
    assert "CILValueError" in message and "TB of memory" in message, message
    assert captures.get("encodes", []) == []


def probe_prompt(**widgets) -> dict:
    prompt = json.loads((WORKFLOWS / "toy_leakage_probe.json").read_text())
    prompt = {k: prompt[k] for k in ("2", "3", "4", "5")}
    prompt["5"]["inputs"].update(widgets)
    prompt["6"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["5", 1], "key": "table"}}
    return prompt


def test_probe_at_its_declared_maxima_with_the_pixel_metric_is_refused_before_any_model_call(tiny_host, budget, monkeypatch):
    """200 times x 256 samples, every prediction kept for the pixel metric: 51,200 toy predictions
    (4.7 GB) against 1 GB: refused with the numbers, and the model is never called."""
    import cil_comfy.probe as engine

    monkeypatch.setattr(engine, "optical_flow_available", lambda: True)  # the plan, not OpenCV, is under test
    monkeypatch.setattr(engine, "run_probe", lambda *a, **k: pytest.fail("the probe ran"))
    budget(1 * GB)
    message = run_error(tiny_host, probe_prompt(grid_count=200, samples_per_t=256, max_batch=1024, pixel_metric="auto"))
    assert "CILValueError" in message and "200 times x 256 samples" in message and "GB of memory" in message, message
    assert "pixel_metric off" in message


def test_probe_in_blocks_gives_the_numbers_of_one_pass_and_keeps_sample_zero(tiny_host, captures, monkeypatch):
    """Blocks of one grid time each (BLOCK_BYTES pinned to one t's predictions): the same table as
    one pass, and no call into cil_core's probe holds more than one t; predictions kept: [T, 1, …]."""
    import cil_comfy.probe_blocks as blocks

    widgets = dict(grid_count=5, samples_per_t=3, max_batch=2, pixel_metric="off", preview_t="all")
    tiny_host.run(probe_prompt(**widgets))
    one_pass = captures["table"][-1]
    seen, kept = [], []
    real_probe, real_concat = blocks.probe_leakage, blocks.concat_results

    def spy(denoise, x0, family, t_grid, *a, **k):
        seen.append(len(t_grid))
        return real_probe(denoise, x0, family, t_grid, *a, **k)

    def concat(parts):
        out = real_concat(parts)
        kept.append(tuple(out.predictions.shape[:2]))
        return out

    monkeypatch.setattr(blocks, "BLOCK_BYTES", 1)
    monkeypatch.setattr(blocks, "probe_leakage", spy)
    monkeypatch.setattr(blocks, "concat_results", concat)
    tiny_host.run(probe_prompt(**widgets, seed=0))
    assert seen == [1] * 5 and kept == [(5, 1)]
    same = lambda text: text.rsplit("\nsaved:", 1)[0]  # noqa: E731  the file counter differs
    assert same(captures["table"][-1]) == same(one_pass)


def test_toy_conditioning_at_its_declared_maxima_is_refused_before_allocating(tiny_host):
    """64 videos x 64 frames at 512x512 is a 12.9 GB latent, before any sampler copies it."""
    prompt = {"1": {"class_type": "CIL_ToyModelLoader", "inputs": {"model_name": "edm_baseline"}},
              "2": {"class_type": "CIL_ToyWorldVideo", "inputs": {"model_name": "edm_baseline", "index": 0}},
              "3": {"class_type": "CIL_ToyImageToVideo", "inputs": {
                  "vae": ["1", 1], "start_image": ["2", 1], "width": 512, "height": 512, "frames": 64, "batch_size": 64,
                  "crop": "center", "noise_level": 0.0, "noise_seed": 0}},
              "4": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["3", 2], "key": "latent"}}}
    message = run_error(tiny_host, prompt)
    assert "CILValueError" in message and "64 x 64 frames at 512x512" in message and "of memory" in message, message


def test_dynamicrafter_noise_at_its_declared_maxima_is_refused_before_resampling(tiny_host, stats_dir, write_stats, budget):
    budget(16 * GB)
    name, _ = write_stats("dc.safetensors", (4, 2, 4, 4))
    prompt = {"1": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": name}},
              "2": {"class_type": "CIL_DynamiCrafterInitNoise", "inputs": {
                  "stats": ["1", 0], "M": 940, "analytic_init": True, "frames": 1024, "width": 8192, "height": 8192, "fit": "resample"}},
              "3": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["2", 3], "key": "info"}}}
    message = run_error(tiny_host, prompt)
    assert "CILValueError" in message and "[4, 1024, 1024, 1024]" in message and "more than the 16 GB" in message, message
