"""Toy weights files (shipped ones and round trips) and the training loop."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cil_core.families import family_from_description
from cil_core.losses import diffusion_loss
from cil_core.stats_io import load_stats
from cil_core.validation import CILValueError
from cil_toy.codec import LatentCodec
from cil_toy.data import WorldConfig, make_videos
from cil_toy.model import ToyDenoiser, ToyNetConfig
from cil_toy.train import FAMILIES, TrainConfig, build_net, conditional_latent, train
from cil_toy.weights_io import (STATS_FILE, WEIGHTS_DIR, available_toy_models, load_toy_model, read_meta,
                                save_toy_model)

TINY_ARCH = ToyNetConfig(latent_channels=12, frames=4, outer_width=8, width=16, mid_width=32, embed_dim=16, groups=4,
                         attn_heads=2, latent_size=8)
TINY_WORLD = WorldConfig(frames=4, height=16, width=16)
TINY_CODEC = LatentCodec(block=2)


def test_shipped_edm_pair_and_stats_are_present():
    names = available_toy_models()
    assert {"edm_baseline", "edm_timenoise"} <= set(names)
    assert (WEIGHTS_DIR / STATS_FILE).is_file()


@pytest.mark.parametrize("name", ["edm_baseline", "edm_timenoise"])
def test_shipped_weights_load_and_record_how_to_retrain(name):
    model = load_toy_model(name)
    meta = model.meta
    assert meta["command"].startswith("cil toy-train ") and f"--seed {meta['seed']}" in meta["command"]
    assert family_from_description(json.loads(meta["family"])) == model.family
    assert meta["role"] in name and meta["train.family"] == "'edm'"
    assert (meta["train.timenoise_beta_m"] == "None") == (name == "edm_baseline")
    assert int(meta["parameters"]) == sum(p.numel() for p in model.net.parameters())
    x = torch.randn(1, *model.latent_shape)
    cond = torch.randn(1, model.latent_shape[0], *model.latent_shape[2:])
    out = model.denoiser(x, torch.tensor([1.0]), {"image": cond, "noise_level": torch.zeros(1)})
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_shipped_stats_match_the_model_latent():
    stats = load_stats(WEIGHTS_DIR / STATS_FILE)
    assert stats.shape == load_toy_model("edm_baseline").latent_shape
    assert 0.2 < stats.tr_cov_d < 5.0


def test_save_load_round_trip_and_metadata_validation(tmp_path):
    cfg = TrainConfig(steps=1, batch_size=1, arch=TINY_ARCH, world=TINY_WORLD)
    family = FAMILIES["edm"]()
    net = build_net(cfg, family, None, seed=0)
    meta = {**cfg.to_meta(), **TINY_WORLD.describe(), "name": "tiny", "role": "baseline", "seed": "0",
            "command": "cil toy-train --seed 0"}
    path = save_toy_model(tmp_path / "tiny.safetensors", net, family, TINY_CODEC, meta)
    model = load_toy_model(path)
    for k, v in net.state_dict().items():
        assert torch.allclose(model.net.state_dict()[k], v.half().float())
    assert model.codec == TINY_CODEC and model.world == TINY_WORLD

    # tampered metadata and a non-safetensors path are refused with a CILValueError
    with safe_open(str(path), "pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    bad = dict(read_meta(path), format_version="999")
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=bad)
    with pytest.raises(CILValueError, match="format_version"):
        load_toy_model(tmp_path / "bad.safetensors")
    del tensors[next(iter(tensors))]
    save_file(tensors, str(tmp_path / "short.safetensors"), metadata=read_meta(path))
    with pytest.raises(CILValueError, match="do not match"):
        load_toy_model(tmp_path / "short.safetensors")
    with pytest.raises(CILValueError):
        load_toy_model(tmp_path / "model.pt")
    with pytest.raises(CILValueError, match="missing"):
        load_toy_model(tmp_path / "absent.safetensors")


def _fixed_batch_loss(net, family, cfg, x0) -> float:
    g = torch.Generator().manual_seed(99)
    sigma = torch.tensor([0.3, 1.0, 3.0, 0.6], dtype=torch.float64)
    with torch.no_grad():
        loss, _ = diffusion_loss(family, ToyDenoiser(net, family), x0, {"image": conditional_latent(x0)}, cfg.loss_config(),
                                 generator=g, sigma=sigma)
    return float(loss.mean())


@pytest.mark.parametrize("beta_m", [None, 3.0])
def test_training_lowers_the_loss_on_a_fixed_batch(beta_m):
    cfg = TrainConfig(steps=40, batch_size=4, lr=3e-3, warmup=5, arch=TINY_ARCH, world=TINY_WORLD, timenoise_beta_m=beta_m, ema_decay=0.0)
    family = FAMILIES["edm"]()
    x0 = TINY_CODEC.encode(make_videos(5, 4, TINY_WORLD)[0])
    before = _fixed_batch_loss(build_net(cfg, family, None, cfg.seed), family, cfg, x0)
    result = train(cfg, codec=TINY_CODEC)
    after = _fixed_batch_loss(result.net, family, cfg, x0)
    assert len(result.losses) == 40 and all(torch.isfinite(torch.tensor(result.losses)))
    assert after < 0.8 * before
