"""Trainer parts: LoRA hooks = ComfyUI's merge rule, file keys; gradient checkpointing keeps the
gradients; checkpoint state round trips; config parsing; EMA; cancel cleans up; precisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cil_core.families import svd_family
from cil_media.loss_curve import draw_loss_curve
from cil_train import grad_ckpt
from cil_train.checkpoint import optimizer_from_flat, optimizer_to_flat, rng_from_tensors, rng_to_tensors
from cil_train.config import config_from_dict, load_config
from cil_train.data import InMemoryDataset
from cil_train.lora import LoraSet, LoraSpec, matching_modules, merged_weight
from cil_train.loop import Trainer
from cil_train.toy import TinyAdapter, TinyVideoNet, init_tiny

REPO = Path(__file__).resolve().parents[2]


# --- LoRA ---------------------------------------------------------------------------------------------

class Layers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.to_q = nn.Linear(6, 5)
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.vol = nn.Conv3d(2, 3, (3, 1, 1), padding=(1, 0, 0))


@pytest.mark.parametrize("name,shape", [("to_q", (2, 7, 6)), ("conv", (2, 3, 9, 9)), ("vol", (1, 2, 4, 3, 3))])
def test_lora_hook_equals_comfyui_merged_weight(name, shape):
    torch.manual_seed(0)
    model = Layers().double()
    lora = LoraSet(model, LoraSpec(rank=2, alpha=3.0, targets=(name,)))
    layer = lora.layers[name]
    with torch.no_grad():
        layer.up.weight.normal_()
    base = model.get_submodule(name)
    x = torch.randn(shape, dtype=torch.float64)
    hooked = base(x)
    merged_module = type(base)(*_ctor_args(base)).double()
    merged_module.load_state_dict(base.state_dict())
    with torch.no_grad():
        merged_module.weight.copy_(merged_weight(base.weight, layer.down.weight, layer.up.weight, 3.0))
    lora.remove()
    assert torch.allclose(hooked, merged_module(x), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(hooked, base(x))  # removing the hook restores the base layer


def _ctor_args(m):
    if isinstance(m, nn.Linear):
        return (m.in_features, m.out_features)
    return (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding)


def test_lora_file_keys_follow_comfyui_generic_format():
    lora = LoraSet(Layers(), LoraSpec(rank=2, alpha=4.0, targets=("to_q", "*.conv", "conv")))
    sd = lora.comfy_state_dict("diffusion_model.")
    assert set(sd) == {f"diffusion_model.{m}.{k}" for m in ("to_q", "conv") for k in ("lora_down.weight", "lora_up.weight", "alpha")}
    assert sd["diffusion_model.conv.lora_down.weight"].shape == (2, 3, 3, 3)
    assert sd["diffusion_model.conv.lora_up.weight"].shape == (4, 2, 1, 1)
    assert float(sd["diffusion_model.to_q.alpha"]) == 4.0
    with pytest.raises(ValueError, match="matched no Linear/Conv layer"):
        matching_modules(Layers(), ["*.nothing"])


# --- gradient checkpointing --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["lora", "full"])
def test_gradient_checkpointing_keeps_gradients(mode):
    def grads(checkpointing: bool) -> dict:
        net = init_tiny(TinyVideoNet(3, 8, 2), 0)
        adapter = TinyAdapter(net, svd_family(), "svd")
        lora = LoraSet(net, LoraSpec(2, 2.0, ("*.to_q", "*.to_v")), seed=1) if mode == "lora" else None
        params = lora.parameters() if lora else dict(net.named_parameters())
        if lora:
            gen_init = torch.Generator().manual_seed(4)
            with torch.no_grad():
                for p in params.values():
                    p.copy_(torch.randn(p.shape, generator=gen_init) * 0.1)
        blocks = grad_ckpt.enable(net) if checkpointing else []
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(2, 3, 2, 4, 4, generator=gen)
        cond = {"image": torch.randn(2, 3, 4, 4, generator=gen), "noise_level": torch.zeros(2)}
        adapter.denoise(x, torch.tensor([0.5, 4.0]), cond).square().mean().backward()
        grad_ckpt.disable(blocks)
        assert not any("forward" in vars(b) for b in net.blocks)
        return {k: p.grad.clone() for k, p in params.items()}

    plain, ckpt = grads(False), grads(True)
    assert plain.keys() == ckpt.keys()
    assert all(torch.allclose(plain[k], ckpt[k], rtol=1e-5, atol=1e-7) for k in plain)


# --- checkpoint state -----------------------------------------------------------------------------------

def test_optimizer_and_rng_state_round_trip():
    p = [nn.Parameter(torch.randn(3, 2)), nn.Parameter(torch.randn(4))]
    opt = torch.optim.AdamW(p, lr=1e-2, weight_decay=0.01)
    for _ in range(2):
        sum(q.square().sum() for q in p).backward()
        opt.step()
    tensors, small = optimizer_to_flat(opt)
    small = json.loads(json.dumps(small))  # it is stored as JSON
    opt2 = torch.optim.AdamW(p, lr=5.0)
    optimizer_from_flat(opt2, tensors, small)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 1e-2
    for i in a["state"]:
        for k, v in a["state"][i].items():
            assert torch.equal(v, b["state"][i][k])
    gen = torch.Generator().manual_seed(5)
    saved = rng_to_tensors(gen)
    expected = torch.randn(3, generator=gen), torch.rand(2)
    rng_from_tensors(gen, saved)
    assert torch.equal(torch.randn(3, generator=gen), expected[0]) and torch.equal(torch.rand(2), expected[1])


# --- config ------------------------------------------------------------------------------------------------

def test_toml_and_json_configs_agree_and_errors_name_the_key(tmp_path, make_config):
    raw = make_config(tmp_path / "o", tmp_path)
    (tmp_path / "c.json").write_text(json.dumps(raw))
    toml = "\n".join(
        [f'mode = "{raw["mode"]}"'] +
        [f"[{section}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items())
         for section, values in raw.items() if isinstance(values, dict)]
    ).replace("true", "true").replace("false", "false")
    (tmp_path / "c.toml").write_text(toml)
    assert load_config(tmp_path / "c.json") == load_config(tmp_path / "c.toml")

    with pytest.raises(ValueError, match="unknown key 'lrate' in \\[optim\\]"):
        config_from_dict({"optim": {"lrate": 1}})
    with pytest.raises(ValueError, match="loss.timenoise"):
        config_from_dict({"loss": {"timenoise": "yes"}})
    with pytest.raises(ValueError, match="mode="):
        config_from_dict({"mode": "half"})
    with pytest.raises(ValueError, match="full fine-tunes keep fp32"):
        config_from_dict({"mode": "full", "model": {"weight_dtype": "bf16"}})


def test_example_config_parses():
    cfg = load_config(REPO / "train_configs" / "train_svd_lora.toml")
    assert cfg.mode == "lora" and cfg.optim.lr > 0 and cfg.timenoise_config("svd").beta_m == 15.0
    assert cfg.per_sample_scalar("svd") is True and cfg.per_sample_scalar("dynamicrafter") is False


# --- trainer behaviour ---------------------------------------------------------------------------------------

def tiny_setup(tmp_path, make_config, **sections):
    cfg = config_from_dict(make_config(tmp_path / "run", "", **sections))
    adapter = TinyAdapter.from_config(cfg)
    gen = torch.Generator().manual_seed(0)
    items = [{"latent": torch.randn(3, 4, 4, 4, generator=gen), "image": torch.randn(3, 4, 4, generator=gen)} for _ in range(3)]
    return cfg, adapter, InMemoryDataset(items, cfg.run.seed)


def test_ema_is_the_exponential_average_of_the_weights(tmp_path, make_config):
    cfg, adapter, data = tiny_setup(tmp_path, make_config, run={"steps": 1}, optim={"ema_decay": 0.75, "lr": 0.05},
                                    mode="full")
    before = {k: v.clone() for k, v in adapter.net.state_dict().items()}
    trainer = Trainer(adapter, data, cfg)
    result = trainer.run()
    after = adapter.net.state_dict()
    from safetensors.torch import load_file

    exported = load_file(str(result.full_path))
    for k in before:
        assert torch.allclose(exported[k], 0.75 * before[k] + 0.25 * after[k], rtol=1e-6, atol=1e-7)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_kill_between_a_save_and_its_pruning_is_cleaned_up_at_resume(tmp_path, make_config, monkeypatch):
    """The run dies after each checkpoint is renamed into place but before older ones are deleted
    (pruning off); ``--resume`` (here: with every step already done) keeps the newest two only."""
    import cil_train.checkpoint as checkpoint
    import cil_train.train_state as train_state
    from cil_train.checkpoint import list_checkpoints

    cfg, adapter, data = tiny_setup(tmp_path, make_config, run={"steps": 4, "checkpoint_every": 1, "keep_checkpoints": 2})
    with monkeypatch.context() as m:
        for module in (checkpoint, train_state):
            m.setattr(module, "prune_checkpoints", lambda *a: None)
        Trainer(adapter, data, cfg).run()
    assert [s for s, _ in list_checkpoints(cfg.run.output_dir)] == [1, 2, 3, 4]
    Trainer(adapter, data, cfg).run(resume=True)
    assert [s for s, _ in list_checkpoints(cfg.run.output_dir)] == [3, 4]


def test_cancel_stops_and_leaves_the_model_as_it_was(tmp_path, make_config):
    cfg, adapter, data = tiny_setup(tmp_path, make_config, run={"steps": 50})
    flags = {n: p.requires_grad for n, p in adapter.net.named_parameters()}
    x = torch.randn(1, 3, 4, 4, 4)
    cond = {"image": torch.randn(1, 3, 4, 4), "noise_level": torch.zeros(1)}
    with torch.no_grad():
        reference = adapter.denoise(x, torch.tensor([1.0]), cond)

    class Stop(Exception):
        pass

    calls = []

    def cancel():
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    with pytest.raises(Stop):
        Trainer(adapter, data, cfg, check_cancel=cancel).run()
    assert len(calls) == 3
    assert all(not vars(m).get("_forward_hooks") for m in adapter.net.modules())
    assert {n: p.requires_grad for n, p in adapter.net.named_parameters()} == flags
    with torch.no_grad():
        assert torch.equal(adapter.denoise(x, torch.tensor([1.0]), cond), reference)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_runs(tmp_path, make_config, precision):
    cfg, adapter, data = tiny_setup(tmp_path, make_config, run={"steps": 2, "precision": precision,
                                                                 "grad_checkpointing": True})
    result = Trainer(adapter, data, cfg).run()
    assert len(result.losses) == 2 and all(map(torch.isfinite, torch.tensor(result.losses)))


def test_loss_curve_image():
    img = draw_loss_curve(list(range(1, 51)), [10.0 / s for s in range(1, 51)])
    assert img.size == (640, 360)
    pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).reshape(360, 640, 3)
    assert int((pixels[..., 2] > pixels[..., 0] + 60).sum()) > 100  # the blue curve is drawn


def test_clean_temporaries_removes_what_an_interrupted_atomic_write_leaves(tmp_path):
    from cil_core.atomic import atomic_path
    from cil_train.checkpoint import checkpoint_dir, checkpoint_path, clean_temporaries

    (checkpoint_dir(tmp_path)).mkdir(parents=True)
    old_style = checkpoint_dir(tmp_path) / ".step_00000002.safetensors.1234.tmp"  # a temporary name of earlier versions
    old_style.write_bytes(b"half")
    keep = checkpoint_dir(tmp_path) / ".notes.txt.abc.tmp"
    keep.write_bytes(b"someone else's")
    with atomic_path(checkpoint_path(tmp_path, 4)) as tmp:
        tmp.write_bytes(b"half")  # a kill here would leave this file, in its temporary folder
        assert sorted(clean_temporaries(tmp_path)) == sorted([old_style, tmp.parent])
        assert not tmp.parent.exists()
        tmp.parent.mkdir()
        tmp.write_bytes(b"whole")  # (not killed after all: let the write finish)
    assert keep.is_file() and not old_style.exists() and checkpoint_path(tmp_path, 4).read_bytes() == b"whole"


def test_clean_temporaries_also_removes_output_temporaries_and_unfinished_shards(tmp_path):
    """What a kill leaves besides checkpoint temporaries: temporaries of the run's other outputs
    (named ones only) and shards of a checkpoint whose rank-0 file was never written."""
    from cil_core.atomic import atomic_path
    from cil_train.checkpoint import checkpoint_path, clean_temporaries, shard_path

    out = tmp_path / "run"
    lora = tmp_path / "loras" / "mine.safetensors"  # the node writes its LoRA outside the run folder
    whole, orphan = shard_path(out, 2, 1), shard_path(out, 4, 1)
    for p in (checkpoint_path(out, 2), whole, orphan):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    foreign = out / ".notes.txt.abc.tmp"
    foreign.write_bytes(b"someone else's")
    with atomic_path(out / "loss.png") as png, atomic_path(lora) as lora_tmp, atomic_path(out / "log.jsonl") as log_tmp:
        for t in (png, lora_tmp, log_tmp):
            t.write_bytes(b"half")
        removed = clean_temporaries(out, ("loss.png", "log.jsonl", lora))
        assert sorted(removed) == sorted([png.parent, lora_tmp.parent, log_tmp.parent, orphan])
        for t in (png, lora_tmp, log_tmp):
            t.parent.mkdir()
            t.write_bytes(b"whole")  # not killed after all: let the writes finish
    assert whole.is_file() and foreign.is_file() and not orphan.exists()


def test_fault_hooks_can_name_a_rank(monkeypatch):
    from cil_train.checkpoint import fault_step

    monkeypatch.setenv("CIL_TRAIN_FAULT", "kill_after_step=3@1,kill_in_checkpoint=4")
    assert fault_step("kill_after_step", 1) == 3 and fault_step("kill_after_step", 0) is None
    assert fault_step("kill_in_checkpoint", 0) == fault_step("kill_in_checkpoint", 5) == 4
