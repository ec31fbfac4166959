"""The shipped workflows (workflows/*.json, UI format) against the real host:

- every node type exists in the host, is a frontend-only note, or belongs to a documented
  third-party pack (checked for real when that pack loads); a workflow whose manifest entry says it
  needs a newer ComfyUI (``min_comfyui``) skips on an older host, saying so;
- converting the UI file to a prompt the way the frontend does (widget order from the host's own
  node definitions, seed control and upload widgets, muted nodes left out, bypassed nodes re-routed)
  gives exactly the API twin in workflows/api/ — so a widget value in the wrong slot fails here;
- widget values are within the declared bounds / options, link types match both ends;
- every workflow on real model files RUNS through ComfyUI's executor on tiny models of the same
  classes (workflow_standins: loaders → stand-ins by file name, text encoders → seeded tokens, sizes
  and steps reduced) and saves each of its videos; once as shipped, and once with its muted groups
  (the Leakage Probe) un-muted and TimeNoise switched on, as a user would; the DynamiCrafter graph
  is validated (not run: it needs the wrapper's real weights) when the wrapper loads. The toy
  workflows run as shipped in test_toy_nodes.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import workflow_standins as standins
from workflow_files import (FRONTEND_ONLY, WORKFLOWS, enabled, load, manifest, object_info, strip_meta, ui_to_api,
                            widget_inputs)

pytestmark = pytest.mark.host

UI_FILES = sorted(WORKFLOWS.glob("*.json"))
THIRD_PARTY = {  # node type -> the pack that provides it (documented in workflows/README.md)
    t: "kijai/ComfyUI-DynamiCrafterWrapper"
    for t in ("DownloadAndLoadDynamiCrafterModel", "DownloadAndLoadCLIPModel", "DownloadAndLoadCLIPVisionModel", "DynamiCrafterI2V")
}
FILE_PICKERS = {  # combos listing files on disk: only the extension is checked
    ("ImageOnlyCheckpointLoader", "ckpt_name"), ("CheckpointLoaderSimple", "ckpt_name"), ("UNETLoader", "unet_name"),
    ("CLIPLoader", "clip_name"), ("DualCLIPLoader", "clip_name1"), ("DualCLIPLoader", "clip_name2"), ("VAELoader", "vae_name"),
    ("CLIPVisionLoader", "clip_name"), ("LoadImage", "image"), ("LoadVideo", "file"), ("CIL_LoadAnalyticStats", "stats_name"),
}
FILE_SUFFIXES = {".safetensors", ".png", ".jpg", ".ckpt", ".pt", ".sft", ".mp4"}
NOT_RUN_HERE = {"dynamicrafter_wrapper_cil": "validated against the real wrapper below",
                "toy_cil_demo": "test_toy_nodes.py", "toy_leakage_probe": "test_toy_nodes.py"}
RUN_FILES = [p for p in UI_FILES if p.stem not in NOT_RUN_HERE]


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def needed_types(ui: dict) -> set[str]:
    return {n["type"] for n in ui["nodes"]} - FRONTEND_ONLY


def ensure_types(host, ui: dict, request, name: str) -> None:
    """Fail on a node type neither the host nor a documented pack has; skip (one line) when the
    manifest says the workflow needs a newer ComfyUI than this host, or a third-party pack is absent."""
    missing = needed_types(ui) - set(host.node_classes)
    newer = manifest().get(name, {}).get("min_comfyui")
    if missing and newer and version_tuple(host.version) < version_tuple(newer):
        pytest.skip(f"{name}: needs ComfyUI >= {newer} (this host {host.version} lacks {sorted(missing)})")
    if missing - set(THIRD_PARTY):
        pytest.fail(f"node types not in ComfyUI {host.version} nor in a documented pack: {sorted(missing - set(THIRD_PARTY))}")
    if missing:
        request.getfixturevalue("dc_wrapper")  # loads the pack or skips, saying why
        still = needed_types(ui) - set(host.node_classes)
        assert not still, f"the third-party pack loaded but lacks {sorted(still)}"


def test_every_template_workflow_is_here():
    names = {p.stem for p in UI_FILES}
    assert names >= {"svd_baseline_vs_cil", "svd_stats_estimation", "svd_xt_txt_to_image_to_video_cil", "dynamicrafter_wrapper_cil",
                     "wan_i2v_cil", "wan22_14b_i2v_cil", "wan22_5b_ti2v_cil", "ltxv_i2v_cil", "hunyuan15_720p_i2v_cil",
                     "kandinsky5_i2v_cil", "toy_cil_demo", "toy_leakage_probe"}
    for path in UI_FILES:
        assert (WORKFLOWS / "api" / path.name).is_file(), f"{path.name} has no API twin in workflows/api/"
        assert path.name in manifest(), f"{path.name} has no entry in workflows/api/manifest.json"


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_ui_file_structure(path):
    ui = load(path)
    assert ui.get("version") == 0.4 and {"nodes", "links", "groups", "last_node_id", "last_link_id"} <= ui.keys()
    ids = [n["id"] for n in ui["nodes"]]
    assert len(set(ids)) == len(ids) and ui["last_node_id"] == max(ids)
    assert ui["last_link_id"] == max(l[0] for l in ui["links"])
    nodes = {n["id"]: n for n in ui["nodes"]}
    for link_id, origin, slot, target, target_slot, kind in ui["links"]:
        assert link_id in (nodes[origin]["outputs"][slot]["links"] or [])
        socket = nodes[target]["inputs"][target_slot]
        assert socket["link"] == link_id and socket["type"] in (kind, "*") and nodes[origin]["outputs"][slot]["type"] == kind
    reroutes = {r["id"]: r for r in ui["extra"].get("reroutes", [])}
    for ext in ui["extra"].get("linkExtensions", []):  # every bend chain ends at a reroute that lists the link
        parent = ext["parentId"]
        while parent is not None:
            assert ext["id"] in reroutes[parent]["linkIds"], f"reroute {parent} does not list link {ext['id']}"
            parent = reroutes[parent].get("parentId")


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_nodes_exist_and_ui_file_serialises_to_the_api_twin(tiny_host, request, path):
    ui = load(path)
    ensure_types(tiny_host, ui, request, path.name)
    twin = strip_meta(load(WORKFLOWS / "api" / path.name))
    assert ui_to_api(tiny_host, ui) == twin


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_widget_values_are_within_declared_bounds(tiny_host, request, path):
    ui = load(path)
    ensure_types(tiny_host, ui, request, path.name)
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        values = list(node["widgets_values"])
        for name, kind, options, combo, slots in widget_inputs(object_info(tiny_host, node["type"])):
            value, extra, values = values[0], values[1:slots], values[slots:]
            where = f"{path.name}: {node['type']} #{node['id']} {name}={value!r}"
            if kind in ("INT", "FLOAT"):
                assert isinstance(value, (int, float)) and not isinstance(value, bool), where
                assert options.get("min", -float("inf")) <= value <= options.get("max", float("inf")), where
                if kind == "INT":
                    assert int(value) == value, where
            elif kind == "BOOLEAN":
                assert isinstance(value, bool), where
            elif kind == "STRING":
                assert isinstance(value, str), where
            elif (node["type"], name) in FILE_PICKERS:
                assert isinstance(value, str) and Path(value).suffix in FILE_SUFFIXES, where
            else:
                assert value in combo, f"{where} not in {combo}"
            for control in extra:
                assert control in ("fixed", "increment", "decrement", "randomize", "image"), where


# --- running the graphs on tiny models -------------------------------------------------------------

def write_example_png(host, size: int = 64) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(host.root / "input" / "example.png")


def write_video_folder(host, name: str, count: int = 2, frames: int = 6, size: int = 64) -> None:
    import av
    import numpy as np

    folder = host.root / "input" / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        with av.open(str(folder / f"clip{i}.mkv"), "w") as container:
            stream = container.add_stream("ffv1", rate=8)
            stream.width = stream.height = size
            stream.pix_fmt = "bgr0"
            for _ in range(frames):
                for packet in stream.encode(av.VideoFrame.from_ndarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


@pytest.fixture
def workflow_host(tiny_host):
    """The host with every CILTest_* node, the workflows' loader stand-ins, and the input files the
    workflows name (example.png, a cil_videos/ folder, the probe's cil_reference.mp4)."""
    for cls in standins.STANDINS:
        tiny_host.register(cls)
    write_example_png(tiny_host)
    write_video_folder(tiny_host, "cil_videos")
    standins.write_reference_clip(tiny_host.root / "input")
    return tiny_host


def outputs_of(prompt: dict) -> list[str]:
    """The filename prefixes of the prompt's saving nodes (videos, and the probe's report)."""
    return sorted(n["inputs"]["filename_prefix"] for n in prompt.values()
                  if n["class_type"] in ("SaveVideo", "SaveAnimatedWEBP", "CIL_LeakageProbe"))


def saved(host, prefix: str) -> list[Path]:
    return sorted((host.root / "output").glob(f"{prefix}_[0-9]*"))


def run_and_check(host, prompt: dict, name: str) -> None:
    why = standins.missing_class(prompt)
    if why:
        pytest.skip(f"{name}: {why}")
    prefixes = outputs_of(prompt)
    assert prefixes, f"{name}: the graph saves nothing"
    before = {p: len(saved(host, p)) for p in prefixes}
    host.run(standins.substitute(prompt))
    for prefix in prefixes:
        assert len(saved(host, prefix)) > before[prefix], f"{name}: no new {prefix}_* file"


@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: p.stem)
def test_api_graph_runs_on_tiny_models(workflow_host, request, stats_dir, path):
    ensure_types(workflow_host, load(path), request, path.name)
    run_and_check(workflow_host, strip_meta(load(WORKFLOWS / "api" / path.name)), path.name)
    if path.stem == "svd_stats_estimation":
        assert list(stats_dir.glob("svd_1024x576_14f*.safetensors")), "the estimated stats were not saved"


@pytest.mark.parametrize("path", [p for p in RUN_FILES if enabled(load(p)) != load(p)], ids=lambda p: p.stem)
def test_graph_runs_with_its_muted_and_bypassed_cil_nodes_switched_on(workflow_host, request, stats_dir, path):
    """Un-muting the Leakage Probe group and switching TimeNoise on gives a graph that runs too."""
    ui = load(path)
    ensure_types(workflow_host, ui, request, path.name)
    prompt = ui_to_api(workflow_host, enabled(ui))
    assert len(prompt) > len(load(WORKFLOWS / "api" / path.name)), f"{path.name}: nothing was switched on"
    run_and_check(workflow_host, prompt, path.name)


def test_dynamicrafter_graph_validates_against_the_real_wrapper(tiny_host, stats_dir, dc_wrapper, official_stats):
    """Types and widget values of the DynamiCrafter graph pass ComfyUI's validation with the real
    wrapper loaded, our DCNOISE output feeding its init_noise input (weights are not needed for that)."""
    import shutil

    shutil.copy(official_stats("dynamicrafter_320x512.safetensors"), stats_dir / "dynamicrafter_320x512.safetensors")
    write_example_png(tiny_host)
    ok, error, outputs, node_errors = tiny_host.validate(strip_meta(load(WORKFLOWS / "api" / "dynamicrafter_wrapper_cil.json")))
    assert ok and not node_errors, (error, node_errors)
