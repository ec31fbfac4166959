"""TimeNoise training of a tiny Wan 2.1 I2V model (flow matching) through ComfyUI's model code.

The tiny model is ``supported_models.WAN21_I2V`` with small widths (in_dim 36 = 16 latent + 4 mask
+ 16 image channels), built directly (detection needs the full layout). Checks: TimeNoise noises
only ``c_concat[:, 4:]`` (the image latent, not the mask); the adapter's x̂0 equals ComfyUI's
own sampler (one Euler step to 0); two LoRA steps train and the file loads through ComfyUI's key
map with the same x̂0 as our hooks; ComfyUI's RoPE kernel is restored after training.
"""

from __future__ import annotations


import pytest
import torch
from tiny_models import init_weights  # tests/host (on sys.path: see conftest)

pytestmark = pytest.mark.host

T, H, W = 3, 4, 4


def tiny_wan(svd_host):
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm

    config = sm.WAN21_I2V({"image_model": "wan2.1", "model_type": "i2v", "in_dim": 36, "dim": 32, "ffn_dim": 64,
                           "freq_dim": 16, "text_dim": 24, "out_dim": 16, "num_heads": 2, "num_layers": 1, "text_len": 8})
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    init_weights(model, 0)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())


def wan_item(seed: int = 0) -> tuple[dict, list]:
    gen = torch.Generator().manual_seed(seed)
    concat = torch.randn(1, 16, T, H, W, generator=gen)
    mask = torch.ones(1, 1, T, H, W)
    mask[:, :, :1] = 0.0  # WanImageToVideo: 0 on the given start frame
    text = torch.randn(1, 8, 24, generator=gen)
    options = {"concat_latent_image": concat, "concat_mask": mask}
    positive = [[text, dict(options)]]
    return {"latent": torch.randn(16, T, H, W, generator=gen) * 2.0, "options": options | {"cross_attn": text}}, positive


def config(tmp_path, steps: int = 2):
    from cil_train.config import LoraSection, OptimSection, RunSection, TrainConfig

    return TrainConfig(mode="lora", lora=LoraSection(rank=2, alpha=2.0), optim=OptimSection(lr=0.05),
                       run=RunSection(steps=steps, output_dir=str(tmp_path / "wan"), checkpoint_every=1, progress=False)).validate()


def test_wan_flow_timenoise_lora(svd_host, tmp_path):
    import comfy.ldm.wan.model as wan_model
    import comfy.lora
    import comfy.sample
    import comfy.samplers
    import comfy.sd

    from cil_core.families import RectifiedFlow
    from cil_comfy.training import make_adapter
    from cil_train.data import InMemoryDataset
    from cil_train.lora import LoraSet, LoraSpec
    from cil_train.loop import Trainer, training_loss

    model = tiny_wan(svd_host)
    item, positive = wan_item()
    cfg = config(tmp_path)
    adapter = make_adapter(model, cfg)
    assert adapter.family_name == "wan" and isinstance(adapter.family, RectifiedFlow) and adapter.family.shift == 8.0
    adapter.prepare_for_training()
    batch = adapter.collate([item])

    # TimeNoise touches the image channels of c_concat on the start frame only (β·ε, i.i.d.):
    # never the 4 mask channels, never the gray padding frames after the start frame
    seen = {}
    apply_model = adapter.bm.apply_model
    adapter.bm.apply_model = lambda x, t, **kw: seen.update(kw) or torch.zeros_like(x)
    try:
        _, info = training_loss(adapter, batch, Trainer(adapter, InMemoryDataset([item], 0), cfg).loss_cfg, 0.0,
                                torch.Generator().manual_seed(1), sigma=torch.tensor([0.9], dtype=torch.float64))
    finally:
        adapter.bm.apply_model = apply_model
    assert batch.cond["image"].shape == (1, 1, 16, 1, H, W)  # the marked start frame's image channels
    clean, used = batch.cond["concat"][0], seen["c_concat"]
    assert float((used[:, 4:, :1] - clean[:, 4:, :1]).abs().min()) > 0 and float(info["beta"][0]) > 0
    assert torch.equal(clean[:, :4], used[:, :4]) and torch.equal(clean[:, 4:, 1:], used[:, 4:, 1:])

    # our x̂0 = ComfyUI's sampler x̂0 (one Euler step from σ to 0 returns the denoised latent)
    sigma = 0.6
    noise = torch.randn(batch.x0.shape, generator=torch.Generator().manual_seed(2))
    cond = dict(batch.cond, noise_level=torch.zeros(1, dtype=torch.float64))
    x = (1 - sigma) * batch.x0 + sigma * noise
    with torch.no_grad():
        ours = adapter.denoise(x, torch.tensor([sigma]), cond)
        raw = comfy.sample.sample_custom(model, noise, 1.0, comfy.samplers.ksampler("euler"), torch.tensor([sigma, 0.0]),
                                         positive, [[torch.zeros_like(positive[0][0]), positive[0][1]]],
                                         item["latent"][None], disable_pbar=True, seed=0)
    theirs = model.model.process_latent_in(raw)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * float(theirs.abs().max()))

    # two LoRA steps; the file loads through ComfyUI's key map and gives our hooks' x̂0
    kitchen_rope = wan_model.apply_rope1
    result = Trainer(adapter, InMemoryDataset([item], 0), cfg).run()
    assert wan_model.apply_rope1 is kitchen_rope
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    lora = result.lora_state
    patches = comfy.lora.load_lora(lora, comfy.lora.model_lora_keys_unet(model.model, {}))
    assert len(patches) == sum(k.endswith(".alpha") for k in lora) > 0
    patched = comfy.sd.load_lora_for_models(tiny_wan(svd_host), None, lora, 1.0, 0)[0]
    patched_adapter = make_adapter(patched, cfg)
    patched_adapter.prepare_for_training()
    plain = make_adapter(tiny_wan(svd_host), cfg)
    hooks = LoraSet(plain.trainable_root(), LoraSpec(2, 2.0, tuple(cfg.lora.targets)))
    with torch.no_grad():
        for name, layer in hooks.layers.items():
            layer.down.weight.copy_(lora[f"diffusion_model.{name}.lora_down.weight"])
            layer.up.weight.copy_(lora[f"diffusion_model.{name}.lora_up.weight"])
        theirs, ours = patched_adapter.denoise(x, torch.tensor([sigma]), cond), plain.denoise(x, torch.tensor([sigma]), cond)
        hooks.remove()
        base = plain.denoise(x, torch.tensor([sigma]), cond)
    effect = float((ours - base).abs().max())
    assert effect > 1e-4 * float(base.abs().max())
    assert float((theirs - ours).abs().max()) <= 1e-2 * effect
