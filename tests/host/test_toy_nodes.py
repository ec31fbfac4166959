"""The toy I2V models inside a real ComfyUI (nodes/nodes_toy.py).

- The ComfyUI path (conditioning node → ComfyUI's conds → BaseModel.apply_model → our wrapper)
  gives exactly cil_toy's own ``ToyDenoiser`` output for the same (x, σ, image, β): EDM and VP.
- KSampler and CIL_LateStartSampler, run in real graphs on the toy MODEL, equal cil_toy's own
  Euler sampler (``cil_toy.sampling.euler_sample``) from the same first state (ComfyUI's ε for
  the seed; naive and Analytic-Init starts built from cil_core's float64 formulas).
- The toy VAE is a comfy.sd.VAE: VAEEncode/VAEDecode round-trip frames exactly (the codec is
  invertible) and agree with the codec.
- detect_family, TimeNoise Conditioning and the Leakage Probe accept the toy MODEL.
- The toy_cil_demo workflow runs: on a random test model always, on the shipped weights when they load.

Test models are random ``ToyVideoNet``s written with cil_toy's own ``save_toy_model`` into a
temporary ``models/cil_toy`` folder (16x16 px, 4 frames, 12 latent channels): no training needed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
FRAMES, SIZE = 4, 16


# --- test models -------------------------------------------------------------------------------

def small_net_config(frames: int, channels: int):
    from cil_toy.model import ToyNetConfig

    wanted = dict(latent_channels=channels, frames=frames, outer_width=0, width=16, mid_width=32, embed_dim=32, groups=4,
                  attn_heads=2, latent_size=SIZE // 2)
    names = {f.name for f in dataclasses.fields(ToyNetConfig)}
    return dataclasses.replace(ToyNetConfig(), **{k: v for k, v in wanted.items() if k in names})


def write_toy_model(folder: Path, name: str, family: str = "edm", seed: int = 0) -> Path:
    """A random toy model file (every parameter perturbed, so no layer is the zero-init identity)."""
    import torch
    from cil_toy.codec import LatentCodec
    from cil_toy.data import WorldConfig
    from cil_toy.model import ToyVideoNet
    from cil_toy.train import toy_edm_family, toy_vp_family
    from cil_toy.weights_io import save_toy_model

    codec = LatentCodec(block=2)
    world = WorldConfig(frames=FRAMES, height=SIZE, width=SIZE)
    fam = toy_edm_family() if family == "edm" else toy_vp_family()
    torch.manual_seed(seed)
    net = ToyVideoNet(small_net_config(FRAMES, codec.channels), fam)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    meta = {"name": name, "role": "test", "command": "cil toy-train (random weights for a test)", "seed": str(seed), **world.describe()}
    return save_toy_model(folder / f"{name}.safetensors", net, fam, codec, meta)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cil_toy")
    write_toy_model(folder, "test_edm", "edm", seed=0)
    write_toy_model(folder, "test_vp", "vp", seed=1)
    return folder


@pytest.fixture
def toy_host(tiny_host, toy_dir):
    """The host with the temporary folder as models/cil_toy."""
    with tiny_host.models_folder("cil_toy", toy_dir):
        yield tiny_host


def toy_glue():
    """cil_comfy.toy: the toy world as ComfyUI objects (the engine of the toy nodes)."""
    import cil_comfy.toy

    return cil_comfy.toy


def reference_model(toy_dir: Path, name: str):
    """The same file loaded by cil_toy itself (the reference side of every comparison)."""
    from cil_toy.weights_io import load_toy_model

    return load_toy_model(toy_dir / f"{name}.safetensors")


def start_image(seed: int = 0):
    """A smooth random IMAGE [1, SIZE, SIZE, 3] in [0, 1]."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, SIZE // 4, SIZE // 4, generator=gen)
    return torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False).movedim(1, -1)


def image_latent(toy, image):
    """Model-space latent [1, C, h, w] of an IMAGE, by cil_toy's codec (pixels in [-1, 1])."""
    return toy.codec.encode_image(image.movedim(-1, 1) * 2 - 1)


def toy_prompt(model_file: str, *, sampler: dict, frames: int = FRAMES, noise_level: float = 0.0, extra: dict | None = None) -> dict:
    """Loader → (stored image) → Toy I2V Conditioning → ``sampler`` (node "10") → SaveLatent."""
    prompt = {
        "1": {"class_type": "CIL_ToyModelLoader", "inputs": {"model_name": model_file}},
        "2": {"class_type": "CILTest_StoredImages", "inputs": {"key": "start"}},
        "3": {"class_type": "CIL_ToyImageToVideo", "inputs": {"vae": ["1", 1], "start_image": ["2", 0], "width": SIZE, "height": SIZE,
                                                            "frames": frames, "batch_size": 1, "crop": "center",
                                                            "noise_level": noise_level, "noise_seed": 5}},
        "10": sampler,
        "11": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "toy/out"}},
    }
    prompt.update(extra or {})
    return prompt


def ksampler(seed=3, steps=4, scheduler="karras", model_ref=None) -> dict:
    return {"class_type": "KSampler", "inputs": {"model": model_ref or ["1", 0], "positive": ["3", 0], "negative": ["3", 1], "latent_image": ["3", 2],
                                                 "seed": seed, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": scheduler, "denoise": 1.0}}


def late_start(seed=3, steps=4, m=0.7, naive_mode="paper", stats_ref=None) -> dict:
    inputs = {"model": ["1", 0], "positive": ["3", 0], "negative": ["3", 1], "latent_image": ["3", 2], "seed": seed, "steps": steps,
              "cfg": 1.0, "sampler_name": "euler", "scheduler": "cil_late_start", "M": m, "naive_mode": naive_mode, "fit": "strict"}
    if stats_ref:
        inputs["stats"] = stats_ref
    return {"class_type": "CIL_LateStartSampler", "inputs": inputs}


def comfy_eps(shape, seed: int):
    import comfy.sample
    import torch

    return comfy.sample.prepare_noise(torch.zeros(shape), seed).double()


# --- the loader --------------------------------------------------------------------------------

def test_loader_lists_shipped_models_and_the_models_folder(toy_host):
    from cil_toy.weights_io import available_toy_models

    spec = toy_host.node_classes["CIL_ToyModelLoader"].INPUT_TYPES()["required"]["model_name"]
    options = spec[0] if isinstance(spec[0], list) else spec[1]["options"]  # V1 list or V3 "COMBO" + options
    assert options[: len(available_toy_models())] == available_toy_models()
    assert {"test_edm.safetensors", "test_vp.safetensors"} <= set(options)


@pytest.mark.parametrize("name,family", [("test_edm", "edm"), ("test_vp", "vp_discrete")])
def test_detect_family_recognises_the_toy_model(toy_host, toy_dir, name, family):
    from cil_core.families import family_from_description

    from cil_comfy.models import detect_family

    toy = reference_model(toy_dir, name)
    model = toy_glue().build_comfy_model(toy)
    detected = detect_family(model)
    ours = family_from_description(toy.family.describe())
    assert type(detected).__name__ == type(ours).__name__ and detected.describe()["family"] == family
    assert detected.prediction == ours.prediction == "v"
    # ComfyUI keeps its sigma table in float32: EDM's end points come back to float32 precision
    assert detected.sigma_min == pytest.approx(ours.sigma_min, rel=1e-6)
    assert detected.sigma_max == pytest.approx(ours.sigma_max, rel=1e-6)
    assert model.get_model_object("latent_format").latent_channels == toy.codec.channels


def test_loader_reports_stats_that_do_not_fit_and_outputs_none(toy_host, captures, image_store):
    """The shipped toy stats are for the shipped models' latent size, not the 16x16 test model's."""
    prompt = {"1": {"class_type": "CIL_ToyModelLoader", "inputs": {"model_name": "test_edm.safetensors"}},
              "2": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["1", 2], "key": "stats"}},
              "3": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["1", 3], "key": "info"}}}
    toy_host.run(prompt)
    assert captures["stats"] == [None]
    assert "no Analytic-Init stats" in captures["info"][0] and "test_edm" in captures["info"][0]


# --- faithfulness of the wrapper ---------------------------------------------------------------

def one_call_outputs(model, positive, negative, x, sigma: float):
    """x̂0 from ONE call of ComfyUI's real guider (conds, extra_conds, apply_model), cfg 1."""
    import comfy.samplers
    import torch

    class OneCall(comfy.samplers.Sampler):
        def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False):
            self.out = model_wrap(x, sigmas[:1].expand(x.shape[0]), **extra_args)
            return self.out

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(1.0)
    sampler = OneCall()
    guider.sample(torch.zeros_like(x), torch.zeros_like(x), sampler, torch.tensor([sigma, 0.0]), disable_pbar=True, seed=0)
    return sampler.out


@pytest.mark.parametrize("name,sigmas", [("test_edm", (0.03, 1.0, 80.0, 700.0)), ("test_vp", None)])
@pytest.mark.parametrize("beta", [0.0, 0.7])
def test_comfy_path_reproduces_the_toy_denoiser(toy_host, toy_dir, name, sigmas, beta):
    import torch
    from cil_toy.model import ToyDenoiser

    mod = toy_glue()
    toy = reference_model(toy_dir, name)
    if sigmas is None:  # VP: ComfyUI hands the net the nearest table index, so probe at table entries
        table = toy.family.sigmas
        sigmas = tuple(float(table[i]) for i in (0, 250, 600, 998))
    model = mod.build_comfy_model(toy)
    vae = mod.ToyVAE(toy.codec)
    image = start_image(1)
    positive, negative, latent = mod.toy_conditioning(vae, image, SIZE, SIZE, FRAMES, 2, "center", beta, 11)
    gen = torch.Generator().manual_seed(2)
    cond = image_latent(toy, image).expand(2, -1, -1, -1)
    if beta > 0:  # documented law: image + β·ε, ε = randn([B, C, h, w]) from Generator(noise_seed)
        cond = cond + beta * torch.randn(cond.shape, generator=torch.Generator().manual_seed(11))
    reference = ToyDenoiser(toy.net, toy.family)
    for sigma in sigmas:
        x = torch.randn(latent["samples"].shape, generator=gen) * math.sqrt(1 + sigma**2)
        got = one_call_outputs(model, positive, negative, x, sigma)
        want = reference(x, torch.full((2,), sigma), {"image": cond, "noise_level": torch.full((2,), beta)})
        assert got.shape == x.shape
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5), (name, sigma, float((got - want).abs().max()))


# --- samplers in real graphs -------------------------------------------------------------------

def toy_euler(toy, image, x_start, sigmas):
    import torch
    from cil_toy.sampling import euler_sample

    denoise = toy.denoiser.bind(image_latent(toy, image)[0], noise_level=0.0)
    return euler_sample(denoise, x_start.float(), torch.as_tensor(sigmas, dtype=torch.float32))


def test_ksampler_runs_the_toy_model_like_the_toy_sampler(toy_host, toy_dir, image_store):
    """KSampler (euler, karras, denoise 1) from ComfyUI's ε = cil_toy's Euler from sqrt(1+σ_max²)·ε."""
    import comfy.samplers

    image_store["start"] = image = start_image(0)
    toy_host.run(toy_prompt("test_edm.safetensors", sampler=ksampler(seed=3, steps=4)))
    got = toy_host.load_latent("toy/out").double()
    toy = reference_model(toy_dir, "test_edm")
    ms = toy_glue().build_comfy_model(toy).get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, "karras", 4).cpu()
    eps = comfy_eps((1, toy.codec.channels, FRAMES, SIZE // 2, SIZE // 2), 3)
    want = toy_euler(toy, image, math.sqrt(1 + float(sigmas[0]) ** 2) * eps, sigmas).double() / toy.codec.scale_factor
    assert got.shape == want.shape
    # float32 through 4 Euler steps from σ = 700 (states of size ~700): agreement to 1e-4 of the latent scale
    assert float((got - want).abs().max()) < 1e-4 * max(1.0, float(want.abs().max())), float((got - want).abs().max())


@pytest.mark.parametrize("analytic", [False, True], ids=["naive", "analytic_init"])
def test_late_start_sampler_runs_the_toy_model_like_the_toy_sampler(toy_host, toy_dir, image_store, write_stats, analytic):
    """CIL_LateStartSampler = cil_toy's Euler on cil_core.late_start_sigmas from x_M = mean + std·ε."""
    import torch
    from cil_core.analytic_init import initial_distribution, naive_initial_distribution
    from cil_core.schedules import StartTime, late_start_sigmas

    image_store["start"] = image = start_image(0)
    toy = reference_model(toy_dir, "test_edm")
    shape = toy.latent_shape
    extra, stats_ref = {}, None
    if analytic:
        stats_name, stats = write_stats("toy_test.safetensors", shape, tr_cov_d=0.4, seed=4)
        extra = {"4": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": stats_name}}}
        stats_ref = ["4", 0]
    m, steps, seed = 0.7, 4, 9
    toy_host.run(toy_prompt("test_edm.safetensors", sampler=late_start(seed, steps, m, "paper", stats_ref), extra=extra))
    got = toy_host.load_latent("toy/out").double()
    sigmas = late_start_sigmas(toy.family, steps, StartTime(fraction=m)).to(torch.float32)
    sigma_m = float(sigmas[0])
    if analytic:
        mean, std = initial_distribution(toy.family, sigma_m, stats.mean, stats.tr_cov_d)
    else:
        mean, std = naive_initial_distribution(toy.family, sigma_m, torch.zeros(shape, dtype=torch.float64), mode="paper")
    x_m = mean.unsqueeze(0) + std * comfy_eps((1, *shape), seed)
    want = toy_euler(toy, image, x_m, sigmas).double() / toy.codec.scale_factor
    assert float((got - want).abs().max()) < 1e-4 * max(1.0, float(want.abs().max())), float((got - want).abs().max())


def test_late_start_and_ksampler_run_the_vp_toy_model(toy_host, image_store, captures):
    image_store["start"] = start_image(0)
    extra = {"20": ksampler(steps=3), "21": {"class_type": "SaveLatent", "inputs": {"samples": ["20", 0], "filename_prefix": "toy/vp_k"}}}
    toy_host.run(toy_prompt("test_vp.safetensors", sampler=late_start(steps=3, m=0.9), extra=extra))
    for prefix in ("toy/out", "toy/vp_k"):
        latent = toy_host.load_latent(prefix)
        assert latent.shape == (1, 12, FRAMES, SIZE // 2, SIZE // 2) and bool(latent.isfinite().all())


# --- the VAE -----------------------------------------------------------------------------------

def test_vae_encode_decode_nodes_take_the_toy_vae(toy_host, toy_dir, image_store, captures):
    import torch

    toy = reference_model(toy_dir, "test_edm")
    gen = torch.Generator().manual_seed(5)
    frames = torch.rand(FRAMES, SIZE, SIZE, 3, generator=gen)
    image_store["frames"] = frames
    prompt = {
        "1": {"class_type": "CIL_ToyModelLoader", "inputs": {"model_name": "test_edm.safetensors"}},
        "2": {"class_type": "CILTest_StoredImages", "inputs": {"key": "frames"}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 1]}},
        "4": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 1]}},
        "5": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["3", 0], "key": "latent"}},
        "6": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["4", 0], "key": "decoded"}},
    }
    toy_host.run(prompt)
    latent = captures["latent"][0]["samples"]
    want = toy.codec.encode_raw(frames.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1)  # frames of one video
    assert latent.shape == (1, 12, FRAMES, SIZE // 2, SIZE // 2)
    assert torch.allclose(latent, want, atol=1e-6)
    decoded = captures["decoded"][0]
    assert decoded.shape == frames.shape and torch.allclose(decoded, frames, atol=1e-5)


def test_latent_preview_shows_the_block_means_of_the_video(toy_host, toy_dir):
    """ComfyUI's Latent2RGB previewer with the toy latent format's factors = the frame-0 image
    averaged over the codec's pixel blocks (what the previewer can show at latent resolution)."""
    import latent_preview
    import numpy as np
    import torch

    toy = reference_model(toy_dir, "test_edm")
    fmt = toy_glue().build_comfy_model(toy).get_model_object("latent_format")
    video = torch.rand(1, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(8)) * 2 - 1
    x0 = toy.codec.encode(video)  # model space, as the sampler's callback sees x0
    preview = latent_preview.Latent2RGBPreviewer(fmt.latent_rgb_factors, fmt.latent_rgb_factors_bias).decode_latent_to_preview(x0)
    b = toy.codec.block
    means = torch.nn.functional.avg_pool2d(video[0, :, 0], b).permute(1, 2, 0)  # [h, w, 3] in [-1, 1]
    want = ((means + 1) / 2 * 255).numpy()
    assert np.abs(np.asarray(preview).astype(np.float64) - want).max() <= 1.0  # uint8 truncation


# --- other CIL nodes on the toy model ----------------------------------------------------------

def test_timenoise_conditioning_noises_the_toy_image(toy_host, toy_dir, image_store, captures):
    """TimeNoise (quantile mode: a known β) reaches the toy's concat image, in model space."""
    import torch

    image_store["start"] = image = start_image(0)
    toy = reference_model(toy_dir, "test_edm")
    beta_m, q = 3.0, 0.5
    tn = {"class_type": "CIL_TimeNoiseConditioning", "inputs": {"model": ["1", 0], "beta_m": beta_m, "a": 1.0, "s": 1.0, "mode": "quantile",
                                                                "quantile": q, "seed": 0, "noise_shape": "per_element", "noise_clip_tokens": False}}
    extra = {"5": tn, "6": {"class_type": "CILTest_CaptureApplyModel", "inputs": {"model": ["5", 0], "key": "tn"}}}
    toy_host.run(toy_prompt("test_edm.safetensors", sampler=ksampler(steps=2, model_ref=["6", 0]), extra=extra))
    calls = captures["tn"]
    assert len(calls) == 2
    clean = image_latent(toy, image)[0]
    for call in calls:
        sigma = float(call["sigma"][0])
        t = toy.family.timenoise_time(torch.tensor([sigma], dtype=torch.float64)).item()
        beta = beta_m / (1 + math.exp(-(2 * t - 1)))  # median of β_m·sigmoid(N(2t − 1, 1))
        noise = call["c_concat"][0, :, 0] - clean
        # std of β·ε over 12·8·8 = 768 standard normals: relative error of the estimate ≈ 2.6 %
        assert float(noise.std()) == pytest.approx(beta, rel=0.12), (sigma, beta)


def test_leakage_probe_runs_on_the_toy_model(toy_host, captures):
    prompt = {
        "1": {"class_type": "CIL_ToyModelLoader", "inputs": {"model_name": "test_edm.safetensors"}},
        "2": {"class_type": "CIL_ToyWorldVideo", "inputs": {"model_name": "test_edm.safetensors", "index": 3}},
        "3": {"class_type": "CIL_ToyImageToVideo", "inputs": {"vae": ["1", 1], "start_image": ["2", 1], "width": SIZE, "height": SIZE,
                                                            "frames": FRAMES, "batch_size": 1, "crop": "center", "noise_level": 0.0, "noise_seed": 0}},
        "4": {"class_type": "CIL_LeakageProbe", "inputs": {"model": ["1", 0], "positive": ["3", 0], "negative": ["3", 1], "video_frames": ["2", 0],
                                                         "vae": ["1", 1], "grid_count": 3, "t_min": 0.3, "t_max": 1.0, "samples_per_t": 2, "seed": 0,
                                                         "cfg": 1.0, "start_rule": "plateau", "threshold": 0.5, "plateau_tolerance": 0.1, "max_batch": 8, "preview_t": "none", "pixel_metric": "off",
                                                         "filename_prefix": "toy/probe"}},
        "5": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["4", 2], "key": "M"}},
    }
    toy_host.run(prompt)
    assert 0.0 < captures["M"][0] <= 1.0


def test_toy_world_video_is_the_held_out_video(toy_host, toy_dir, captures):
    import torch
    from cil_toy.data import held_out_set

    prompt = {"1": {"class_type": "CIL_ToyWorldVideo", "inputs": {"model_name": "test_edm.safetensors", "index": 5}},
              "2": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["1", 0], "key": "frames"}},
              "3": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["1", 1], "key": "first"}}}
    toy_host.run(prompt)
    videos, _ = held_out_set(64, reference_model(toy_dir, "test_edm").world)
    want = ((videos[5] + 1) / 2).permute(1, 2, 3, 0)
    assert torch.allclose(captures["frames"][0], want) and torch.equal(captures["first"][0], captures["frames"][0][:1])


# --- clear errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [FRAMES + 2, FRAMES - 1])
def test_a_frame_count_the_model_was_not_trained_on_is_a_clear_error(toy_host, image_store, frames):
    image_store["start"] = start_image(0)
    with pytest.raises(AssertionError, match=f"trained on {FRAMES}-frame videos"):
        toy_host.run(toy_prompt("test_edm.safetensors", sampler=ksampler(steps=1), frames=frames))


def test_a_foreign_vae_is_a_clear_error(toy_host, image_store):
    image_store["start"] = start_image(0)
    prompt = toy_prompt("test_edm.safetensors", sampler=ksampler(steps=1))
    prompt["7"] = {"class_type": "CILTest_TinySVDCheckpoint", "inputs": {"ckpt_name": "svd.safetensors"}}
    prompt["3"]["inputs"]["vae"] = ["7", 2]
    with pytest.raises(AssertionError, match="connect the VAE output of Toy I2V Model Loader"):
        toy_host.run(prompt)


def test_unknown_model_name_fails_validation(toy_host):
    ok, _, _, node_errors = toy_host.validate({"1": {"class_type": "CIL_ToyModelLoader", "inputs": {"model_name": "nope.safetensors"}},
                                                "2": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["1", 3], "key": "x"}}})
    assert not ok or node_errors


# --- the workflow ------------------------------------------------------------------------------

def demo_prompt() -> dict:
    prompt = json.loads((WORKFLOWS / "api" / "toy_cil_demo.json").read_text())
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


def copy_example_png(host) -> None:
    import os

    source = Path(os.environ["COMFYUI_PATH"]) / "input" / "example.png"
    target = host.root / "input" / "example.png"
    if source.is_file():
        shutil.copyfile(source, target)
    else:  # a checkout without the bundled image: any RGB picture does
        import numpy as np
        from PIL import Image

        Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(target)


def saved_webps(host) -> list[Path]:
    return sorted((host.root / "output").glob("toy_cil_demo*.webp"))


def test_toy_demo_workflow_runs_on_a_test_model(toy_host):
    """The API twin of workflows/toy_cil_demo.json with the test model chosen in its loader(s)."""
    copy_example_png(toy_host)
    prompt = demo_prompt()
    for node in prompt.values():
        if "model_name" in node["inputs"]:
            node["inputs"]["model_name"] = "test_edm.safetensors"
        if node["class_type"] == "CIL_ToyImageToVideo":
            node["inputs"].update(width=SIZE, height=SIZE, frames=FRAMES)
        if node["class_type"] == "ImageScale":
            node["inputs"].update(width=SIZE, height=SIZE)
        if node["class_type"] in ("KSampler", "CIL_LateStartSampler"):
            node["inputs"]["steps"] = 3
    before = len(saved_webps(toy_host))
    toy_host.run(prompt)
    assert len(saved_webps(toy_host)) == before + 1


def test_toy_demo_workflow_runs_on_the_shipped_weights(toy_host, captures):
    """The workflow exactly as shipped (model, sizes, steps), when the shipped weights load; its
    Late Start Sampler gets the shipped stats (they fit the shipped model), not the naive fallback."""
    from cil_toy.weights_io import load_toy_model

    prompt = demo_prompt()
    loaders = [k for k, n in prompt.items() if n["class_type"] == "CIL_ToyModelLoader"]
    for key in loaders:
        load_toy_model(prompt[key]["inputs"]["model_name"])  # a shipped model that does not load is a failure
        prompt[f"9{key}"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": [key, 2], "key": "stats"}}
    copy_example_png(toy_host)
    before = len(saved_webps(toy_host))
    toy_host.run(prompt)
    assert len(saved_webps(toy_host)) == before + 1
    assert loaders and all(stats is not None for stats in captures["stats"]), "the shipped toy stats do not fit the shipped model"


def test_toy_probe_workflow_feeds_the_probe_m_into_the_late_start_sampler(toy_host, captures):
    """workflows/toy_leakage_probe.json as shipped (shipped weights): the Late Start Sampler runs
    at the probe's recommended_M, which is the M in the probe's saved JSON."""
    from cil_toy.weights_io import load_toy_model

    prompt = json.loads((WORKFLOWS / "api" / "toy_leakage_probe.json").read_text())
    prompt = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}
    load_toy_model("edm_baseline")  # a shipped model that does not load is a failure
    probe = next(k for k, n in prompt.items() if n["class_type"] == "CIL_LeakageProbe")
    sampler = next(k for k, n in prompt.items() if n["class_type"] == "CIL_LateStartSampler")
    assert prompt[sampler]["inputs"]["M"] == [probe, 2]
    prompt["90"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": [probe, 2], "key": "probe_M"}}
    prompt["91"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": [sampler, 1], "key": "sampler_info"}}
    before = len(sorted((toy_host.root / "output").glob("toy_leakage_probe*.webp")))
    toy_host.run(prompt)
    assert len(sorted((toy_host.root / "output").glob("toy_leakage_probe*.webp"))) == before + 1
    m = captures["probe_M"][-1]
    report = json.loads(sorted((toy_host.root / "output" / "cil_probe").glob("toy_edm_baseline_*_.json"))[-1].read_text())
    assert report["recommended_start"] == m and report["start_rule"] == "plateau"
    assert any(abs(r["t"] - m) < 1e-12 for r in report["rows"]) and m < 1.0, "the shipped baseline leaks: M < 1"
    assert captures["sampler_info"][-1].startswith(f"M={m:g},")


# --- the training node on the toy model (no downloads) -----------------------------------------------

def toy_training_prompt(mode: str, name: str, prefix: str, lora_file: str | None = None) -> dict:
    """Toy World Video → VAE Encode (training video) + Toy I2V Conditioning (its first frame) →
    TimeNoise Fine-Tune → KSampler from the trained MODEL (or the input one + a LoRA) → SaveLatent."""
    prompt = {
        "1": {"class_type": "CIL_ToyModelLoader", "inputs": {"model_name": "test_edm.safetensors"}},
        "2": {"class_type": "CIL_ToyWorldVideo", "inputs": {"model_name": "test_edm.safetensors", "index": 3}},
        "3": {"class_type": "CIL_ToyImageToVideo", "inputs": {"vae": ["1", 1], "start_image": ["2", 1], "width": SIZE, "height": SIZE,
                                                            "frames": FRAMES, "batch_size": 1, "crop": "center",
                                                            "noise_level": 0.0, "noise_seed": 0}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 1]}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["5", 0], "positive": ["3", 0], "negative": ["3", 1], "latent_image": ["3", 2],
                                                   "seed": 7, "steps": 3, "cfg": 1.0, "sampler_name": "euler", "scheduler": "karras",
                                                   "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": prefix}},
    }
    if lora_file:
        prompt["5"] = {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": lora_file, "strength_model": 1.0}}
    elif mode == "none":
        prompt["6"]["inputs"]["model"] = ["1", 0]
    else:
        prompt["5"] = {"class_type": "CIL_TimeNoiseTrain", "inputs": {
            "model": ["1", 0], "positive": ["3", 0], "latent": ["4", 0], "mode": mode, "steps": 2, "learning_rate": 5e-2,
            "weight_decay": 0.01, "timenoise": True, "beta_m": 0.0, "a": 5.0, "lora_rank": 2, "lora_alpha": 2.0,
            "batch_size": 1, "grad_accum": 1, "precision": "fp32", "gradient_checkpointing": False, "ema_decay": 0.0,
            "checkpoint_every": 1, "seed": 0, "output_name": name, "resume": False}}
    return prompt


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_the_training_node_trains_the_toy_model(toy_host, loras_dir, mode):
    """The TimeNoise Fine-Tune node on a toy model in a graph: two steps, a finite loss log, a MODEL
    that samples differently from the input; in LoRA mode the saved file, loaded by ComfyUI's own
    LoraLoaderModelOnly, gives the trained node's result; the input model is untouched."""
    import json

    import torch
    from tiny_video_models import saved_latent

    name = f"toy_train_{mode}"
    toy_host.run(toy_training_prompt("none", name, f"{name}_base"))
    toy_host.run(toy_training_prompt(mode, name, f"{name}_trained"))
    base, trained = saved_latent(toy_host, f"{name}_base"), saved_latent(toy_host, f"{name}_trained")
    assert torch.isfinite(trained).all() and float((trained - base).abs().max()) > 1e-4 * float(base.abs().max())
    run_dir = Path(toy_host.folder_paths.get_output_directory()) / "cil_train" / name
    rows = [json.loads(r) for r in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) and r["beta"] > 0 for r in rows)
    assert (loras_dir / f"{name}.safetensors").is_file() == (mode == "lora")
    if mode == "lora":
        toy_host.run(toy_training_prompt(mode, name, f"{name}_reload", lora_file=f"{name}.safetensors"))
        assert torch.allclose(saved_latent(toy_host, f"{name}_reload"), trained, rtol=1e-4, atol=1e-5)
    toy_host.run(toy_training_prompt("none", name, f"{name}_base_again"))
    assert torch.equal(saved_latent(toy_host, f"{name}_base_again"), base)
