"""``cil train`` on a ComfyUI model under ``torchrun --nproc_per_node 2`` (gloo, CPU): the tiny SVD
checkpoint, read by ComfyUI's checkpoint loader in each process, trained with a LoRA (DDP).

* 2 processes × batch 1 give the loss sequence of 1 process × batch 2 (float tolerance 1e-4
  relative, as tests/train/test_distributed.py explains);
* the LoRA rank 0 saved loads in ComfyUI's LoraLoaderModelOnly in a real graph (every key is
  read by ComfyUI's key map) and changes what KSampler returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import svd_conditioning, tiny_svd

from cil_core.stats_io import atomic_save_safetensors
from cil_tools import cli

pytestmark = pytest.mark.host

HERE = Path(__file__).resolve().parent
FRAMES, H, W = 4, 8, 8


def test_two_process_lora_equals_one_process_and_loads_in_comfyui(svd_host, loras_dir, tmp_path):
    import comfy.lora
    import comfy.sd
    import comfy.utils
    from test_train_svd import sample_prompt, tiny_svd_detectable, training_item

    checkpoint = tmp_path / "tiny_svd.safetensors"
    comfy.sd.save_checkpoint(str(checkpoint), tiny_svd(0), clip=None, vae=None, clip_vision=None, metadata={})
    positive, _ = svd_conditioning(FRAMES, H, W, 0)
    for i in range(4):
        item = training_item(positive, seed=20 + i)
        atomic_save_safetensors({k: item[k] for k in ("latent", "image", "embed")}, tmp_path / "latents" / f"c{i}.safetensors", {})

    def config(name: str, batch: int) -> Path:
        cfg = {"mode": "lora", "model": {"checkpoint": str(checkpoint), "device": "cpu"},
               "data": {"source": str(tmp_path / "latents"), "kind": "latents", "workers": 0, "batch_size": batch},
               "lora": {"rank": 4, "alpha": 4}, "optim": {"lr": 0.05},
               "run": {"steps": 3, "checkpoint_every": 3, "output_dir": str(tmp_path / name), "progress": False}}
        (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
        return tmp_path / f"{name}.json"

    with tiny_svd_detectable():
        assert cli.main(["train", "--config", str(config("one", 2))]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(HERE / "tiny_svd_cli.py"), "train", "--config", str(config("two", 1))],
                          cwd=tmp_path, env=env | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-4000:]

    rows = {n: [json.loads(line) for line in (tmp_path / n / "log.jsonl").read_text().splitlines()] for n in ("one", "two")}
    assert [r["step"] for r in rows["two"]] == [1, 2, 3]
    for a, b in zip(rows["two"], rows["one"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4) and a["sigma"] == pytest.approx(b["sigma"], rel=1e-12)

    lora = comfy.utils.load_torch_file(str(tmp_path / "two" / "lora.safetensors"), safe_load=True)
    key_map = comfy.lora.model_lora_keys_unet(tiny_svd(0).model, {})
    assert len(comfy.lora.load_lora(lora, key_map)) == sum(k.endswith(".alpha") for k in lora) > 0
    (loras_dir / "two.safetensors").write_bytes((tmp_path / "two" / "lora.safetensors").read_bytes())
    svd_host.run(sample_prompt("dist_lora_off", lora=None))
    svd_host.run(sample_prompt("dist_lora_on", lora="two.safetensors"))
    off, on = svd_host.load_latent("dist_lora_off"), svd_host.load_latent("dist_lora_on")
    assert torch.isfinite(on).all() and float((on - off).abs().max()) > 1e-3 * float(off.abs().max())
