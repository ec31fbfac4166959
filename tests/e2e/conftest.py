"""End-to-end tier: a REAL ComfyUI server (from COMFYUI_PATH) with this pack in a temporary
custom_nodes folder, and the real ComfyUI page (the `comfyui-frontend-package` the host venv
installed) in headless Debian Chromium, driven through playwright-core by tests/e2e/driver/bridge.js.

Opt-in. Without COMFYUI_PATH, Chromium, Node.js or playwright-core every e2e file except
test_00_e2e.py is left out, and that file skips with one line saying why; with a broken setup
(COMFYUI_PATH not a ComfyUI checkout, CIL_HOST_PYTHON missing or without the frontend) it fails,
saying why.

Environment:
  COMFYUI_PATH            ComfyUI checkout (required)
  CIL_HOST_PYTHON         python that runs ComfyUI's main.py (default: the python running pytest)
  CIL_CHROMIUM            browser binary (default /usr/bin/chromium)
  CIL_E2E_WORKFLOWS       folder of UI-format workflows to test (default: the repo's workflows/)
  CIL_E2E_EXTRA_NODES     third-party packs to install next to this one (folders, os.pathsep-separated)
  CIL_E2E_SCREENSHOTS_TO  also copy each workflow's screenshot there (e.g. docs/screenshots)
  CIL_E2E_THUMBNAILS_TO   also write <workflow>.jpg there (e.g. workflows: the template browser's card image)
  CIL_E2E_FRONTEND_ROOT   serve another frontend build (main.py --front-end-root), e.g. a newer
                          comfyui-frontend-package's static/ folder

The rooms, one module each beside this file (imported by their plain names): ``e2e_env`` (settings,
``unavailable``, workflows and manifest), ``e2e_server`` (``ComfyServer``), ``e2e_page``
(``Browser``, ``ComfyPage``). Fixtures and parametrisation live here.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the tier's modules beside this file, by their plain names
    sys.path.append(str(HERE))

from e2e_env import (  # noqa: E402
    CHROMIUM, PACK_NAME, PACK_WORKFLOWS_DIR, REPO, TEMPLATE_FOLDERS, WORKFLOWS_DIR, load_manifest, unavailable, workflow_files,
)
from e2e_page import Browser, ComfyPage  # noqa: E402
from e2e_server import ComfyServer  # noqa: E402

_PROBLEM = unavailable()
SKIP_REASON = f"e2e tier skipped: {_PROBLEM[1]}" if _PROBLEM and _PROBLEM[0] == "skip" else None
FAIL_REASON = f"e2e tier cannot run: {_PROBLEM[1]}" if _PROBLEM and _PROBLEM[0] == "fail" else None
if _PROBLEM:  # test_00_e2e.py alone says why, in one line: a skip (nothing to run it with) or a failure (a broken setup)
    collect_ignore_glob = ["test_[!0]*.py"]


def _refuse_if_unavailable() -> None:
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    if FAIL_REASON:
        pytest.fail(FAIL_REASON, pytrace=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: real ComfyUI server + real page in headless Chromium")


@pytest.fixture(scope="session")
def comfy_server():
    _refuse_if_unavailable()
    base = Path(tempfile.mkdtemp(prefix="cil-e2e-"))
    server = ComfyServer(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def browser():
    _refuse_if_unavailable()
    b = Browser()
    try:
        b.call("launch", executable=CHROMIUM, width=1920, height=1200, timeout_s=60)
        yield b
    finally:
        b.close()


@pytest.fixture(scope="session")
def comfy_page(comfy_server, browser):
    """The ComfyUI page, opened once, with every node definition loaded."""
    page = ComfyPage(comfy_server, browser)
    page.open()
    return page


# --- parametrisation ---------------------------------------------------------------------------

def pytest_generate_tests(metafunc):
    """`workflow_file`: one test per UI workflow in CIL_E2E_WORKFLOWS (default workflows/)."""
    if "workflow_file" in metafunc.fixturenames:
        files = workflow_files()
        if files:
            metafunc.parametrize("workflow_file", files, ids=[p.stem for p in files])
        else:
            metafunc.parametrize("workflow_file", [None], ids=["no-workflows"])


@pytest.fixture(scope="session")
def workflows_dir() -> Path:
    """The folder of UI workflows under test (CIL_E2E_WORKFLOWS, default the repo's workflows/)."""
    return WORKFLOWS_DIR


@pytest.fixture(scope="session")
def all_workflow_files() -> list[Path]:
    return workflow_files()


@pytest.fixture(scope="session")
def manifest():
    """(entries, path) of the runnability manifest; see load_manifest."""
    return load_manifest()


@pytest.fixture(scope="session")
def object_info(comfy_server):
    return comfy_server.get("/object_info", timeout=120)


@pytest.fixture(scope="session")
def pack_workflows() -> tuple[str, Path, list[Path]]:
    """(pack folder name, the repo's workflows folder, its UI workflows): what the template
    browser must offer, independent of CIL_E2E_WORKFLOWS."""
    return PACK_NAME, PACK_WORKFLOWS_DIR, workflow_files(PACK_WORKFLOWS_DIR)


@pytest.fixture(scope="session")
def pack_manifest() -> tuple[dict, Path | None]:
    """(entries, path) of the manifest of the repo's workflows folder (see load_manifest)."""
    return load_manifest(PACK_WORKFLOWS_DIR)


@pytest.fixture(scope="session")
def repo_template_folders() -> list[str]:
    """The folders of this repo that ComfyUI treats as template folders, in its serving order."""
    return [name for name in TEMPLATE_FOLDERS if (REPO / name).is_dir()]
