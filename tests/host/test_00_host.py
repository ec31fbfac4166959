"""The host itself: ComfyUI boots, this pack loads with no import error, every node registers."""

import pytest

pytestmark = pytest.mark.host


def test_pack_loads_in_real_comfyui(host):
    assert host.pack_loaded, f"ComfyUI {host.version} failed to load comfyui-cil (see the log above)"
    ours = sorted(k for k in host.node_classes if k.startswith("CIL_"))
    assert ours, "the pack registered no CIL_* node"
