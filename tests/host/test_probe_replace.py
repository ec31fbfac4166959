"""Leakage Probe on replacement models (Wan 2.2 TI2V-5B, LTX-Video): the start frame is held clean
exactly as the model's own sampler holds it (noise mask → per-frame / per-token timestep 0, the
clean frame put back before every call), and the motion of the frames after it is measured."""

from __future__ import annotations

import math

import pytest

import tiny_video_models as tvm  # tests/host is on sys.path (conftest)

pytestmark = pytest.mark.host

SIZES = {"wan22": (64, 64, 9), "ltxv": (128, 128, 17), "wan21_high": (32, 32, 9)}  # 3 latent frames of 4x4


def probe_graph(kind: str, prefix: str, *, reference: str = "frames", strength: float = 1.0, pixel_metric: str = "off") -> dict:
    """Reference: random frames, also encoded by VAEEncode (captured as "encoded"); ``reference``:
    'frames' (video_frames + vae), 'latent' (VAE Encode output), 'inplace' (LTXVImgToVideoInplace on
    it: the user's noise mask) or 'masked' (SetLatentNoiseMask on it)."""
    h, w, length = SIZES[kind]
    prompt = {
        "1": {"class_type": "CILTest_TinyVideoModel", "inputs": {"kind": kind, "seed": 0, "height": h, "width": w, "image_frames": 1}},
        "2": {"class_type": "CILTest_RandomImages", "inputs": {"seed": 4, "count": length, "height": h, "width": w}},
        "3": {"class_type": "ImageFromBatch", "inputs": {"image": ["2", 0], "batch_index": 0, "length": 1}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 1]}},
        "5": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["4", 0], "key": "encoded"}},
        "8": {"class_type": "CILTest_CaptureApplyModel", "inputs": {"model": ["1", 0], "key": "probe"}},
        "9": {"class_type": "CILTest_CaptureTimestep", "inputs": {"model": ["8", 0], "key": "probe"}},
    }
    pos, neg = ["1", 2], ["1", 3]
    if kind == "wan21_high":
        nodes, pos, neg, _ = tvm.conditioning_nodes(kind, "1", height=h, width=w, length=length)
        nodes["c1"]["inputs"]["start_image"] = ["3", 0]
        prompt.update(nodes)
    source = {"video_frames": ["2", 0], "vae": ["1", 1]}
    if reference == "latent":
        source = {"video_latent": ["4", 0]}
    elif reference == "inplace":
        prompt["6"] = {"class_type": "LTXVImgToVideoInplace", "inputs": {"vae": ["1", 1], "image": ["3", 0], "latent": ["4", 0],
                                                                          "strength": strength, "bypass": False}}
        source = {"video_latent": ["6", 0]}
    elif reference == "masked":
        prompt["6"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": w, "height": h}}
        prompt["7"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["4", 0], "mask": ["6", 0]}}
        source = {"video_latent": ["7", 0]}
    if pixel_metric != "off":
        source.setdefault("vae", ["1", 1])
    prompt["10"] = {"class_type": "CIL_LeakageProbe", "inputs": {
        "model": ["9", 0], "positive": pos, "negative": neg, **source, "grid_count": 2, "t_min": 0.5, "t_max": 1.0,
        "samples_per_t": 2, "seed": 7, "cfg": 2.0, "start_rule": "plateau", "threshold": 0.5, "plateau_tolerance": 0.1,
        "max_batch": 2, "preview_t": "none", "pixel_metric": pixel_metric, "filename_prefix": prefix}}
    return prompt


def load_report(host, prefix: str) -> dict:
    import json

    files = sorted((host.root / "output").glob(f"{prefix}_[0-9][0-9][0-9][0-9][0-9]_.json"))
    assert files, f"no probe report {prefix}"
    return json.loads(files[-1].read_text())


def energy(video) -> float:
    """Mean squared difference of consecutive frames of [C, F, h, w], float64."""
    v = video.double()
    return float(((v[:, 1:] - v[:, :-1]) ** 2).mean())


@pytest.mark.parametrize("kind,reference", [("wan22", "frames"), ("ltxv", "frames"), ("ltxv", "latent")])
def test_start_frame_is_held_clean_and_frames_after_it_are_measured(video_host, captures, kind, reference):
    import torch

    tvm.require(kind)
    prefix = f"rprobe_{kind}_{reference}"
    video_host.run(probe_graph(kind, prefix, reference=reference))
    y = tvm.tiny_model(kind).get_model_object("latent_format").process_in(captures["encoded"][0]["samples"].float())
    calls = captures["probe"]
    assert len(calls) == 2 and all(sorted(c["cond_or_uncond"]) == [0, 1] for c in calls)  # 4 videos, 2 per call, cfg 2
    for i, call in enumerate(calls):
        x = call["x"]
        assert torch.equal(x[:, :, :1], y[:, :, :1].expand_as(x[:, :, :1])), f"call {i}: the start frame is not the clean reference"
        assert not torch.equal(x[:, :, 1:], y[:, :, 1:].expand_as(x[:, :, 1:])), "later frames are noised"
        mask = call["kwargs"]["denoise_mask"]
        assert float(mask[:, :, :1].abs().max()) == 0.0 and float(mask[:, :, 1:].min()) == 1.0
        t = tvm.TIMESTEPS["probe"][i].reshape(x.shape[0], x.shape[2], -1)
        assert float(t[:, 0].abs().max()) == 0.0 and float(t[:, 1:].min()) > 0.0, "the network reads timestep 0 on the held frame"
    report = load_report(video_host, prefix)
    assert report["meta"]["measured_frames"].startswith("latent frames 1..2 of 3")
    assert report["metrics"]["latent_energy"]["reference_motion"] == pytest.approx(energy(y[0, :, 1:]), rel=1e-6)
    assert report["metrics"]["latent_energy"]["reference_motion"] != pytest.approx(energy(y[0]), rel=1e-3)


def test_ltxv_user_noise_mask_sets_the_strength(video_host, captures):
    """LTXVImgToVideoInplace(strength 0.6) on the encoded video: the probe passes its noise mask (0.4 on
    frame 0): the model input there is 0.4·x_t + 0.6·y, the rest measured."""
    import torch

    tvm.require("ltxv")
    tvm.require_node(video_host, "LTXVImgToVideoInplace")
    video_host.run(probe_graph("ltxv", "rprobe_inplace", reference="inplace", strength=0.6))
    report = load_report(video_host, "rprobe_inplace")
    assert "latent frames 1..2 of 3" in report["meta"]["measured_frames"] and "strength 0.6" in report["meta"]["measured_frames"]
    for call in captures["probe"]:
        mask = call["kwargs"]["denoise_mask"]
        assert torch.allclose(mask[:, :, :1], torch.full_like(mask[:, :, :1], 0.4)) and float(mask[:, :, 1:].min()) == 1.0


def test_pixel_metric_skips_the_decoded_start_frame(video_host, captures):
    from cil_media.flow import optical_flow_available

    tvm.require("wan22")
    assert optical_flow_available(), "the host venv needs opencv-python-headless (README, Host tests)"
    video_host.run(probe_graph("wan22", "rprobe_pixel", pixel_metric="auto"))
    report = load_report(video_host, "rprobe_pixel")
    assert "pixel_flow" in report["metrics"] and report["meta"]["pixel_metric"] == "on"
    assert all(math.isfinite(r["pixel_flow_ratio_mean"]) for r in report["rows"])


def test_concat_model_refuses_a_masked_reference(video_host, captures):
    tvm.require("wan21_high")
    with pytest.raises(AssertionError) as info:  # the host's PromptFailed
        video_host.run(probe_graph("wan21_high", "rprobe_masked", reference="masked"))
    assert "carries a noise_mask" in str(info.value) and "through the conditioning" in str(info.value)
