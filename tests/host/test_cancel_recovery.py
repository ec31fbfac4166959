"""ComfyUI's cancel (interrupt) during the Leakage Probe and Estimate Analytic Stats: the run
stops, writes nothing half-done, and the NEXT prompt in the same ComfyUI gives exactly the result
of a run that was never interrupted. (A real server's /interrupt: test_server_fuzz.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_probe_node import CALLS, CILTestProbe_InterruptAfter  # tests/host is on sys.path (conftest)

pytestmark = pytest.mark.host

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows" / "api"
@pytest.fixture(scope="module")
def cancel_host(tiny_host):
    tiny_host.register(CILTestProbe_InterruptAfter)
    return tiny_host


def run_error(host, prompt) -> str:
    import comfy.model_management

    try:
        with pytest.raises(AssertionError) as info:
            host.run(prompt)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    return str(info.value)


def probe_prompt(prefix: str, *, interrupt: bool = False) -> dict:
    prompt = json.loads((WORKFLOWS / "toy_leakage_probe.json").read_text())
    prompt = {k: prompt[k] for k in ("2", "3", "4", "5")}
    prompt["5"]["inputs"].update(grid_count=4, samples_per_t=2, max_batch=1, pixel_metric="off", filename_prefix=prefix)
    prompt["6"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["5", 1], "key": "table"}}
    if interrupt:
        prompt["20"] = {"class_type": "CILTestProbe_InterruptAfter", "inputs": {"model": ["2", 0], "calls": 3}}
        prompt["5"]["inputs"]["model"] = ["20", 0]
    return prompt


def table_without_path(text: str) -> str:
    return text.rsplit("\nsaved:", 1)[0]


def test_probe_cancel_then_the_next_prompt_is_correct(cancel_host, captures):
    out = Path(cancel_host.folder_paths.get_output_directory()) / "cil_cancel"
    cancel_host.run(probe_prompt("cil_cancel/before"))
    before = table_without_path(captures["table"][-1])
    message = run_error(cancel_host, probe_prompt("cil_cancel/cut", interrupt=True))
    assert "interrupted" in message.lower() and CALLS["n"] <= 4, (message, CALLS)
    assert not list(out.glob("cut*")), "a cancelled probe writes no report"
    cancel_host.run(probe_prompt("cil_cancel/after"))
    assert table_without_path(captures["table"][-1]) == before
    assert not list(out.glob(".*.tmp"))


def estimate_prompt(filename: str, *, interrupt: bool = False) -> dict:
    vae = ["8", 0] if interrupt else ["1", 1]
    prompt = {
        "1": {"class_type": "CIL_ToyModelLoader", "inputs": {"model_name": "edm_baseline"}},
        "2": {"class_type": "CILTest_RandomImages", "inputs": {"seed": 3, "count": 24, "height": 32, "width": 32}},
        "3": {"class_type": "CIL_EstimateAnalyticStats", "inputs": {
            "model": ["1", 0], "vae": vae, "frames": 8, "width": 0, "height": 0, "folder": "", "frame_stride": 1,
            "max_videos": 0, "images": ["2", 0]}},
        "4": {"class_type": "CIL_SaveAnalyticStats", "inputs": {"stats": ["3", 0], "filename": filename, "overwrite": True}},
    }
    if interrupt:
        prompt["8"] = {"class_type": "CILTest_InterruptingVAE", "inputs": {"vae": ["1", 1], "key": "encodes"}}
    return prompt


def test_estimate_cancel_then_the_next_prompt_is_correct(cancel_host, captures, stats_dir):
    import torch
    from cil_core.stats_io import load_stats

    cancel_host.run(estimate_prompt("before"))
    message = run_error(cancel_host, estimate_prompt("cut", interrupt=True))
    assert "interrupted" in message.lower() and len(captures["encodes"]) == 1
    cancel_host.run(estimate_prompt("after"))
    before, after = load_stats(stats_dir / "before.safetensors"), load_stats(stats_dir / "after.safetensors")
    assert torch.equal(before.mean, after.mean) and before.tr_cov_d == after.tr_cov_d and after.count == 3
    assert sorted(p.name for p in stats_dir.iterdir()) == ["after.safetensors", "before.safetensors"]
