"""Kill ``cil train`` with SIGKILL mid-run and ``--resume``: the loss sequence equals an
uninterrupted run's, and no checkpoint file is ever half-written.

The runs are real subprocesses of the ``cil`` command on the built-in tiny model, decoding a
video folder (with broken files); one resumed run decodes in 2 DataLoader worker processes
(the worker count is not part of the trajectory, so it must not change the losses). Kills:
* ``kill_after_step`` — the process SIGKILLs itself right after logging a step that is not
  checkpointed (CIL_TRAIN_FAULT test hook), so the resumed run must redo those steps;
* ``kill_in_checkpoint`` — SIGKILL while a checkpoint is being written: the temporary file is
  cut to half its size, never renamed;
* an external SIGKILL of the whole process group at an arbitrary moment after the third step; that
  run is held before its last step (the Trainer's ``check_cancel`` hook sleeps), so it can only end
  by the kill, however fast the machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bounded_run
import pytest
from safetensors.torch import load_file

from cil_train.checkpoint import NAME, load_checkpoint

STEPS, EVERY = 10, 4


def write_config(tmp: Path, make_config, video_folder: Path, name: str, workers: int = 0, every: int = EVERY) -> Path:
    cfg = make_config(tmp / name, video_folder, data={"workers": workers},
                      run={"steps": STEPS, "checkpoint_every": every, "keep_checkpoints": 3})
    path = tmp / f"{name}{workers}.json"
    path.write_text(json.dumps(cfg))
    return path


# ``cil train`` whose run cannot end by itself: once one step short of run.steps, the trainer's
# check_cancel hook (Trainer API, called after every step and its checkpoint) sleeps until the
# process is killed.
HELD_BEFORE_LAST_STEP = """
import sys, time
from cil_train.loop import Trainer

plain_init = Trainer.__init__

def held_init(self, *args, **kwargs):
    plain_init(self, *args, **kwargs)
    own = self.check_cancel

    def check_cancel():
        if own is not None:
            own()
        while self.step >= self.cfg.run.steps - 1:
            time.sleep(0.05)

    self.check_cancel = check_cancel

Trainer.__init__ = held_init
from cil_tools.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cil_train(config: Path, *extra: str, fault: str = "", wait: bool = True,
              held: bool = False) -> subprocess.Popen | subprocess.CompletedProcess:
    env = dict(os.environ, CIL_TRAIN_FAULT=fault, OMP_NUM_THREADS="1")  # tiny model: threads only cost time
    command = ["-c", HELD_BEFORE_LAST_STEP] if held else ["-m", "cil_tools.cli"]
    argv = [sys.executable, *command, "train", "--config", str(config), "--no-progress", *extra]
    if wait:
        return bounded_run.run(argv, 300, env=env, cwd=config.parent)
    return subprocess.Popen(argv, cwd=config.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def losses(out: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in rows]


def assert_checkpoints_whole(out: Path) -> list[int]:
    """Every file named like a checkpoint loads completely; returns their steps."""
    steps = []
    folder = out / "checkpoints"
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = NAME.match(p.name)
        if m:
            tensors, state = load_checkpoint(p)
            assert state["step"] == int(m.group(1)) and tensors
            steps.append(state["step"])
        else:
            assert p.name.startswith(".step_") and p.name.endswith(".tmp"), f"unexpected file {p.name}"
    return steps


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, make_config, video_folder):
    """The reference run (a subprocess too: same thread count as the killed runs, so the same
    floating-point results)."""
    tmp = tmp_path_factory.mktemp("resume")
    done = cil_train(write_config(tmp, make_config, video_folder, "straight"))
    assert done.returncode == 0, done.stderr
    return tmp, tmp / "straight"


def test_sigkill_then_resume_reproduces_the_uninterrupted_run(uninterrupted, make_config, video_folder):
    """Killed after step 6 (last checkpoint 4); resumed with 2 decoder workers and killed again
    while writing checkpoint 8; resumed again: the log, the LoRA and the skip list equal the
    uninterrupted run's."""
    tmp, straight = uninterrupted
    config = write_config(tmp, make_config, video_folder, "killed")
    out = tmp / "killed"

    first = cil_train(config, fault="kill_after_step=6")
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert [s for s, _ in losses(out)] == [1, 2, 3, 4, 5, 6]
    assert assert_checkpoints_whole(out) == [4]

    second = cil_train(write_config(tmp, make_config, video_folder, "killed", workers=2), "--resume",
                       fault="kill_in_checkpoint=8")
    assert second.returncode == -signal.SIGKILL, second.stderr
    assert "resumed from step_00000004" in second.stderr
    assert [s for s, _ in losses(out)] == list(range(1, 9))
    assert assert_checkpoints_whole(out) == [4]  # the half-written step-8 file never got its name
    assert [p.name for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]

    third = cil_train(config, "--resume")
    assert third.returncode == 0, third.stderr
    assert "resumed from step_00000004" in third.stderr and "removed 1 unfinished file(s) of a killed run: .step_00000008.safetensors." in third.stderr
    assert losses(out) == losses(straight)
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert assert_checkpoints_whole(out) == [4, 8, 10]
    ours, theirs = load_file(str(out / "lora.safetensors")), load_file(str(straight / "lora.safetensors"))
    assert ours.keys() == theirs.keys() and all((ours[k] == theirs[k]).all() for k in ours)
    skipped = (out / "skipped_videos.txt").read_text()
    assert skipped == (straight / "skipped_videos.txt").read_text() and "not_a_video.mp4" in skipped


def test_external_sigkill_at_any_moment(uninterrupted, make_config, video_folder):
    tmp, straight = uninterrupted
    config = write_config(tmp, make_config, video_folder, "external", every=2)  # saving frequency is not trajectory
    out = tmp / "external"
    proc = cil_train(config, wait=False, held=True)  # held before its last step: only the kill ends it
    deadline, rows = time.monotonic() + 120, 0
    try:
        while time.monotonic() < deadline and proc.poll() is None and rows < 3:
            time.sleep(0.005)
            rows = len((out / "log.jsonl").read_text().splitlines()) if (out / "log.jsonl").is_file() else 0
    finally:
        ended_alone = proc.poll() is not None
        if not ended_alone:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its decoder workers, as a crash would
        proc.wait(timeout=60)
    assert not ended_alone, f"the held run ended by itself (exit {proc.returncode}) after {rows} logged steps: {proc.stderr.read()[-2000:]}"
    assert rows >= 3, f"the run logged {rows} steps in 120 s (killed): {proc.stderr.read()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert_checkpoints_whole(out)
    resumed = cil_train(config, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert losses(out) == losses(straight)


def test_resume_refuses_a_different_config(uninterrupted, capsys):
    from cil_tools import cli

    tmp, straight = uninterrupted
    cfg = json.loads((tmp / "straight0.json").read_text())
    cfg["optim"]["lr"] = 2e-3
    other = tmp / "changed.json"
    other.write_text(json.dumps(cfg))
    assert cli.main(["train", "--config", str(other), "--resume"]) == 2
    assert "different training settings" in capsys.readouterr().err
    assert cli.main(["train", "--config", str(tmp / "straight0.json")]) == 2
    assert "--resume" in capsys.readouterr().err
