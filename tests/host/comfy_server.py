"""A REAL ComfyUI server for the host tier's server tests, started the way the e2e tier starts it
(tests/e2e/conftest.py): ``python main.py --cpu --listen 127.0.0.1 --port N --disable-auto-launch
--disable-api-nodes --base-directory BASE``, every writable folder in a temporary base directory
whose custom_nodes holds a link to this repo (and, here, the test-only ``fuzz_pack``). The python
is CIL_HOST_PYTHON, or the one running the tier (the host venv)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
READY_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, base: Path, comfyui: str | None = None) -> None:
        self.base, self.comfyui = base, comfyui or os.environ["COMFYUI_PATH"]
        self.python = os.environ.get("CIL_HOST_PYTHON") or sys.executable
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        self.proc: subprocess.Popen | None = None
        custom = base / "custom_nodes"
        custom.mkdir(parents=True, exist_ok=True)
        for name, target in (("comfyui-cil", REPO), ("cil-fuzz-pack", HERE / "fuzz_pack")):
            if not (custom / name).exists():
                (custom / name).symlink_to(target, target_is_directory=True)
        (base / "input").mkdir(exist_ok=True)
        for item in (Path(self.comfyui) / "input").glob("*"):
            if item.is_file():
                shutil.copyfile(item, base / "input" / item.name)

    def start(self) -> float:
        """Start and wait until /system_stats answers; returns the seconds it took."""
        t0 = time.monotonic()
        cmd = [self.python, "main.py", "--cpu", "--disable-auto-launch", "--disable-api-nodes", "--listen", "127.0.0.1",
               "--port", str(self.port), "--base-directory", str(self.base)]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.comfyui, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=env)
        while time.monotonic() - t0 < READY_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} before it was ready:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=2)
                return time.monotonic() - t0
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        raise RuntimeError(f"ComfyUI not ready after {READY_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a pulled plug would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def get(self, route: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + route, timeout=timeout) as reply:
            return json.loads(reply.read().decode("utf-8"))

    def post(self, route: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
        """(HTTP status, JSON reply). NaN and infinities go out as JSON's NaN/Infinity literals,
        which ComfyUI's json.loads accepts, as a hostile client would send them."""
        data = json.dumps(body).encode("utf-8", "surrogatepass")
        request = urllib.request.Request(self.url + route, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                raw = reply.read()
                return reply.status, json.loads(raw.decode("utf-8")) if raw else {}
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw.decode("utf-8"))
            except ValueError:
                return exc.code, {"raw": raw.decode("utf-8", "replace")[:2000]}

    def wait_for(self, prompt_id: str, timeout: float) -> dict | None:
        """The history entry of a finished prompt, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("completed") or entry["status"].get("status_str") == "error"):
                return entry
            time.sleep(delay)
            delay = min(0.05, delay * 1.5)
        return None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"
