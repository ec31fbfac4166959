"""The shipped workflows (workflows/*.json, UI format) against the real host:

- every node type exists in the host, is a frontend-only note, or belongs to a documented
  third-party pack (checked for real when that pack loads);
- converting the UI file to a prompt the way the frontend does (widget order from the host's own
  node definitions, seed control and upload widgets, bypassed nodes re-routed) gives exactly the
  API twin in workflows/api/ — so a widget value in the wrong slot fails here;
- widget values are within the declared bounds / options, link types match both ends;
- the SVD and Wan graphs RUN through ComfyUI's executor on tiny models, with these documented
  substitutions (TEST_SUBSTITUTIONS): loaders → the CILTest_* stand-ins with the same outputs,
  CLIPLoader + CLIPTextEncode → CILTest_TinyTextEncode, sizes/steps reduced, a generated
  example.png and video folder in the input directory; the DynamiCrafter graph is validated
  (not run: it needs the wrapper's real weights) when the wrapper loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
UI_FILES = sorted(WORKFLOWS.glob("*.json"))
FRONTEND_ONLY = {"MarkdownNote", "Note", "Reroute", "PrimitiveNode"}
THIRD_PARTY = {  # node type -> the pack that provides it (documented in workflows/README.md)
    t: "kijai/ComfyUI-DynamiCrafterWrapper"
    for t in ("DownloadAndLoadDynamiCrafterModel", "DownloadAndLoadCLIPModel", "DownloadAndLoadCLIPVisionModel", "DynamiCrafterI2V")
}
FILE_PICKERS = {  # combos listing files on disk: only the extension is checked
    ("ImageOnlyCheckpointLoader", "ckpt_name"), ("UNETLoader", "unet_name"), ("CLIPLoader", "clip_name"),
    ("VAELoader", "vae_name"), ("CLIPVisionLoader", "clip_name"), ("LoadImage", "image"), ("CIL_LoadAnalyticStats", "stats_name"),
}
MODE_BYPASS = 4


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def object_info(host, node_type: str) -> dict:
    """ComfyUI's /object_info entry for a node type (server.py node_info), V1 and V3."""
    from comfy_api.internal import _ComfyNodeInternal

    cls = host.node_classes[node_type]
    if issubclass(cls, _ComfyNodeInternal):
        return cls.GET_NODE_INFO_V1()
    inputs = cls.INPUT_TYPES()
    return {"input": inputs, "input_order": {k: list(v) for k, v in inputs.items()}, "output": cls.RETURN_TYPES}


def ordered_inputs(info: dict):
    for section in ("required", "optional"):
        spec = info["input"].get(section, {})
        for name in info.get("input_order", {}).get(section, list(spec)):
            entry = spec[name]
            kind = "COMBO" if isinstance(entry[0], list) else entry[0]
            yield name, kind, (entry[1] if len(entry) > 1 else {}), (entry[0] if isinstance(entry[0], list) else None)


def widget_inputs(info: dict):
    """(name, kind, options, combo list, n slots) of the widgets in frontend order (useIntWidget rule:
    control_after_generate ?? name in {seed, noise_seed}; image_upload adds an upload widget). A
    widget with a link into it keeps its slot in widgets_values; the link wins in the prompt."""
    for name, kind, options, combo in ordered_inputs(info):
        if kind not in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO") or options.get("forceInput"):
            continue
        control = options.get("control_after_generate")
        two = (kind == "INT" and (control if control is not None else name in ("seed", "noise_seed"))) \
            or (kind in ("FLOAT", "COMBO") and bool(control)) or (kind == "COMBO" and bool(options.get("image_upload")))
        yield name, kind, options, (combo if combo is not None else options.get("options")), 2 if two else 1


def needed_types(ui: dict) -> set[str]:
    return {n["type"] for n in ui["nodes"]} - FRONTEND_ONLY


def ensure_types(host, ui: dict, request) -> None:
    missing = needed_types(ui) - set(host.node_classes)
    if missing - set(THIRD_PARTY):
        pytest.fail(f"node types not in ComfyUI {host.version} nor in a documented pack: {sorted(missing - set(THIRD_PARTY))}")
    if missing:
        request.getfixturevalue("dc_wrapper")  # loads the pack or skips, saying why
        still = needed_types(ui) - set(host.node_classes)
        assert not still, f"the third-party pack loaded but lacks {sorted(still)}"


def ui_to_api(host, ui: dict) -> dict:
    """The frontend's graphToPrompt, reduced to what these files use."""
    nodes = {n["id"]: n for n in ui["nodes"]}
    links = {l[0]: l for l in ui["links"]}

    def source(link_id):
        _, origin, slot, *_ = links[link_id]
        node = nodes[origin]
        while node["mode"] == MODE_BYPASS:  # follow a bypassed node's input of the same type
            kind = node["outputs"][slot]["type"]
            match = [i for i in node["inputs"] if i["type"] == kind and i.get("link") is not None]
            if not match:
                return None
            _, origin, slot, *_ = links[match[0]["link"]]
            node = nodes[origin]
        return [str(node["id"]), slot]

    prompt = {}
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY or node["mode"] == MODE_BYPASS:
            continue
        values = list(node["widgets_values"])
        inputs = {}
        for name, _, _, _, slots in widget_inputs(object_info(host, node["type"])):
            inputs[name] = values[0]
            values = values[slots:]
        # display-only widgets the frontend adds (e.g. PreviewAny's text boxes) are saved as null
        assert all(v is None for v in values), f"{node['type']} #{node['id']}: {len(values)} widgets_values left over: {values}"
        for socket in node["inputs"]:
            if socket.get("link") is not None:
                src = source(socket["link"])
                if src is not None:
                    inputs[socket["name"]] = src
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def strip_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


def test_there_are_the_four_workflows():
    names = {p.stem for p in UI_FILES}
    assert names >= {"svd_baseline_vs_cil", "svd_stats_estimation", "dynamicrafter_wrapper_cil", "wan_i2v_cil"}
    for path in UI_FILES:
        assert (WORKFLOWS / "api" / path.name).is_file(), f"{path.name} has no API twin in workflows/api/"


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


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_nodes_exist_and_ui_file_serialises_to_the_api_twin(tiny_host, request, path):
    ui = load(path)
    ensure_types(tiny_host, ui, request)
    twin = strip_meta(load(WORKFLOWS / "api" / path.name))
    assert ui_to_api(tiny_host, ui) == twin


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.stem)
def test_widget_values_are_within_declared_bounds(tiny_host, request, path):
    ui = load(path)
    ensure_types(tiny_host, ui, request)
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
                assert isinstance(value, str) and Path(value).suffix in {".safetensors", ".png", ".jpg", ".ckpt", ".pt", ".sft"}, where
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


def substitute(prompt: dict) -> dict:
    """TEST_SUBSTITUTIONS: tiny stand-ins for the loaders, small sizes and few steps."""
    prompt = json.loads(json.dumps(prompt))
    by_type = {}
    for node_id, node in prompt.items():
        by_type.setdefault(node["class_type"], []).append(node_id)

    def repoint(old_id: str, new_ref: list) -> None:
        for node in prompt.values():
            for key, value in node["inputs"].items():
                if isinstance(value, list) and value[0] == old_id:
                    node["inputs"][key] = list(new_ref)
        del prompt[old_id]

    for node_id in by_type.get("ImageOnlyCheckpointLoader", []):
        prompt[node_id] = {"class_type": "CILTest_TinySVDCheckpoint", "inputs": {"ckpt_name": "svd.safetensors"}}
    for node_id in by_type.get("UNETLoader", []):
        prompt[node_id] = {"class_type": "CILTest_TinyWanLoaders", "inputs": {"unet_name": "wan.safetensors"}}
        for old in by_type.get("VAELoader", []):
            repoint(old, [node_id, 1])
        for old in by_type.get("CLIPVisionLoader", []):
            repoint(old, [node_id, 2])
    for node_id in by_type.get("CLIPTextEncode", []):
        prompt[node_id] = {"class_type": "CILTest_TinyTextEncode", "inputs": {"text": prompt[node_id]["inputs"]["text"], "width": 32}}
    for node_id in by_type.get("CLIPLoader", []):
        del prompt[node_id]
    for node in prompt.values():
        inputs, kind = node["inputs"], node["class_type"]
        if kind == "SVD_img2vid_Conditioning":
            inputs.update(width=64, height=64, video_frames=4)
        if kind == "WanImageToVideo":
            inputs.update(width=32, height=32, length=5)
        if kind in ("KSampler", "CIL_LateStartSampler"):
            inputs["steps"] = 3
        if kind == "CIL_EstimateAnalyticStats":
            inputs.update(frames=4, width=64, height=64, frame_stride=1)
    return prompt


def saved_videos(host, prefix: str) -> list[Path]:
    return sorted((host.root / "output").glob(f"{prefix}*"))


@pytest.mark.parametrize("name,outputs", [
    ("svd_baseline_vs_cil", ["video/svd_baseline", "video/svd_cil"]),
    ("svd_stats_estimation", ["video/svd_cil_own_stats"]),
    ("wan_i2v_cil", ["video/wan_i2v_cil"]),
])
def test_api_graph_runs_on_tiny_models(tiny_host, stats_dir, name, outputs):
    write_example_png(tiny_host)
    write_video_folder(tiny_host, "cil_videos")
    prompt = substitute(strip_meta(load(WORKFLOWS / "api" / f"{name}.json")))
    before = {p: len(saved_videos(tiny_host, p)) for p in outputs}
    tiny_host.run(prompt)
    for prefix in outputs:
        assert len(saved_videos(tiny_host, prefix)) == before[prefix] + 1, f"{name}: no new {prefix}* file"
    if name == "svd_stats_estimation":
        assert list(stats_dir.glob("svd_1024x576_14f*.safetensors")), "the estimated stats were not saved"


def test_dynamicrafter_graph_validates_against_the_real_wrapper(tiny_host, stats_dir, dc_wrapper, official_stats):
    """Types and widget values of the DynamiCrafter graph pass ComfyUI's validation with the real
    wrapper loaded, our DCNOISE output feeding its init_noise input (weights are not needed for that)."""
    import shutil

    shutil.copy(official_stats("dynamicrafter_320x512.safetensors"), stats_dir / "dynamicrafter_320x512.safetensors")
    write_example_png(tiny_host)
    ok, error, outputs, node_errors = tiny_host.validate(strip_meta(load(WORKFLOWS / "api" / "dynamicrafter_wrapper_cil.json")))
    assert ok and not node_errors, (error, node_errors)
