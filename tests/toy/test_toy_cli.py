"""``cil toy-train`` end to end on a few steps (EDM and VP pairs), then ``cil demo`` on its output."""

from __future__ import annotations

import json

import torch

from cil_core.families import VPDiscrete
from cil_tools import cli
from cil_toy.weights_io import load_toy_model


def test_toy_train_writes_loadable_models_and_the_demo_reads_them(tmp_path):
    out = tmp_path / "w"
    argv = ["toy-train", "--out", str(out), "--pretrain-steps", "2", "--finetune-steps", "1", "--vp", "--vp-steps", "1",
            "--stats-videos", "64", "--quiet"]
    assert cli.main(argv) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"toy_latent_stats.safetensors", "toy_edm_baseline.safetensors", "toy_edm_timenoise.safetensors",
                     "toy_vp_baseline.safetensors", "toy_vp_timenoise.safetensors"}
    vp = load_toy_model(out / "toy_vp_timenoise.safetensors")
    assert isinstance(vp.family, VPDiscrete) and vp.family.zero_terminal_snr
    assert vp.meta["train.timenoise_beta_m"] == "100.0"
    # the recorded command reproduces these options, every one explicit
    cmd = vp.meta["command"]
    for part in ("--pretrain-steps 2", "--finetune-steps 1", "--vp-steps 1", "--seed 0", "--vp"):
        assert part in cmd
    edm = load_toy_model(out / "toy_edm_baseline.safetensors")
    assert edm.meta["parent.train.steps"] == "2"

    report = tmp_path / "r"
    argv = ["demo", "--family", "vp", "--weights-dir", str(out), "--out", str(report), "--samples", "4", "--steps", "2",
            "--m", "0.9", "--probe-videos", "2", "--probe-samples", "2", "--regen-samples", "1", "--regen-steps", "1",
            "--reference-candidates", "8", "--bootstrap", "2", "--quiet"]
    assert cli.main(argv) == 0
    doc = json.loads((report / "metrics.json").read_text())
    assert doc["models"] == {"baseline": "vp_baseline", "timenoise": "vp_timenoise"}
    assert all(torch.isfinite(torch.tensor(r["fde_ratio"])) for r in doc["rows"])
