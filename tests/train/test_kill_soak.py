"""Kill soak: 20 SIGKILLs at random moments of a tiny ``cil train`` run, each followed by ``--resume``.

Every run is a child forked from a fork server that has torch and the CLI imported (a start costs
milliseconds, so the soak takes seconds; ``bounded_run.Forks``). Each kill picks a
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
import random
import signal
import time
from pathlib import Path

import bounded_run
import pytest
from safetensors import safe_open

from cil_train.checkpoint import NAME, latest_checkpoint, load_checkpoint

KILLS, MAX_RUNS, STEPS = 20, 80, 12


@pytest.fixture()
def forks():
    made = bounded_run.Forks()
    yield made
    made.close()


def wait(proc, timeout: float, until=lambda: False) -> int | None:
    """Exit status of the fork ``proc`` (negative: killed by that signal); None if it still runs
    after ``timeout`` seconds or once ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.exitcode is not None:
            return proc.exitcode
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


def test_twenty_sigkills_then_resume_equal_one_run(tmp_path, make_config, video_folder, forks):
    def start(config: Path, resume: bool, log: Path, die_at: str = ""):
        return forks.start(["train", "--config", str(config), "--no-progress", *(["--resume"] if resume else [])], log, die_at)

    def config(name: str) -> Path:
        cfg = make_config(tmp_path / name, video_folder, data={"batch_size": 2}, optim={"grad_accum": 1},
                          run={"steps": STEPS, "checkpoint_every": 1, "keep_checkpoints": 2})
        (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
        return tmp_path / f"{name}.json"

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
        proc = start(soaked, resume=True, log=tmp_path / "soaked.log")
        if target <= STEPS:  # wait for that checkpoint, then part of a step
            code = wait(proc, 120, until=lambda: checkpointed(out) >= target)
            code = wait(proc, rng.uniform(0.0, per_step)) if code is None else code
        else:
            code = wait(proc, rng.uniform(0.0, last_alone))
        if code is None:
            proc.kill()
            code = wait(proc, 60)  # (0 when it ended by itself just before the kill)
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
