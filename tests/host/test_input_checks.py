"""Every node checks its values against its own declared V3 schema (nodes/common.py), in
``validate_inputs`` (never raising; a link arrives as None) and again at run time, when values
that came through links (Primitive nodes) are known: types, finite floats, min/max, combo
options, no literal where a socket belongs. Then the cases of issue 14 through ComfyUI's own
validator and executor."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from prompt_fuzz import node_of  # tests/host is on sys.path (conftest)

pytestmark = pytest.mark.host

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows" / "api"
WIDGETS = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")


def pack_nodes(host) -> dict:
    return {k: v for k, v in host.node_classes.items() if k.startswith("CIL_")}


def declared(cls) -> list:
    return list(cls.define_schema().inputs)


def defaults(cls) -> dict:
    """A value for every widget: its default, or a combo's first option."""
    values = {}
    for inp in declared(cls):
        kind = str(inp.get_io_type())
        if kind == "COMBO":
            options = list(inp.options or [])
            if options:
                values[inp.id] = inp.default if inp.default in options else options[0]
        elif kind in WIDGETS:
            values[inp.id] = inp.default
    return values


def hostile_values(inp) -> list:
    kind = str(inp.get_io_type())
    if kind == "INT":
        bad = ["abc", 1.5, [1], None.__class__, True]
        bad += [inp.min - 1] if inp.min is not None else []
        bad += [inp.max + 1] if inp.max is not None else []
        return bad
    if kind == "FLOAT":
        bad = ["abc", math.nan, math.inf, -math.inf, [0.5]]
        bad += [inp.min - 1e-4 * max(1, abs(inp.min))] if inp.min is not None else []
        bad += [inp.max * 1.0001 + 1e-9] if inp.max is not None else []
        return bad
    if kind in ("STRING", "COMBO"):
        return [5, "a\x00b", "a\ud800b"] + (["no such option"] if kind == "COMBO" else [])
    if kind == "BOOLEAN":
        return ["yes", 2]
    return [5, "literal", {"samples": 1}]  # a literal where a socket belongs (API prompts)


def test_every_node_checks_its_own_schema_and_never_raises(host):
    """For every pack node: defaults, links (None) and missing inputs pass; every hostile value of
    every input gives a message naming that input; nothing raises."""
    import folder_paths

    folder_paths.filename_list_cache.clear()  # earlier tests remove stats folders they listed
    checked = 0
    for node_id, cls in pack_nodes(host).items():
        good = defaults(cls)
        assert cls.validate_inputs(**good) is True, (node_id, cls.validate_inputs(**good))
        assert cls.validate_inputs(**{k: None for k in good}) is True, node_id
        assert cls.validate_inputs() is True, node_id
        for inp in declared(cls):
            for bad in hostile_values(inp):
                result = cls.validate_inputs(**{**good, inp.id: bad})
                assert isinstance(result, str) and inp.id in result, (node_id, inp.id, bad, result)
                checked += 1
    assert checked > 300
    print(f"\n{len(pack_nodes(host))} nodes, {checked} hostile values refused by validate_inputs")


# --- through ComfyUI: the toy workflows, shrunk to seconds ------------------------------------------

def toy_workflow(name: str) -> dict:
    prompt = json.loads((WORKFLOWS / name).read_text())
    for node in prompt.values():
        if node["class_type"] == "LoadImage":  # no example.png here: the toy world's own start frame
            node.update(class_type="CIL_ToyWorldVideo", inputs={"model_name": "edm_baseline", "index": 0})
            for other in prompt.values():
                for key, value in other["inputs"].items():
                    if isinstance(value, list) and len(value) == 2 and prompt.get(value[0]) is node:
                        other["inputs"][key] = [value[0], 1]
        inputs = node["inputs"]
        if node["class_type"] in ("CIL_LateStartSampler", "KSampler"):
            inputs["steps"] = 2
        if node["class_type"] == "CIL_LeakageProbe":
            inputs.update(grid_count=2, samples_per_t=1, pixel_metric="off", probe_mode="one_step")
    return prompt


def outcome(host, prompt) -> tuple[str, str]:
    """("ok", "") or ("validation" | "execution", messages) from ComfyUI's validator and executor."""
    ok, error, outputs, node_errors = host.validate(prompt)
    if not ok or node_errors:
        return "validation", json.dumps([error, node_errors])
    executor = host._executor()
    executor.execute(prompt, "t", {}, outputs)
    if executor.success:
        return "ok", ""
    errors = [d for e, d in executor.status_messages if e == "execution_error"]
    return "execution", json.dumps([{k: d.get(k) for k in ("node_type", "exception_type", "exception_message", "traceback")} for d in errors])


def linked(prompt: dict, node: str, name: str, kind: str, value) -> dict:
    """``prompt`` with input ``name`` of ``node`` fed by a Primitive node holding ``value``."""
    prompt = copy.deepcopy(prompt)
    prompt["90"] = {"class_type": f"Primitive{kind}", "inputs": {"value": value}}
    prompt[node if node in prompt else node_of(prompt, node)]["inputs"][name] = ["90", 0]
    return prompt


def literal(prompt: dict, node: str, name: str, value) -> dict:
    prompt = copy.deepcopy(prompt)
    prompt[node if node in prompt else node_of(prompt, node)]["inputs"][name] = value
    return prompt


@pytest.mark.parametrize("node, name, value", [
    ("CIL_LeakageProbe", "samples_per_t", 10_000), ("CIL_LeakageProbe", "grid_count", 3_000_000), ("CIL_LeakageProbe", "max_batch", 1025), ("CIL_LateStartSampler", "M", 0.0009999),
    ("CIL_LateStartSampler", "M", "abc"), ("CIL_LateStartSampler", "cfg", math.nan), ("CIL_ToyImageToVideo", "noise_level", math.nan), ("CIL_ToyImageToVideo", "width", 0), ("CIL_LeakageProbe", "start_rule", "nope"),
    ("CIL_ToyImageToVideo", "vae", 5), ("CIL_LeakageProbe", "filename_prefix", "../outside"), ("CIL_LeakageProbe", "filename_prefix", "x" * 4096),
])
def test_declared_bounds_and_literals_are_validation_errors(host, node, name, value):
    kind, message = outcome(host, literal(toy_workflow("toy_leakage_probe.json"), node, name, value))
    assert kind == "validation" and name in message, message
    assert "exception_during_validation" not in message


@pytest.mark.parametrize("node, name, kind, value, expected", [
    ("CIL_LateStartSampler", "cfg", "Float", math.nan, "cfg=nan is not a finite number"),
    ("CIL_LateStartSampler", "steps", "Int", 2**40, "steps=1099511627776 is above its maximum 1000"),
    ("CIL_LateStartSampler", "M", "Float", 1.5, "M=1.5 is outside (0, 1]"),
    ("CIL_ToyImageToVideo", "noise_level", "Float", math.nan, "noise_level=nan"),
    ("CIL_ToyImageToVideo", "width", "Int", 0, "width=0 is below its minimum 16"),
    ("CIL_ToyImageToVideo", "height", "Int", -16, "height=-16 is below its minimum 16"),
    ("CIL_ToyImageToVideo", "frames", "Int", 10**12, "frames=1000000000000 is above its maximum 64"),
])
def test_values_through_links_are_checked_at_run_time(host, node, name, kind, value, expected):
    kind_, message = outcome(host, linked(toy_workflow("toy_cil_demo.json"), node, name, kind, value))
    assert kind_ == "execution" and "CILValueError" in message and expected in message, message


def test_probe_values_and_names_through_links_are_refused_before_the_probe_runs(host):
    base = toy_workflow("toy_leakage_probe.json")
    out = Path(host.folder_paths.get_output_directory())
    before = sorted(p.name for p in out.rglob("*"))
    for name, kind, value, expected in (("samples_per_t", "Int", 10_000, "above its maximum 256"),
                                        ("filename_prefix", "String", "y" * 4096, "characters long"),
                                        ("filename_prefix", "String", "a\x00b", "NUL"),
                                        ("filename_prefix", "String", "../../escape", "relative name")):
        result, message = outcome(host, linked(base, "CIL_LeakageProbe", name, kind, value))
        assert result == "execution" and "CILValueError" in message and expected in message, message
    assert sorted(p.name for p in out.rglob("*")) == before, "nothing may be written for a refused prompt"


def test_timenoise_nan_quantile_and_train_values_through_links(host):
    base = toy_workflow("toy_cil_demo.json")
    patched = copy.deepcopy(base)
    patched["20"] = {"class_type": "CIL_TimeNoiseConditioning", "inputs": {
        "model": ["2", 0], "beta_m": 3.0, "a": 5.0, "s": 1.0, "mode": "quantile", "quantile": ["90", 0], "seed": 0,
        "noise_shape": "per_element", "noise_clip_tokens": False}}
    patched["90"] = {"class_type": "PrimitiveFloat", "inputs": {"value": math.nan}}
    patched[node_of(patched, "CIL_LateStartSampler")]["inputs"]["model"] = ["20", 0]
    result, message = outcome(host, patched)
    assert result == "execution" and "quantile=nan" in message, message
    train = {"2": base["2"], "90": {"class_type": "PrimitiveFloat", "inputs": {"value": math.nan}},
             "3": {"class_type": "CIL_TimeNoiseTrain", "inputs": {
                 "model": ["2", 0], "mode": "lora", "steps": 1, "learning_rate": 1e-4, "weight_decay": ["90", 0], "timenoise": True,
                 "beta_m": 0.0, "a": 5.0, "lora_rank": 4, "lora_alpha": 4.0, "batch_size": 1, "grad_accum": 1, "precision": "fp32",
                 "gradient_checkpointing": False, "ema_decay": 0.0, "checkpoint_every": 1, "seed": 0, "output_name": "nan_wd",
                 "resume": False}}}
    result, message = outcome(host, train)
    assert result == "execution" and "weight_decay=nan is not a finite number" in message, message
    for bad, expected in ((2000, "lora_rank=2000 is above its maximum 1024"), (0, "steps=0 is below its minimum 1")):
        key = "lora_rank" if bad == 2000 else "steps"
        result, message = outcome(host, literal(train, "3", key, bad))
        assert result == "validation" and expected in message, message
