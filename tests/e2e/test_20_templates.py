"""The pack's workflows are offered in the page's template browser under the pack's name.

ComfyUI (app/custom_node_manager.py) lists `<custom_nodes>/<pack>/workflows/*.json` (also
example_workflows/, examples/, ...) at GET /workflow_templates and serves each file at
/api/workflow_templates/<pack>/<name>.json; the page shows them under Extensions → <pack>.
This checks the repo's own workflows/ folder (what users get), whatever CIL_E2E_WORKFLOWS says."""

from __future__ import annotations

import json
import urllib.parse

import pytest

pytestmark = pytest.mark.e2e


def test_the_template_route_serves_every_workflow(comfy_server, pack_workflows, repo_template_folders):
    pack, folder, files = pack_workflows
    assert files, f"no UI workflows (*.json) in {folder}: the pack ships its workflows there"
    # ComfyUI mounts every one of these folders at the same URL prefix; only the first one is reachable.
    assert repo_template_folders[0] == folder.name, (
        f"ComfyUI serves /api/workflow_templates/{pack}/ from the first existing folder of "
        f"{', '.join(f + '/' for f in repo_template_folders)} — {repo_template_folders[0]}/ shadows {folder.name}/, "
        f"so every template 404s: rename {repo_template_folders[0]}/ or move the workflows to example_workflows/")
    served = comfy_server.get("/workflow_templates").get(pack, [])
    expected = sorted(p.stem for p in files)
    extra = sorted(set(served) - set(expected))
    assert not extra, (f"the template browser would also offer {extra} from {folder}: every *.json there is "
                       "shown to users as a template, so keep manifests and API-format twins out of it")
    assert sorted(served) == expected, f"/workflow_templates[{pack!r}] = {sorted(served)}, files: {expected}"
    for path in files:
        route = f"/api/workflow_templates/{urllib.parse.quote(pack)}/{urllib.parse.quote(path.name)}"
        assert comfy_server.get(route) == json.loads(path.read_text(encoding="utf-8")), f"{route} differs from {path}"


# The template browser is a dialog in every frontend (PrimeVue's .global-dialog up to 1.3x, a
# role="dialog" panel later); its cards carry the workflow's name in an <h3>.
DIALOG = '[role="dialog"]'
_CARDS_JS = """
const out = {};
for (const h of document.querySelectorAll('[role="dialog"] h3')) {
  if (!h.getBoundingClientRect().width || !arg.includes(h.innerText.trim())) continue;
  let card = h;  // the card: the nearest ancestor holding an image (or the 6th one up)
  for (let i = 0; i < 6 && card.parentElement && !card.querySelector('img'); i++) card = card.parentElement;
  out[h.innerText.trim()] = [...card.querySelectorAll('img')].map(img => ({src: img.src, loaded: img.complete && img.naturalWidth > 0,
                                                                    size: [img.naturalWidth, img.naturalHeight]}));
}
return out;
"""
_DIALOG_GONE_JS = """
return window.__cilE2E.missing !== null
  && ![...document.querySelectorAll('[role="dialog"]')].some(d => d.getBoundingClientRect().width && d.innerText.includes(arg.pack))
  && {missing: window.__cilE2E.missing, nodes: window.app.graph.nodes.length};
"""


def shows_thumbnail(img: dict, jpg) -> bool:
    """A card image is the workflow's thumbnail: loaded from <name>.jpg, or (newer frontends fetch it
    and show a blob: URL) a loaded blob of exactly that file's pixel size."""
    if not (img["loaded"] and jpg.is_file()):
        return False
    if jpg.name in img["src"]:
        return True
    from PIL import Image

    with Image.open(jpg) as im:
        return img["src"].startswith("blob:") and list(im.size) == list(img["size"])


def test_the_template_browser_lists_and_opens_them(comfy_page, pack_workflows, pack_manifest):
    pack, folder, files = pack_workflows
    assert files, f"no UI workflows (*.json) in {folder}: the pack ships its workflows there"
    browser = comfy_page.browser
    comfy_page.close_dialogs()
    browser.js("await window.app.extensionManager.command.execute('Comfy.BrowseTemplates');")
    browser.call("click", selector=f'{DIALOG} >> text="{pack}"', timeout_ms=20000)
    names = [p.stem for p in files]
    try:  # cards and their thumbnails (<name>.jpg beside the workflow) load lazily
        browser.call("wait_for", timeout_s=40, timeout_ms=30000, arg=names, body=(
            "const cards = (() => {" + _CARDS_JS + "})();"
            "return arg.every(n => (cards[n] || []).some(i => i.loaded));"))
    except AssertionError:
        pass  # reported below, with what the browser does show
    cards = browser.js(_CARDS_JS, arg=names)
    shot = comfy_page.screenshot("template-browser", publish=False)
    absent = sorted(n for n in names if n not in cards)
    assert not absent, f"template browser under {pack!r} lacks {absent} (it shows {sorted(cards)}; screenshot {shot})"
    no_thumb = sorted(n for n, imgs in cards.items() if not any(shows_thumbnail(i, folder / f"{n}.jpg") for i in imgs))
    assert not no_thumb, (f"template browser shows no thumbnail for {no_thumb}: ship workflows/<name>.jpg "
                          f"(CIL_E2E_THUMBNAILS_TO=workflows writes them); cards: {cards}; screenshot {shot}")

    # Opened from there: a workflow this server has every node pack of (a runnable one first).
    entries = pack_manifest[0]
    openable = sorted((p for p in files if set(entries.get(p.name, {}).get("packs", [])) <= set(comfy_page.server.packs)),
                      key=lambda p: (not entries.get(p.name, {}).get("run"), p.name))
    if not openable:
        comfy_page.close_dialogs()
        pytest.skip(f"every workflow in {folder} needs a third-party pack this host lacks; pass them in CIL_E2E_EXTRA_NODES")
    first = openable[0]
    browser.js("window.__cilE2E.missing = null; return true;")
    browser.call("click", selector=f'{DIALOG} h3 >> text="{first.stem}"')
    try:
        state = browser.call("wait_for", timeout_s=40, timeout_ms=30000, arg={"pack": pack}, body=_DIALOG_GONE_JS)
    except AssertionError as exc:
        comfy_page.close_dialogs()
        pytest.fail(f"{first.name} did not open from the template browser within 30 s; page errors: "
                    f"{browser.call('log')}; {str(exc).splitlines()[0]}")
    expected_nodes = len(json.loads(first.read_text(encoding="utf-8"))["nodes"])
    assert not state["missing"], f"{first.name} opened from the template browser with missing nodes {state['missing']}"
    assert state["nodes"] == expected_nodes, f"{first.name} from the template browser: {state['nodes']} nodes, file has {expected_nodes}"
