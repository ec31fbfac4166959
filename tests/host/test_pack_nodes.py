"""The pack's nodes as ComfyUI sees them: all registered (every node module imports in this
ComfyUI version), ids/categories/display names, a tooltip on every input, the cil_stats folder."""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.host

OURS = {
    "CIL_AnalyticInitLatent": "Analytic-Init Latent",
    "CIL_LateStartSampler": "Late Start Sampler",
    "CIL_LateStartSigmas": "Late Start Sigmas + Analytic-Init Noise",
    "CIL_TimeNoiseConditioning": "TimeNoise Conditioning",
    "CIL_EstimateAnalyticStats": "Estimate Analytic Stats",
    "CIL_LoadAnalyticStats": "Load Analytic Stats",
    "CIL_SaveAnalyticStats": "Save Analytic Stats",
    "CIL_DynamiCrafterInitNoise": "Analytic-Init for DynamiCrafterWrapper",
}


def pack_package(host) -> str:
    return next(name for name, mod in list(__import__("sys").modules.items())
                if name.endswith("nodes.extension") and hasattr(mod, "NODE_MODULES") and "cil" in name.lower())


def test_every_node_module_imports_in_this_comfyui(host):
    extension = pack_package(host)
    modules = importlib.import_module(extension).NODE_MODULES
    failures = {}
    for name in modules:
        try:
            importlib.import_module(f"{extension.rsplit('.', 1)[0]}.{name}")
        except Exception as exc:  # report all of them, with the ComfyUI version
            failures[name] = repr(exc)
    assert not failures, f"ComfyUI {host.version}: node modules that do not import: {failures}"


@pytest.mark.parametrize("node_id,display", sorted(OURS.items()))
def test_node_is_registered_with_its_contract(host, node_id, display):
    assert node_id in host.node_classes, f"{node_id} is not registered in ComfyUI {host.version}"
    info = host.node_classes[node_id].GET_NODE_INFO_V1()
    assert info["display_name"] == display
    assert info["category"].startswith("CIL/")
    for section in ("required", "optional"):
        for name, entry in info["input"].get(section, {}).items():
            options = entry[1] if len(entry) > 1 else {}
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"


def test_timenoise_tooltip_says_who_it_is_for(host):
    info = host.node_classes["CIL_TimeNoiseConditioning"].GET_NODE_INFO_V1()
    assert "FINE-TUNED WITH TimeNoise" in info["description"] and "EXPERIMENT" in info["description"]


def test_cil_stats_is_a_models_folder(host):
    names, extensions = host.folder_paths.folder_names_and_paths["cil_stats"]
    assert ".safetensors" in extensions and any(p.endswith("cil_stats") for p in names)
