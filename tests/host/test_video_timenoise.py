"""TimeNoise Conditioning on the model classes people run today (tiny_video_models), conditioned by
ComfyUI's own nodes: at a given σ (mode "quantile": a deterministic β) exactly the image changes, by
the right amount, and nothing else (mask channels, padding frames, the other rows).

Two one-step branches from one source and one noise, with and without TimeNoise; cfg 2, so every
call holds a cond and an uncond chunk. The model input is captured by an APPLY_MODEL wrapper after
ours; the timestep the network itself receives by a DIFFUSION_MODEL wrapper (after ComfyUI's
process_timestep: Wan 2.2's per-frame, LTX-Video's per-token mask·t).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

import tiny_video_models as tvm  # tests/host is on sys.path (conftest)

pytestmark = pytest.mark.host

SIZES = {"wan22": (64, 64, 9), "ltxv": (128, 128, 17), "hunyuan15": (64, 64, 9), "kandinsky5": (32, 32, 9),
         "wan21_high": (32, 32, 9)}
BETA_M, A, S, Q = 2.0, 5.0, 1.0, 0.7


def expected_beta(t: float) -> float:
    """q-quantile of β_s = β_m·sigmoid(N(2t^a − 1, s²)), float64 (paper Sec. 4.2, official mu_t)."""
    return BETA_M / (1.0 + math.exp(-(2.0 * t**A - 1.0 + S * NormalDist().inv_cdf(Q))))


def branches(kind: str, sigma: float, *, strength: float = 1.0) -> dict:
    h, w, length = SIZES[kind]
    prompt = {"1": {"class_type": "CILTest_TinyVideoModel", "inputs": {"kind": kind, "seed": 0, "height": h, "width": w, "image_frames": 1}},
              "2": {"class_type": "KarrasScheduler", "inputs": {"steps": 1, "sigma_max": sigma, "sigma_min": 0.001, "rho": 7.0}},
              "3": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
              "4": {"class_type": "RandomNoise", "inputs": {"noise_seed": 3}},
              "10": {"class_type": "CIL_TimeNoiseConditioning", "inputs": {
                  "model": ["1", 0], "beta_m": BETA_M, "a": A, "s": S, "mode": "quantile", "quantile": Q, "seed": 9,
                  "noise_shape": "per_element", "noise_clip_tokens": False}}}
    nodes, pos, neg, lat = tvm.conditioning_nodes(kind, "1", height=h, width=w, length=length, strength=strength)
    prompt.update(nodes)
    for key, model_ref, base in (("plain", ["1", 0], 20), ("tn", ["10", 0], 30)):
        prompt[str(base)] = {"class_type": "CILTest_CaptureApplyModel", "inputs": {"model": model_ref, "key": key}}
        prompt[str(base + 1)] = {"class_type": "CILTest_CaptureTimestep", "inputs": {"model": [str(base), 0], "key": key}}
        prompt[str(base + 2)] = {"class_type": "CFGGuider", "inputs": {"model": [str(base + 1), 0], "positive": pos, "negative": neg, "cfg": 2.0}}
        prompt[str(base + 3)] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["4", 0], "guider": [str(base + 2), 0],
                                                                                   "sampler": ["3", 0], "sigmas": ["2", 0], "latent_image": lat}}
        prompt[str(base + 4)] = {"class_type": "SaveLatent", "inputs": {"samples": [str(base + 3), 0], "filename_prefix": f"vtn_{kind}_{key}"}}
    return prompt


def run_pair(host, captures, kind: str, sigma: float, **kw):
    captures.clear()
    tvm.TIMESTEPS.clear()
    host.run(branches(kind, sigma, **kw))
    plain, tn = captures["plain"][0], captures["tn"][0]
    assert sorted(plain["cond_or_uncond"]) == [0, 1] and plain["cond_or_uncond"] == tn["cond_or_uncond"]
    return plain, tn, tvm.TIMESTEPS["plain"][0], tvm.TIMESTEPS["tn"][0]


def rows_of(call, flag: int) -> list[int]:
    flags = call["cond_or_uncond"]
    chunk = call["x"].shape[0] // len(flags)
    return [r for i, f in enumerate(flags) if f == flag for r in range(i * chunk, (i + 1) * chunk)]


def same(a, b, what: str) -> None:
    import torch

    if torch.is_tensor(a):
        assert torch.is_tensor(b) and torch.equal(a, b), f"{what} changed"
    else:
        assert a == b, f"{what} changed"


def assert_only(plain, tn, changed: set[str]) -> None:
    """Everything the model receives is bit-identical except the named inputs."""
    for key in ("x", "sigma", "c_concat", "c_crossattn"):
        if key not in changed:
            same(plain[key], tn[key], key)
    assert plain["kwargs"].keys() == tn["kwargs"].keys()
    for key in plain["kwargs"]:
        if key not in changed:
            same(plain["kwargs"][key], tn["kwargs"][key], key)


def z_standard(z, what: str) -> None:
    """z ~ N(0, 1): |mean| < 5/√d, |std − 1| < 5/√(2d)."""
    z = z.double().reshape(-1)
    d = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(d), f"{what}: mean {float(z.mean()):.4f} (d={d})"
    assert abs(float(z.std()) - 1) < 5 / math.sqrt(2 * d), f"{what}: std {float(z.std()):.4f} (d={d})"


def per_frame(timestep, batch: int, frames: int):
    """The network's timestep as [batch, frames, tokens per frame] (frame-major, as both patchify)."""
    return timestep.reshape(batch, frames, -1).double()


@pytest.mark.parametrize("kind,sigma", [("wan22", 0.6), ("wan22", 0.95), ("ltxv", 0.7)])
def test_replacement_models_hold_frame_at_flow_level_s_with_timestep_s(video_host, captures, kind, sigma):
    """Held frame: x → (1 − s)·y + s·ε with s = β/(1 + β), the same in cond and uncond rows; its
    noise-mask entry → s/σ, so the network receives timestep(s) there; every other element, frame,
    timestep and input bit-identical."""
    import torch

    tvm.require(kind)
    plain, tn, t_plain, t_tn = run_pair(video_host, captures, kind, sigma)
    beta = expected_beta(sigma)
    s = beta / (1.0 + beta)
    assert_only(plain, tn, {"x", "denoise_mask"})
    x0, x1 = plain["x"].double(), tn["x"].double()
    assert torch.equal(tn["x"][:, :, 1:], plain["x"][:, :, 1:]), "generated frames must not change"
    eps = (x1[:, :, :1] - (1.0 - s) * x0[:, :, :1]) / s
    cond, uncond = rows_of(tn, 0), rows_of(tn, 1)
    assert torch.equal(tn["x"][cond, :, :1], tn["x"][uncond, :, :1]), "one noisy frame per video, cond and uncond alike"
    z_standard(eps[cond], f"{kind} held frame at sigma={sigma}: (x − (1−s)·y)/s")
    m0, m1 = plain["kwargs"]["denoise_mask"].double(), tn["kwargs"]["denoise_mask"].double()
    assert float(m0[:, :, :1].abs().max()) == 0.0 and torch.equal(m1[:, :, 1:], m0[:, :, 1:])
    assert torch.allclose(m1[:, :, :1], torch.full_like(m1[:, :, :1], s / sigma), rtol=1e-6)
    batch, frames = x0.shape[0], x0.shape[2]
    ms = tvm.tiny_model(kind).get_model_object("model_sampling")
    want = float(ms.timestep(torch.tensor(s, dtype=torch.float64)))
    p, q = per_frame(t_plain, batch, frames), per_frame(t_tn, batch, frames)
    assert float(p[:, 0].abs().max()) == 0.0, "without TimeNoise the held frame's timestep is 0"
    assert torch.allclose(q[:, 0], torch.full_like(q[:, 0], want), rtol=1e-5), f"held timestep {q[:, 0].flatten()[:3].tolist()} vs {want}"
    assert torch.equal(q[:, 1:], p[:, 1:]), "generated frames keep their timestep"


def test_ltxv_partly_held_frame_is_left_as_the_user_set_it(video_host, captures):
    """strength 0.5 (noise mask 0.5 on frame 0): no frame is fully held, TimeNoise changes nothing."""
    import torch

    tvm.require("ltxv")
    plain, tn, t_plain, t_tn = run_pair(video_host, captures, "ltxv", 0.7, strength=0.5)
    assert float(plain["kwargs"]["denoise_mask"][:, :, :1].min()) == pytest.approx(0.5)
    assert_only(plain, tn, set())
    assert torch.equal(t_plain, t_tn)


@pytest.mark.parametrize("kind,image,mask", [("hunyuan15", slice(0, 32), 32), ("wan21_high", slice(4, 20), 0)])
def test_concat_models_noise_only_the_image_channels_on_the_start_frame(video_host, captures, kind, image, mask):
    """HunyuanVideo 1.5 (32 image ch + 1 mask ch) and Wan 2.2 A14B / 2.1 (4 mask ch + 16 image ch):
    cond rows' image channels on the frame the mask marks get β·ε; mask channels, the other
    frames (zeros for Hunyuan, the gray-frame latent for Wan) and uncond rows stay bit-identical."""
    import torch

    tvm.require(kind)
    sigma = 0.8
    plain, tn, t_plain, t_tn = run_pair(video_host, captures, kind, sigma)
    beta = expected_beta(sigma)
    assert_only(plain, tn, {"c_concat"})
    assert torch.equal(t_plain, t_tn)
    old, new = plain["c_concat"], tn["c_concat"]
    cond, uncond = rows_of(tn, 0), rows_of(tn, 1)
    assert torch.equal(new[uncond], old[uncond])
    assert torch.equal(new[:, mask], old[:, mask]), "the mask channel stays"
    assert torch.equal(old[cond, mask, 0], torch.ones_like(old[cond, mask, 0])) and float(old[cond, mask, 1:].abs().max()) == 0
    assert torch.equal(new[cond, image, 1:], old[cond, image, 1:]), "frames the mask leaves free stay"
    z_standard((new[cond, image, 0] - old[cond, image, 0]) / beta, f"{kind} image channels at sigma={sigma}")


def test_kandinsky5_refuses_when_it_runs_with_its_reason(video_host, captures):
    from cil_comfy.image_slots import SLOTS

    tvm.require("kandinsky5")
    with pytest.raises(AssertionError) as info:  # the host's PromptFailed
        run_pair(video_host, captures, "kandinsky5", 0.8)
    message = str(info.value)
    assert "CIL_TimeNoiseConditioning" in message and "cannot run on Kandinsky 5" in message
    assert SLOTS["Kandinsky5"].refuse in message
    node_line = next(part for part in message.split(" | ") if "CIL_TimeNoiseConditioning" in part)
    assert "\n" not in node_line.strip(), f"one line: {node_line!r}"
