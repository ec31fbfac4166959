"""Fixtures for the trainer tests (no ComfyUI): small videos written with PyAV, configs. Tests that start
processes run them with ``bounded_run`` (tests/support)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def write_video(path: Path, frames: int = 12, width: int = 40, height: int = 32, fps: int = 8,
                codec: str = "mpeg4", seed: int = 0, index_stripe: bool = False) -> Path:
    """A moving random texture. ``index_stripe``: the top rows encode the frame index as grey
    level 20·i (so tests can read back which source frames were picked)."""
    av = pytest.importorskip("av", reason="PyAV is needed to write test videos (pip install av)")
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "mpeg4":
            stream.options = {"qscale": "2"}
        for i in range(frames):
            image = np.roll(base, 2 * i, axis=1).copy()
            if index_stripe:
                image[:, :] = 20 * i
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def video_folder(tmp_path_factory) -> Path:
    """4 good videos, one file that is not a video, one MP4 cut to a third (unreadable: its index
    is at the end) and a 6 s MKV cut to a third (opens and claims 5 s, but its frames stop
    early: a clip from its middle runs out of frames)."""
    folder = tmp_path_factory.mktemp("videos")
    for i in range(4):
        write_video(folder / f"good{i}.mp4", seed=i)
    (folder / "not_a_video.mp4").write_bytes(b"definitely not a video" * 64)
    whole = write_video(folder.parent / "whole.mp4", seed=9).read_bytes()
    (folder / "cut.mp4").write_bytes(whole[: len(whole) // 3])
    mkv = write_video(folder.parent / "whole.mkv", frames=48, seed=8).read_bytes()
    (folder / "half.mkv").write_bytes(mkv[: len(mkv) // 3])
    return folder


BAD_VIDEOS = ("not_a_video.mp4", "cut.mp4", "half.mkv")


def tiny_config(output_dir: Path, source: Path | str = "", **sections) -> dict:
    """A config dict for the built-in tiny model (overrides per section)."""
    cfg = {
        "mode": "lora",
        "model": {"kind": "tiny", "family": "edm", "tiny_width": 16, "tiny_depth": 2, "tiny_downsample": 4},
        "data": {"source": str(source), "frames": 4, "height": 16, "width": 16, "workers": 0, "batch_size": 2,
                 "clip_start": "random"},
        "lora": {"rank": 4, "alpha": 4.0},
        "optim": {"lr": 1e-3, "grad_accum": 2, "ema_decay": 0.9},
        "run": {"steps": 6, "checkpoint_every": 2, "output_dir": str(output_dir), "progress": False, "seed": 3},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    return cfg


@pytest.fixture()
def generator():
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def make_video():
    return write_video


@pytest.fixture(scope="session")
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def bad_videos():
    return BAD_VIDEOS


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """The tiny models here are far too small for intra-op threads: on a shared CPU, OpenMP
    synchronisation makes a 2-thread step ~100× slower. Restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
