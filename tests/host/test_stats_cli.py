"""``cil stats estimate`` / ``cil stats merge`` against the node, with ComfyUI's own loaders.

* The CLI (a VAE file read by ComfyUI's VAE loader + the SVD latent format; or a checkpoint read by
  ComfyUI's checkpoint loader) equals the Estimate Analytic Stats node on the same folder, VAE and
  size to 1e-10; broken and too-short videos are skipped, listed in the file and on stderr.
* Kill soak: 10 SIGKILLs at random moments of an estimate (plus one cut just before the output's
  rename), each followed by ``--resume``: the result is bit for bit the one-pass result, the
  file is readable after every kill, and no temporary file of ours is left.
* 2 processes (torchrun, gloo) = 1 process to 1e-12 relative; 3 shard files merged = one pass.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import bounded_run  # tests/support is on sys.path (tests/conftest.py)
import pytest
import torch
from test_stats import write_video  # tests/host is on sys.path (conftest)
from tiny_models import init_weights

from cil_core.stats_io import load_stats
from cil_tools import cli

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parents[2]
FRAMES, SIZE = 4, 32


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """9 good videos (one in a subfolder, one of another size), a too-short one and a broken file."""
    import numpy as np

    folder = tmp_path_factory.mktemp("stats_videos")
    rng = np.random.default_rng(3)
    (folder / "sub").mkdir()
    for i in range(9):
        size = (6, 40, 48, 3) if i == 4 else (6, SIZE, SIZE, 3)
        write_video(folder / ("sub" if i == 7 else "") / f"v{i}.mkv", rng.integers(0, 255, size, dtype=np.uint8), "ffv1")
    write_video(folder / "short.mkv", rng.integers(0, 255, (2, SIZE, SIZE, 3), dtype=np.uint8), "ffv1")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video")
    return folder


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory, host) -> Path:
    """The tiny SD VAE of the test nodes (TAESD body, seed 0) as a file for ComfyUI's VAE loader."""
    import comfy.taesd.taesd as taesd
    from safetensors.torch import save_file

    body = taesd.TAESD(latent_channels=4)
    init_weights(body, 0)
    path = tmp_path_factory.mktemp("vae") / "tiny_vae.safetensors"
    save_file({k: v.contiguous() for k, v in body.state_dict().items()}, str(path))
    return path


def estimate_args(videos: Path, vae_file: Path, out: Path, *extra: str) -> list[str]:
    return ["stats", "estimate", "--videos", str(videos), "--vae", str(vae_file), "--model-kind", "svd", "--frames", str(FRAMES),
            "--width", str(SIZE), "--height", str(SIZE), "--out", str(out), "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def one_pass(tmp_path_factory, videos, vae_file, host):
    out = tmp_path_factory.mktemp("one_pass") / "all.safetensors"
    assert cli.main(estimate_args(videos, vae_file, out)) == 0
    return load_stats(out)


def assert_same(a, b, rel: float) -> None:
    assert a.count == b.count and a.shape == b.shape
    for x, y in ((a.mean, b.mean), (a.m2, b.m2)):
        scale = float(y.abs().max())
        assert float((x - y).abs().max()) <= rel * scale, float((x - y).abs().max()) / scale
    assert a.tr_cov_d == pytest.approx(b.tr_cov_d, rel=rel, abs=0)


def test_cli_equals_the_node_and_lists_skipped_videos(tiny_host, stats_dir, videos, one_pass, capsys, vae_file, tmp_path):
    tiny_host.run({
        "1": {"class_type": "CILTest_TinySVDCheckpoint", "inputs": {"ckpt_name": "svd.safetensors"}},
        "2": {"class_type": "CIL_EstimateAnalyticStats", "inputs": {
            "model": ["1", 0], "vae": ["1", 2], "frames": FRAMES, "width": SIZE, "height": SIZE, "folder": str(videos),
            "frame_stride": 1, "max_videos": 0}},
        "3": {"class_type": "CIL_SaveAnalyticStats", "inputs": {"stats": ["2", 0], "filename": "node", "overwrite": True}},
    })
    node = load_stats(stats_dir / "node.safetensors")
    assert one_pass.count == 9
    assert_same(one_pass, node, rel=1e-10)
    meta = one_pass.meta
    assert meta["latent_format"] == node.meta["latent_format"] == "SD15" and meta["status"] == "complete"
    assert sorted(json.loads(meta["videos"])) == sorted(["sub/v7.mkv"] + [f"v{i}.mkv" for i in range(9) if i != 7])
    assert set(json.loads(meta["skipped"])) == {"short.mkv", "broken.mp4"}
    assert cli.main(estimate_args(videos, vae_file, tmp_path / "again.safetensors")) == 0
    err = capsys.readouterr().err
    assert "skipped short.mkv" in err and "skipped broken.mp4" in err


def test_checkpoint_loader_path_gives_the_same_stats(svd_host, videos, vae_file, one_pass, tmp_path):
    """--checkpoint: ComfyUI's checkpoint loader gives the model (latent format, family) and VAE."""
    import comfy.sd
    from test_train_svd import tiny_svd_detectable  # tests/host: the tiny SVD made detectable by ComfyUI's loader
    from tiny_models import tiny_sd_vae, tiny_svd

    ckpt = tmp_path / "tiny_svd.safetensors"
    comfy.sd.save_checkpoint(str(ckpt), tiny_svd(0), clip=None, vae=tiny_sd_vae(0), clip_vision=None, metadata={})
    with tiny_svd_detectable():
        assert cli.main(["stats", "estimate", "--videos", str(videos), "--checkpoint", str(ckpt), "--frames", str(FRAMES),
                         "--width", str(SIZE), "--height", str(SIZE), "--out", str(tmp_path / "c.safetensors"), "--device", "cpu"]) == 0
    got = load_stats(tmp_path / "c.safetensors")
    assert_same(got, one_pass, rel=1e-10)
    assert json.loads(got.meta["family"])["family"] == "edm"


def fork_estimate(args: list[str], log: Path, die_at: str = "") -> int:
    pid = os.fork()
    if pid == 0:  # the child: run the command, leave without the parent's exit handlers
        code = 3
        try:
            bounded_run.child_io(log, die_at)
            code = cli.main(args)
        finally:
            os._exit(code)
    return pid


def wait(pid: int, timeout: float, until=lambda: False) -> int | None:
    """Exit status of ``pid`` (negative: the signal that killed it); None if it still runs after
    ``timeout`` seconds or once ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline or until():
            return None
        time.sleep(0.002)


def count_in(path: Path) -> int:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return int(fh.metadata()["count"])
    except Exception:  # not written yet
        return 0


def test_kill_soak_then_resume_equals_one_pass(host, videos, vae_file, tmp_path):
    """Each kill waits for 0-2 more videos in the file, then a random part of one video's time;
    once all are in, a random moment of the last run that ended by itself (the final rewrite)."""
    out_ref, out = tmp_path / "ref" / "s.safetensors", tmp_path / "soak" / "s.safetensors"
    log = tmp_path / "log.txt"
    args = estimate_args(videos, vae_file, out, "--every", "1")
    began = time.monotonic()
    assert wait(fork_estimate(estimate_args(videos, vae_file, out_ref, "--every", "1"), log), 300) == 0, log.read_text()[-2000:]
    last_alone = time.monotonic() - began
    per_video, total = last_alone / 11, load_stats(out_ref).count

    assert wait(fork_estimate(args, log, die_at=out.name), 300) == -signal.SIGKILL
    assert [p.name for p in out.parent.iterdir()] and not out.exists()  # killed with its first write's temporary file
    rng, kills, runs, at = random.Random(11), 0, 0, []
    while kills < 10:
        runs += 1
        assert runs <= 60, f"only {kills} kills landed in 60 runs"
        target = count_in(out) + rng.randint(0, 2)
        began = time.monotonic()
        pid = fork_estimate(args + ["--resume"], log)
        if target <= total:
            code = wait(pid, 120, until=lambda: count_in(out) >= target)
            code = wait(pid, rng.uniform(0.0, per_video)) if code is None else code
        else:
            code = wait(pid, rng.uniform(0.0, last_alone))
        if code is None:
            os.kill(pid, signal.SIGKILL)
            code = wait(pid, 60)
        if code == -signal.SIGKILL:
            kills += 1
            at.append(count_in(out))
            if out.exists():
                assert load_stats(out).m2 is not None  # never a half-written file
        else:
            assert code == 0, log.read_text()[-2000:]
            last_alone = time.monotonic() - began
    assert wait(fork_estimate(args + ["--resume"], log), 300) == 0
    print(f"videos in the file at each kill: {at}")
    assert min(at) < total and max(at) == total
    ref, got = load_stats(out_ref), load_stats(out)
    assert torch.equal(got.mean, ref.mean) and torch.equal(got.m2, ref.m2) and got.count == ref.count
    assert got.meta["videos"] == ref.meta["videos"] and got.meta["skipped"] == ref.meta["skipped"]
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_two_processes_and_three_merged_shards_equal_one_pass(host, videos, vae_file, one_pass, tmp_path, capsys):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "cil_tools.cli",
            *estimate_args(videos, vae_file, tmp_path / "two.safetensors", "--every", "2")]
    done = subprocess.run(argv, cwd=REPO, env=env | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    two = load_stats(tmp_path / "two.safetensors")
    assert_same(two, one_pass, rel=1e-12)
    assert sorted(json.loads(two.meta["videos"])) == sorted(json.loads(one_pass.meta["videos"]))
    assert two.meta["skipped"] == one_pass.meta["skipped"]

    parts = [tmp_path / f"part{k}.safetensors" for k in range(3)]
    for k, part in enumerate(parts):
        assert cli.main(estimate_args(videos, vae_file, part, "--shard", f"{k}/3")) == 0
    assert cli.main(["stats", "merge", *map(str, parts), "--out", str(tmp_path / "merged.safetensors")]) == 0
    merged = load_stats(tmp_path / "merged.safetensors")
    assert_same(merged, one_pass, rel=1e-12)
    assert merged.meta["videos_sha256"] == one_pass.meta["videos_sha256"]
    fewer = tmp_path / "frames2.safetensors"
    assert cli.main(estimate_args(videos, vae_file, fewer, "--shard", "0/3")[:-2] + ["--frames", "2", "--shard", "0/3"]) == 0
    capsys.readouterr()
    assert cli.main(["stats", "merge", str(fewer), str(parts[1]), "--out", str(tmp_path / "refused.safetensors")]) == 2
    err = capsys.readouterr().err
    assert str(fewer) in err and str(parts[1]) in err and "differ in latent shape" in err
