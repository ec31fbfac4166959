"""Late Start Sampler, Late Start Sigmas + NOISE and Analytic-Init Latent in real ComfyUI graphs.

Tiny random models (conftest): SVD (EDM, v), a VP v-prediction ZSNR concat model, Wan 2.1 I2V
(rectified flow). The first state the sampler hands the model is captured with an extra
APPLY_MODEL wrapper and compared with an independent float64 formula.
"""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.host

SOURCES = {  # source node and its widgets
    "svd": ("CILTest_TinySVD", {"seed": 0, "frames": 4, "height": 8, "width": 8}),
    "vp": ("CILTest_TinyVP", {"seed": 0, "frames": 4, "height": 8, "width": 8}),
    "wan": ("CILTest_TinyWan", {"seed": 0, "frames": 3, "height": 4, "width": 4, "batch": 1, "clip_tokens": 0}),
}


def video_shape(kind: str, **overrides) -> tuple[int, int, int, int]:
    widgets = {**SOURCES[kind][1], **overrides}
    return (16 if kind == "wan" else 4, widgets["frames"], widgets["height"], widgets["width"])


def source(kind: str, **overrides) -> dict:
    node, widgets = SOURCES[kind]
    return {"class_type": node, "inputs": {**widgets, **overrides}}


def stats_inputs(stats_name: str | None, naive_mode: str = "empty_latent", fit: str = "strict") -> tuple[dict, dict]:
    """(extra prompt nodes, extra inputs) wiring a Load Analytic Stats node as node "2"."""
    if not stats_name:
        return {}, {"naive_mode": naive_mode, "fit": fit}
    return ({"2": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": stats_name}}},
            {"naive_mode": naive_mode, "fit": fit, "stats": ["2", 0]})


def one_node(model_ref, cond_ref, *, seed=1, steps=3, cfg=2.0, m=0.8, scheduler="cil_late_start", extra=None) -> dict:
    return {
        "class_type": "CIL_LateStartSampler",
        "inputs": {"model": model_ref, "positive": [cond_ref, 1], "negative": [cond_ref, 2], "latent_image": [cond_ref, 3],
                   "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": scheduler, "M": m, **(extra or {})},
    }


def pair_prompt(kind: str, prefix: str, *, stats_name=None, seed=1, steps=3, m=0.8, scheduler="cil_late_start",
                cfg=2.0, naive_mode="empty_latent", **source_overrides) -> dict:
    """One graph, two paths from one source: Late Start Sampler vs the composed custom-sampler path
    (Late Start Sigmas' SIGMAS + NOISE, CFGGuider, KSamplerSelect, SamplerCustomAdvanced)."""
    extra_nodes, extra = stats_inputs(stats_name, naive_mode)
    prompt = {"1": source(kind, **source_overrides), **extra_nodes}
    prompt["10"] = one_node(["1", 0], "1", seed=seed, steps=steps, cfg=cfg, m=m, scheduler=scheduler, extra=extra)
    prompt["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": f"{prefix}_one"}}
    prompt["20"] = {"class_type": "CIL_LateStartSigmas",
                    "inputs": {"model": ["1", 0], "steps": steps, "M": m, "scheduler": scheduler, "noise_seed": seed, **extra}}
    prompt["21"] = {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["1", 1], "negative": ["1", 2], "cfg": cfg}}
    prompt["22"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    prompt["23"] = {"class_type": "SamplerCustomAdvanced",
                    "inputs": {"noise": ["20", 1], "guider": ["21", 0], "sampler": ["22", 0], "sigmas": ["20", 0], "latent_image": ["1", 3]}}
    prompt["24"] = {"class_type": "SaveLatent", "inputs": {"samples": ["23", 0], "filename_prefix": f"{prefix}_custom"}}
    return prompt


@pytest.mark.parametrize(
    "kind,scheduler,with_stats",
    [("svd", "cil_late_start", True), ("vp", "cil_late_start", True), ("wan", "cil_late_start", True),
     ("svd", "karras", False), ("wan", "simple", True)],
)
def test_late_start_sampler_equals_composed_custom_sampler_path(tiny_host, write_stats, kind, scheduler, with_stats):
    import torch

    stats_name = write_stats(f"pair_{kind}.safetensors", video_shape(kind), tr_cov_d=0.4)[0] if with_stats else None
    prefix = f"pair_{kind}_{scheduler}_{int(with_stats)}"
    tiny_host.run(pair_prompt(kind, prefix, stats_name=stats_name, scheduler=scheduler))
    one, custom = tiny_host.load_latent(f"{prefix}_one"), tiny_host.load_latent(f"{prefix}_custom")
    assert torch.isfinite(one).all()
    assert torch.equal(one, custom), f"max |diff| {float((one - custom).abs().max())}"


@pytest.mark.parametrize("kind", ["svd", "wan"])
def test_results_are_deterministic_per_seed(tiny_host, write_stats, kind):
    import torch

    stats_name = write_stats(f"det_{kind}.safetensors", video_shape(kind))[0]
    outs = {}
    for tag, seed in (("a", 5), ("b", 5), ("c", 6)):
        extra_nodes, extra = stats_inputs(stats_name)
        prompt = {"1": source(kind), **extra_nodes, "10": one_node(["1", 0], "1", seed=seed, extra=extra),
                  "11": {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": f"det_{kind}_{tag}"}}}
        tiny_host.run(prompt)
        outs[tag] = tiny_host.load_latent(f"det_{kind}_{tag}")
    assert torch.equal(outs["a"], outs["b"])
    assert not torch.allclose(outs["a"], outs["c"])


# --- the initial state against the formula (Monte-Carlo) -----------------------------------------

def expected_scaling(kind: str, sigma: float) -> tuple[float, float]:
    """(a, b) with sampler state x = a·x0 + b·ε, written out independently of cil_core."""
    if kind == "wan":
        return 1.0 - sigma, sigma
    return 1.0, sigma  # EDM: x0 + σε; VP in ComfyUI's sigma space: x_t/α_t = x0 + σ'ε


def expected_start_sigma(kind: str, m: float, model_sampling) -> float:
    """σ_M in float64 from the model's own sampling object and the paper's definition of M."""
    if kind == "svd":
        lo, hi = math.log(float(model_sampling.sigma_min)), math.log(float(model_sampling.sigma_max))
        return math.exp(lo + m * (hi - lo))
    if kind == "vp":
        return float(model_sampling.sigmas[round(m * 1000) - 1])
    shift = float(model_sampling.shift)
    return shift * m / (1 + (shift - 1) * m)


BIG = {"svd": {"frames": 8, "height": 16, "width": 16}, "vp": {"frames": 8, "height": 16, "width": 16},
       "wan": {"frames": 4, "height": 8, "width": 8, "batch": 4}}


def first_call_state(host, captures, kind: str, m: float, seed: int, stats_name: str | None, naive_mode="empty_latent",
                     route="noise", vp_zsnr: bool | None = None):
    """x and σ of the first model call of a 1-step Late Start run (cfg 1: one cond chunk).
    ``vp_zsnr`` re-patches the model with ComfyUI's ModelSamplingDiscrete(v_prediction, zsnr) node."""
    extra_nodes, extra = stats_inputs(stats_name, naive_mode)
    prompt = {"1": source(kind, **BIG[kind]), **extra_nodes,
              "3": {"class_type": "CILTest_CaptureApplyModel", "inputs": {"model": ["1", 0], "key": route}}}
    if vp_zsnr is not None:
        prompt["4"] = {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["1", 0], "sampling": "v_prediction", "zsnr": vp_zsnr}}
        prompt["3"]["inputs"]["model"] = ["4", 0]
    if route == "noise":
        prompt["10"] = one_node(["3", 0], "1", seed=seed, steps=1, cfg=1.0, m=m, extra=extra)
        sink = ["10", 0]
    else:  # Analytic-Init Latent + Late Start Sigmas + SamplerCustom without added noise
        prompt["30"] = {"class_type": "CIL_AnalyticInitLatent", "inputs": {"model": ["1", 0], "latent": ["1", 3], "M": m, "seed": seed, **extra}}
        prompt["31"] = {"class_type": "CIL_LateStartSigmas", "inputs": {"model": ["1", 0], "steps": 1, "M": m, "scheduler": "cil_late_start", "noise_seed": 0, **extra}}
        prompt["32"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
        prompt["33"] = {"class_type": "SamplerCustom", "inputs": {"model": ["3", 0], "add_noise": False, "noise_seed": 0, "cfg": 1.0,
                                                              "positive": ["1", 1], "negative": ["1", 2], "sampler": ["32", 0],
                                                              "sigmas": ["31", 0], "latent_image": ["30", 0]}}
        sink = ["33", 0]
    prompt["99"] = {"class_type": "SaveLatent", "inputs": {"samples": sink, "filename_prefix": f"state_{kind}_{route}"}}
    captures.clear()
    host.run(prompt)
    call = captures[route][0]
    return call["x"].double(), float(call["sigma"].reshape(-1)[0])


def model_sampling_of(tiny_models, kind: str):
    return tiny_models[kind]().get_model_object("model_sampling")


def as_layout(kind: str, cfhw):
    """CFHW → the sampler's layout ([T, C, H, W] frames-as-batch, or [1, C, T, H, W])."""
    return cfhw.unsqueeze(0) if kind == "wan" else cfhw.permute(1, 0, 2, 3)


def check_gaussian(x, mean, std: float, what: str) -> None:
    """Residual z = (x − mean)/std must look standard normal: |mean(z)| < 5/√d, |std(z) − 1| < 5/√(2d)."""
    z = ((x - mean) / std).reshape(-1)
    d = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(d), f"{what}: residual mean {float(z.mean()):.4f} (d={d})"
    assert abs(float(z.std()) - 1) < 5 / math.sqrt(2 * d), f"{what}: residual std {float(z.std()):.4f} (d={d})"


@pytest.mark.parametrize("kind,m", [("svd", 0.43), ("vp", 0.2), ("wan", 0.1), ("svd", 0.8), ("wan", 0.6)])
def test_initial_state_matches_analytic_init_formula(tiny_host, captures, write_stats, tiny_models, kind, m):
    """x_M = a·E[x0] + sqrt(a²·v + b²)·ε in model space (paper Eq. 6 in ComfyUI's sigma space).
    Small M (σ_M ≈ 0.5) makes the mean term visible above the noise: the slope of x on E[x0]
    (= a) is then pinned to about ±1.5%; large M checks the variance."""
    import torch

    shape = video_shape(kind, **BIG[kind])
    v = 0.1
    name, stats = write_stats(f"mc_{kind}.safetensors", shape, tr_cov_d=v, scale=3.0)
    x, sigma = first_call_state(tiny_host, captures, kind, m, seed=11, stats_name=name)
    assert sigma == pytest.approx(expected_start_sigma(kind, m, model_sampling_of(tiny_models, kind)), rel=1e-5)
    a, b = expected_scaling(kind, sigma)
    mean = as_layout(kind, stats.mean.float().double()) * a
    check_gaussian(x, mean.expand_as(x), math.sqrt(a * a * v + b * b), f"{kind} Analytic-Init")
    # the mean really is a·E (not E, not 0): regress the state on E
    e = as_layout(kind, stats.mean).expand_as(x)
    slope = float(((x - x.mean()) * (e - e.mean())).sum() / ((e - e.mean()) ** 2).sum())
    assert slope == pytest.approx(a, abs=6 * math.sqrt(a * a * v + b * b) / math.sqrt(float(((e - e.mean()) ** 2).sum())))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize("kind", ["svd", "vp", "wan"])
@pytest.mark.parametrize("naive_mode", ["empty_latent", "paper"])
def test_naive_late_start_without_stats(tiny_host, captures, kind, naive_mode):
    """No stats: N(0, b²) ('empty_latent', what ComfyUI does) or N(0, a² + b²) ('paper': N(0, I) in paper space)."""
    m = 0.6
    x, sigma = first_call_state(tiny_host, captures, kind, m, seed=3, stats_name=None, naive_mode=naive_mode)
    a, b = expected_scaling(kind, sigma)
    std = b if naive_mode == "empty_latent" else math.sqrt(a * a + b * b)
    check_gaussian(x, 0.0, std, f"{kind} naive {naive_mode}")


@pytest.mark.parametrize("kind", ["svd", "vp", "wan"])
def test_analytic_init_latent_route_gives_the_same_state(tiny_host, captures, write_stats, kind):
    """Analytic-Init Latent + SamplerCustom(add_noise off) reaches the same first state as the NOISE route."""
    import torch

    name, _ = write_stats(f"route_{kind}.safetensors", video_shape(kind, **BIG[kind]), tr_cov_d=0.3)
    x_noise, s1 = first_call_state(tiny_host, captures, kind, 0.7, seed=4, stats_name=name, route="noise")
    x_latent, s2 = first_call_state(tiny_host, captures, kind, 0.7, seed=4, stats_name=name, route="latent")
    assert s1 == pytest.approx(s2, rel=1e-6)
    assert torch.allclose(x_noise, x_latent, rtol=1e-4, atol=1e-4), float((x_noise - x_latent).abs().max())


def comfy_eps(seed: int, shape):
    """The standard normal draw ComfyUI makes for a seed (comfy.sample.prepare_noise's convention)."""
    import torch

    return torch.randn(shape, generator=torch.manual_seed(seed), dtype=torch.float32, device="cpu").double()


@pytest.mark.parametrize("kind", ["svd", "vp", "wan"])
def test_initial_state_is_exactly_the_seeded_analytic_init_draw(tiny_host, captures, write_stats, kind):
    """Draw by draw: x_M = a·E + sqrt(a²v + b²)·ε with ε ComfyUI's own noise for the seed."""
    import torch

    v = 0.2
    name, stats = write_stats(f"exact_{kind}.safetensors", video_shape(kind, **BIG[kind]), tr_cov_d=v, scale=2.0)
    x, sigma = first_call_state(tiny_host, captures, kind, 0.5, seed=21, stats_name=name)
    a, b = expected_scaling(kind, sigma)
    expected = a * as_layout(kind, stats.mean.float().double()) + math.sqrt(a * a * v + b * b) * comfy_eps(21, x.shape)
    assert torch.allclose(x, expected, rtol=1e-5, atol=1e-5), float((x - expected).abs().max())


def test_start_at_sigma_max_accounts_for_max_denoise(tiny_host, captures, tiny_models):
    """M = 1 on a VP model without ZSNR (ComfyUI's ModelSamplingDiscrete node: σ_max ≈ 14.6) starts
    at σ_max, where ComfyUI scales the noise by sqrt(1+σ²) instead of σ (max_denoise). The state
    must still be exactly σ·ε ('empty_latent'), not sqrt(1+σ²)·ε (0.23 % larger)."""
    import torch

    x, sigma = first_call_state(tiny_host, captures, "vp", 1.0, seed=2, stats_name=None, vp_zsnr=False)
    assert sigma == pytest.approx(14.6146, rel=1e-4)
    expected = sigma * comfy_eps(2, x.shape)
    assert torch.allclose(x, expected, rtol=1e-5, atol=1e-5), float((x / expected).mean())
