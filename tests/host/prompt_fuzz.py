"""Hostile prompts for a real ComfyUI server, drawn with a fixed seed from the toy workflows
(workflows/api/toy_*.json, shrunk to seconds) and a few graphs built from the same toy pieces.

A prompt changes one or two inputs of the pack's nodes: a value beyond the declared bounds,
NaN/inf, a wrong type, an odd or long name, a path out of the folder, a size the model or the
machine cannot take, a value brought in by a Primitive node's link (checked only at run time),
a literal where a socket belongs (API-only prompts), a missing input; or a legal value, so that
some prompts run. ``CILFuzz_Finite`` nodes (fuzz_pack) watch the pack's outputs for NaN.
"""

from __future__ import annotations

import copy
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows" / "api"
SOCKETS_SKIPPED = ("model", "vae")  # their literals are covered by every other socket; keep the loader cached
HUGE_INT = 2**40
NAMES = ["", " ", "a" * 4096, "b" * 256, "ü" * 200, "a\x00b", "x\ud800y", "../escape", "../../../../tmp/escape", "/tmp/abs",
         "C:\\win", "sub/../../up", "~/home", ".hidden", "planted_link/x", "con", "nul:", "a/b/c/d/e/f", "ok_name", "\n", "%s%n"]


@dataclass
class Case:
    """One prompt and what was done to it."""

    base: str
    prompt: dict
    node: str  # the mutated node's id
    name: str  # the mutated input
    how: str  # value | link | literal | missing | legal
    value: object


def _load(name: str) -> dict:
    return json.loads((WORKFLOWS / name).read_text())


def _finite(prompt: dict, *refs) -> None:
    for i, ref in enumerate(refs):
        prompt[f"f{ref[0]}_{ref[1]}"] = {"class_type": "CILFuzz_Finite", "inputs": {"value": list(ref)}}


def node_of(prompt: dict, class_type: str) -> str:
    """The id of the one node of ``class_type`` in ``prompt`` (workflow ids change when they are regenerated)."""
    ids = [k for k, v in prompt.items() if v["class_type"] == class_type]
    assert len(ids) == 1, f"{len(ids)} {class_type} nodes in the prompt; expected one"
    return ids[0]


SHRUNK_AWAY = ("KSampler", "ImageStitch", "ImageScaleBy", "SaveAnimatedWEBP")  # the baseline and the stitched WEBP


def shrunk(prompt: dict) -> dict:
    """A toy workflow without the baseline KSampler and the stitched WEBP (ComfyUI's own nodes), and
    without whatever read them; the Late Start Sampler runs 2 steps."""
    gone = {k for k, v in prompt.items() if v["class_type"] in SHRUNK_AWAY}
    while True:
        more = {k for k, v in prompt.items() if k not in gone
                and any(isinstance(x, list) and len(x) == 2 and x[0] in gone for x in v["inputs"].values())}
        if not more:
            break
        gone |= more
    out = {k: v for k, v in prompt.items() if k not in gone}
    out[node_of(out, "CIL_LateStartSampler")]["inputs"]["steps"] = 2
    return out


def bases() -> dict[str, dict]:
    """The graphs the cases mutate (each runs in about a second on the toy model)."""
    demo = shrunk(_load("toy_cil_demo.json"))
    i2v, late, decode = (node_of(demo, c) for c in ("CIL_ToyImageToVideo", "CIL_LateStartSampler", "VAEDecode"))
    _finite(demo, (late, 0), (decode, 0), (i2v, 2))

    probe = shrunk(_load("toy_leakage_probe.json"))
    leak, late_p = node_of(probe, "CIL_LeakageProbe"), node_of(probe, "CIL_LateStartSampler")
    probe[leak]["inputs"].update(grid_count=2, samples_per_t=1, pixel_metric="off", probe_mode="one_step")
    _finite(probe, (leak, 2), (leak, 3), (late_p, 0))
    assert [probe[k]["class_type"] for k in ("2", "3", "4")] == ["CIL_ToyModelLoader", "CIL_ToyWorldVideo", "CIL_ToyImageToVideo"]

    timenoise = copy.deepcopy(demo)
    timenoise["20"] = {"class_type": "CIL_TimeNoiseConditioning", "inputs": {
        "model": ["2", 0], "beta_m": 3.0, "a": 5.0, "s": 1.0, "mode": "quantile", "quantile": 0.5, "seed": 0,
        "noise_shape": "per_element", "noise_clip_tokens": False}}
    timenoise[node_of(timenoise, "CIL_LateStartSampler")]["inputs"]["model"] = ["20", 0]

    pieces = {k: copy.deepcopy(probe[k]) for k in ("2", "3", "4")}
    sigmas = {**pieces,
              "30": {"class_type": "CIL_LateStartSigmas", "inputs": {
                  "model": ["2", 0], "steps": 2, "M": 0.7, "scheduler": "cil_late_start", "noise_seed": 0, "naive_mode": "paper",
                  "fit": "strict", "stats": ["2", 2]}},
              "31": {"class_type": "BasicGuider", "inputs": {"model": ["2", 0], "conditioning": ["4", 0]}},
              "32": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
              "33": {"class_type": "SamplerCustomAdvanced", "inputs": {
                  "noise": ["30", 1], "guider": ["31", 0], "sampler": ["32", 0], "sigmas": ["30", 0], "latent_image": ["4", 2]}},
              "34": {"class_type": "CIL_AnalyticInitLatent", "inputs": {
                  "model": ["2", 0], "latent": ["4", 2], "M": 0.7, "seed": 0, "naive_mode": "paper", "fit": "strict", "stats": ["2", 2]}}}
    _finite(sigmas, ("33", 0), ("34", 0), ("34", 1))

    stats = {"2": pieces["2"], "3": pieces["3"],
             "40": {"class_type": "CIL_EstimateAnalyticStats", "inputs": {
                 "model": ["2", 0], "vae": ["2", 1], "frames": 8, "width": 0, "height": 0, "folder": "", "frame_stride": 1,
                 "max_videos": 0, "images": ["3", 0]}},
             "41": {"class_type": "CIL_SaveAnalyticStats", "inputs": {"stats": ["40", 0], "filename": "fuzz/estimated", "overwrite": True}},
             "42": {"class_type": "CIL_LoadAnalyticStats", "inputs": {"stats_name": "fuzz_dc.safetensors"}},
             "43": {"class_type": "CIL_DynamiCrafterInitNoise", "inputs": {
                 "stats": ["42", 0], "M": 940, "analytic_init": True, "frames": 0, "width": 0, "height": 0, "fit": "strict"}}}
    _finite(stats, ("40", 0), ("43", 0))

    train = {**pieces,
             "50": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["2", 1]}},
             "51": {"class_type": "CIL_TimeNoiseTrain", "inputs": {
                 "model": ["2", 0], "positive": ["4", 0], "latent": ["50", 0], "mode": "lora", "steps": 1, "learning_rate": 1e-3,
                 "weight_decay": 0.01, "timenoise": True, "beta_m": 0.0, "a": 5.0, "lora_rank": 2, "lora_alpha": 2.0,
                 "batch_size": 1, "grad_accum": 1, "precision": "fp32", "gradient_checkpointing": False, "ema_decay": 0.0,
                 "checkpoint_every": 1000, "seed": 0, "output_name": "fuzz_train", "resume": False}},
             "52": {"class_type": "KSampler", "inputs": {
                 "model": ["51", 0], "positive": ["4", 0], "negative": ["4", 1], "latent_image": ["4", 2], "seed": 0, "steps": 2,
                 "cfg": 1.0, "sampler_name": "euler", "scheduler": "karras", "denoise": 1.0}}}
    _finite(train, ("51", 2), ("52", 0))
    return {"demo": demo, "probe": probe, "timenoise": timenoise, "sigmas": sigmas, "stats": stats, "train": train}


def _spec(object_info: dict, class_type: str, name: str):
    """(kind, options dict) of an input from /object_info: kind INT/FLOAT/STRING/BOOLEAN/COMBO or a socket type."""
    info = object_info[class_type]["input"]
    for section in ("required", "optional"):
        if name in info.get(section, {}):
            entry = info[section][name]
            kind, opts = entry[0], (entry[1] if len(entry) > 1 else {}) or {}
            if isinstance(kind, list):
                return "COMBO", {**opts, "options": kind}
            return kind, opts
    return None, {}


SLOW_AT_MAX = {"steps", "grid_count", "samples_per_t", "grad_accum"}  # legal at their maximum, but minutes of work: not drawn


def hostile(kind: str, opts: dict, rng: random.Random, name: str = "", current=None):
    """A value for an input of ``kind``: mostly hostile, sometimes legal (then the prompt may run).
    ``current``: the graph's own value (the largest legal one drawn for SLOW_AT_MAX inputs)."""
    lo, hi = opts.get("min"), opts.get("max")
    hi_legal = current if name in SLOW_AT_MAX and isinstance(current, (int, float)) else hi
    if kind == "INT":
        legal = [lo, hi_legal, current if name in SLOW_AT_MAX else opts.get("default")] if lo is not None and hi is not None \
            else [opts.get("default", 1)]
        bad = [-1, 0, HUGE_INT, 2**63, -(2**63), "abc", 1.5, True, None, [], {}, "", "12"]
        bad += [lo - 1] if lo is not None else []
        bad += [hi + 1] if hi is not None else []
    elif kind == "FLOAT":
        legal = [lo, hi_legal, opts.get("default")] if lo is not None and hi is not None else [opts.get("default", 1.0)]
        bad = [math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, "abc", "nan", "inf", True, None, [], -1.0]
        bad += [lo - 1e-4 * max(1.0, abs(lo))] if lo is not None else []
        bad += [hi + 1e-4 * max(1.0, abs(hi))] if hi is not None else []
    elif kind == "STRING":
        legal, bad = [opts.get("default", "")], NAMES + [5, None, ["a", 0, 1]]
    elif kind == "BOOLEAN":
        legal, bad = [True, False], ["false", 0, 1, None, "abc", 2]
    elif kind == "COMBO":
        legal, bad = list(opts.get("options") or [])[:8], ["no such option", "", 5, None, "../x"]
    else:  # a socket: only literals can be hostile here
        return rng.choice([5, "x", {"samples": 1}, 1.5, None, True])
    legal = [v for v in legal if v is not None] or bad
    return rng.choice(legal) if rng.random() < 0.2 else rng.choice(bad)


def _primitive(kind: str, rng: random.Random):
    """(Primitive node class, hostile value of its own type that its own validation lets through)."""
    if kind == "INT":
        return "PrimitiveInt", rng.choice([-1, 0, HUGE_INT, 2**62, -(2**40), 7])
    if kind == "FLOAT":
        return "PrimitiveFloat", rng.choice([math.nan, -1.0, 0.0, 1e9, -1e9, 1e-30])
    if kind == "BOOLEAN":
        return "PrimitiveBoolean", rng.choice([True, False])
    return "PrimitiveString", rng.choice(NAMES)


def targets(prompt: dict, object_info: dict) -> list[tuple[str, str, str, dict]]:
    """(node, input, kind, options) of every input of the pack's nodes in ``prompt``."""
    out = []
    for node_id, node in prompt.items():
        class_type = node["class_type"]
        if not class_type.startswith("CIL_"):
            continue
        info = object_info[class_type]["input"]
        for section in ("required", "optional"):
            for name in info.get(section, {}):
                if name in SOCKETS_SKIPPED:
                    continue
                kind, opts = _spec(object_info, class_type, name)
                out.append((node_id, name, kind, opts))
    return out


def make_cases(object_info: dict, count: int, seed: int = 14) -> list[Case]:
    """``count`` prompts, the same ones for the same seed and server."""
    rng = random.Random(seed)
    graphs = bases()
    names = sorted(graphs)
    cases = []
    for i in range(count):
        base = names[i % len(names)] if i < len(names) else rng.choice(names)
        prompt = copy.deepcopy(graphs[base])
        if i < len(names):  # each graph once as it is: the controls
            cases.append(Case(base, prompt, "", "", "legal", None))
            continue
        for graph_node in prompt.values():  # a fresh run name: a finished run's name is refused without resume
            if graph_node["class_type"] == "CIL_TimeNoiseTrain":
                graph_node["inputs"]["output_name"] = f"fuzz_train_{i}"
        node, name, kind, opts = rng.choice(targets(prompt, object_info))
        socket = kind not in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
        how = rng.choices(["value", "link", "missing"], weights=[70, 25, 5])[0]
        if socket:
            how = "literal" if rng.random() < 0.9 else "missing"
        if how == "missing":
            prompt[node]["inputs"].pop(name, None)
            value = None
        elif how == "link" and kind != "COMBO":
            primitive, value = _primitive(kind, rng)
            prompt["90"] = {"class_type": primitive, "inputs": {"value": value}}
            prompt[node]["inputs"][name] = ["90", 0]
        else:
            how = "literal" if socket else "value"
            value = hostile(kind, opts, rng, name, prompt[node]["inputs"].get(name))
            prompt[node]["inputs"][name] = value
        cases.append(Case(base, prompt, node, name, how, value))
    return cases
