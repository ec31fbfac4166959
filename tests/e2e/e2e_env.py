"""The e2e tier's settings and what it runs on: environment variables, whether the tier can run
(``unavailable``), the workflows under test and their runnability manifest. No pytest here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PACK_NAME = "comfyui-cil"  # the custom_nodes folder name: what users see in the template browser
DRIVER = HERE / "driver"
ARTIFACTS = HERE / "artifacts"
COMFYUI_PATH = os.environ.get("COMFYUI_PATH", "")
HOST_PYTHON = os.environ.get("CIL_HOST_PYTHON") or sys.executable
CHROMIUM = os.environ.get("CIL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Another frontend build (a folder with index.html, e.g. a newer comfyui-frontend-package's static/),
# served with main.py --front-end-root; unset: the frontend the host venv bundles.
FRONTEND_ROOT = os.environ.get("CIL_E2E_FRONTEND_ROOT", "")
# Folders ComfyUI (app/custom_node_manager.py) offers as a pack's templates, in the order it serves them.
TEMPLATE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")
PACK_WORKFLOWS_DIR = REPO / ("example_workflows" if (REPO / "example_workflows").is_dir() else "workflows")
WORKFLOWS_DIR = Path(os.environ.get("CIL_E2E_WORKFLOWS") or PACK_WORKFLOWS_DIR)
SERVER_READY_TIMEOUT_S = 180


def _python_has_frontend(python: str) -> bool:
    probe = "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('comfyui_frontend_package') else 1)"
    try:
        return subprocess.run([python, "-c", probe], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def unavailable() -> tuple[str, str] | None:
    """None when the tier can run; else (kind, one line). "skip": what the tier needs is not here
    (COMFYUI_PATH unset, a python without the frontend, no Chromium / Node.js / playwright-core:
    tests/e2e/setup.sh); "fail": it was asked for but is broken (COMFYUI_PATH not a ComfyUI
    checkout, CIL_HOST_PYTHON missing or without the frontend)."""
    if not COMFYUI_PATH:
        return "skip", "COMFYUI_PATH is not set (point it at a ComfyUI checkout to test workflows in a browser)"
    if not (Path(COMFYUI_PATH) / "main.py").is_file() or not (Path(COMFYUI_PATH) / "comfy" / "cli_args.py").is_file():
        return "fail", f"COMFYUI_PATH={COMFYUI_PATH!r} is not a ComfyUI checkout (no main.py / comfy/cli_args.py)"
    if not Path(HOST_PYTHON).is_file():
        return "fail", f"CIL_HOST_PYTHON={HOST_PYTHON!r} does not exist"
    if not _python_has_frontend(HOST_PYTHON):
        kind = "fail" if os.environ.get("CIL_HOST_PYTHON") else "skip"
        return kind, f"{HOST_PYTHON} has no comfyui-frontend-package (pip install -r $COMFYUI_PATH/requirements.txt; or set CIL_HOST_PYTHON)"
    if FRONTEND_ROOT and not (Path(FRONTEND_ROOT) / "index.html").is_file():
        return "fail", f"CIL_E2E_FRONTEND_ROOT={FRONTEND_ROOT!r} is not a frontend build (no index.html)"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return "skip", f"no Chromium at {CHROMIUM} (run tests/e2e/setup.sh)"
    if not shutil.which("node"):
        return "skip", "Node.js (node) is not on PATH (run tests/e2e/setup.sh)"
    if not (DRIVER / "node_modules" / "playwright-core" / "package.json").is_file():
        return "skip", "playwright-core is not installed in tests/e2e/driver (run tests/e2e/setup.sh)"
    return None


# --- the workflows under test ------------------------------------------------------------------

MANIFEST_NAMES = ("manifest.json",)


def workflow_files(folder: Path = WORKFLOWS_DIR) -> list[Path]:
    """UI-format workflows: every *.json directly in the folder except the manifest."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if p.name not in MANIFEST_NAMES)


def load_manifest(folder: Path = WORKFLOWS_DIR) -> tuple[dict, Path | None]:
    """Runnability per workflow file name: {"x.json": {"run": bool, "why": str, "packs": [...],
    "timeout_s": int}}. Looked up next to the workflows (api/manifest.json, then manifest.json),
    then in tests/e2e/manifest.json (this tier's own stop-gap)."""
    for candidate in (folder / "api" / "manifest.json", folder / "manifest.json", HERE / "manifest.json"):
        if candidate.is_file():
            data = json.loads(candidate.read_text(encoding="utf-8"))
            return {k: v for k, v in data.items() if not k.startswith("_")}, candidate
    return {}, None


def extra_node_packs() -> list[Path]:
    raw = os.environ.get("CIL_E2E_EXTRA_NODES", "")
    return [Path(p).resolve() for p in raw.split(os.pathsep) if p.strip()]
