"""TimeNoise training on the image slots of today's I2V model classes, through ComfyUI's model code.

Replacement models (Wan 2.2 TI2V-5B; LTX-Video's blocks are not autograd-safe in ComfyUI and
are refused, as is Kandinsky 5): the network receives the start frame at flow level
s = β/(1 + β) — x there is (1 − s)·(y0 + β·ε) — and the noise-mask entry s/σ there (ComfyUI's
process_timestep turns it into timestep s), the generated frames as noised; the loss is zero on the
held frame. HunyuanVideo 1.5 (concat): only the image channels of the start frame change, never the
mask channel or the zero padding. Wan 2.2 trains two LoRA steps whose file ComfyUI's key map takes;
the classes whose ComfyUI blocks are not autograd-safe (LTX, HunyuanVideo) or that cannot take
TimeNoise (Kandinsky 5) are refused with the reason.
"""

from __future__ import annotations

import pytest
import torch

import tiny_video_models as tvm  # tests/host is on sys.path (conftest)

pytestmark = pytest.mark.host

FRAMES, SIZE = 9, 32  # pixels: 3 latent frames at 4x temporal compression (LTX: 8x -> 2)


def config(tmp_path, name: str, steps: int = 2, checkpointing: bool = False):
    from cil_train.config import DataSection, LoraSection, OptimSection, RunSection, TrainConfig

    return TrainConfig(mode="lora", data=DataSection(workers=0), lora=LoraSection(rank=2, alpha=2.0), optim=OptimSection(lr=0.05),
                       run=RunSection(steps=steps, output_dir=str(tmp_path / name), checkpoint_every=1, progress=False,
                                      grad_checkpointing=checkpointing)).validate()


def video_item(kind: str, adapter) -> dict:
    """A training clip the way the node gets it: VAE Encode of a video + the model's conditioning
    (made under inference mode, as ComfyUI runs the nodes that make them)."""
    with torch.inference_mode():
        return _video_item(kind, adapter)


def _video_item(kind: str, adapter) -> dict:
    vae = tvm.tiny_vae(kind)
    video = tvm.start_image(3, SIZE, SIZE, FRAMES)
    raw = vae.encode(video)
    positive = tvm.text_conditioning(kind, 0)
    if kind == "hunyuan15":
        import comfy_extras.nodes_hunyuan as nh

        out = nh.HunyuanVideo15ImageToVideo.execute(positive, tvm.text_conditioning(kind, 0, True), vae, SIZE, SIZE,
                                                    FRAMES, 1, start_image=video[:1])
        positive = out[0]
    return adapter.item_from_graph({"samples": raw}, positive)


def capture_model_calls(adapter):
    seen = []
    apply_model = adapter.bm.apply_model

    def spy(x, t, **kw):
        seen.append({"x": x.detach().clone(), "t": t.detach().clone(), **{k: v for k, v in kw.items() if torch.is_tensor(v)}})
        return apply_model(x, t, **kw)

    adapter.bm.apply_model = spy
    return seen, lambda: setattr(adapter.bm, "apply_model", apply_model)


@pytest.mark.parametrize("kind", ["wan22"])
def test_replacement_models_train_the_held_frame_at_flow_level_s(video_host, tmp_path, kind):
    from cil_comfy.training import make_adapter
    from cil_train.data import InMemoryDataset
    from cil_train.loop import Trainer, training_loss

    tvm.require(kind)
    cfg = config(tmp_path, kind)
    adapter = make_adapter(tvm.tiny_model(kind), cfg)
    assert type(adapter).__name__ == "ReplaceAdapter"
    adapter.prepare_for_training()
    item = video_item(kind, adapter)
    batch = adapter.collate([item])
    sigma = torch.tensor([0.7], dtype=torch.float64)
    noise = torch.randn(batch.x0.shape, generator=torch.Generator().manual_seed(5))
    seen, restore = capture_model_calls(adapter)
    try:
        with torch.no_grad():
            loss, info = training_loss(adapter, batch, Trainer(adapter, InMemoryDataset([item], 0), cfg).loss_cfg, 0.0,
                                       torch.Generator().manual_seed(1), sigma=sigma, noise=noise)
    finally:
        restore()
    beta = float(info["beta"][0])
    s = beta / (1.0 + beta)
    x_in, mask = seen[0]["x"], seen[0]["denoise_mask"]
    y0 = batch.x0[:, :, :1]
    noisy_image = x_in[:, :, :1] / (1.0 - s)  # = y0 + β·ε
    eps = (noisy_image - y0) / beta
    assert beta > 0 and abs(float(eps.std()) - 1.0) < 0.35, "the held frame carries y0 + β·ε, ε ~ N(0, 1)"
    x_t = (1 - 0.7) * batch.x0 + 0.7 * noise
    assert torch.allclose(x_in[:, :, 1:], x_t[:, :, 1:].to(x_in.dtype), atol=1e-6), "generated frames are the noised video"
    assert torch.allclose(mask[:, :, :1], torch.full_like(mask[:, :, :1], s / 0.7), rtol=1e-5)
    assert float(mask[:, :, 1:].min()) == float(mask[:, :, 1:].max()) == 1.0
    assert float(loss[:, :, :1].abs().max()) == 0.0 and float(loss[:, :, 1:].mean()) > 0, "loss on generated frames only"
    result = Trainer(adapter, InMemoryDataset([item], 0), cfg).run()
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    import comfy.lora

    patches = comfy.lora.load_lora(result.lora_state, comfy.lora.model_lora_keys_unet(adapter.bm, {}))
    assert len(patches) == sum(k.endswith(".alpha") for k in result.lora_state) > 0


def test_hunyuan15_timenoise_touches_the_start_frame_image_only(video_host, tmp_path):
    """The concat adapter on HunyuanVideo 1.5's slot (32 image channels + 1 mask channel, zero
    padding after the start frame), one forward without gradients (its training is refused: below)."""
    from cil_comfy.image_slots import slot_for
    from cil_comfy.models import detect_family
    from cil_comfy.train_concat import ConcatAdapter
    from cil_train.data import InMemoryDataset
    from cil_train.loop import Trainer, training_loss

    tvm.require("hunyuan15")
    cfg = config(tmp_path, "hunyuan15")
    model = tvm.tiny_model("hunyuan15")
    adapter = ConcatAdapter(model, detect_family(model), "flow", slot_for(model))
    adapter.prepare_for_training()
    item = video_item("hunyuan15", adapter)
    batch = adapter.collate([item])
    seen, restore = capture_model_calls(adapter)
    try:
        with torch.no_grad():
            training_loss(adapter, batch, Trainer(adapter, InMemoryDataset([item], 0), cfg).loss_cfg, 0.0,
                          torch.Generator().manual_seed(1), sigma=torch.tensor([0.8], dtype=torch.float64))
    finally:
        restore()
    clean, used = batch.cond["concat"][0], seen[0]["c_concat"]
    assert clean.shape[1] == 33 and batch.cond["image"].shape[-3] == 1  # 32 image channels + 1 mask; one start frame
    assert float((used[:, :32, :1] - clean[:, :32, :1]).abs().min()) > 0, "the start frame's image channels get β·ε"
    assert torch.equal(used[:, 32:], clean[:, 32:]), "the mask channel is untouched"
    assert torch.equal(used[:, :32, 1:], clean[:, :32, 1:]), "the zero padding after the start frame is untouched"
    assert float(clean[:, :32, 1:].abs().max()) == 0.0  # (it is padding: zeros)


@pytest.mark.parametrize("kind,why", [("kandinsky5", "one timestep"), ("ltxv", "in place"), ("hunyuan15", "in place")])
def test_classes_the_trainer_cannot_take_are_refused_with_the_reason(video_host, tmp_path, kind, why):
    from cil_comfy.training import make_adapter
    from cil_core.validation import CILValueError

    tvm.require(kind)
    with pytest.raises(CILValueError, match=f"TimeNoise training cannot run on .*{why}"):
        make_adapter(tvm.tiny_model(kind), config(tmp_path, kind))
