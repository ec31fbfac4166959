"""Host tier: a REAL ComfyUI (from COMFYUI_PATH) booted in this process with this pack loaded, and
API-format prompts run through ComfyUI's own validator and executor. Nothing here fakes ComfyUI.

The rooms, one module each beside this file (importable by their plain names: this conftest puts
this folder on ``sys.path``, after ComfyUI's root and next to the repo root, which stays last):

* ``host_boot``     — ``Host`` (the booted ComfyUI: ``run``/``validate``/``load_latent``/``register``),
                      ``HostServer``, ``PromptFailed``, ``unavailable``;
* ``tiny_models``   — ``tiny_svd``, ``tiny_vp``, ``tiny_wan``, ``svd_conditioning``, ``wan_conditioning``,
                      ``init_weights``, ``tiny_sd_vae``, ``tiny_wan_vae``, ``tiny_clip_vision``, ``make_stats``;
* ``ciltest_nodes`` — the test-only ``CILTest_*`` nodes, ``CAPTURES``, ``IMAGE_STORE``;
* ``comfy_server``  — ``ComfyServer``: a real ``main.py`` server on 127.0.0.1 (server tests), with
                      the test-only ``fuzz_pack`` (``CILFuzz_Finite``) beside this pack;
* ``prompt_fuzz``   — hostile prompts drawn with a fixed seed from the toy workflows.

Fixtures (here): ``host`` (booted ComfyUI), ``svd_host`` (+ CILTest_TinySVD), ``tiny_host`` (+ every
CILTest_* node), ``captures`` (what the capture nodes recorded), ``image_store``, ``stats_dir`` /
``write_stats`` (a temporary ``cil_stats`` models folder), ``tiny_models``, ``official_stats``
(official Analytic-Init files from shared/data, or skip) and ``dc_wrapper`` (kijai's
DynamiCrafterWrapper from a temporary copy, or skip when CIL_DCWRAPPER_PATH is unset).

Without a host (COMFYUI_PATH unset, or a python without torchvision) every host test file except
test_00_host.py is left out, and that file skips with one line saying why; with a broken one
(COMFYUI_PATH not a ComfyUI checkout, torchvision that does not import) it fails, saying why.
Every test collected here carries the ``host`` mark.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
for _entry in (HERE, REPO):  # appended: ComfyUI's root goes first at boot, the repo root is kept last
    if str(_entry) not in sys.path:
        sys.path.append(str(_entry))

from host_boot import Host, unavailable  # noqa: E402  (needs the sys.path entry above)
from tiny_models import make_stats, tiny_svd, tiny_vp, tiny_wan  # noqa: E402
import ciltest_nodes  # noqa: E402

_PROBLEM = unavailable()
SKIP_REASON = f"host tier skipped: {_PROBLEM[1]}" if _PROBLEM and _PROBLEM[0] == "skip" else None
FAIL_REASON = f"host tier cannot run: {_PROBLEM[1]}" if _PROBLEM and _PROBLEM[0] == "fail" else None
if _PROBLEM:  # test_00_host.py alone says why, in one line: a skip (no host here) or a failure (a broken one)
    collect_ignore_glob = ["test_[!0]*.py", "test_0[!0]*.py"]


def pytest_collection_modifyitems(config, items):
    """`-m host` (CI) selects this tier: a test file here that forgot its mark is not silently dropped."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.host)


_HOST: Host | None = None


@pytest.fixture(scope="session")
def host() -> Host:
    """The booted ComfyUI, shared by every host test in this process."""
    global _HOST
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    if FAIL_REASON:
        pytest.fail(FAIL_REASON, pytrace=False)
    if _HOST is None:
        _HOST = Host(Path(tempfile.mkdtemp(prefix="cil-host-")))
    return _HOST


@pytest.fixture(scope="session")
def svd_host(host) -> Host:
    """The host with the CILTest_TinySVD source node registered."""
    host.register(ciltest_nodes.CILTest_TinySVD)
    return host


@pytest.fixture(scope="session")
def tiny_host(host) -> Host:
    """The host with every CILTest_* node registered (tiny SVD, VP, Wan, loader stand-ins, capture nodes)."""
    import gc

    for cls in ciltest_nodes.TEST_NODES:
        host.register(cls)
    yield host
    ciltest_nodes.release_cached_models()  # release cached model patchers while ComfyUI's modules still exist
    gc.collect()


@pytest.fixture()
def loras_dir(host, tmp_path):
    """A temporary loras folder, first in ComfyUI's list (the training node writes there; LoRA loaders read it)."""
    folder = tmp_path / "loras"
    folder.mkdir()
    fp = host.folder_paths
    saved = (list(fp.folder_names_and_paths["loras"][0]), set(fp.folder_names_and_paths["loras"][1]))
    fp.add_model_folder_path("loras", str(folder), is_default=True)
    yield folder
    fp.folder_names_and_paths["loras"] = saved


@pytest.fixture
def captures() -> dict[str, list[dict]]:
    """What CILTest_CaptureApplyModel / CILTest_CaptureValue recorded, emptied before each test."""
    ciltest_nodes.CAPTURES.clear()
    return ciltest_nodes.CAPTURES


@pytest.fixture
def image_store() -> dict:
    """Put an IMAGE tensor here under a key; CILTest_StoredImages(key) hands it to the graph."""
    ciltest_nodes.IMAGE_STORE.clear()
    return ciltest_nodes.IMAGE_STORE


@pytest.fixture
def stats_dir(host, tmp_path) -> Path:
    """A fresh folder registered as ComfyUI's ``cil_stats`` models folder for this test."""
    folder = tmp_path / "cil_stats"
    folder.mkdir()
    with host.models_folder("cil_stats", folder):
        yield folder


@pytest.fixture
def write_stats(stats_dir):
    """``write_stats(name, CFHW shape, tr_cov_d=, seed=, scale=, meta=)`` saves random stats (our
    format) into the test's ``cil_stats`` folder and returns (file name, the AnalyticStats)."""
    from cil_core.stats_io import save_stats

    def write(name: str, shape, **kw):
        stats = make_stats(shape, **kw)
        save_stats(stats, stats_dir / name)
        return name, stats

    return write


@pytest.fixture(scope="session")
def tiny_models(host) -> dict:
    """Builders of the tiny models by kind: {"svd", "vp", "wan"} → ModelPatcher."""
    return {"svd": tiny_svd, "vp": tiny_vp, "wan": tiny_wan}


# --- official Analytic-Init files (shared/data), when present ------------------------------------

OFFICIAL_DIRS = tuple(root / "data" / "official-analytic-init" for root in (REPO.parent / "shared", Path("/work/shared")))


@pytest.fixture(scope="session")
def official_stats():
    """``official_stats(name)``: the path of an official Analytic-Init file (shared/ beside the
    checkout, as in CI, or the workspace copy); skips, saying where it looked, when it is absent."""

    def find(name: str) -> Path:
        for folder in OFFICIAL_DIRS:
            if (folder / name).is_file():
                return folder / name
        pytest.skip(f"official stats {name} not found in {' or '.join(str(d) for d in OFFICIAL_DIRS)}")

    return find


# --- kijai/ComfyUI-DynamiCrafterWrapper, when available ------------------------------------------

DC_WRAPPER = Path(os.environ["CIL_DCWRAPPER_PATH"]) if os.environ.get("CIL_DCWRAPPER_PATH") else None


@pytest.fixture(scope="session")
def dc_wrapper(host):
    """The real DynamiCrafterWrapper loaded into the host from a TEMPORARY custom_nodes copy (never
    the repo). Skips (one line) when CIL_DCWRAPPER_PATH is unset: the host lacks that third-party
    pack. Set but not a wrapper checkout, or not importable in this host: fails, saying why."""
    import shutil

    if DC_WRAPPER is None:
        pytest.skip("DynamiCrafterWrapper interop skipped: CIL_DCWRAPPER_PATH is not set (a ComfyUI-DynamiCrafterWrapper checkout)")
    if not (DC_WRAPPER / "nodes.py").is_file():
        pytest.fail(f"CIL_DCWRAPPER_PATH={str(DC_WRAPPER)!r} is not a ComfyUI-DynamiCrafterWrapper checkout (no nodes.py)")
    if "DynamiCrafterI2V" not in host.node_classes:
        target = Path(tempfile.mkdtemp(prefix="cil-dcwrapper-")) / "ComfyUI-DynamiCrafterWrapper"
        shutil.copytree(DC_WRAPPER, target)
        loaded = asyncio.run(host.nodes.load_custom_node(str(target)))
        if not loaded or "DynamiCrafterI2V" not in host.node_classes:
            pytest.fail(f"DynamiCrafterWrapper from {DC_WRAPPER} did not load in ComfyUI {host.version} (see the log above; "
                        "its requirements: omegaconf, pytorch_lightning, timm, accelerate)")

    root = next(m for m in sys.modules if m.endswith("DynamiCrafterWrapper") and "." not in m)

    def module(suffix: str):
        """A module of the loaded wrapper package, e.g. module('lvdm.models.ddpm3d')."""
        import importlib

        return importlib.import_module(f"{root}.{suffix}")

    return module


@pytest.fixture
def video_host(tiny_host):
    """The host with the tiny video models of tiny_video_models (CILTest_TinyVideoModel,
    CILTest_CaptureTimestep) besides every CILTest_* node."""
    import tiny_video_models

    tiny_host.register(tiny_video_models.CILTest_TinyVideoModel)
    tiny_host.register(tiny_video_models.CILTest_CaptureTimestep)
    tiny_video_models.TIMESTEPS.clear()
    return tiny_host
