"""The tier itself: ComfyUI boots with this pack, and its page opens in headless Chromium.

When the tier cannot run (no COMFYUI_PATH, Chromium, Node.js or playwright-core), this is the only
e2e file collected and its single test skips with one line saying why."""

import pytest

pytestmark = pytest.mark.e2e


def test_server_and_page_come_up_with_the_pack(comfy_server, comfy_page):
    log = comfy_server.log_path.read_text(errors="replace")
    failed = [line for line in log.splitlines() if "IMPORT FAILED" in line and "comfyui-cil" in line]
    assert not failed, "ComfyUI could not import the pack:\n" + "\n".join(failed) + "\n" + comfy_server.log_tail()
    version = comfy_page.browser.js("return window.__COMFYUI_FRONTEND_VERSION__ || null;")
    stats = comfy_server.get("/system_stats")
    print(f"ComfyUI {stats['system'].get('comfyui_version')} frontend {version} on {comfy_server.url}")

