"""Writes every workflow (UI file, API twin) and workflows/api/manifest.json from the descriptions
in ``families``, against the booted host's node definitions."""

from __future__ import annotations

import json
import sys

from .emit import to_api, to_ui
from .graph import FRONTEND_ONLY
from .host import ROOT, Catalog, MissingNodeType, boot_comfyui
from .route import route_links

OUT = ROOT / "workflows"
MANIFEST_ABOUT = (
    "Runnability manifest of the workflows in workflows/ (read by tests/e2e, see tests/e2e/README.md; written by "
    "workflows/tools/make_workflows.py). Keys: UI workflow file names in workflows/. run: queue it from the page (true: "
    "graphs on the toy models, no downloads) or load and check only (false); why: shown when not queued, or what the run "
    "shows; packs: third-party custom_nodes folders it needs (pass them with CIL_E2E_EXTRA_NODES); timeout_s: wait for "
    "the run (default 300); min_comfyui: the first ComfyUI with every node and model class it needs (the host tier "
    "skips it on older hosts, saying so)."
)


def dump(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    from .families import all_specs

    only = set(argv if argv is not None else sys.argv[1:])
    catalog = Catalog(boot_comfyui())
    manifest = {"_about": MANIFEST_ABOUT}
    (OUT / "api").mkdir(parents=True, exist_ok=True)
    for spec in all_specs():
        manifest[f"{spec.name}.json"] = spec.manifest()
        if only and spec.name not in only:
            continue
        try:
            wf = spec.build(catalog)
        except MissingNodeType as exc:
            print(f"skip {spec.name}: {exc}")
            continue
        infos = {t: catalog.info(t) for t in {n.type for n in wf.nodes} if t not in FRONTEND_ONLY}
        routes = route_links(wf, catalog)
        (OUT / f"{wf.name}.json").write_text(dump(to_ui(wf, infos, routes)))
        (OUT / "api" / f"{wf.name}.json").write_text(dump(to_api(wf, infos)))
        print(f"wrote workflows/{wf.name}.json and workflows/api/{wf.name}.json ({len(wf.nodes)} nodes, {len(routes[0])} bends)")
    (OUT / "api" / "manifest.json").write_text(dump(manifest))
    return 0
