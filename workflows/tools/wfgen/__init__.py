"""The pack's workflow generator (run it through ``workflows/tools/make_workflows.py``).

One idea per module:

- ``host``     — ComfyUI booted from COMFYUI_PATH with this pack (and optional third-party packs), and
                 a node type's /object_info entry;
- ``widgets``  — a node definition read as the frontend reads it: sockets, widgets, their order and
                 how many ``widgets_values`` slots each takes;
- ``metrics``  — the frontend's fonts and node geometry: text widths, a node's natural size;
- ``graph``    — the description of a workflow: nodes, links, groups, and the layout helpers;
- ``emit``     — the two file formats: UI (as the frontend saves it) and API (what /prompt takes);
- ``families`` — the workflows themselves, one module per model family, each with its manifest entries;
- ``cli``      — writes every workflow, its API twin and ``workflows/api/manifest.json``.
"""
