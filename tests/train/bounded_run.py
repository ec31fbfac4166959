"""``run(argv, timeout, **popen)``: a command of the trainer tests, bounded in time and in what it
leaves behind. It runs in a session of its own with its output captured. Past ``timeout`` it gets
SIGTERM (torchrun stops its ranks on it) and 30 s to end; then its process group and every process
started with its token in the environment (torchrun's ranks live in sessions of their own) get
SIGKILL, and the test fails naming the command. Nothing it started outlives the call."""

from __future__ import annotations

import os
import signal
import subprocess
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
