"""Symlinks planted inside the folders a user chose never lead a read or a write outside them
(cil_comfy/paths.py resolves real paths; ComfyUI's own check compares absolute paths only):
Save/Load Analytic Stats in models/cil_stats, the probe's report in output/, the trainer's run
folder (its logs are appended to) in output/cil_train."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from tiny_models import make_stats

pytestmark = pytest.mark.host


def node_errors(host, prompt) -> str:
    ok, error, _, errors = host.validate(prompt)
    assert errors, "the prompt should not validate"
    return json.dumps(errors)


def run_error(host, prompt) -> str:
    with pytest.raises(AssertionError) as info:
        host.run(prompt)
    return str(info.value)


@pytest.fixture
def outside(tmp_path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def save_prompt(filename) -> dict:
    return {"1": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": "real.safetensors"}},
            "2": {"class_type": "CIL_SaveAnalyticStats", "inputs": {"stats": ["1", 0], "filename": filename, "overwrite": True}}}


def test_save_never_writes_through_a_folder_symlink(tiny_host, stats_dir, outside):
    from cil_core.stats_io import save_stats

    save_stats(make_stats((4, 2, 4, 4)), stats_dir / "real.safetensors")
    (stats_dir / "link").symlink_to(outside, target_is_directory=True)
    assert "leads to" in node_errors(tiny_host, save_prompt("link/evil"))
    linked = save_prompt(["9", 0])
    linked["9"] = {"class_type": "PrimitiveString", "inputs": {"value": "link/evil"}}
    assert "leads to" in run_error(tiny_host, linked)
    assert list(outside.iterdir()) == []
    (stats_dir / "inside").mkdir()
    (stats_dir / "alias").symlink_to(stats_dir / "inside", target_is_directory=True)  # a link that stays inside is fine
    tiny_host.run(save_prompt("alias/ok"))
    assert (stats_dir / "inside" / "ok.safetensors").is_file()


def test_load_never_reads_through_a_file_or_folder_symlink(tiny_host, stats_dir, outside):
    from cil_core.stats_io import save_stats

    save_stats(make_stats((4, 2, 4, 4)), outside / "secret.safetensors")
    (stats_dir / "file_link.safetensors").symlink_to(outside / "secret.safetensors")
    (stats_dir / "dir_link").symlink_to(outside, target_is_directory=True)
    for name in ("file_link.safetensors", "dir_link/secret.safetensors"):
        prompt = {"1": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": name}},
                  "2": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["1", 1], "key": "info"}}}
        assert "leads to" in node_errors(tiny_host, prompt), name


@pytest.fixture
def output_dir(host) -> Path:
    return Path(host.folder_paths.get_output_directory())


def test_probe_report_never_written_through_a_symlink_in_output(tiny_host, output_dir, outside):
    link = output_dir / "planted_link"
    link.symlink_to(outside, target_is_directory=True)
    try:
        prompt = json.loads((Path(__file__).resolve().parents[2] / "workflows" / "api" / "toy_leakage_probe.json").read_text())
        prompt = {k: prompt[k] for k in ("2", "3", "4", "5")}
        prompt["5"]["inputs"].update(grid_count=2, samples_per_t=1, pixel_metric="off", filename_prefix="planted_link/report")
        assert "leads to" in node_errors(tiny_host, prompt)
        linked = copy.deepcopy(prompt)
        linked["5"]["inputs"]["filename_prefix"] = ["9", 0]
        linked["9"] = {"class_type": "PrimitiveString", "inputs": {"value": "planted_link/report"}}
        assert "leads to" in run_error(tiny_host, linked)
        assert list(outside.iterdir()) == []
    finally:
        link.unlink()


@pytest.mark.parametrize("plant", ["run_folder", "log_file"])
def test_trainer_run_folder_with_a_link_out_is_refused(tiny_host, output_dir, outside, plant):
    run = output_dir / "cil_train" / f"planted_{plant}"
    if plant == "run_folder":
        run.parent.mkdir(parents=True, exist_ok=True)
        run.symlink_to(outside, target_is_directory=True)
    else:
        run.mkdir(parents=True)
        (run / "log.jsonl").symlink_to(outside / "appended.txt")
    try:
        prompt = {"1": {"class_type": "CILTest_TinySVD", "inputs": {"seed": 0, "frames": 2, "height": 8, "width": 8}},
                  "2": {"class_type": "CIL_TimeNoiseTrain", "inputs": {
                      "model": ["1", 0], "mode": "lora", "steps": 1, "learning_rate": 1e-4, "weight_decay": 0.0, "timenoise": True,
                      "beta_m": 0.0, "a": 5.0, "lora_rank": 4, "lora_alpha": 4.0, "batch_size": 1, "grad_accum": 1,
                      "precision": "fp32", "gradient_checkpointing": False, "ema_decay": 0.0, "checkpoint_every": 1, "seed": 0,
                      "output_name": f"planted_{plant}", "resume": False, "positive": ["1", 1], "latent": ["1", 3]}}}
        assert "leads to" in node_errors(tiny_host, prompt)
        assert list(outside.iterdir()) == []
    finally:
        if run.is_symlink():
            run.unlink()
        else:
            shutil.rmtree(run)
