"""The description of a workflow: nodes with their widget values and links, groups, and the layout
helpers that place nodes in columns and fit groups around them (sizes from ``metrics``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .metrics import DISPLAY_MIN, TITLE_H, needed_height, needed_width

MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4  # LGraphEventMode: 2 = muted, 4 = bypassed
FRONTEND_ONLY = {"MarkdownNote", "Note"}  # virtual nodes of the frontend: not in the API prompt
GROUP_TITLE_H = 34  # a group's title bar at font size 24 (1.4 × 24 in the 1.3x frontends, 30 later)
NOTE_COLORS = {"color": "#432", "bgcolor": "#653"}
CIL_GREEN, CIL_RED, CORE_BLUE, GREY = "#8A8", "#A88", "#3f789e", "#444"


@dataclass(eq=False)
class Node:
    id: int
    type: str
    pos: tuple[float, float]  # the body's top-left; the title bar lies TITLE_H above it
    size: tuple[float, float]
    widgets: dict
    links: dict  # input name -> (Node, output slot)
    title: str | None = None
    mode: int = MODE_ALWAYS
    color: str | None = None
    bgcolor: str | None = None
    controls: dict = field(default_factory=dict)  # seed input -> "fixed"/"randomize"
    properties: dict = field(default_factory=dict)

    def out(self, slot: int = 0) -> tuple["Node", int]:
        return (self, slot)

    @property
    def x(self) -> float:
        return self.pos[0]

    @property
    def top(self) -> float:
        return self.pos[1] - TITLE_H

    @property
    def right(self) -> float:
        return self.pos[0] + self.size[0]

    @property
    def bottom(self) -> float:
        return self.pos[1] + self.size[1]


@dataclass
class Workflow:
    name: str
    catalog: object  # host.Catalog
    nodes: list[Node] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)

    def add(self, type_: str, pos, size=(0, 0), *, title=None, node_mode=MODE_ALWAYS, color=None, bgcolor=None,
            controls=None, links=None, models=None, **widgets) -> Node:
        """A node at ``pos``, at least ``size`` and as large as the page needs it (computeSize, and
        room for every widget's label and value); ``node_mode``: 0 normal, 2 muted, 4 bypassed."""
        info = None if type_ in FRONTEND_ONLY else self.catalog.info(type_)
        links = dict(links or {})
        width = needed_width(info, widgets, dict(controls or {}), title if info is not None else title or type_)
        height = needed_height(info)
        width, height = max(width, DISPLAY_MIN.get(type_, (0, 0))[0]), max(height, DISPLAY_MIN.get(type_, (0, 0))[1])
        props = {"Node name for S&R": type_} if info is not None else {}
        if models:
            props["models"] = list(models)
        node = Node(len(self.nodes) + 1, type_, (float(pos[0]), float(pos[1])),
                    (float(max(size[0], width)), float(max(size[1], height))), widgets, links, title, node_mode,
                    color, bgcolor, dict(controls or {}), props)
        self.nodes.append(node)
        return node

    def note(self, pos, size, text: str, title: str | None = None) -> Node:
        return self.add("MarkdownNote", pos, size, title=title, text=text, **NOTE_COLORS)

    def group(self, title: str, members: list[Node], color: str = CORE_BLUE, pad: float = 16) -> dict:
        """A group fitted around ``members`` (their title bars included) with its own title bar above them."""
        x0 = min(n.x for n in members) - pad
        y0 = min(n.top for n in members) - pad - GROUP_TITLE_H
        x1 = max(n.right for n in members) + pad
        y1 = max(n.bottom for n in members) + pad
        entry = {"id": len(self.groups) + 1, "title": title, "bounding": [x0, y0, x1 - x0, y1 - y0],
                 "color": color, "font_size": 24, "flags": {}}
        self.groups.append(entry)
        return entry


class Column:
    """Nodes stacked top to bottom at one x, ``gap`` px between a node's bottom and the next title bar."""

    def __init__(self, wf: Workflow, x: float, y: float, gap: float = 36) -> None:
        self.wf, self.x, self.y, self.gap = wf, x, y, gap
        self.nodes: list[Node] = []

    def add(self, type_: str, size=(0, 0), **kw) -> Node:
        node = self.wf.add(type_, (self.x, self.y + TITLE_H), size, **kw)
        return self._placed(node)

    def note(self, size, text: str, title: str | None = None) -> Node:
        return self._placed(self.wf.note((self.x, self.y + TITLE_H), size, text, title))

    def _placed(self, node: Node) -> Node:
        self.nodes.append(node)
        self.y = node.bottom + self.gap
        return node

    def skip(self, dy: float) -> "Column":
        self.y += dy
        return self

    @property
    def right(self) -> float:
        return max((n.right for n in self.nodes), default=self.x)

    def even(self) -> "Column":
        """Every node as wide as the widest one."""
        width = max((n.size[0] for n in self.nodes), default=0)
        for n in self.nodes:
            n.size = (width, n.size[1])
        return self


class Row:
    """Columns side by side from ``x``, each starting at ``y`` and ``gap`` px right of the previous one."""

    def __init__(self, wf: Workflow, x: float, y: float, gap: float = 70) -> None:
        self.wf, self.x, self.y, self.gap = wf, x, y, gap
        self.columns: list[Column] = []

    def column(self, x: float | None = None) -> Column:
        if x is None:
            x = self.columns[-1].right + self.gap if self.columns else self.x
        col = Column(self.wf, x, self.y)
        self.columns.append(col)
        return col

    @property
    def nodes(self) -> list[Node]:
        return [n for c in self.columns for n in c.nodes]

    @property
    def bottom(self) -> float:
        return max(n.bottom for n in self.nodes)

    @property
    def right(self) -> float:
        return max(n.right for n in self.nodes)
