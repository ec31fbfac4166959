"""TimeNoise Conditioning: the conditional input changes by the right amount at a given σ, and
nothing else changes. The model's inputs are captured by an extra APPLY_MODEL wrapper placed
after ours, in a one-step SamplerCustomAdvanced run at a chosen σ, next to a branch without
TimeNoise; cfg 2, so every call holds a cond and an uncond chunk."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

pytestmark = pytest.mark.host

SOURCES = {
    "svd": ("CILTest_TinySVD", {"seed": 0, "frames": 4, "height": 16, "width": 16}),
    "vp": ("CILTest_TinyVP", {"seed": 0, "frames": 4, "height": 16, "width": 16}),
    "wan": ("CILTest_TinyWan", {"seed": 0, "frames": 3, "height": 8, "width": 8, "batch": 1, "clip_tokens": 5}),
}


def expected_beta(beta_m: float, a: float, s: float, q: float, t: float) -> float:
    """q-quantile of β_s = β_m·sigmoid(N(2t^a − 1, s²)), float64 (paper Sec. 4.2, official mu_t)."""
    y = 2.0 * t**a - 1.0 + s * NormalDist().inv_cdf(q)
    return beta_m / (1.0 + math.exp(-y))


def branches_prompt(kind: str, sigma: float, *, timenoise: dict, seed: int = 3) -> dict:
    """Branch "plain" (no TimeNoise) and branch "tn", one Euler step from σ to 0 each."""
    node, widgets = SOURCES[kind]
    prompt = {
        "1": {"class_type": node, "inputs": dict(widgets)},
        "2": {"class_type": "KarrasScheduler", "inputs": {"steps": 1, "sigma_max": sigma, "sigma_min": 0.001, "rho": 7.0}},
        "3": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "4": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "10": {"class_type": "CIL_TimeNoiseConditioning", "inputs": {"model": ["1", 0], **timenoise}},
    }
    for key, model_ref, base in (("plain", ["1", 0], 20), ("tn", ["10", 0], 30)):
        prompt[str(base)] = {"class_type": "CILTest_CaptureApplyModel", "inputs": {"model": model_ref, "key": key}}
        prompt[str(base + 1)] = {"class_type": "CFGGuider", "inputs": {"model": [str(base), 0], "positive": ["1", 1], "negative": ["1", 2], "cfg": 2.0}}
        prompt[str(base + 2)] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["4", 0], "guider": [str(base + 1), 0], "sampler": ["3", 0], "sigmas": ["2", 0], "latent_image": ["1", 3]}}
        prompt[str(base + 3)] = {"class_type": "SaveLatent", "inputs": {"samples": [str(base + 2), 0], "filename_prefix": f"tn_{kind}_{key}"}}
    return prompt


def timenoise_widgets(**kw) -> dict:
    widgets = {"beta_m": 15.0, "a": 5.0, "s": 1.0, "mode": "quantile", "quantile": 0.7, "seed": 9,
               "noise_shape": "per_element", "noise_clip_tokens": False}
    widgets.update(kw)
    return widgets


def captured_pair(host, captures, kind, sigma, **kw):
    captures.clear()
    host.run(branches_prompt(kind, sigma, timenoise=timenoise_widgets(**kw)))
    plain, tn = captures["plain"][0], captures["tn"][0]
    assert plain["cond_or_uncond"] == tn["cond_or_uncond"] and sorted(plain["cond_or_uncond"]) == [0, 1]
    return plain, tn


def rows_of(call, flag: int) -> list[int]:
    """Row indices of the chunks whose cond_or_uncond entry is ``flag`` (0 cond, 1 uncond)."""
    flags = call["cond_or_uncond"]
    chunk = call["x"].shape[0] // len(flags)
    return [r for i, f in enumerate(flags) if f == flag for r in range(i * chunk, (i + 1) * chunk)]


def assert_same(a, b, what: str) -> None:
    import torch

    assert type(a) is type(b), what
    if torch.is_tensor(a):
        assert torch.equal(a, b), f"{what} changed"
    else:
        assert a == b, f"{what} changed"


def assert_unchanged_except(plain, tn, allowed: set[str]) -> None:
    for key in ("x", "sigma", "c_concat", "c_crossattn"):
        if key not in allowed:
            assert_same(plain[key], tn[key], key)
    assert plain["kwargs"].keys() == tn["kwargs"].keys()
    for key in plain["kwargs"]:
        if key not in allowed:
            assert_same(plain["kwargs"][key], tn["kwargs"][key], key)


def assert_noise_std(diff, beta: float, what: str) -> None:
    """diff = β·ε with ε ~ N(0, I): |std(diff)/β − 1| < 5/√(2d), |mean| < 5β/√d."""
    d = diff.numel()
    ratio = float(diff.double().std()) / beta
    assert abs(ratio - 1) < 5 / math.sqrt(2 * d), f"{what}: std/β = {ratio:.4f} over {d} values"
    assert abs(float(diff.double().mean())) < 5 * beta / math.sqrt(d), f"{what}: mean {float(diff.mean()):.4g}"


@pytest.mark.parametrize("sigma", [300.0, 650.0])
def test_svd_concat_and_augmentation_follow_timenoise(tiny_host, captures, tiny_models, sigma):
    import torch

    plain, tn = captured_pair(tiny_host, captures, "svd", sigma)
    beta = expected_beta(15.0, 5.0, 1.0, 0.7, sigma / 700.0)
    assert_unchanged_except(plain, tn, {"c_concat", "y"})
    cond, uncond = rows_of(tn, 0), rows_of(tn, 1)
    assert torch.equal(tn["c_concat"][uncond], plain["c_concat"][uncond]), "uncond concat must stay as it is (zeros for SVD)"
    diff = tn["c_concat"][cond] - plain["c_concat"][cond]
    assert all(torch.equal(diff[i], diff[0]) for i in range(diff.shape[0])), "one ε per video, repeated over its frames"
    assert_noise_std(diff[0], beta, f"SVD concat at sigma={sigma}")
    svd = tiny_models["svd"]().model
    want = svd.encode_adm(fps=6, motion_bucket_id=127, augmentation_level=beta)
    assert torch.allclose(tn["kwargs"]["y"][cond], want.expand(len(cond), -1), atol=1e-5), "y must carry augmentation level β_s"
    assert torch.equal(tn["kwargs"]["y"][uncond], plain["kwargs"]["y"][uncond])
    assert torch.allclose(plain["kwargs"]["y"][cond], svd.encode_adm(fps=6, motion_bucket_id=127, augmentation_level=0.0).expand(len(cond), -1), atol=1e-6)


def test_svd_clip_tokens_and_scalar_noise_options(tiny_host, captures):
    import torch

    plain, tn = captured_pair(tiny_host, captures, "svd", 500.0, noise_shape="per_sample_scalar", noise_clip_tokens=True)
    assert_unchanged_except(plain, tn, {"c_concat", "y", "c_crossattn"})
    cond, uncond = rows_of(tn, 0), rows_of(tn, 1)
    diff = tn["c_concat"][cond] - plain["c_concat"][cond]
    assert torch.allclose(diff, diff.reshape(-1)[0].expand_as(diff), atol=1e-6), "per_sample_scalar: one number per video"
    assert float(diff.abs().max()) > 0
    assert not torch.equal(tn["c_crossattn"][cond], plain["c_crossattn"][cond])
    assert torch.equal(tn["c_crossattn"][uncond], plain["c_crossattn"][uncond])


def test_vp_model_concat_follows_timenoise_at_discrete_time(tiny_host, captures, tiny_models):
    import torch

    table = tiny_models["vp"]().get_model_object("model_sampling").sigmas
    sigma = float(table[699])  # official t/1000 with the integer index: t = 0.699
    plain, tn = captured_pair(tiny_host, captures, "vp", sigma, beta_m=100.0)
    # the tiny VP model is an SVD_img2vid BaseModel with a VP schedule: it keeps SVD's augmentation embedding in y
    assert_unchanged_except(plain, tn, {"c_concat", "y"})
    cond, uncond = rows_of(tn, 0), rows_of(tn, 1)
    assert torch.equal(tn["c_concat"][uncond], plain["c_concat"][uncond])
    diff = tn["c_concat"][cond] - plain["c_concat"][cond]
    assert_noise_std(diff[0], expected_beta(100.0, 5.0, 1.0, 0.7, 0.699), "VP concat")


@pytest.mark.parametrize("sigma", [0.3, 0.9])
def test_wan_image_channels_on_conditioned_frames_follow_timenoise(tiny_host, captures, sigma):
    import torch

    plain, tn = captured_pair(tiny_host, captures, "wan", sigma, beta_m=2.0, noise_clip_tokens=True)
    beta = expected_beta(2.0, 5.0, 1.0, 0.7, sigma)
    assert_unchanged_except(plain, tn, {"c_concat", "clip_fea"})
    cond, uncond = rows_of(tn, 0), rows_of(tn, 1)
    new, old = tn["c_concat"], plain["c_concat"]
    assert torch.equal(new[uncond], old[uncond])
    assert torch.equal(new[cond, :4], old[cond, :4]), "the 4 mask channels stay"
    assert torch.equal(old[cond, 0, 0], torch.ones_like(old[cond, 0, 0])), "frame 0 is the conditioned frame"
    assert torch.equal(new[cond, 4:, 1:], old[cond, 4:, 1:]), "frames the mask leaves free stay"
    assert_noise_std(new[cond, 4:, 0] - old[cond, 4:, 0], beta, f"Wan image latent at sigma={sigma}")
    fea_new, fea_old = tn["kwargs"]["clip_fea"], plain["kwargs"]["clip_fea"]
    assert torch.equal(fea_new[uncond], fea_old[uncond])
    assert_noise_std(fea_new[cond] - fea_old[cond], beta, "Wan clip_fea")


def test_sampled_mode_is_deterministic_per_seed(tiny_host, captures):
    import torch

    runs = {}
    for tag, seed in (("a", 4), ("b", 4), ("c", 5)):
        _, tn = captured_pair(tiny_host, captures, "svd", 400.0, mode="sampled", seed=seed)
        runs[tag] = tn
    assert torch.equal(runs["a"]["c_concat"], runs["b"]["c_concat"])
    assert torch.equal(runs["a"]["kwargs"]["y"], runs["b"]["kwargs"]["y"])
    assert not torch.equal(runs["a"]["c_concat"], runs["c"]["c_concat"])
