"""The browser and the ComfyUI page of the e2e tier: ``Browser`` (one headless Chromium behind
driver/bridge.js, JSON lines) and ``ComfyPage`` (load a workflow through the app, dialogs,
screenshots, queue a prompt)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from e2e_env import ARTIFACTS, DRIVER, REPO

THUMB_WIDTH = 480  # template browser cards are a few hundred px wide
from e2e_server import ComfyServer


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
  errorNodes: (graph.nodes || graph._nodes).filter(n => n.has_errors).map(n => ({
    node: `${n.type} #${n.id}`,
    // combo values this server does not offer (newer frontends flag loaders of absent model files)
    absent: (n.widgets || []).filter(w => w.type === 'combo' && Array.isArray(w.options?.values)
                                          && !w.options.values.includes(w.value)).map(w => String(w.value)),
  })),
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
            self.thumbnail(target, folder / f"{name}.jpg")
        return target

    def thumbnail(self, png: Path, jpg: Path, width: int = THUMB_WIDTH) -> None:
        """The graph canvas cut out of the page's screenshot, ``width`` px wide, as a small JPEG (Pillow)."""
        from PIL import Image  # the host venv has it (ComfyUI needs it); only thumbnails need it here

        box = self.browser.js("const r = window.app.canvasEl.getBoundingClientRect();"
                              "return [r.left, r.top, r.right, r.bottom].map(Math.round);")
        with Image.open(png) as shot:
            graph = shot.convert("RGB").crop((max(box[0], 0), max(box[1], 0), min(box[2], shot.width), min(box[3], shot.height)))
        small = graph.resize((width, round(graph.height * width / graph.width)), Image.LANCZOS)
        jpg.parent.mkdir(parents=True, exist_ok=True)
        small.save(jpg, "JPEG", quality=72, optimize=True)

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
