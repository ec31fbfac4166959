"""End-to-end tier: a REAL ComfyUI server (from COMFYUI_PATH) with this pack in a temporary
custom_nodes folder, and the real ComfyUI page (the `comfyui-frontend-package` the host venv
installed) in headless Debian Chromium, driven through playwright-core by tests/e2e/driver/bridge.js.

Opt-in. Without COMFYUI_PATH, Chromium, Node.js or playwright-core every e2e file except
test_00_e2e.py is left out, and that file skips with one line saying why; with a broken setup
(COMFYUI_PATH not a ComfyUI checkout, CIL_HOST_PYTHON missing or without the frontend) it fails,
saying why.

Environment:
  COMFYUI_PATH            ComfyUI checkout (required)
  CIL_HOST_PYTHON         python that runs ComfyUI's main.py (default: the python running pytest)
  CIL_CHROMIUM            browser binary (default /usr/bin/chromium)
  CIL_E2E_WORKFLOWS       folder of UI-format workflows to test (default: the repo's workflows/)
  CIL_E2E_EXTRA_NODES     third-party packs to install next to this one (folders, os.pathsep-separated)
  CIL_E2E_SCREENSHOTS_TO  also copy each workflow's screenshot there (e.g. docs/screenshots)
  CIL_E2E_THUMBNAILS_TO   also write <workflow>.jpg there (e.g. workflows: the template browser's card image)
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PACK_NAME = "comfyui-cil"  # the custom_nodes folder name: what users see in the template browser
DRIVER = HERE / "driver"
ARTIFACTS = HERE / "artifacts"
COMFYUI_PATH = os.environ.get("COMFYUI_PATH", "")
HOST_PYTHON = os.environ.get("CIL_HOST_PYTHON") or sys.executable
CHROMIUM = os.environ.get("CIL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Folders ComfyUI (app/custom_node_manager.py) offers as a pack's templates, in the order it serves them.
TEMPLATE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")
PACK_WORKFLOWS_DIR = REPO / ("example_workflows" if (REPO / "example_workflows").is_dir() else "workflows")
WORKFLOWS_DIR = Path(os.environ.get("CIL_E2E_WORKFLOWS") or PACK_WORKFLOWS_DIR)
SERVER_READY_TIMEOUT_S = 180


def _python_has_frontend(python: str) -> bool:
    probe = "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('comfyui_frontend_package') else 1)"
    try:
        return subprocess.run([python, "-c", probe], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _unavailable() -> tuple[str, str] | None:
    """None when the tier can run; else (kind, one line). "skip": what the tier needs is not here
    (COMFYUI_PATH unset, a python without the frontend, no Chromium / Node.js / playwright-core:
    tests/e2e/setup.sh); "fail": it was asked for but is broken (COMFYUI_PATH not a ComfyUI
    checkout, CIL_HOST_PYTHON missing or without the frontend)."""
    if not COMFYUI_PATH:
        return "skip", "COMFYUI_PATH is not set (point it at a ComfyUI checkout to test workflows in a browser)"
    if not (Path(COMFYUI_PATH) / "main.py").is_file() or not (Path(COMFYUI_PATH) / "comfy" / "cli_args.py").is_file():
        return "fail", f"COMFYUI_PATH={COMFYUI_PATH!r} is not a ComfyUI checkout (no main.py / comfy/cli_args.py)"
    if not Path(HOST_PYTHON).is_file():
        return "fail", f"CIL_HOST_PYTHON={HOST_PYTHON!r} does not exist"
    if not _python_has_frontend(HOST_PYTHON):
        kind = "fail" if os.environ.get("CIL_HOST_PYTHON") else "skip"
        return kind, f"{HOST_PYTHON} has no comfyui-frontend-package (pip install -r $COMFYUI_PATH/requirements.txt; or set CIL_HOST_PYTHON)"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return "skip", f"no Chromium at {CHROMIUM} (run tests/e2e/setup.sh)"
    if not shutil.which("node"):
        return "skip", "Node.js (node) is not on PATH (run tests/e2e/setup.sh)"
    if not (DRIVER / "node_modules" / "playwright-core" / "package.json").is_file():
        return "skip", "playwright-core is not installed in tests/e2e/driver (run tests/e2e/setup.sh)"
    return None


_PROBLEM = _unavailable()
SKIP_REASON = f"e2e tier skipped: {_PROBLEM[1]}" if _PROBLEM and _PROBLEM[0] == "skip" else None
FAIL_REASON = f"e2e tier cannot run: {_PROBLEM[1]}" if _PROBLEM and _PROBLEM[0] == "fail" else None
if _PROBLEM:  # test_00_e2e.py alone says why, in one line: a skip (nothing to run it with) or a failure (a broken setup)
    collect_ignore_glob = ["test_[!0]*.py"]


def _refuse_if_unavailable() -> None:
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    if FAIL_REASON:
        pytest.fail(FAIL_REASON, pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: real ComfyUI server + real page in headless Chromium")


# --- the workflows under test ------------------------------------------------------------------

MANIFEST_NAMES = ("manifest.json",)


def workflow_files(folder: Path = WORKFLOWS_DIR) -> list[Path]:
    """UI-format workflows: every *.json directly in the folder except the manifest."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if p.name not in MANIFEST_NAMES)


def load_manifest(folder: Path = WORKFLOWS_DIR) -> tuple[dict, Path | None]:
    """Runnability per workflow file name: {"x.json": {"run": bool, "why": str, "packs": [...],
    "timeout_s": int}}. Looked up next to the workflows (api/manifest.json, then manifest.json),
    then in tests/e2e/manifest.json (this tier's own stop-gap)."""
    for candidate in (folder / "api" / "manifest.json", folder / "manifest.json", HERE / "manifest.json"):
        if candidate.is_file():
            data = json.loads(candidate.read_text(encoding="utf-8"))
            return {k: v for k, v in data.items() if not k.startswith("_")}, candidate
    return {}, None


# --- the ComfyUI server ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def extra_node_packs() -> list[Path]:
    raw = os.environ.get("CIL_E2E_EXTRA_NODES", "")
    return [Path(p).resolve() for p in raw.split(os.pathsep) if p.strip()]


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


@pytest.fixture(scope="session")
def comfy_server():
    _refuse_if_unavailable()
    base = Path(tempfile.mkdtemp(prefix="cil-e2e-"))
    server = ComfyServer(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


# --- the browser -------------------------------------------------------------------------------

class BridgeError(AssertionError):
    pass


class Browser:
    """One headless Chromium behind tests/e2e/driver/bridge.js (JSON lines over stdin/stdout)."""

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a file, so a chatty bridge never blocks
        self.proc = subprocess.Popen(["node", str(DRIVER / "bridge.js")], cwd=DRIVER, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1,
                                     start_new_session=True)
        self._replies: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._next_id = 0

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._replies.put(json.loads(line))
        self._replies.put(None)

    def call(self, op: str, timeout_s: float = 120, **kwargs):
        self._next_id += 1
        self.proc.stdin.write(json.dumps({"id": self._next_id, "op": op, **kwargs}) + "\n")
        self.proc.stdin.flush()
        try:
            reply = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            raise BridgeError(f"browser did not answer {op!r} within {timeout_s} s") from None
        if reply is None:
            self.stderr.seek(0)
            raise BridgeError(f"browser bridge exited during {op!r}: {self.stderr.read()[-2000:]}")
        if not reply["ok"]:
            raise BridgeError(f"browser {op!r} failed: {reply['error']}")
        return reply.get("value")  # undefined in JS: no "value" key

    def js(self, body: str, arg=None, timeout_s: float = 120):
        """Run an async function body in the page (`arg` is in scope) and return its JSON value."""
        return self.call("evaluate", body=body, arg=arg, timeout_s=timeout_s)

    def close(self) -> None:
        try:
            self.call("close", timeout_s=30)
        except BridgeError:
            pass
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.stderr.close()


@pytest.fixture(scope="session")
def browser():
    _refuse_if_unavailable()
    b = Browser()
    try:
        b.call("launch", executable=CHROMIUM, width=1920, height=1200, timeout_s=60)
        yield b
    finally:
        b.close()


@pytest.fixture(scope="session")
def comfy_page(comfy_server, browser):
    """The ComfyUI page, opened once, with every node definition loaded."""
    page = ComfyPage(comfy_server, browser)
    page.open()
    return page


# --- the ComfyUI page --------------------------------------------------------------------------

# Installed once: records what the app itself reports as missing after each graph load.
_HOOK_JS = """
if (!window.__cilE2E) {
  window.__cilE2E = { missing: null };
  window.app.registerExtension({
    name: 'comfyui-cil.e2e-probe',
    async afterConfigureGraph(missing) {
      window.__cilE2E.missing = (missing || []).map(m => typeof m === 'string' ? m : `${m.type} (${m.hint || ''})`);
    },
  });
}
return true;
"""

# Node types of a UI workflow (root graph and subgraph definitions) that this page has not registered.
_UNREGISTERED_JS = """
const known = window.LiteGraph.registered_node_types;
const subgraphs = (arg.definitions && arg.definitions.subgraphs) || [];
const subgraphIds = new Set(subgraphs.map(sg => sg.id));  // instances of a subgraph use its id as type
const types = [];
const collect = (nodes, where) => (nodes || []).forEach(n => {
  if (!(n.type in known) && !subgraphIds.has(n.type)) types.push(where ? `${n.type} (in subgraph ${where})` : n.type);
});
collect(arg.nodes, '');
for (const sg of subgraphs) collect(sg.nodes, sg.name || sg.id);
return types;
"""

_LOAD_JS = """
window.__cilE2E.missing = null;
await window.app.loadGraphData(arg.workflow, true, false, arg.name, {showMissingNodesDialog: true, showMissingModelsDialog: true});
await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
const graph = window.app.graph;
return {
  appMissing: window.__cilE2E.missing,
  nodeCount: graph.nodes ? graph.nodes.length : graph._nodes.length,
  errorNodes: (graph.nodes || graph._nodes).filter(n => n.has_errors).map(n => `${n.type} #${n.id}`),
};
"""

_DIALOGS_JS = """
const texts = [];
for (const el of document.querySelectorAll('.p-dialog, [role="dialog"], [role="alertdialog"]')) {
  const box = el.getBoundingClientRect();
  if (box.width > 0 && box.height > 0) texts.push(el.innerText.trim().replace(/\\s+/g, ' ').slice(0, 500));
}
return [...new Set(texts)];
"""


class ComfyPage:
    def __init__(self, server: ComfyServer, browser: Browser) -> None:
        self.server, self.browser = server, browser

    def open(self) -> None:
        self.browser.call("goto", url=self.server.url + "/", timeout_s=120)
        # Ready when the app exists and node definitions from /object_info are registered.
        self.browser.call("wait_for", timeout_s=120, timeout_ms=110000, body=(
            "return !!(window.app && window.app.graph && window.app.canvas && window.LiteGraph"
            " && window.LiteGraph.registered_node_types['KSampler']);"))
        self.browser.js(_HOOK_JS)
        self.browser.call("log")  # start-up noise (closed network) is not about any workflow

    def unregistered_types(self, workflow: dict) -> list[str]:
        return self.browser.js(_UNREGISTERED_JS, arg=workflow)

    def visible_dialogs(self) -> list[str]:
        return self.browser.js(_DIALOGS_JS)

    def close_dialogs(self) -> None:
        for _ in range(3):
            if not self.visible_dialogs():
                return
            self.browser.call("press", key="Escape")
            time.sleep(0.3)

    def load(self, workflow: dict, name: str) -> dict:
        """Load a UI-format workflow through the app's own API (as a tab called `name`); return
        what the page reported: unregistered types, the app's missing list, visible dialogs..."""
        self.close_dialogs()
        before = self.unregistered_types(workflow)
        state = self.browser.js(_LOAD_JS, arg={"workflow": workflow, "name": name})
        time.sleep(0.5)  # dialogs open asynchronously after the load resolves
        state["unregistered"] = before
        state["dialogs"] = self.visible_dialogs()
        state["page_errors"] = self.browser.call("log")
        return state

    def fit_view(self) -> None:
        """Whole graph in view (the app's own fit, with a 1 ms animation so it is done at once)."""
        self.browser.js("const c = window.app.canvas; c.deselectAll && c.deselectAll();"
                        "c.fitViewToSelectionAnimated({duration: 1});"
                        "await new Promise(r => setTimeout(r, 50));"
                        "await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));")

    def screenshot(self, name: str, publish: bool = True) -> Path:
        """PNG of the page in tests/e2e/artifacts/; published ones are also copied to
        CIL_E2E_SCREENSHOTS_TO when that is set."""
        target = ARTIFACTS / f"{name}.png"
        self.browser.call("screenshot", file=str(target))
        copy_to = os.environ.get("CIL_E2E_SCREENSHOTS_TO")
        if copy_to and publish:
            dest = Path(copy_to)
            dest = dest if dest.is_absolute() else REPO / dest
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, dest / target.name)
        thumbs = os.environ.get("CIL_E2E_THUMBNAILS_TO")
        if thumbs and publish:  # <name>.jpg beside a workflow is its card in the template browser
            folder = Path(thumbs) if Path(thumbs).is_absolute() else REPO / thumbs
            self.browser.call("screenshot", file=str(folder / f"{name}.jpg"), quality=70)
        return target

    def queue_current(self, timeout_s: float) -> dict:
        """Press the app's queue (app.queuePrompt) and wait for the prompt it sent to finish.
        Returns {"prompt_id", "status", "errors", "node_errors", "dialogs"}."""
        seen = set(self.server.get("/history"))
        node_errors = self.browser.js(
            "await window.app.queuePrompt(0, 1);"
            "const errors = window.app.lastNodeErrors;"
            "return errors && Object.keys(errors).length ? errors : null;")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            history = self.server.get("/history")
            new = [pid for pid in history if pid not in seen]
            if new:
                entry = history[new[0]]
                if entry.get("status", {}).get("completed") or entry.get("status", {}).get("status_str") == "error":
                    return self._outcome(new[0], entry, node_errors)
            q = self.server.get("/queue")
            if not new and not q["queue_running"] and not q["queue_pending"] and node_errors:
                break  # the server refused the prompt (validation): nothing will run
            time.sleep(0.5)
        return {"prompt_id": None, "status": "not finished" if not node_errors else "refused",
                "errors": [], "node_errors": node_errors, "dialogs": self.visible_dialogs()}

    def _outcome(self, prompt_id: str, entry: dict, node_errors) -> dict:
        status = entry.get("status", {})
        errors = [data for kind, data in status.get("messages", []) if kind == "execution_error"]
        return {"prompt_id": prompt_id, "status": status.get("status_str"), "errors": errors,
                "node_errors": node_errors, "dialogs": self.visible_dialogs(),
                "outputs": sorted(entry.get("outputs", {}))}


# --- parametrisation ---------------------------------------------------------------------------

def pytest_generate_tests(metafunc):
    """`workflow_file`: one test per UI workflow in CIL_E2E_WORKFLOWS (default workflows/)."""
    if "workflow_file" in metafunc.fixturenames:
        files = workflow_files()
        if files:
            metafunc.parametrize("workflow_file", files, ids=[p.stem for p in files])
        else:
            metafunc.parametrize("workflow_file", [None], ids=["no-workflows"])


@pytest.fixture(scope="session")
def workflows_dir() -> Path:
    """The folder of UI workflows under test (CIL_E2E_WORKFLOWS, default the repo's workflows/)."""
    return WORKFLOWS_DIR


@pytest.fixture(scope="session")
def all_workflow_files() -> list[Path]:
    return workflow_files()


@pytest.fixture(scope="session")
def manifest():
    """(entries, path) of the runnability manifest; see load_manifest."""
    return load_manifest()


@pytest.fixture(scope="session")
def object_info(comfy_server):
    return comfy_server.get("/object_info", timeout=120)


@pytest.fixture(scope="session")
def pack_workflows() -> tuple[str, Path, list[Path]]:
    """(pack folder name, the repo's workflows folder, its UI workflows): what the template
    browser must offer, independent of CIL_E2E_WORKFLOWS."""
    return PACK_NAME, PACK_WORKFLOWS_DIR, workflow_files(PACK_WORKFLOWS_DIR)


@pytest.fixture(scope="session")
def pack_manifest() -> tuple[dict, Path | None]:
    """(entries, path) of the manifest of the repo's workflows folder (see load_manifest)."""
    return load_manifest(PACK_WORKFLOWS_DIR)


@pytest.fixture(scope="session")
def repo_template_folders() -> list[str]:
    """The folders of this repo that ComfyUI treats as template folders, in its serving order."""
    return [name for name in TEMPLATE_FOLDERS if (REPO / name).is_dir()]
