"""The shipped workflow files read the way the frontend reads them (host tier; imported by its plain
name): node definitions from the host (/object_info), widget order, and ``ui_to_api``, the frontend's
graphToPrompt reduced to what these files use (muted nodes left out, bypassed nodes re-routed, links
into widgets)."""

from __future__ import annotations

import json
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
FRONTEND_ONLY = {"MarkdownNote", "Note", "Reroute", "PrimitiveNode"}
MODE_MUTED, MODE_BYPASS = 2, 4


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def manifest() -> dict:
    return {k: v for k, v in load(WORKFLOWS / "api" / "manifest.json").items() if not k.startswith("_")}


def object_info(host, node_type: str) -> dict:
    """ComfyUI's /object_info entry for a node type (server.py node_info), V1 and V3."""
    from comfy_api.internal import _ComfyNodeInternal

    cls = host.node_classes[node_type]
    if issubclass(cls, _ComfyNodeInternal):
        return cls.GET_NODE_INFO_V1()
    inputs = cls.INPUT_TYPES()
    return {"input": inputs, "input_order": {k: list(v) for k, v in inputs.items()}, "output": cls.RETURN_TYPES}


def ordered_inputs(info: dict):
    for section in ("required", "optional"):
        spec = info["input"].get(section, {})
        for name in info.get("input_order", {}).get(section, list(spec)):
            entry = spec[name]
            kind = "COMBO" if isinstance(entry[0], list) else entry[0]
            yield name, kind, (entry[1] if len(entry) > 1 else {}), (entry[0] if isinstance(entry[0], list) else None)


def widget_inputs(info: dict):
    """(name, kind, options, combo list, n slots) of the widgets in frontend order (useIntWidget rule:
    control_after_generate ?? name in {seed, noise_seed}; an image/video upload combo adds an upload
    widget). A widget with a link into it keeps its slot in widgets_values; the link wins in the prompt."""
    for name, kind, options, combo in ordered_inputs(info):
        if kind not in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO") or options.get("forceInput"):
            continue
        control = options.get("control_after_generate")
        upload = kind == "COMBO" and bool(options.get("image_upload") or options.get("video_upload"))
        two = (kind == "INT" and (control if control is not None else name in ("seed", "noise_seed"))) \
            or (kind in ("FLOAT", "COMBO") and bool(control)) or upload
        yield name, kind, options, (combo if combo is not None else options.get("options")), 2 if two else 1


def ui_to_api(host, ui: dict) -> dict:
    """The frontend's graphToPrompt, reduced to what these files use: notes and muted nodes left out
    (an input linked to a muted node is dropped), a bypassed node passes on its input of the output's
    type (the same slot first)."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    links = {l[0]: l for l in ui["links"]}

    def source(link_id):
        _, origin, slot, *_ = links[link_id]
        node = nodes[origin]
        while node["mode"] == MODE_BYPASS:
            kind = node["outputs"][slot]["type"]
            plain = [i for i in node["inputs"] if not i.get("widget")]
            ordered = ([plain[slot]] if slot < len(plain) else []) + plain
            match = [i for i in ordered if i["type"] == kind and i.get("link") is not None]
            if not match:
                return None
            _, origin, slot, *_ = links[match[0]["link"]]
            node = nodes[origin]
        return None if node["mode"] == MODE_MUTED else [str(node["id"]), slot]

    prompt = {}
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY or node["mode"] in (MODE_BYPASS, MODE_MUTED):
            continue
        values = list(node["widgets_values"])
        inputs = {}
        for name, _, _, _, slots in widget_inputs(object_info(host, node["type"])):
            inputs[name] = values[0]
            values = values[slots:]
        # display-only widgets the frontend adds (e.g. PreviewAny's text boxes) are saved as null
        assert all(v is None for v in values), f"{node['type']} #{node['id']}: {len(values)} widgets_values left over: {values}"
        for socket in node["inputs"]:
            if socket.get("link") is not None:
                src = source(socket["link"])
                if src is not None:
                    inputs[socket["name"]] = src
                else:
                    inputs.pop(socket["name"], None)
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def enabled(ui: dict, types: tuple[str, ...] = ("CIL_TimeNoiseConditioning",)) -> dict:
    """The UI file with every muted node un-muted (the Leakage Probe groups) and the bypassed nodes of
    ``types`` switched on: what a user gets after Ctrl+M on a group and Ctrl+B on TimeNoise."""
    ui = json.loads(json.dumps(ui))
    for node in ui["nodes"]:
        if node["mode"] == MODE_MUTED or (node["mode"] == MODE_BYPASS and node["type"] in types):
            node["mode"] = 0
    return ui


def strip_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}
