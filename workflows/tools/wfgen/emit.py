"""The two file formats of a workflow description:

- UI (``workflows/<name>.json``), as the frontend saves it: nodes with ids, positions, sizes,
  ``inputs`` (sockets first, then every widget's socket, as the 1.3x+ frontends write them),
  ``widgets_values`` in widget order (a seed's "control after generate" value right after it, an
  upload combo's upload value), links, groups, native link reroutes, version 0.4;
- API (``workflows/api/<name>.json``), what "Export (API)" gives and /prompt takes: notes
  dropped, muted nodes dropped, bypassed nodes dropped and their links re-routed as the
  frontend does (an input of the output's type, the same slot first).
"""

from __future__ import annotations

import uuid

from .graph import FRONTEND_ONLY, MODE_BYPASS, MODE_NEVER, Node, Workflow
from .widgets import input_specs, output_specs


def ui_inputs(node: Node, info: dict | None) -> list[dict]:
    """The node's input sockets in the frontend's order (no link ids yet)."""
    if info is None:
        return []
    specs = input_specs(info)
    sockets = []
    for spec in specs:
        if not spec.is_widget:
            sockets.append({"localized_name": spec.name, "name": spec.name, "type": spec.kind, **({"shape": 7} if spec.optional else {})})
    for spec in specs:
        if spec.is_widget:
            sockets.append({"localized_name": spec.name, "name": spec.name, "type": spec.kind, "widget": {"name": spec.name}})
            if spec.upload:
                sockets.append({"localized_name": "choose file to upload", "name": "upload", "type": "IMAGEUPLOAD", "widget": {"name": "upload"}})
    return sockets


def ui_widgets(node: Node, info: dict | None) -> list:
    if info is None:
        return [node.widgets["text"]]
    values, names = [], set()
    for spec in input_specs(info):  # linked widgets keep their value too, as the frontend saves them
        names.add(spec.name)
        if not spec.is_widget:
            continue
        if spec.name not in node.widgets:
            raise KeyError(f"{node.type} #{node.id}: widget {spec.name!r} has no value in the description")
        values.append(node.widgets[spec.name])
        if spec.slots == 2:
            values.append(spec.upload or node.controls.get(spec.name, "fixed"))
    extra = set(node.widgets) - names
    if extra:
        raise KeyError(f"{node.type} #{node.id}: unknown widget(s) {sorted(extra)}")
    return values


def output_type(src: Node, slot: int, infos: dict) -> str:
    return infos[src.type]["output"][slot]


def topological(wf: Workflow) -> dict[int, int]:
    done, order = set(), {}

    def visit(node: Node) -> None:
        if node.id in done:
            return
        done.add(node.id)
        for src, _ in node.links.values():
            visit(src)
        order[node.id] = len(order)

    for node in wf.nodes:
        visit(node)
    return order


def to_ui(wf: Workflow, infos: dict, routes: tuple[list[dict], dict] = ([], {})) -> dict:
    """The UI file; ``routes`` = (reroutes, {(target id, input): last reroute id}) from route.route_links."""
    reroutes = [dict(r, linkIds=[]) for r in routes[0]]
    by_id = {r["id"]: r for r in reroutes}
    extensions = []
    entries = {}
    for node in wf.nodes:
        info = infos.get(node.type)
        entries[node.id] = {"inputs": ui_inputs(node, info), "outputs": []}
        if info is not None:
            entries[node.id]["outputs"] = [{"localized_name": name, "name": name, "type": kind, "slot_index": slot, "links": None}
                                           for slot, (name, kind) in enumerate(output_specs(info))]
    links = []
    for node in wf.nodes:
        sockets = entries[node.id]["inputs"]
        for name, (src, slot) in node.links.items():
            index = [s["name"] for s in sockets].index(name)
            kind = output_type(src, slot, infos)
            links.append([len(links) + 1, src.id, slot, node.id, index, kind])
            sockets[index]["link"] = len(links)
            out = entries[src.id]["outputs"][slot]
            out["links"] = (out["links"] or []) + [len(links)]
            parent = routes[1].get((node.id, name))
            if parent is not None:
                extensions.append({"id": len(links), "parentId": parent})
                while parent is not None:  # every bend on the way back to the origin carries the link
                    by_id[parent]["linkIds"].append(len(links))
                    parent = by_id[parent].get("parentId")
    order = topological(wf)
    ui_nodes = []
    for node in wf.nodes:
        info = infos.get(node.type)
        entry = {"id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
                 "order": order[node.id], "mode": node.mode}
        entry["inputs"] = [dict(s, link=s.get("link")) for s in entries[node.id]["inputs"]]
        entry["outputs"] = entries[node.id]["outputs"]
        entry["properties"] = dict(node.properties)
        entry["widgets_values"] = ui_widgets(node, info)
        for key in ("title", "color", "bgcolor"):
            if getattr(node, key):
                entry[key] = getattr(node, key)
        ui_nodes.append(entry)
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-cil/workflows/{wf.name}")),
        "revision": 0,
        "last_node_id": max(n.id for n in wf.nodes),
        "last_link_id": len(links),
        "nodes": ui_nodes,
        "links": links,
        "groups": wf.groups,
        "config": {},
        "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}, "frontendVersion": "1.36.14",
                  **({"reroutes": reroutes, "linkExtensions": extensions} if reroutes else {})},
        "version": 0.4,
    }


def resolve(src: Node, slot: int, infos: dict):
    """Follow bypassed nodes back to a live output (frontend semantics: a bypassed node passes on its
    input of the output's type, the input at the same slot first); None if there is none."""
    while src.mode == MODE_BYPASS:
        kind = infos[src.type]["output"][slot]
        specs = [s for s in input_specs(infos[src.type]) if not s.is_widget]
        ordered = ([specs[slot]] if slot < len(specs) else []) + specs
        match = [s.name for s in ordered if s.name in src.links and output_type(*src.links[s.name], infos) == kind]
        if not match:
            return None
        src, slot = src.links[match[0]]
    return src, slot


def to_api(wf: Workflow, infos: dict) -> dict:
    prompt = {}
    for node in wf.nodes:
        if node.type in FRONTEND_ONLY or node.mode in (MODE_BYPASS, MODE_NEVER):
            continue
        inputs = dict(node.widgets)
        for name, (src, slot) in node.links.items():  # a link replaces a widget's value
            live = resolve(src, slot, infos)
            if live is not None and live[0].mode == MODE_NEVER:
                raise ValueError(f"{wf.name}: {node.type} #{node.id}.{name} takes a muted node's output "
                                 f"({live[0].type} #{live[0].id}): the frontend would drop that input")
            if live is not None:
                inputs[name] = [str(live[0].id), live[1]]
        prompt[str(node.id)] = {"class_type": node.type, "inputs": inputs, "_meta": {"title": node.title or node.type}}
    return prompt
