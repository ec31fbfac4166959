"""Estimate Analytic Stats for replacement models (Wan 2.2 TI2V-5B, LTX-Video): E[x0] and tr Cov/d on
the generated latent frames only (frame 0 holds the start image), recorded as skip_frames; a concat
model keeps every frame. Values against an independent float64 computation from ComfyUI's VAEEncode
of each clip; the Late Start Sampler then starts the generated frames at a·E[x0] from such a file."""

from __future__ import annotations

import math

import pytest

import tiny_video_models as tvm  # tests/host is on sys.path (conftest)

pytestmark = pytest.mark.host

SIZES = {"wan22": (64, 64, 9), "ltxv": (128, 128, 17), "hunyuan15": (64, 64, 9)}
CLIPS = 3


def estimate_prompt(kind: str, filename: str) -> dict:
    h, w, length = SIZES[kind]
    prompt = {
        "1": {"class_type": "CILTest_TinyVideoModel", "inputs": {"kind": kind, "seed": 0, "height": h, "width": w, "image_frames": 1}},
        "2": {"class_type": "CILTest_RandomImages", "inputs": {"seed": 5, "count": CLIPS * length, "height": h, "width": w}},
        "3": {"class_type": "CIL_EstimateAnalyticStats", "inputs": {
            "model": ["1", 0], "vae": ["1", 1], "frames": length, "width": 0, "height": 0, "folder": "", "frame_stride": 1,
            "max_videos": 0, "images": ["2", 0]}},
        "4": {"class_type": "CIL_SaveAnalyticStats", "inputs": {"stats": ["3", 0], "filename": filename, "overwrite": True}},
        "5": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["3", 1], "key": "info"}},
    }
    for i in range(CLIPS):  # each clip encoded on its own by ComfyUI's VAEEncode
        prompt[f"6{i}"] = {"class_type": "ImageFromBatch", "inputs": {"image": ["2", 0], "batch_index": i * length, "length": length}}
        prompt[f"7{i}"] = {"class_type": "VAEEncode", "inputs": {"pixels": [f"6{i}", 0], "vae": ["1", 1]}}
        prompt[f"8{i}"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": [f"7{i}", 0], "key": "clips"}}
    return prompt


def independent(kind: str, clips, skip: int):
    """E[x0] [C, F − skip, h, w] and tr Cov/d (population variance) over the clips, float64, model space."""
    import torch

    fmt = tvm.tiny_model(kind).get_model_object("latent_format")
    z = torch.stack([fmt.process_in(c["samples"].float())[0, :, skip:].double() for c in clips])
    mean = z.mean(dim=0)
    return mean, float(((z - mean) ** 2).mean())


@pytest.mark.parametrize("kind,skip", [("wan22", 1), ("ltxv", 1), ("hunyuan15", 0)])
def test_stats_cover_the_generated_frames_of_replacement_models(video_host, captures, stats_dir, kind, skip):
    import torch
    from cil_core.stats_io import load_stats

    tvm.require(kind)
    video_host.run(estimate_prompt(kind, f"est_{kind}"))
    stats = load_stats(stats_dir / f"est_{kind}.safetensors")
    clips = captures["clips"]
    assert len(clips) == CLIPS
    frames = clips[0]["samples"].shape[2]
    mean, tr = independent(kind, clips, skip)
    assert stats.shape == (tvm.LATENT_CHANNELS[kind], frames - skip, *clips[0]["samples"].shape[-2:]) and stats.count == CLIPS
    assert torch.allclose(stats.mean, mean, rtol=1e-5, atol=1e-6)
    assert stats.tr_cov_d == pytest.approx(tr, rel=1e-5)
    info = captures["info"][0]
    if skip:
        assert stats.meta["skip_frames"] == str(skip)
        assert "latent frames 1.." in stats.meta["note"] and stats.meta["note"] in info
    else:
        assert "skip_frames" not in stats.meta and "note" not in stats.meta


def test_late_start_from_estimated_stats_starts_generated_frames_at_their_mean(video_host, captures, stats_dir):
    """The file just estimated (skip_frames 1) drives Analytic-Init on WAN22: at the first call the
    generated frames are a·E[x0] + sqrt(a²v + b²)·ε (z-scores), the held frame is the user's."""
    import torch
    from cil_core.stats_io import load_stats

    tvm.require("wan22")
    video_host.run(estimate_prompt("wan22", "est_wan22_ls"))
    stats = load_stats(stats_dir / "est_wan22_ls.safetensors")
    h, w, length = SIZES["wan22"]
    prompt = {"1": {"class_type": "CILTest_TinyVideoModel", "inputs": {"kind": "wan22", "seed": 0, "height": h, "width": w, "image_frames": 1}},
              "2": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": "est_wan22_ls.safetensors"}},
              "3": {"class_type": "CILTest_CaptureApplyModel", "inputs": {"model": ["1", 0], "key": "first"}},
              "4": {"class_type": "Wan22ImageToVideoLatent", "inputs": {"vae": ["1", 1], "width": w, "height": h, "length": length,
                                                                         "batch_size": 8, "start_image": ["1", 4]}}}
    prompt["10"] = {"class_type": "CIL_LateStartSampler", "inputs": {
        "model": ["3", 0], "positive": ["1", 2], "negative": ["1", 3], "latent_image": ["4", 0], "seed": 2, "steps": 1, "cfg": 1.0,
        "sampler_name": "euler", "scheduler": "cil_late_start", "M": 0.1, "naive_mode": "empty_latent", "fit": "strict", "stats": ["2", 0]}}
    prompt["11"] = {"class_type": "SaveLatent", "inputs": {"samples": ["10", 0], "filename_prefix": "est_wan22_ls"}}
    prompt["12"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["4", 0], "key": "latent"}}
    video_host.run(prompt)
    call = captures["first"][0]
    x, sigma = call["x"].double(), float(call["sigma"].reshape(-1)[0])
    a, b, v = 1.0 - sigma, sigma, stats.tr_cov_d
    gen = x[:, :, 1:]
    z = ((gen - a * stats.mean.double().unsqueeze(0)) / math.sqrt(a * a * v + b * b)).reshape(-1)
    d = z.numel()
    assert abs(float(z.mean())) < 5 / math.sqrt(d) and abs(float(z.std()) - 1) < 5 / math.sqrt(2 * d), (float(z.mean()), float(z.std()), d)
    user = tvm.tiny_model("wan22").get_model_object("latent_format").process_in(captures["latent"][0]["samples"].float())
    assert torch.equal(x[:, :, :1], user[:, :, :1].double())
