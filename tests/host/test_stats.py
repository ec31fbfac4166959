"""Estimate / Save / Load Analytic Stats in real graphs: values against an independent float64
computation from ComfyUI's own VAEEncode, folder streaming with bad files, cancel, validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

SD15_SCALE = 0.18215  # the tiny SVD's latent format (comfy.latent_formats.SD15)


def estimate_prompt(source: dict, *, frames: int, filename: str, vae_ref=None, extra: dict | None = None) -> dict:
    prompt = {
        "1": {"class_type": "CILTest_TinySVDCheckpoint", "inputs": {"ckpt_name": "svd.safetensors"}},
        "2": source,
        "3": {"class_type": "CIL_EstimateAnalyticStats",
              "inputs": {"model": ["1", 0], "vae": vae_ref or ["1", 2], "frames": frames, "width": 0, "height": 0,
                         "folder": "", "frame_stride": 1, "max_videos": 0, "images": ["2", 0], **(extra or {})}},
        "4": {"class_type": "CIL_SaveAnalyticStats", "inputs": {"stats": ["3", 0], "filename": filename, "overwrite": True}},
    }
    return prompt


def independent_stats(latents_raw, frames: int):
    """E[x0] (CFHW) and tr Cov/d of clips of ``frames`` consecutive latents, float64, population variance."""
    z = latents_raw.double() * SD15_SCALE  # [N, C, h, w] → model space
    n = z.shape[0] // frames
    clips = z[: n * frames].reshape(n, frames, *z.shape[1:]).permute(0, 2, 1, 3, 4)  # [n, C, F, h, w]
    mean = clips.mean(dim=0)
    return mean, float(((clips - mean) ** 2).mean(dim=0).mean())


def test_estimate_from_images_matches_vae_encode(tiny_host, captures, stats_dir):
    import torch
    from cil_core.stats_io import load_stats

    prompt = estimate_prompt({"class_type": "CILTest_RandomImages", "inputs": {"seed": 1, "count": 12, "height": 32, "width": 32}},
                             frames=4, filename="est_images")
    prompt["5"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}}
    prompt["6"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["5", 0], "key": "latents"}}
    tiny_host.run(prompt)
    stats = load_stats(stats_dir / "est_images.safetensors")
    mean, tr = independent_stats(captures["latents"][0]["samples"], 4)
    assert stats.shape == (4, 4, 4, 4) and stats.count == 3
    assert torch.allclose(stats.mean, mean, rtol=1e-5, atol=1e-6)
    assert stats.tr_cov_d == pytest.approx(tr, rel=1e-5)
    assert stats.meta["latent_format"] == "SD15" and stats.meta["frames"] == "4"
    assert stats.m2 is not None, "our files keep the Welford state so an estimate can be resumed"


def write_video(path: Path, frames, codec: str) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=8)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def decode_first(path: Path, n: int):
    import av
    import torch

    with av.open(str(path)) as container:
        out = [torch.from_numpy(f.to_ndarray(format="rgb24")) for _, f in zip(range(n), container.decode(video=0))]
    return torch.stack(out).float() / 255.0


def test_estimate_from_a_folder_streams_and_skips_bad_files(tiny_host, captures, stats_dir, image_store, tmp_path):
    """Folder mode = images mode on the same decoded frames; a corrupt and a too-short file are skipped and reported."""
    import numpy as np
    import torch
    from cil_core.stats_io import load_stats

    folder = tmp_path / "videos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    good = [("a.mkv", "ffv1"), ("b.mp4", "libx264"), ("c.mkv", "ffv1")]
    for name, codec in good:
        write_video(folder / name, rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), codec)
    write_video(folder / "short.mkv", rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8), "ffv1")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    image_store["frames"] = torch.cat([decode_first(folder / name, 4) for name, _ in good])

    folder_prompt = estimate_prompt({"class_type": "CILTest_RandomImages", "inputs": {"seed": 0, "count": 1, "height": 8, "width": 8}},
                                    frames=4, filename="est_folder", extra={"folder": str(folder)})
    folder_prompt["3"]["inputs"].pop("images")
    folder_prompt["7"] = {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["3", 1], "key": "info"}}
    tiny_host.run(folder_prompt)
    tiny_host.run(estimate_prompt({"class_type": "CILTest_StoredImages", "inputs": {"key": "frames"}}, frames=4, filename="est_same"))
    from_folder, from_images = load_stats(stats_dir / "est_folder.safetensors"), load_stats(stats_dir / "est_same.safetensors")
    assert from_folder.count == 3
    assert torch.allclose(from_folder.mean, from_images.mean, rtol=1e-5, atol=1e-6)
    assert from_folder.tr_cov_d == pytest.approx(from_images.tr_cov_d, rel=1e-5)
    info = captures["info"][0]
    assert "3 video(s) used" in info and "short.mkv" in info and "broken.mp4" in info


def test_estimate_is_cancellable(tiny_host, captures, stats_dir):
    """ComfyUI's cancel pressed during the first encode stops the estimate before the next clip."""
    import comfy.model_management

    prompt = estimate_prompt({"class_type": "CILTest_RandomImages", "inputs": {"seed": 2, "count": 16, "height": 32, "width": 32}},
                             frames=4, filename="est_cancel", vae_ref=["8", 0])
    prompt["8"] = {"class_type": "CILTest_InterruptingVAE", "inputs": {"vae": ["1", 2], "key": "encodes"}}
    try:
        with pytest.raises(AssertionError, match="interrupted"):
            tiny_host.run(prompt)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert len(captures["encodes"]) == 1, "no clip may be encoded after cancel"
    assert not (stats_dir / "est_cancel.safetensors").exists()


def test_save_load_roundtrip_and_numbered_names(tiny_host, captures, stats_dir, write_stats):
    import torch

    name, stats = write_stats("orig.safetensors", (4, 2, 4, 4), tr_cov_d=0.25)
    prompt = {
        "1": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": name}},
        "2": {"class_type": "CIL_SaveAnalyticStats", "inputs": {"stats": ["1", 0], "filename": "sub/copy", "overwrite": False}},
        "3": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["2", 0], "key": "path"}},
    }
    tiny_host.run(prompt)
    tiny_host.run(prompt)
    first, second = (Path(p) for p in captures["path"])
    assert first == stats_dir / "sub" / "copy.safetensors" and second == stats_dir / "sub" / "copy_00001.safetensors"
    from cil_core.stats_io import load_stats

    back = load_stats(second)
    assert torch.allclose(back.mean, stats.mean.float().double()) and back.tr_cov_d == pytest.approx(0.25)
    assert not list(stats_dir.rglob("*.tmp")), "atomic writes leave no temporary files"


def test_load_accepts_official_files(tiny_host, captures, stats_dir, official_stats):
    import shutil

    shutil.copy(official_stats("dynamicrafter_576x1024.safetensors"), stats_dir / "dc1024.safetensors")
    tiny_host.run({"1": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": "dc1024.safetensors"}},
                   "2": {"class_type": "CILTest_CaptureValue", "inputs": {"value": ["1", 1], "key": "info"}}})
    assert "official file [C,F,H,W]=[4,16,72,128]" in captures["info"][0]
    assert math.isclose(float(captures["info"][0].split("tr Cov/d=")[1].split(",")[0]), 0.3031, rel_tol=1e-3)


def validation_details(host, prompt) -> str:
    ok, error, _, node_errors = host.validate(prompt)
    assert not ok, "the prompt should not validate"
    return str(node_errors)


def test_bad_stats_inputs_are_validation_errors(tiny_host, stats_dir, tmp_path):
    (stats_dir / "garbage.safetensors").write_bytes(b"not safetensors at all")
    for name, expected in (("missing.safetensors", "not in the cil_stats folder"), ("garbage.safetensors", "not a readable safetensors")):
        details = validation_details(tiny_host, {
            "1": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": name}},
            "2": {"class_type": "CIL_SaveAnalyticStats", "inputs": {"stats": ["1", 0], "filename": "x", "overwrite": False}}})
        assert expected in details
    details = validation_details(tiny_host, {
        "0": {"class_type": "CILTest_RandomImages", "inputs": {"seed": 0, "count": 4, "height": 8, "width": 8}},
        "1": {"class_type": "CILTest_TinySVDCheckpoint", "inputs": {"ckpt_name": "x"}},
        "2": {"class_type": "CIL_EstimateAnalyticStats", "inputs": {"model": ["1", 0], "vae": ["1", 2], "frames": 4, "width": 0, "height": 0,
                                                                 "folder": str(tmp_path / "nope"), "frame_stride": 1, "max_videos": 0}},
        "3": {"class_type": "CIL_SaveAnalyticStats", "inputs": {"stats": ["2", 0], "filename": "../../evil", "overwrite": False}}})
    assert "is not a folder" in details and "relative name" in details
