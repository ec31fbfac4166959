"""Kill soak: 20 SIGKILLs at random moments of a tiny ``cil train`` run, each followed by ``--resume``.

Every run is a child forked from this process (torch, and the torch._dynamo that AdamW imports,
are already loaded: a start costs milliseconds, so the soak takes seconds). Each kill picks a
random checkpoint 0–2 steps past the newest one, waits for it, then a random part of one step's
wall time: kills fall in start-up, decoding, steps, checkpoint writes, plots and log rewrites.
Once every step is done the delay is random within the last run that ended by itself, so later
kills hit the final export and clean-up. Random kills rarely cut a short write, so each kind of
file the run writes is also cut once on purpose, just before its temporary file is renamed: the
config, the skip list and a checkpoint before the random kills, the logs, the plot and the LoRA
export after them. After each kill every file named like a checkpoint must
load; a run that ends by itself must succeed. At the end the log, the skip list, the checkpoints
and the LoRA equal an uninterrupted run's exactly, and the output folder holds exactly the same
names (no temporary file of ours is left).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
from safetensors import safe_open

import torch

from cil_tools import cli
from cil_train.checkpoint import NAME, latest_checkpoint, load_checkpoint

KILLS, MAX_RUNS, STEPS = 20, 80, 12


def die_renaming(name: str) -> None:
    """In this (child) process: SIGKILL itself when an atomic write is about to rename its finished
    temporary file over ``name`` — the last moment such a write can be cut."""
    rename = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            os.kill(os.getpid(), signal.SIGKILL)
        return rename(src, dst, *args, **kwargs)

    os.replace = replace


CHILDREN: list[int] = []  # every child forked here; the test kills the ones still alive when it ends


def start(config: Path, resume: bool, log: Path, die_at: str = "") -> int:
    """Fork a child that runs ``cil train`` (stdout and stderr appended to ``log``, so no child holds
    pytest's output open; killed at the rename of ``die_at`` when given); returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: run the command, then leave without any of the parent's exit handlers
        code = 3
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            if die_at:
                die_renaming(die_at)
            code = cli.main(["train", "--config", str(config), "--no-progress", *(["--resume"] if resume else [])])
        finally:
            os._exit(code)
    CHILDREN.append(pid)
    return pid


@pytest.fixture()
def no_child_outlives_the_test():
    yield
    while CHILDREN:
        pid = CHILDREN.pop()
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except ProcessLookupError:  # ended by itself in the meantime
            pass


def wait(pid: int, timeout: float, until=lambda: False) -> int | None:
    """Exit status of ``pid`` (negative: killed by that signal); None if it still runs after
    ``timeout`` seconds or once ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            if pid in CHILDREN:
                CHILDREN.remove(pid)
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline or until():
            return None
        time.sleep(0.002)


def checkpointed(out: Path) -> int:
    path = latest_checkpoint(out)
    return int(NAME.match(path.name).group(1)) if path is not None else 0


def listing(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*"))


def assert_checkpoints_load(out: Path) -> None:
    folder = out / "checkpoints"
    for p in folder.iterdir() if folder.is_dir() else []:
        if NAME.match(p.name):
            assert load_checkpoint(p)[1]["step"] == int(NAME.match(p.name).group(1))


def tensors(path: Path) -> tuple[dict, dict]:
    with safe_open(str(path), framework="pt") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()


def test_twenty_sigkills_then_resume_equal_one_run(tmp_path, make_config, video_folder, no_child_outlives_the_test):
    def config(name: str) -> Path:
        cfg = make_config(tmp_path / name, video_folder, data={"batch_size": 2}, optim={"grad_accum": 1},
                          run={"steps": STEPS, "checkpoint_every": 1, "keep_checkpoints": 2})
        (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
        return tmp_path / f"{name}.json"

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # imports what every child's optimizer needs, once
    straight, soaked = config("straight"), config("soaked")
    out, ref = tmp_path / "soaked", tmp_path / "straight"
    began = time.monotonic()
    assert wait(start(straight, False, tmp_path / "straight.log"), 300) == 0, (tmp_path / "straight.log").read_text()[-3000:]
    last_alone = time.monotonic() - began
    per_step = last_alone / STEPS

    def cut(die_at: str, resume: bool = True) -> None:
        code = wait(start(soaked, resume, tmp_path / "soaked.log", die_at), 120)
        assert code == -signal.SIGKILL, f"the run did not reach the write of {die_at} (exit {code})"
        assert any(p.name.startswith(f".{die_at}.") for p in out.rglob("*.tmp")), die_at
        assert_checkpoints_load(out)

    cut("config.json", resume=False)
    for name in ("skipped_videos.txt", "step_00000003.safetensors"):
        cut(name)
    rng, kills, runs, at = random.Random(14), 0, 0, []
    while kills < KILLS:
        runs += 1
        assert runs <= MAX_RUNS, f"only {kills} kills landed in {MAX_RUNS} runs"
        target = checkpointed(out) + rng.randint(0, 2)
        began = time.monotonic()
        pid = start(soaked, resume=True, log=tmp_path / "soaked.log")
        if target <= STEPS:  # wait for that checkpoint, then part of a step
            code = wait(pid, 120, until=lambda: checkpointed(out) >= target)
            code = wait(pid, rng.uniform(0.0, per_step)) if code is None else code
        else:
            code = wait(pid, rng.uniform(0.0, last_alone))
        if code is None:
            os.kill(pid, signal.SIGKILL)
            code = wait(pid, 60)  # (0 when it ended by itself just before the kill)
        if code == -signal.SIGKILL:
            kills += 1
            at.append(checkpointed(out))
            assert_checkpoints_load(out)
        else:
            assert code == 0, (tmp_path / "soaked.log").read_text()[-3000:]
            last_alone = time.monotonic() - began
    for name in ("log.jsonl", "log.csv", "loss.png", "lora.safetensors"):
        cut(name)
    assert wait(start(soaked, True, tmp_path / "soaked.log"), 300) == 0, (tmp_path / "soaked.log").read_text()[-3000:]
    print(f"{kills} kills in {runs} runs; newest checkpoint at each kill: {at}")
    assert min(at) < STEPS // 2 and at.count(STEPS) >= 2  # kills landed mid-run and after the last step

    assert listing(out) == listing(ref)
    strip = lambda p: [{k: v for k, v in json.loads(line).items() if k != "step_time"} for line in p.read_text().splitlines()]  # noqa: E731
    assert strip(out / "log.jsonl") == strip(ref / "log.jsonl")
    assert (out / "skipped_videos.txt").read_text() == (ref / "skipped_videos.txt").read_text()
    ours, theirs = tensors(out / "lora.safetensors"), tensors(ref / "lora.safetensors")
    assert ours[1] == theirs[1] and ours[0].keys() == theirs[0].keys()
    assert all((ours[0][k] == theirs[0][k]).all() for k in ours[0])
    for name in (p.name for p in (ref / "checkpoints").iterdir()):
        a, b = tensors(out / "checkpoints" / name), tensors(ref / "checkpoints" / name)
        assert a[0].keys() == b[0].keys() and all((a[0][k] == b[0][k]).all() for k in a[0])
