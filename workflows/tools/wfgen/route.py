"""Links that would run behind a node get bent around it: native link reroutes (``extra.reroutes`` +
``extra.linkExtensions``, points the frontend draws a link through; no nodes, nothing in the API
prompt). A link whose straight segment from output slot to input slot crosses another node (or a
group's title bar, where it can be avoided) goes out to the gap right of its origin, along a free
horizontal channel, and down the gap left of its target; links from one output share their first bends."""

from __future__ import annotations

from .graph import GROUP_TITLE_H, Node, Workflow
from .metrics import SLOT_H, WIDGET_GAP, WIDGET_H
from .widgets import input_specs

BEND = 18  # how far into the gap beside a node a bend sits


def slot_y(node: Node, index: int) -> float:
    return node.pos[1] + (index + 0.7) * SLOT_H


def output_pos(node: Node, slot: int) -> tuple[float, float]:
    return (node.right + 1 - SLOT_H / 2, slot_y(node, slot))


def input_pos(node: Node, name: str, catalog) -> tuple[float, float]:
    """Where a link ends on ``node``: a socket row, or the row of the widget it feeds."""
    x = node.x + SLOT_H / 2
    specs = input_specs(catalog.info(node.type))
    sockets = [s for s in specs if not s.is_widget]
    for i, spec in enumerate(sockets):
        if spec.name == name:
            return (x, slot_y(node, i))
    rows = max(len(sockets), len(catalog.info(node.type)["output"]), 1)
    y = node.pos[1] + rows * SLOT_H + 6
    for spec in specs:
        if not spec.is_widget:
            continue
        if spec.name == name:
            return (x, y + WIDGET_H / 2)
        y += (50 if spec.multiline else WIDGET_H) + WIDGET_GAP
        if spec.slots == 2:
            y += WIDGET_H + WIDGET_GAP
    raise KeyError(f"{node.type} has no input {name!r}")


def rect(node: Node) -> tuple[float, float, float, float]:
    return (node.x, node.top, node.right, node.bottom)


def crosses(p, q, box, pad: float = 2.0) -> bool:
    """Does segment p→q pass through the rectangle (x0, y0, x1, y1) grown by ``pad``?"""
    x0, y0, x1, y1 = box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad
    (px, py), (qx, qy) = p, q
    t0, t1 = 0.0, 1.0
    for d, lo, hi, s in ((qx - px, x0, x1, px), (qy - py, y0, y1, py)):
        if abs(d) < 1e-12:
            if s < lo or s > hi:
                return False
            continue
        a, b = (lo - s) / d, (hi - s) / d
        if a > b:
            a, b = b, a
        t0, t1 = max(t0, a), min(t1, b)
        if t0 > t1:
            return False
    return True


def obstacles(wf: Workflow) -> list[tuple[tuple, Node | None]]:
    """Every node's rectangle (title bar included) and every group's title bar."""
    out = [(rect(n), n) for n in wf.nodes]
    for g in wf.groups:
        x, y, w, _ = g["bounding"]
        out.append(((x, y, x + w, y + GROUP_TITLE_H), None))
    return out


def clear(points, blocks, ends: tuple[Node, Node]) -> bool:
    for i, (p, q) in enumerate(zip(points, points[1:])):
        for box, owner in blocks:
            if (owner is ends[0] and i == 0) or (owner is ends[1] and i == len(points) - 2):
                continue
            if crosses(p, q, box):
                return False
    return True


def candidates(start, end, channels, edges):
    """Bent paths from ``start`` to ``end``, simplest first: two bends on a horizontal channel (out
    into the gap right of the origin, along the channel, into the gap left of the target), then four
    (out level with the slot, down/up a gap beside the origin, along the channel, down/up a gap beside
    the target, in). ``edges``: (node right edges, node left edges) that offer gaps."""
    (sx, sy), (ex, ey) = start, end
    two = [[start, (sx + BEND, yc), (ex - BEND, yc), end] for yc in channels]
    outs = sorted({sx + BEND} | {r + BEND for r in edges[0] if sx < r < sx + 700})[:6]
    ins = sorted({ex - BEND} | {l - BEND for l in edges[1] if ex - 700 < l < ex}, reverse=True)[:6]
    four = [[start, (x1, sy), (x1, yc), (x2, yc), (x2, ey), end] for x1 in outs for x2 in ins for yc in channels]
    return [two, four]


def path_length(path) -> float:
    return sum(abs(p[0] - q[0]) + abs(p[1] - q[1]) for p, q in zip(path, path[1:]))


def route_links(wf: Workflow, catalog) -> tuple[list[dict], dict[tuple[int, str], int]]:
    """(reroutes, {(target id, input name): last reroute id}) bending every link that needs it."""
    blocks = obstacles(wf)
    channels = sorted({y for box, _ in blocks for y in (box[1] - 14, box[3] + 14)})
    edges = ([n.right for n in wf.nodes], [n.x for n in wf.nodes])
    reroutes: list[dict] = []
    shared: dict[tuple, int] = {}
    parents: dict[tuple[int, str], int] = {}

    def bend(pos, parent=None) -> int:
        reroutes.append({"id": len(reroutes) + 1, "pos": [round(pos[0], 1), round(pos[1], 1)], "linkIds": [],
                         **({"parentId": parent} if parent else {})})
        return len(reroutes)

    for node in wf.nodes:
        for name, (src, slot) in node.links.items():
            start, end = output_pos(src, slot), input_pos(node, name, catalog)
            if clear([start, end], blocks, (src, node)):
                continue
            path = None
            for avoid in (blocks, [b for b in blocks if b[1] is not None]):  # group title bars too, if possible
                for paths in candidates(start, end, channels, edges):
                    ok = [p for p in paths if clear(p, avoid, (src, node))]
                    if ok:
                        path = min(ok, key=path_length)
                        break
                if path is not None:
                    break
            if path is None:
                raise ValueError(f"{wf.name}: no free route for {src.type} #{src.id} -> {node.type} #{node.id}.{name}")
            head = len(path) // 2 - 1  # bends on the origin's side, shared by links from the same output
            key = (src.id, slot, tuple(tuple(p) for p in path[1:head + 1]))
            if key not in shared:
                parent = None
                for point in path[1:head + 1]:
                    parent = bend(point, parent)
                shared[key] = parent
            parent = shared[key]
            for point in path[head + 1:-1]:
                parent = bend(point, parent)
            parents[(node.id, name)] = parent
    return reroutes, parents
