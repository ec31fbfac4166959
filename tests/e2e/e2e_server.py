"""The ComfyUI server of the e2e tier: main.py from COMFYUI_PATH in a temporary base directory
with this pack (and any CIL_E2E_EXTRA_NODES) in its custom_nodes, on a free local port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from e2e_env import COMFYUI_PATH, FRONTEND_ROOT, HOST_PYTHON, PACK_NAME, REPO, SERVER_READY_TIMEOUT_S, extra_node_packs


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """`python main.py --cpu --listen 127.0.0.1 --port N` with every writable folder in a temp base
    directory (--base-directory), whose custom_nodes holds a symlink to this repo. The ComfyUI
    checkout itself is never written to."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        self.packs = [PACK_NAME]
        self._prepare_base()
        self.proc: subprocess.Popen | None = None

    def _prepare_base(self) -> None:
        custom = self.base / "custom_nodes"
        custom.mkdir(parents=True)
        (custom / PACK_NAME).symlink_to(REPO, target_is_directory=True)
        for pack in extra_node_packs():
            (custom / pack.name).symlink_to(pack, target_is_directory=True)
            self.packs.append(pack.name)
        # What a fresh ComfyUI has in input/ (example.png, which workflows' LoadImage nodes name).
        (self.base / "input").mkdir()
        for item in (Path(COMFYUI_PATH) / "input").glob("*"):
            if item.is_file():
                shutil.copyfile(item, self.base / "input" / item.name)
        # A returning user: no first-run template browser, warnings on (they are what we test).
        settings = self.base / "user" / "default" / "comfy.settings.json"
        settings.parent.mkdir(parents=True)
        settings.write_text(json.dumps({
            "Comfy.TutorialCompleted": True,
            "Comfy.Workflow.ShowMissingNodesWarning": True,
            "Comfy.Workflow.ShowMissingModelsWarning": True,
            # Screenshots: full node detail at any zoom, no minimap or fps overlay over the graph.
            "LiteGraph.Canvas.MinFontSizeForLOD": 0,
            "Comfy.Minimap.Visible": False,
            "Comfy.Graph.CanvasInfo": False,
        }))

    def start(self) -> None:
        cmd = [HOST_PYTHON, "main.py", "--cpu", "--disable-auto-launch", "--disable-api-nodes",
               "--listen", "127.0.0.1", "--port", str(self.port), "--base-directory", str(self.base)]
        if FRONTEND_ROOT:
            cmd += ["--front-end-root", str(Path(FRONTEND_ROOT).resolve())]
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=COMFYUI_PATH, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} before it was ready:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.5)
        raise RuntimeError(f"ComfyUI not ready after {SERVER_READY_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)

    def get(self, route: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + route, timeout=timeout) as reply:
            return json.loads(reply.read().decode("utf-8"))

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"
