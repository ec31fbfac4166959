"""Every UI workflow in workflows/ loads in the real ComfyUI page with no missing node, no load
error and widget values the node accepts; a screenshot of each is saved; the runnable ones are
queued from the page and must finish without an execution error.

Which workflows run is decided by the manifest (see conftest.load_manifest); the others are
loaded and checked only, and their run test skips saying why (marked load-only, or a third-party
pack this host lacks). An empty pack, no workflows or a workflow missing from the manifest fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")


def test_the_page_registers_every_node_of_the_pack(comfy_page, object_info):
    """Each CIL_* node the server lists is a node the page can place (the frontend parsed its schema)."""
    ours = sorted(k for k in object_info if k.startswith("CIL_"))
    assert ours, ("the server lists no CIL_* node: the pack did not load or registers nothing\n"
                  + comfy_page.server.log_tail())
    registered = set(comfy_page.browser.js(
        "return Object.keys(window.LiteGraph.registered_node_types).filter(k => k.startsWith('CIL_'));"))
    absent = [k for k in ours if k not in registered]
    assert not absent, f"the server lists {absent} but the page did not register them"
    print(f"page registered {len(ours)} CIL_* nodes: {', '.join(ours)}")


def _read_ui_workflow(path: Path | None, folder: Path) -> dict:
    if path is None:
        pytest.fail(f"no UI workflows (*.json) in {folder}: the pack ships its workflows there")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data.get("nodes"), list):
        pytest.fail(f"{path.name}: not a UI-format workflow (no 'nodes' list); "
                    "API-format twins must not sit directly in the workflows folder")
    return data


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def _widget_problem(node_type: str, name: str, value, spec) -> str | None:
    """Why `value` is not acceptable for input `name` declared as `spec` in /object_info (or None)."""
    kind, opts = spec[0], (spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {})
    where = f"{node_type}.{name}={value!r}"
    if isinstance(kind, list) or kind == "COMBO":
        options = kind if isinstance(kind, list) else opts.get("options", [])
        if value in options:
            return None
        if isinstance(value, str) and value.lower().endswith(WEIGHT_SUFFIXES):
            return None  # a model file this host does not have: not a widget-order problem
        return f"{where} is not one of {options[:8]}{'…' if len(options) > 8 else ''}"
    if kind == "INT":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{where} should be an integer"
    elif kind == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{where} should be a number"
    elif kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{where} should be true/false"
    elif kind == "STRING":
        return None if isinstance(value, str) else f"{where} should be a string"
    else:
        return None
    low, high = opts.get("min"), opts.get("max")
    if low is not None and value < low or high is not None and value > high:
        return f"{where} is outside [{low}, {high}]"
    return None


def widget_problems(prompt: dict, object_info: dict) -> list[str]:
    """Check every widget value of the page's own API conversion against the node's declared inputs."""
    problems = []
    for node_id, node in prompt.items():
        info = object_info.get(node["class_type"])
        if info is None:
            problems.append(f"node #{node_id}: {node['class_type']} is not in /object_info")
            continue
        declared = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for name, value in node.get("inputs", {}).items():
            if _is_link(value) or name not in declared:
                continue
            problem = _widget_problem(node["class_type"], name, value, declared[name])
            if problem:
                problems.append(f"node #{node_id}: {problem}")
    return problems


def _expected_dialogs(dialogs: list[str], entry: dict | None) -> tuple[list[str], list[str]]:
    """(unexpected, tolerated): a load-only workflow that needs real weights may show the app's
    missing-models list (that is what a user sees until they download them); nothing else is ok."""
    load_only = entry is not None and not entry.get("run")
    tolerated = [d for d in dialogs if load_only and d.startswith("Missing Models")]
    return [d for d in dialogs if d not in tolerated], tolerated


def _error_nodes(nodes: list[dict], entry: dict | None) -> tuple[list[str], list[str]]:
    """(flagged, tolerated) nodes the page marked with errors after a load. Tolerated: in a load-only
    workflow, a node whose combo names a model file (weight suffix) the server does not list — newer
    frontends outline such loaders instead of opening a dialog. Anything else is a real error."""
    load_only = entry is not None and not entry.get("run")
    flagged, tolerated = [], []
    for node in nodes:
        files = [v for v in node["absent"] if v.lower().endswith(WEIGHT_SUFFIXES)]
        (tolerated if load_only and files else flagged).append(f"{node['node']} {files or node['absent']}")
    return flagged, tolerated


def _node_ids(workflow: dict, types: list[str]) -> list[str]:
    bare = {t.split(" (in subgraph")[0] for t in types}
    return [f"#{n['id']} {n['type']}" for n in workflow["nodes"] if n.get("type") in bare]


def _skip_without_packs(name: str, entry: dict | None, server) -> None:
    absent = [p for p in (entry or {}).get("packs", []) if p not in server.packs]
    if absent:
        pytest.skip(f"{name}: needs third-party pack(s) {absent}; pass their folders in CIL_E2E_EXTRA_NODES")


def _prompt_differences(page: dict, twin: dict, object_info: dict) -> list[str]:
    """Node by node, the declared inputs (/object_info) whose value or link differ; inputs a node
    does not declare (display-only widgets such as PreviewAny's) are not sent to it and are skipped."""
    out = [f"node {k} only in {'the page' if k in page else 'the twin'}" for k in sorted(set(page) ^ set(twin))]
    for key in sorted(set(page) & set(twin)):
        a, b = page[key], twin[key]
        if a["class_type"] != b["class_type"]:
            out.append(f"node {key}: {a['class_type']} vs {b['class_type']}")
            continue
        spec = object_info.get(a["class_type"], {}).get("input", {})
        declared = set(spec.get("required", {})) | set(spec.get("optional", {}))
        for name in sorted(declared & (set(a["inputs"]) | set(b["inputs"]))):
            if a["inputs"].get(name) != b["inputs"].get(name):
                out.append(f"#{key} {a['class_type']}.{name}: page {a['inputs'].get(name)!r}, twin {b['inputs'].get(name)!r}")
    return out


def test_workflow_loads_in_the_page(workflow_file, workflows_dir, comfy_page, object_info, manifest):
    workflow = _read_ui_workflow(workflow_file, workflows_dir)
    name = workflow_file.name
    _skip_without_packs(name, manifest[0].get(name), comfy_page.server)
    state = comfy_page.load(workflow, workflow_file.stem)
    missing = sorted(set(state["unregistered"]) | set(state["appMissing"] or []))
    state["dialogs"], tolerated = _expected_dialogs(state["dialogs"], manifest[0].get(name))
    if tolerated:
        print(f"{name}: load-only, the page lists models to download: {tolerated}")
        comfy_page.close_dialogs()
    shot = None
    if missing or state["dialogs"]:
        shot = comfy_page.screenshot(f"{workflow_file.stem}.load-failure", publish=False)
    assert not missing, (f"{name}: the page does not know node type(s) {', '.join(missing)} "
                         f"(nodes {_node_ids(workflow, missing)}; dialog: {state['dialogs']}; screenshot {shot})")
    assert not state["dialogs"], f"{name}: the page showed a dialog after loading: {state['dialogs']} (screenshot {shot})"
    flagged, absent_models = _error_nodes(state["errorNodes"], manifest[0].get(name))
    if absent_models:
        print(f"{name}: load-only, loaders flagged for model files this host lacks: {absent_models}")
    assert not flagged, f"{name}: nodes flagged with errors after load: {flagged}"
    assert state["nodeCount"] == len(workflow["nodes"]), (
        f"{name}: page holds {state['nodeCount']} nodes, the file has {len(workflow['nodes'])}")
    uncaught = [e for e in state["page_errors"] if e.startswith("pageerror")]
    assert not uncaught, f"{name}: uncaught page errors while loading: {uncaught}"
    prompt = comfy_page.browser.js("return (await window.app.graphToPrompt()).output;")
    problems = widget_problems(prompt, object_info)
    assert not problems, f"{name}: widget values the nodes do not accept:\n  " + "\n  ".join(problems)
    twin_path = workflow_file.parent / "api" / name
    if twin_path.is_file():  # the page's own prompt is the API twin: links (into widgets too) and values
        twin = json.loads(twin_path.read_text(encoding="utf-8"))
        differ = _prompt_differences(prompt, twin, object_info)
        assert not differ, f"{name}: the page's prompt differs from workflows/api/{name}:\n  " + "\n  ".join(differ)
    comfy_page.fit_view()
    shot = comfy_page.screenshot(workflow_file.stem)
    print(f"{name}: loaded {state['nodeCount']} nodes; screenshot {shot}")


# Measured in the page after a load: nodes the app grew past their saved size (LGraphNode.computeSize),
# and widget rows whose label + value do not fit (BaseWidget.drawTruncatingText: the text gets
# width - 85 px; label + 5 px + value beyond that is cut to "sta…"). Fonts as the page draws them.
_FIT_JS = """
const ctx = document.createElement('canvas').getContext('2d');
const saved = Object.fromEntries(arg.map(n => [n.id, n.size]));
const grown = [], cut = [];
for (const n of window.app.graph.nodes) {
  const s = saved[n.id];
  if (s && (n.size[0] > s[0] + 0.5 || n.size[1] > s[1] + 0.5))
    grown.push(`#${n.id} ${n.type}: saved ${s.map(Math.round)}, page ${[...n.size].map(Math.round)}`);
  ctx.font = n.innerFontStyle || `normal ${LiteGraph.NODE_SUBTEXT_SIZE}px ${LiteGraph.NODE_FONT}`;
  for (const w of n.widgets || []) {
    if (!['combo', 'number', 'text', 'toggle'].includes(w.type) || (n.isWidgetVisible && !n.isWidgetVisible(w))) continue;
    const label = String(w.displayName ?? w.label ?? w.name), value = String(w._displayValue ?? w.value);
    const need = ctx.measureText(label).width + 5 + ctx.measureText(value).width + 85;
    if (need > (w.width || n.size[0]) + 0.5) cut.push(`#${n.id} ${n.type}.${w.name}: "${label}" + "${value}" needs ${Math.ceil(need)} px, has ${Math.round(w.width || n.size[0])}`);
  }
}
return {grown, cut};
"""


def test_workflow_fits_in_the_page(workflow_file, workflows_dir, comfy_page, manifest):
    """The page draws every node at its saved size and every widget's label and value in full."""
    workflow = _read_ui_workflow(workflow_file, workflows_dir)
    _skip_without_packs(workflow_file.name, manifest[0].get(workflow_file.name), comfy_page.server)
    comfy_page.load(workflow, workflow_file.stem)
    comfy_page.close_dialogs()
    fit = comfy_page.browser.js(_FIT_JS, arg=[{"id": n["id"], "size": n["size"]} for n in workflow["nodes"]])
    assert not fit["grown"], f"{workflow_file.name}: the page grew nodes past their saved size:\n  " + "\n  ".join(fit["grown"])
    assert not fit["cut"], f"{workflow_file.name}: widget texts the page truncates:\n  " + "\n  ".join(fit["cut"])


def test_workflow_runs_from_the_page(workflow_file, workflows_dir, comfy_page, manifest):
    workflow = _read_ui_workflow(workflow_file, workflows_dir)
    name = workflow_file.name
    entries, manifest_path = manifest
    entry = entries.get(name)
    if entry is None:
        pytest.fail(f"{name}: not queued — no run/load-only entry in the manifest ({manifest_path or 'none found'})")
    if not entry.get("run"):
        pytest.skip(f"{name}: loaded and checked, not queued — {entry.get('why', 'marked load-only')}")
    state = comfy_page.load(workflow, workflow_file.stem)
    assert not state["unregistered"] and not state["dialogs"], (
        f"{name}: not queued, it did not load cleanly (unknown node types {state['unregistered']}, "
        f"dialogs {state['dialogs']}); see its load test")
    outcome = comfy_page.queue_current(timeout_s=float(entry.get("timeout_s", 300)))
    assert not outcome["node_errors"], f"{name}: ComfyUI refused the prompt: {json.dumps(outcome['node_errors'])[:2000]}"
    details = [f"{e.get('node_type')} #{e.get('node_id')}: {e.get('exception_type')}: {e.get('exception_message')}"
               for e in outcome["errors"]]
    assert outcome["status"] == "success" and not details, (
        f"{name}: run ended with status {outcome['status']!r}: {details or outcome}")
    print(f"{name}: ran, prompt {outcome['prompt_id']}, outputs from nodes {outcome.get('outputs')}")


def test_every_workflow_has_a_manifest_entry(manifest, all_workflow_files, workflows_dir):
    entries, manifest_path = manifest
    assert all_workflow_files, f"no UI workflows (*.json) in {workflows_dir}: the pack ships its workflows there"
    unlisted = sorted({p.name for p in all_workflow_files} - set(entries))
    assert not unlisted, f"workflows with no run/load-only entry in the manifest ({manifest_path}): {unlisted}"
