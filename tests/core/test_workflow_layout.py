"""The layout of every workflow in workflows/, measured on the saved UI file (what the page draws):

- no group overlaps another group, no node overlaps another node (title bars included);
- no node covers a group's title bar, and a node is either wholly inside a group or wholly outside;
- no link's straight segment (output slot → native reroutes → input slot) passes through a node
  that is not its endpoint;
- every widget row has room for its label and value: node width ≥ label + 5 px + value + 85 px (the
  frontend's BaseWidget.drawTruncatingText: margins 15, left padding 5, right padding 20), text in
  12 px Inter measured in the page with canvas measureText, bucketed up to 0.5 px and taken 5 % wider
  (a conservative estimate; the e2e tier measures the real texts in both frontends).

Geometry of the litegraph frontend (1.3x-1.5x): a node's ``pos`` is its body's top-left, its title
bar the 30 px above; output slot i at (x + w + 1 - 10, y + (i + 0.7)·20), socket input i at
(x + 10, same), a widget's socket on its row (rows start at y + sockets·20 + 6, 20 px + 4 px each);
a group's title bar is 34 px (24 px font × 1.4; 30 px in newer frontends).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORKFLOWS = sorted((Path(__file__).resolve().parents[2] / "workflows").glob("*.json"))
TITLE_H, SLOT_H, WIDGET_ROW, GROUP_TITLE_H = 30, 20, 24, 34
TEXT_PAD, LABEL_GAP = 85, 5
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
MULTILINE = {("CLIPTextEncode", "text"), ("MarkdownNote", "text"), ("Note", "text")}
_BINS = {3.0: "ijl", 3.5: " !,.:I", 4.0: "';`t|", 4.5: "()/[\\]f", 5.0: "1r", 5.5: "_{}", 6.0: '"-^', 6.5: "*?s",
         7.0: "7JLacekvxyz", 7.5: "235689EFbdghnopqu", 8.0: "#$&+04<=>BPRSTZ~", 8.5: "AKVXY", 9.0: "CDGHU",
         9.5: "NOQ", 10.0: "w", 11.0: "Mm", 12.0: "%@W"}
INTER_12 = {ch: w for w, chars in _BINS.items() for ch in chars}


def text_width(text: str) -> float:
    return 1.05 * sum(INTER_12.get(ch, 12.0) for ch in str(text))


# --- geometry -------------------------------------------------------------------------------------

def node_rect(node: dict) -> tuple[float, float, float, float]:
    (x, y), (w, h) = node["pos"], node["size"]
    return (x, y - TITLE_H, x + w, y + h)


def group_rect(group: dict) -> tuple[float, float, float, float]:
    x, y, w, h = group["bounding"]
    return (x, y, x + w, y + h)


def overlap(a, b) -> tuple[float, float]:
    """(width, height) of the intersection of two rectangles (x0, y0, x1, y1); (0, 0) when apart."""
    w, h = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    return (w, h) if w > 0 and h > 0 else (0.0, 0.0)


def inside(inner, outer) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def segment_hits(p, q, box) -> bool:
    """Does segment p→q pass through the interior of rectangle ``box`` (Liang–Barsky clipping)?"""
    x0, y0, x1, y1 = box[0] + 1, box[1] + 1, box[2] - 1, box[3] - 1
    t0, t1 = 0.0, 1.0
    for d, lo, hi, s in ((q[0] - p[0], x0, x1, p[0]), (q[1] - p[1], y0, y1, p[1])):
        if abs(d) < 1e-12:
            if not lo < s < hi:
                return False
            continue
        a, b = sorted(((lo - s) / d, (hi - s) / d))
        t0, t1 = max(t0, a), min(t1, b)
        if t0 >= t1:
            return False
    return True


def widget_rows(node: dict) -> list[tuple[str, object, str]]:
    """(label, value, socket type) of each widget row, in order: the node's widget sockets matched
    with widgets_values, a seed's "control after generate" value taking a row of its own."""
    sockets = [s for s in node.get("inputs", []) if s.get("widget")]
    values = list(node.get("widgets_values") or [])
    extra = len(values) - len(sockets)
    rows = []
    for socket in sockets:
        if not values:
            break
        rows.append((socket["name"], values.pop(0), socket["type"]))
        if extra > 0 and socket["type"] in ("INT", "FLOAT", "COMBO") and values and values[0] in CONTROL_VALUES:
            rows.append(("control_after_generate", values.pop(0), "COMBO"))
            extra -= 1
    return rows


def input_point(node: dict, index: int) -> tuple[float, float]:
    (x, y), socket = node["pos"], node["inputs"][index]
    if not socket.get("widget"):
        plain = [s for s in node["inputs"] if not s.get("widget")]
        return (x + SLOT_H / 2, y + (plain.index(socket) + 0.7) * SLOT_H)
    sockets = sum(1 for s in node["inputs"] if not s.get("widget"))
    top = y + max(sockets, len(node.get("outputs", [])), 1) * SLOT_H + 6
    for label, _, _ in widget_rows(node):
        if label == socket["name"]:
            return (x + SLOT_H / 2, top + 10)
        top += WIDGET_ROW
    return (x + SLOT_H / 2, top + 10)


def link_paths(ui: dict):
    """(link id, origin node, target node, [points]) of every link, through its native reroutes."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    extra = ui.get("extra") or {}
    reroutes = {r["id"]: r for r in extra.get("reroutes") or []}
    parents = {e["id"]: e["parentId"] for e in extra.get("linkExtensions") or []}
    for link_id, origin, slot, target, target_slot, _ in ui["links"]:
        a, b = nodes[origin], nodes[target]
        start = (a["pos"][0] + a["size"][0] + 1 - SLOT_H / 2, a["pos"][1] + (slot + 0.7) * SLOT_H)
        bends, parent = [], parents.get(link_id)
        while parent is not None:
            bends.insert(0, tuple(reroutes[parent]["pos"]))
            parent = reroutes[parent].get("parentId")
        yield link_id, a, b, [start, *bends, input_point(b, target_slot)]


# --- the checks -------------------------------------------------------------------------------------

def label(node: dict) -> str:
    return f"#{node['id']} {node.get('title') or node['type']}"


def layout_problems(ui: dict) -> dict[str, list[str]]:
    nodes, groups = ui["nodes"], ui.get("groups", [])
    out = {"groups": [], "nodes": [], "titles": [], "links": [], "labels": []}
    for i, a in enumerate(groups):
        for b in groups[i + 1:]:
            w, h = overlap(group_rect(a), group_rect(b))
            if w:
                out["groups"].append(f"group {a['title']!r} overlaps group {b['title']!r} by {w:.0f}x{h:.0f} px")
    for i, a in enumerate(nodes):
        for b in nodes[i + 1:]:
            w, h = overlap(node_rect(a), node_rect(b))
            if w:
                out["nodes"].append(f"{label(a)} overlaps {label(b)} by {w:.0f}x{h:.0f} px")
    for g in groups:
        x0, y0, x1, _ = group_rect(g)
        bar = (x0, y0, x1, y0 + GROUP_TITLE_H)
        for n in nodes:
            if overlap(node_rect(n), bar)[0]:
                out["titles"].append(f"{label(n)} covers the title bar of group {g['title']!r}")
            elif overlap(node_rect(n), group_rect(g))[0] and not inside(node_rect(n), group_rect(g)):
                out["titles"].append(f"{label(n)} sticks out of group {g['title']!r}")
    for link_id, a, b, points in link_paths(ui):
        last = len(points) - 2
        for k, (p, q) in enumerate(zip(points, points[1:])):
            for n in nodes:
                if (n is a and k == 0) or (n is b and k == last):
                    continue
                if segment_hits(p, q, node_rect(n)):
                    out["links"].append(f"link {link_id} {label(a)} -> {label(b)} runs behind {label(n)}")
    for n in nodes:
        width = n["size"][0]
        if n.get("widgets_values") and not widget_rows(n) and n["type"] not in ("MarkdownNote", "Note"):
            out["labels"].append(f"{label(n)} lists no widget sockets in its inputs (as the frontend saves them): "
                                 "its widget labels cannot be measured")
        for name, value, kind in widget_rows(n):
            if (n["type"], name) in MULTILINE:
                continue
            shown = f"{float(value):.3f}" if kind == "FLOAT" else ("true" if value is True else "false" if value is False else str(value))
            need = text_width(name) + LABEL_GAP + text_width(shown) + TEXT_PAD
            if need > width:
                out["labels"].append(f"{label(n)}: widget {name}={shown!r} needs {need:.0f} px, the node is {width:.0f}")
    return out


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
@pytest.mark.parametrize("check", ["groups", "nodes", "titles", "links", "labels"])
def test_layout(path, check):
    problems = layout_problems(json.loads(path.read_text(encoding="utf-8")))[check]
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


def test_there_are_workflows_to_measure():
    assert len(WORKFLOWS) >= 6, "the layout checks found no workflows in workflows/"


# --- the checks catch what they claim to ------------------------------------------------------------

def _node(id_, pos, size, **kw):
    return {"id": id_, "type": kw.pop("type", "X"), "pos": list(pos), "size": list(size), "inputs": kw.pop("inputs", []),
            "outputs": kw.pop("outputs", [{"name": "o", "type": "T"}]), "widgets_values": kw.pop("values", []), **kw}


def test_the_checks_catch_a_bad_layout():
    ui = {
        "nodes": [
            _node(1, (0, 0), (200, 100)),
            _node(2, (150, 50), (200, 100)),  # overlaps node 1
            _node(3, (600, 40), (200, 100), inputs=[{"name": "i", "type": "T", "link": 1}]),
            _node(4, (350, 0), (100, 200)),  # between 1's output and 3's input
            _node(5, (0, 400), (120, 80), type="UNETLoader",
                  inputs=[{"name": "unet_name", "type": "COMBO", "widget": {"name": "unet_name"}, "link": None}],
                  values=["wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors"]),
            _node(6, (700, 400), (200, 100)),  # half in group B
        ],
        "links": [[1, 1, 0, 3, 0, "T"]],
        "groups": [{"title": "A", "bounding": [-20, -80, 500, 300]}, {"title": "B", "bounding": [300, 150, 500, 300]},
                   {"title": "C", "bounding": [-10, 340, 300, 200]}],
    }
    found = layout_problems(ui)
    assert any("'A' overlaps group 'B'" in p for p in found["groups"])
    assert any("#1 X overlaps #2 X" in p for p in found["nodes"])
    assert any("covers the title bar of group 'C'" in p for p in found["titles"])
    assert any("#6 X sticks out of group 'B'" in p for p in found["titles"])
    assert any("runs behind #4 X" in p for p in found["links"])
    assert any("widget unet_name" in p for p in found["labels"])
    ui["nodes"][4]["inputs"] = []
    assert any("lists no widget sockets" in p for p in layout_problems(ui)["labels"])


def test_a_reroute_takes_a_link_around_a_node():
    ui = {"nodes": [_node(1, (0, 0), (200, 100)), _node(4, (350, 0), (100, 200)),
                    _node(3, (600, 40), (200, 100), inputs=[{"name": "i", "type": "T", "link": 1}])],
          "links": [[1, 1, 0, 3, 0, "T"]], "groups": [],
          "extra": {"reroutes": [{"id": 1, "pos": [220, 250], "linkIds": [1]}, {"id": 2, "parentId": 1, "pos": [580, 250], "linkIds": [1]}],
                    "linkExtensions": [{"id": 1, "parentId": 2}]}}
    assert not layout_problems(ui)["links"]
    ui["extra"]["reroutes"][1]["pos"] = [580, 100]  # the bend now sits beside node 4: the last leg clears it, the middle one does not
    assert layout_problems(ui)["links"]
