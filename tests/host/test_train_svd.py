"""TimeNoise training through ComfyUI's own model code on the tiny SVD model.

* LoRA: two training steps; the saved file loads with ComfyUI's LoraLoaderModelOnly in a real
  graph (every key consumed by ComfyUI's key map) and changes the sampled video; ComfyUI's merged
  weights give the same x̂0 as our LoRA hooks.
* Full fine-tune: two steps; the exported checkpoint loads with ``load_checkpoint_guess_config``
  (ImageOnlyCheckpointLoader's loader) with the trained weights and the trained outputs. The
  tiny model is not in ComfyUI's detection table, so a test-only template (a subclass of
  ``supported_models.SVD_img2vid`` with the tiny widths) is put in front while loading.
* The SVD adapter's x̂0 equals ComfyUI's own sampler path (sample_custom, one Euler step to 0).
* ``cil train --config`` loads that checkpoint through cil_comfy.host and trains on a latent folder.
* The node CIL_TimeNoiseTrain runs in a graph; its MODEL samples; its LoRA file loads.
* A DynamiCrafter-style VP v-prediction model (the tiny UNet under ModelSamplingDiscrete) trains
  through the generic concat adapter.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import svd_conditioning, tiny_svd  # tests/host (on sys.path: see conftest)

pytestmark = pytest.mark.host

FRAMES, H, W = 4, 8, 8


# --- helpers ---------------------------------------------------------------------------------------

def training_item(positive, seed: int = 1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(FRAMES, 4, H, W, generator=gen) * 3.0
    return {"latent": latent, "image": positive[0][1]["concat_latent_image"][0].clone(),
            "embed": positive[0][0].reshape(1, -1).clone(), "fps": 6, "motion_bucket_id": 127}


def train_config(tmp_path: Path, mode: str, steps: int = 2, lr: float = 5e-3, **loss):
    from cil_train.config import LoraSection, LossSection, OptimSection, RunSection, TrainConfig

    return TrainConfig(mode=mode, lora=LoraSection(rank=4, alpha=4.0), loss=LossSection(**loss),
                       optim=OptimSection(lr=lr), run=RunSection(steps=steps, output_dir=str(tmp_path / mode),
                                                                  checkpoint_every=1, progress=False)).validate()


def train(model, item, cfg):
    from cil_comfy.training import make_adapter
    from cil_train.data import InMemoryDataset
    from cil_train.loop import Trainer

    adapter = make_adapter(model, cfg)
    return adapter, Trainer(adapter, InMemoryDataset([item], cfg.run.seed), cfg).run()


def one_step_inputs(adapter, item, sigma: float = 2.0, seed: int = 5):
    batch = adapter.collate([item])
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch.x0.shape, generator=gen)
    sig = torch.tensor([sigma])
    cond = dict(batch.cond, noise_level=torch.zeros(1, dtype=torch.float64))
    return batch.x0 + sigma * noise, sig, cond, noise


@contextlib.contextmanager
def tiny_svd_detectable():
    """Put a template for the tiny SVD layout at the front of ComfyUI's detection table."""
    import comfy.supported_models as sm

    tiny = tiny_svd(0).model.model_config.unet_config

    class TinySVDTemplate(sm.SVD_img2vid):
        unet_config = {k: tiny[k] for k in ("model_channels", "in_channels", "use_linear_in_transformer", "context_dim",
                                             "adm_in_channels", "use_temporal_attention", "use_temporal_resblock")}
        unet_extra_config = dict(sm.SVD_img2vid.unet_extra_config, num_head_channels=16)

    sm.models.insert(0, TinySVDTemplate)
    try:
        yield TinySVDTemplate
    finally:
        sm.models.remove(TinySVDTemplate)


# --- LoRA -------------------------------------------------------------------------------------------

def test_lora_two_steps_load_in_comfyui_and_change_the_output(svd_host, tmp_path, loras_dir):
    import comfy.lora
    import comfy.sd
    import comfy.utils

    from cil_train.lora import LoraSet, LoraSpec

    positive, _ = svd_conditioning(FRAMES, H, W, 0)
    item = training_item(positive)
    adapter, result = train(tiny_svd(0), item, train_config(tmp_path, "lora", lr=0.05))
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    lora = comfy.utils.load_torch_file(str(result.lora_path), safe_load=True)
    ups = [v for k, v in lora.items() if k.endswith("lora_up.weight")]
    assert ups and any(float(u.abs().max()) > 0 for u in ups), "two steps left every LoRA up-projection at zero"

    # every key is understood by ComfyUI's own key map for this model
    base = tiny_svd(0)
    key_map = comfy.lora.model_lora_keys_unet(base.model, {})
    patches = comfy.lora.load_lora(lora, key_map)
    assert len(patches) == len(ups) == sum(k.endswith(".alpha") for k in lora)

    # ComfyUI's merged weights == our hooks, on the same inputs
    patched = comfy.sd.load_lora_for_models(base, None, lora, 1.0, 0)[0]
    x, sigma, cond, _ = one_step_inputs(adapter, item)
    from cil_comfy.training import make_adapter

    comfy_adapter = make_adapter(patched, train_config(tmp_path, "lora"))
    comfy_adapter.prepare_for_training()
    with torch.no_grad():
        theirs = comfy_adapter.denoise(x, sigma, cond)
        plain = make_adapter(tiny_svd(0), train_config(tmp_path, "lora"))
        hooks = LoraSet(plain.trainable_root(), LoraSpec(4, 4.0))
        for name, layer in hooks.layers.items():
            layer.down.weight.copy_(lora[f"diffusion_model.{name}.lora_down.weight"])
            layer.up.weight.copy_(lora[f"diffusion_model.{name}.lora_up.weight"])
        ours = plain.denoise(x, sigma, cond)
        hooks.remove()
        without = plain.denoise(x, sigma, cond)
    effect = float((ours - without).abs().max())
    print(f"LoRA effect on x̂0 {effect:.3g} (max |x̂0| {float(without.abs().max()):.3g}); ComfyUI vs hooks {float((theirs - ours).abs().max()):.3g}")
    assert effect > 1e-3 * float(without.abs().max()), "the trained LoRA barely changes x̂0"
    assert float((theirs - ours).abs().max()) <= 1e-2 * effect

    # the real LoraLoaderModelOnly node in a real graph changes what KSampler returns
    (loras_dir / "trained.safetensors").write_bytes(Path(result.lora_path).read_bytes())
    svd_host.run(sample_prompt("lora_off", lora=None))
    svd_host.run(sample_prompt("lora_on", lora="trained.safetensors"))
    off, on = svd_host.load_latent("lora_off"), svd_host.load_latent("lora_on")
    assert torch.isfinite(on).all()
    assert float((on - off).abs().max()) > 1e-3 * float(off.abs().max())


def sample_prompt(prefix: str, lora: str | None, model_from=("1", 0)) -> dict:
    prompt = {"1": {"class_type": "CILTest_TinySVD", "inputs": {"seed": 0, "frames": FRAMES, "height": H, "width": W}}}
    model = list(model_from)
    if lora:
        prompt["2"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": model, "lora_name": lora, "strength_model": 1.0}}
        model = ["2", 0]
    prompt["3"] = {"class_type": "KSampler", "inputs": {
        "model": model, "positive": ["1", 1], "negative": ["1", 2], "latent_image": ["1", 3], "seed": 7, "steps": 3,
        "cfg": 2.0, "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0}}
    prompt["4"] = {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": prefix}}
    return prompt


# --- full fine-tune ------------------------------------------------------------------------------------

def test_full_finetune_checkpoint_loads_with_comfyui_loader(svd_host, tmp_path):
    import comfy.sd

    positive, _ = svd_conditioning(FRAMES, H, W, 0)
    item = training_item(positive)
    initial = {k: v.clone() for k, v in tiny_svd(0).model.diffusion_model.state_dict().items()}
    adapter, result = train(tiny_svd(0), item, train_config(tmp_path, "full"))
    assert len(result.losses) == 2 and result.full_path is not None and result.full_path.is_file()
    trained = {k: v.detach().clone() for k, v in adapter.trainable_root().state_dict().items()}
    assert any(not torch.equal(trained[k], initial[k]) for k in trained)

    with tiny_svd_detectable():
        loaded = comfy.sd.load_checkpoint_guess_config(str(result.full_path), output_vae=False, output_clip=False,
                                                       output_clipvision=False)[0]
    assert loaded is not None and type(loaded.model).__name__ == "SVD_img2vid"
    got = loaded.model.diffusion_model.state_dict()
    assert set(got) == set(trained)
    assert all(torch.equal(got[k].float(), trained[k].float()) for k in trained)

    from cil_comfy.training import make_adapter

    reloaded = make_adapter(loaded, train_config(tmp_path, "full"))
    reloaded.prepare_for_training()
    x, sigma, cond, _ = one_step_inputs(adapter, item)
    with torch.no_grad():
        assert torch.allclose(reloaded.denoise(x, sigma, cond), adapter.denoise(x, sigma, cond), rtol=1e-5, atol=1e-6)


def test_cli_trains_a_checkpoint_loaded_through_comfy_host(svd_host, tmp_path):
    """`cil train --config` (in process): cil_comfy.host finds the running ComfyUI, loads the
    checkpoint with ComfyUI's loader, auto-detects SVD and trains on a folder of latents."""
    from cil_core.stats_io import atomic_save_safetensors
    from cil_tools import cli

    positive, _ = svd_conditioning(FRAMES, H, W, 0)
    _, full = train(tiny_svd(0), training_item(positive), train_config(tmp_path, "full", steps=1))
    latents = tmp_path / "latents"
    for i in range(2):
        item = training_item(positive, seed=10 + i)
        atomic_save_safetensors({k: item[k] for k in ("latent", "image", "embed")}, latents / f"clip{i}.safetensors", {"caption": ""})
    (latents / "broken.safetensors").write_bytes(b"\x00" * 10)
    config = {
        "mode": "lora",
        "model": {"checkpoint": str(full.full_path), "device": "cpu"},
        "data": {"source": str(latents), "kind": "latents", "workers": 0},
        "lora": {"rank": 2, "alpha": 2},
        "run": {"steps": 3, "checkpoint_every": 2, "output_dir": str(tmp_path / "cli"), "progress": False},
    }
    (tmp_path / "cfg.json").write_text(json.dumps(config))
    with tiny_svd_detectable():
        assert cli.main(["train", "--config", str(tmp_path / "cfg.json")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "cli" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert (tmp_path / "cli" / "lora.safetensors").is_file()
    skipped = (tmp_path / "cli" / "skipped_videos.txt").read_text()
    assert "broken.safetensors" in skipped and "clip0" not in skipped


# --- the adapter mirrors ComfyUI's sampler path ---------------------------------------------------------

def test_svd_adapter_prediction_equals_comfyui_sampler_one_step(svd_host, tmp_path):
    import comfy.sample
    import comfy.samplers

    from cil_comfy.training import make_adapter

    model = tiny_svd(0)
    positive, negative = svd_conditioning(FRAMES, H, W, 0)
    item = training_item(positive)
    adapter = make_adapter(model, train_config(tmp_path, "lora"))
    adapter.prepare_for_training()
    sigma = 2.0
    x, sig, cond, noise = one_step_inputs(adapter, item, sigma)
    with torch.no_grad():
        ours = adapter.denoise(x, sig, cond)[0]  # model space [T, 4, h, w]
        sampler = comfy.samplers.ksampler("euler")
        raw = comfy.sample.sample_custom(model, noise[0], 1.0, sampler, torch.tensor([sigma, 0.0]), positive, negative,
                                         item["latent"], disable_pbar=True, seed=0)
    theirs = model.model.process_latent_in(raw)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))


# --- the node -------------------------------------------------------------------------------------------

class CILTestTrain_VideoLatent:
    """A random raw video latent [T, 4, h, w] to train on."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31})}}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "build"
    CATEGORY = "CIL/testing"

    def build(self, seed):
        gen = torch.Generator().manual_seed(seed)
        return ({"samples": torch.randn(FRAMES, 4, H, W, generator=gen) * 3.0},)


def node_prompt(prefix: str, mode: str, name: str) -> dict:
    return {
        "1": {"class_type": "CILTest_TinySVD", "inputs": {"seed": 0, "frames": FRAMES, "height": H, "width": W}},
        "2": {"class_type": "CILTestTrain_VideoLatent", "inputs": {"seed": 3}},
        "3": {"class_type": "CIL_TimeNoiseTrain", "inputs": {
            "model": ["1", 0], "positive": ["1", 1], "latent": ["2", 0], "mode": mode, "steps": 2,
            "learning_rate": 5e-3, "weight_decay": 0.01, "timenoise": True, "beta_m": 0.0, "a": 5.0, "lora_rank": 4,
            "lora_alpha": 4.0, "batch_size": 1, "grad_accum": 1, "precision": "fp32", "gradient_checkpointing": True,
            "ema_decay": 0.0, "checkpoint_every": 1, "seed": 0, "output_name": name, "resume": False}},
        "4": {"class_type": "KSampler", "inputs": {
            "model": ["3", 0], "positive": ["1", 1], "negative": ["1", 2], "latent_image": ["1", 3], "seed": 7,
            "steps": 3, "cfg": 2.0, "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": prefix}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["3", 2], "filename_prefix": prefix + "_loss"}},
    }


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_node_trains_in_a_graph(svd_host, loras_dir, mode):
    svd_host.register(CILTestTrain_VideoLatent)
    name = f"node_{mode}"
    svd_host.run(sample_prompt(f"node_base_{mode}", lora=None))
    svd_host.run(node_prompt(f"node_trained_{mode}", mode, name))
    base, trained = svd_host.load_latent(f"node_base_{mode}"), svd_host.load_latent(f"node_trained_{mode}")
    assert torch.isfinite(trained).all()
    assert float((trained - base).abs().max()) > 1e-4 * float(base.abs().max())
    run_dir = Path(svd_host.folder_paths.get_output_directory()) / "cil_train" / name
    assert [json.loads(r)["step"] for r in (run_dir / "log.jsonl").read_text().splitlines()] == [1, 2]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000001.safetensors", "step_00000002.safetensors"]
    assert list(Path(svd_host.folder_paths.get_output_directory()).glob(f"node_trained_{mode}_loss*.png"))
    lora_file = loras_dir / f"{name}.safetensors"
    assert lora_file.is_file() == (mode == "lora")
    if mode == "lora":  # the node's own file through the stock loader node
        svd_host.run(sample_prompt("node_lora_reload", lora=lora_file.name))
        assert torch.allclose(svd_host.load_latent("node_lora_reload"), trained, rtol=1e-4, atol=1e-5)
    # the input model is untouched: sampling it again gives the base result
    svd_host.run(sample_prompt(f"node_base_again_{mode}", lora=None))
    assert torch.equal(svd_host.load_latent(f"node_base_again_{mode}"), base)


# --- DynamiCrafter-style VP v-prediction through the generic concat adapter -----------------------------

def test_vp_concat_model_trains_with_timenoise_on_the_concat(svd_host, tmp_path):
    import comfy.model_base
    import comfy.model_patcher

    from cil_core.families import VPDiscrete
    from cil_comfy.training import make_adapter
    from cil_train.data import InMemoryDataset
    from cil_train.loop import Trainer, training_loss

    edm = tiny_svd(0)
    vp_model = comfy.model_base.SVD_img2vid(edm.model.model_config, model_type=comfy.model_base.ModelType.V_PREDICTION)
    vp_model.diffusion_model.load_state_dict(edm.model.diffusion_model.state_dict())
    patcher = comfy.model_patcher.ModelPatcher(vp_model, load_device=edm.load_device, offload_device=edm.offload_device)
    positive, _ = svd_conditioning(FRAMES, H, W, 0)
    item = {"latent": training_item(positive)["latent"], "options": dict(positive[0][1], cross_attn=positive[0][0])}
    cfg = train_config(tmp_path, "lora")
    adapter = make_adapter(patcher, cfg)
    assert adapter.family_name == "dynamicrafter" and isinstance(adapter.family, VPDiscrete)
    assert adapter.family.prediction == "v" and not adapter.family.zero_terminal_snr

    # TimeNoise perturbs the concat (i.i.d. per frame, as official DynamiCrafter) and nothing else
    adapter.prepare_for_training()
    batch = adapter.collate([item])
    seen = {}

    def spy(x, sigma, cond):
        seen.update(cond)
        return x * 0

    original, adapter.denoise = adapter.denoise, spy
    training_loss(adapter, batch, Trainer(adapter, InMemoryDataset([item], 0), cfg).loss_cfg, 0.0,
                  torch.Generator().manual_seed(0), sigma=torch.tensor([adapter.family.sigmas[900].item()]))
    adapter.denoise = original
    delta = seen["image"] - batch.cond["image"]
    assert float(delta.abs().min()) > 0 and float(delta[0, 0].std()) > 0
    assert not torch.allclose(delta[0, 0], delta[0, 1])

    result = Trainer(adapter, InMemoryDataset([item], 0), cfg).run()
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    assert result.lora_path.is_file()


# --- gradient checkpointing on ComfyUI's UNet -----------------------------------------------------------

def test_gradient_checkpointing_on_comfyui_unet_saves_memory_and_keeps_gradients(svd_host, tmp_path):
    """ComfyUI runs a TimestepEmbedSequential's layers one by one (forward_timestep_embed), so
    checkpointing must wrap those layers: fewer bytes saved for backward, same gradients."""
    from cil_train import grad_ckpt
    from cil_comfy.training import make_adapter

    positive, _ = svd_conditioning(FRAMES, H, W, 0)
    item = training_item(positive)

    def run(checkpointing: bool):
        adapter = make_adapter(tiny_svd(0), train_config(tmp_path, "full"))
        adapter.prepare_for_training()
        root = adapter.trainable_root()
        root.requires_grad_(True)
        x, sigma, cond, _ = one_step_inputs(adapter, item)
        blocks = grad_ckpt.enable(root) if checkpointing else []
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
            loss = adapter.denoise(x, sigma, cond).square().mean()
        loss.backward()
        grad_ckpt.disable(blocks)
        return sum(saved), {n: p.grad.clone() for n, p in root.named_parameters() if p.grad is not None}

    plain_bytes, plain = run(False)
    ckpt_bytes, ckpt = run(True)
    assert ckpt_bytes < 0.6 * plain_bytes
    assert plain.keys() == ckpt.keys()
    assert all(torch.allclose(plain[k], ckpt[k], rtol=1e-4, atol=1e-6) for k in plain)


def test_node_progress_cancel_and_resume(svd_host, loras_dir):
    """The node drives ComfyUI's progress bar, stops on ComfyUI's interrupt (after saving the
    step's checkpoint, hooks removed), and 'resume' then finishes with the uninterrupted losses."""
    import comfy.model_management as mm
    import comfy.utils

    node = svd_host.node_classes["CIL_TimeNoiseTrain"]
    model, positive, _, _ = svd_host.node_classes["CILTest_TinySVD"]().build(0, FRAMES, H, W)
    latent = CILTestTrain_VideoLatent().build(3)[0]
    widgets = dict(node_prompt("unused", "lora", "unused")["3"]["inputs"])
    for link in ("model", "positive", "latent"):
        widgets.pop(link)
    widgets.update(steps=5, checkpoint_every=1)

    def run(name: str, resume: bool = False, interrupt_at: int | None = None):
        updates = []

        def hook(value, total, preview, node_id=None):
            updates.append((value, total))
            if value == interrupt_at:
                mm.interrupt_current_processing(True)

        comfy.utils.set_progress_bar_global_hook(hook)
        try:
            with torch.inference_mode():
                out = node.execute(model=model, positive=positive, latent=latent, **dict(widgets, output_name=name, resume=resume))
        finally:
            comfy.utils.set_progress_bar_global_hook(None)
            mm.interrupt_current_processing(False)
        return out, updates

    _, updates = run("straight_node")
    assert updates == [(s, 5) for s in range(1, 6)]
    with pytest.raises(mm.InterruptProcessingException):
        run("cancelled_node", interrupt_at=2)
    assert not any(m._forward_hooks for m in model.model.diffusion_model.modules())
    run_dir = Path(svd_host.folder_paths.get_output_directory()) / "cil_train"
    rows = lambda name: [json.loads(r) for r in (run_dir / name / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert [r["step"] for r in rows("cancelled_node")] == [1, 2]
    with pytest.raises(ValueError, match="resume"):
        run("cancelled_node")  # checkpoints exist: refuse to start over silently
    _, updates = run("cancelled_node", resume=True)
    assert updates == [(s, 5) for s in range(3, 6)]
    assert [(r["step"], r["loss"]) for r in rows("cancelled_node")] == [(r["step"], r["loss"]) for r in rows("straight_node")]


def test_comfy_host_boots_headless_from_comfyui_path_with_the_repo_behind_comfyui(tmp_path):
    """A fresh process started inside this repository (so '' = the repo is on sys.path): boot()
    finds ComfyUI from $COMFYUI_PATH, sets its args before importing it (CPU here), and puts the
    repo after ComfyUI's root on sys.path so ComfyUI's `nodes` module is not shadowed by this
    pack's `nodes/` (while the pack's libraries stay importable)."""
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    script = (
        "import os, sys\n"
        "from cil_comfy import host\n"
        "assert any(os.path.realpath(p or '.') == str(host.PACK_ROOT) for p in sys.path)\n"
        "m = host.boot(device='cpu')\n"
        "where = [i for i, p in enumerate(sys.path) if os.path.realpath(p or '.') == str(host.PACK_ROOT)]\n"
        "behind = sys.path[0] == str(m.root) and all(i > 0 for i in where)\n"
        "import nodes\n"
        "import cil_train.loop\n"
        "print(m.root, m.model_management.get_torch_device(), nodes.__file__, behind, sep='|')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "train", "--config", "x.toml"], cwd=repo, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    root, device, nodes_file, repo_behind_comfyui = done.stdout.strip().splitlines()[-1].split("|")
    assert repo_behind_comfyui == "True"
    assert Path(root) == Path(os.environ["COMFYUI_PATH"]).resolve()
    assert device == "cpu"
    assert Path(nodes_file).resolve() == Path(root) / "nodes.py"
