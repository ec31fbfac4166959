"""The processes the tests start, bounded in time and in what they leave behind (on ``sys.path``
from tests/conftest.py, for every tier).

* ``run(argv, timeout, **popen)``: a command in a session of its own with its output captured. Past
  ``timeout`` it gets SIGTERM (torchrun stops its ranks on it) and 30 s to end; then its process
  group and every process started with its token in the environment (torchrun's ranks live in
  sessions of their own) get SIGKILL, and the test fails naming the command.
* ``child_io(log, die_at)``: a forked child's output to ``log``, and its death at one rename.
* ``Forks``: ``cil train`` children forked from a fork server that imported torch and the CLI once
  (a start costs milliseconds), never from pytest's own threaded process; ``close()`` kills the
  ones still alive.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

TOKEN = "CIL_TEST_RUN"


def kill_tagged(token: str) -> None:
    """SIGKILL every process whose environment holds ``TOKEN=token`` (Linux /proc; others' are unreadable)."""
    needle = f"{TOKEN}={token}".encode()
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:  # ended meanwhile, or not ours
                pass


def run(argv: list[str], timeout: float, env: dict | None = None, **popen) -> subprocess.CompletedProcess:
    token = uuid.uuid4().hex
    env = {**(os.environ if env is None else env), TOKEN: token}
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, **popen)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
    finally:  # also when the test itself is interrupted: leave nothing running
        kill_tagged(token)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if timed_out:
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(map(str, argv[:6]))} ... did not end within {timeout} s; its stderr ends with:\n{err[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def child_io(log: str | Path, die_at: str = "") -> None:
    """In a forked child: stdout and stderr appended to ``log`` (no child holds pytest's output
    open); with ``die_at``, it SIGKILLs itself when an atomic write is about to rename its finished
    temporary file over that name (the last moment such a write can be cut)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if die_at:
        rename = os.replace

        def replace(src, dst, *args, **kwargs):
            if Path(dst).name == die_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return rename(src, dst, *args, **kwargs)

        os.replace = replace


def _cil_train(argv: list[str], log: str, die_at: str) -> None:
    """A fork's body: ``cil <argv>`` under ``child_io(log, die_at)``."""
    child_io(log, die_at)
    import torch

    from cil_tools import cli

    torch.set_num_threads(1)  # a tiny model: on a shared CPU, OpenMP synchronisation only costs time
    sys.exit(cli.main(argv))


class Forks:
    def __init__(self) -> None:
        self.ctx = multiprocessing.get_context("forkserver")
        self.ctx.set_forkserver_preload(["torch", "torch._dynamo", "cil_tools.cli", "cil_tools.train_cmd", "bounded_run"])  # dynamo: what AdamW imports
        self.alive: list = []

    def start(self, argv: list[str], log: Path, die_at: str = ""):
        proc = self.ctx.Process(target=_cil_train, args=(argv, str(log), die_at), daemon=True)
        proc.start()
        self.alive.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.alive:
            if proc.exitcode is None:
                proc.kill()
            proc.join(60)
        self.alive.clear()
