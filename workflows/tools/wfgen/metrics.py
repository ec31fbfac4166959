"""The ComfyUI frontend's node geometry and fonts (litegraph as bundled in comfyui-frontend-package
1.3x–1.5x), enough to give every node a size the page will not grow and room for its widget texts.

Numbers read from the frontend: NODE_TITLE_HEIGHT 30, NODE_SLOT_HEIGHT 20, NODE_WIDGET_HEIGHT 20 (+ 4
between widgets), widget texts in "12px Inter", titles in "14px Inter"; a number/combo/text widget
shows label + 5 px + value inside its width minus 85 px (BaseWidget.drawTruncatingText: margins 15,
left padding 5, right padding 20). ``computeSize`` is LGraphNode.computeSize (the page grows a node
to it on load). Character widths were measured with canvas measureText in the page (headless
Chromium, Inter), rounded up to 0.5 px.
"""

from __future__ import annotations

from .widgets import input_specs, output_specs

TITLE_H = 30
SLOT_H = 20
WIDGET_H = 20
WIDGET_GAP = 4
TEXT_PAD = 85  # width a widget needs besides label + gap + value
LABEL_GAP = 5
DOM_MIN_H = 50  # a textarea / markdown widget's minimum height
# nodes whose frontend adds display-only widgets (a text box, a toggle): their computeSize minimum
DISPLAY_MIN = {"PreviewAny": (210, 112)}

# 12 px Inter (widget and socket texts), characters by width bucket (measured, rounded up to 0.5 px)
_INTER_12_BINS = {3.0: "ijl", 3.5: " !,.:I", 4.0: "';`t|", 4.5: "()/[\\]f", 5.0: "1r", 5.5: "_{}", 6.0: '"-^',
                  6.5: "*?s", 7.0: "7JLacekvxyz", 7.5: "235689EFbdghnopqu", 8.0: "#$&+04<=>BPRSTZ~", 8.5: "AKVXY",
                  9.0: "CDGHU", 9.5: "NOQ", 10.0: "w", 11.0: "Mm", 12.0: "%@W"}
INTER_12 = {ch: w for w, chars in _INTER_12_BINS.items() for ch in chars}
TITLE_SCALE = 14 / 12  # titles: 14 px Inter


def text_width(text: str, size: int = 12) -> float:
    """Width in px of ``text`` in Inter at 12 px (widgets, sockets) or 14 px (titles), 7 % over the sum
    of its characters' buckets (the layout test allows 5 %, the page's kerning never adds); characters
    outside ASCII count as the widest."""
    scale = TITLE_SCALE if size == 14 else 1.0
    return 1.07 * scale * sum(INTER_12.get(ch, 12.0) for ch in str(text))


def display_value(spec, value) -> str:
    """A widget value as the frontend shows it: numbers with the widget's precision (taken from
    ``round``, else ``step``; ComfyUI's float widgets show at least 2 decimals here, conservatively 3)."""
    if spec.kind == "FLOAT":
        step = spec.options.get("round") or spec.options.get("step") or 0.01
        decimals = max(3, len(f"{step:g}".split(".")[1]) if "." in f"{step:g}" else 0)
        return f"{float(value):.{decimals}f}"
    if spec.kind == "BOOLEAN":
        return "false" if not value else "true"
    return str(value)


def widget_texts(info: dict, values: dict, controls: dict) -> list[tuple[str, str]]:
    """(label, shown value) of every one-line widget row: the widgets, a seed's "control after
    generate" row and an upload button (its label only). Multiline text boxes are left out."""
    rows = []
    for spec in input_specs(info):
        if not spec.is_widget or spec.multiline:
            continue
        rows.append((spec.name, display_value(spec, values.get(spec.name, ""))))
        if spec.slots == 2 and spec.upload:
            rows.append(("choose file to upload", ""))
        elif spec.slots == 2:
            rows.append(("control_after_generate", controls.get(spec.name, "randomize")))
    return rows


def needed_width(info: dict | None, values: dict, controls: dict, title: str | None) -> float:
    """The width a node needs: computeSize's (sockets, title — the node's own or its display name —,
    minimum) and room for every widget's label + value without truncation."""
    title_w = text_width(title or (info or {}).get("display_name") or "", 14) + TITLE_H * 1.33
    if info is None:
        return max(title_w, 140)
    specs = input_specs(info)
    sockets = [s.name for s in specs if not s.is_widget]
    outs = [name for name, _ in output_specs(info)]
    left = max((text_width(n) for n in sockets), default=0)
    right = max((text_width(n) for n in outs), default=0)
    width = max(title_w, left + right + 2 * SLOT_H + (5 if left and right else 0), 140)
    widgets = [s for s in specs if s.is_widget]
    if widgets:
        width = max(width, 210)
    for spec in widgets:  # every widget has a socket; computeSize makes room for its label + 104 px
        width = max(width, text_width(spec.name) + 104)
        if spec.upload:
            width = max(width, text_width("choose file to upload") + 104)
    for label, shown in widget_texts(info, values, controls):
        width = max(width, text_width(label) + LABEL_GAP + text_width(shown) + TEXT_PAD)
    return width


def needed_height(info: dict | None) -> float:
    """computeSize's height: socket rows, then every widget (20 px, textareas 50 px, + 4 each), + 14."""
    if info is None:
        return 60
    specs = input_specs(info)
    rows = max(sum(1 for s in specs if not s.is_widget), len(info["output"]), 1)
    height = rows * SLOT_H
    widgets = 0.0
    for spec in specs:
        if not spec.is_widget:
            continue
        widgets += (DOM_MIN_H if spec.multiline else WIDGET_H) + WIDGET_GAP
        if spec.slots == 2:
            widgets += WIDGET_H + WIDGET_GAP
    if widgets:
        widgets += 8
    return height + widgets + 6
