"""The pack in a REAL ComfyUI server on 127.0.0.1, tried as a hostile user would: prompts generated
with a fixed seed from the toy workflows (prompt_fuzz.py), sent over HTTP one after another.

Pass: every mutated prompt that does not run is refused by a validation error, or by an execution
error of type CILValueError (never another exception type, never an exception inside validation);
the refusal names the mutated input; no prompt succeeds with a non-finite output; nothing is
written through the symlinks planted in output/ and models/cil_stats; the server still answers
afterwards, and its resident memory stays within RSS_BOUND of what it held after the first
prompts. A ComfyUI cancel (POST /interrupt) during the probe and the stats estimate leaves the
server usable and the next prompt correct.

CIL_FUZZ_PROMPTS (default 2000) and CIL_FUZZ_SEED (default 14) set the campaign; the figures it
prints are README's (Reliability).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from comfy_server import ComfyServer
from prompt_fuzz import bases, make_cases

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parents[2]
PROMPTS = int(os.environ.get("CIL_FUZZ_PROMPTS", "2000"))
SEED = int(os.environ.get("CIL_FUZZ_SEED", "14"))
RSS_BOUND = 1024**3  # growth of the server's resident memory over the campaign, after warm-up
RUN_TIMEOUT_S = 120  # a prompt still running after this is cancelled and counted as slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("cil-server")
    base, canary = root / "base", root / "canary"
    canary.mkdir()
    stats = base / "models" / "cil_stats"
    stats.mkdir(parents=True)
    write_dc_stats(stats / "fuzz_dc.safetensors")
    (base / "output").mkdir()
    for folder in (stats, base / "output"):
        (folder / "planted_link").symlink_to(canary, target_is_directory=True)
    srv = ComfyServer(base)
    srv.canary = canary
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def write_dc_stats(path: Path) -> None:
    """4-channel stats (SD-style latents), what Analytic-Init for DynamiCrafterWrapper takes."""
    import torch
    from cil_core.analytic_init import estimate_stats
    from cil_core.stats_io import save_stats

    gen = torch.Generator().manual_seed(0)
    save_stats(estimate_stats([torch.randn(4, 2, 4, 4, generator=gen) for _ in range(3)]), path)


def submit(server: ComfyServer, prompt: dict) -> tuple[int, dict]:
    return server.post("/prompt", {"prompt": prompt, "client_id": "cil-fuzz"})


def run(server: ComfyServer, prompt: dict, timeout: float = RUN_TIMEOUT_S) -> dict:
    """{"kind": validation|execution|success|slow, "errors": …, "entry": history entry}."""
    status, reply = submit(server, prompt)
    if status != 200:
        return {"kind": "validation", "errors": reply}
    entry = server.wait_for(reply["prompt_id"], timeout)
    if entry is None:
        server.post("/interrupt", {})
        entry = server.wait_for(reply["prompt_id"], 60)
        return {"kind": "slow", "errors": reply.get("node_errors"), "entry": entry}
    kind = "success" if entry["status"].get("status_str") == "success" else "execution"
    return {"kind": kind, "errors": reply.get("node_errors"), "entry": entry}


def execution_errors(entry: dict) -> list[dict]:
    return [data for event, data in entry["status"].get("messages", []) if event == "execution_error"]


def finite_reports(entry: dict) -> list[bool]:
    return [v for out in entry.get("outputs", {}).values() for v in out.get("cil_finite", [])]


def refusal(case, result) -> tuple[str, bool, str]:
    """(category, the refusal names the mutated input, a problem or ""). Categories: validation
    error (the mutated node's own errors; what else the prompt held may still run), CILValueError,
    traceback, success, non-finite success, slow."""
    label = f"{case.base} {case.how} {case.node}.{case.name}={str(case.value)[:40]!r}"
    errors = result.get("errors") or {}
    errors = errors.get("node_errors", errors) if isinstance(errors, dict) else {}
    text = json.dumps(errors)
    if "exception_during_validation" in text or "exception_during_inner_validation" in text:
        return "traceback", False, f"{label}: an exception escaped validation: {text[:600]}"
    entry = result.get("entry")
    failed = [e for e in execution_errors(entry)] if entry else []
    foreign = {e.get("exception_type") for e in failed} - {"cil_core.validation.CILValueError"}
    if foreign:
        return "traceback", False, f"{label}: {foreign}: {[str(e.get('exception_message'))[:200] for e in failed]}"
    if entry is not None and not all(finite_reports(entry)):
        return "non-finite success", False, f"{label}: succeeded with a non-finite output"
    if errors:
        own = errors.get(case.node, {}).get("errors", []) if case.node else []
        named = any(case.name in str(e.get("details", "")).split(" - ", 1)[-1] or (
            e.get("type") != "custom_validation_failed" and e.get("extra_info", {}).get("input_name") == case.name) for e in own)
        return "validation error", named, ""
    if result["kind"] == "slow":
        return "slow", False, ""
    if failed:
        message = " ".join(str(e.get("exception_message")) for e in failed)
        return "CILValueError", case.name in message, ""
    return "success", False, ""


def test_hostile_prompts_get_clean_errors_and_the_server_survives(server):
    object_info = server.get("/object_info")
    cases = make_cases(object_info, PROMPTS, SEED)
    counts, by_how, failures, unnamed = Counter(), Counter(), [], []
    rss = []
    t0 = time.monotonic()
    seconds = Counter()
    for i, case in enumerate(cases):
        t_case = time.monotonic()
        category, named, problem = refusal(case, run(server, case.prompt))
        seconds[category] += time.monotonic() - t_case
        counts[category] += 1
        by_how[case.how] += 1
        if problem:
            failures.append(f"#{i} {problem}")
        if category in ("validation error", "CILValueError"):
            counts["names the input"] += named
            if not named and case.how in ("value", "literal", "link"):
                unnamed.append(f"#{i} {case.how} {case.node}.{case.name}={str(case.value)[:30]!r} ({category})")
        if i % 25 == 0 or i == len(cases) - 1:
            rss.append(server.rss_bytes())
    minutes = (time.monotonic() - t0) / 60
    alive = server.alive() and "system" in server.get("/system_stats")
    warm = rss[min(4, len(rss) - 1)]
    growth = max(rss) - warm
    escaped = sorted(p.name for p in server.canary.iterdir())
    refused = counts["validation error"] + counts["CILValueError"]
    print(f"\nserver campaign (ComfyUI at {server.comfyui}, seed {SEED}): {len(cases)} prompts in {minutes:.1f} min "
          f"({dict(by_how)}); {counts['validation error']} validation errors, {counts['CILValueError']} CILValueError, "
          f"{counts['traceback']} tracebacks, {counts['success']} successes ({counts['non-finite success']} non-finite), "
          f"{counts['slow']} slow; refusals naming the mutated input: {counts['names the input']} of {refused}; "
          f"RSS {warm / 1024**2:.0f} MB after warm-up, peak {max(rss) / 1024**2:.0f} MB (+{growth / 1024**2:.0f} MB); "
          f"server answers afterwards: {alive}; files through planted links: {len(escaped)}")
    print("seconds by outcome: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.most_common()))
    if unnamed:
        print("refusals that do not name the mutated input:\n  " + "\n  ".join(unnamed[:40]))
    assert alive, server.log_tail()
    assert not escaped, escaped
    assert growth < RSS_BOUND, f"server RSS grew by {growth / 1024**2:.0f} MB"
    assert not failures, "\n".join(failures[:25])
    assert len(cases) >= min(PROMPTS, 2000)


# --- cancel through the server --------------------------------------------------------------------------

def _started(server: ComfyServer, prompt_id: str, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = server.get("/queue").get("queue_running", [])
        if any(item[1] == prompt_id for item in running):
            return True
        time.sleep(0.05)
    return False


def training(output_name: str, steps: int, noise_seed: int = 0) -> dict:
    """Toy World Video → VAE Encode + Toy I2V Conditioning → TimeNoise Fine-Tune (LoRA) on the shipped
    toy model → KSampler from the trained MODEL and from the input MODEL → SaveLatent each.
    ``noise_seed`` (unused at noise_level 0) makes every node after the conditioning run again."""
    prefix = f"cancel/{output_name}"
    return {
        "1": {"class_type": "CIL_ToyModelLoader", "inputs": {"model_name": "edm_baseline"}},
        "2": {"class_type": "CIL_ToyWorldVideo", "inputs": {"model_name": "edm_baseline", "index": 3}},
        "3": {"class_type": "CIL_ToyImageToVideo", "inputs": {"vae": ["1", 1], "start_image": ["2", 1], "width": 32, "height": 32,
                                                            "frames": 8, "batch_size": 1, "crop": "center", "noise_level": 0.0,
                                                            "noise_seed": noise_seed}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 1]}},
        "5": {"class_type": "CIL_TimeNoiseTrain", "inputs": {
            "model": ["1", 0], "positive": ["3", 0], "latent": ["4", 0], "mode": "lora", "steps": steps, "learning_rate": 5e-2,
            "weight_decay": 0.01, "timenoise": True, "beta_m": 0.0, "a": 5.0, "lora_rank": 2, "lora_alpha": 2.0, "batch_size": 1,
            "grad_accum": 1, "precision": "fp32", "gradient_checkpointing": False, "ema_decay": 0.0, "checkpoint_every": 1000,
            "seed": 0, "output_name": output_name, "resume": False}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["5", 0], "positive": ["3", 0], "negative": ["3", 1],
                                                   "latent_image": ["3", 2], "seed": 7, "steps": 3, "cfg": 1.0, "sampler_name": "euler",
                                                   "scheduler": "karras", "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": f"{prefix}_trained"}},
        "8": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["3", 0], "negative": ["3", 1],
                                                   "latent_image": ["3", 2], "seed": 7, "steps": 3, "cfg": 1.0, "sampler_name": "euler",
                                                   "scheduler": "karras", "denoise": 1.0}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": f"{prefix}_input"}},
    }


def saved(server: ComfyServer, prefix: str):
    from safetensors.torch import load_file

    files = sorted((server.base / "output").glob(f"{prefix}*.latent"))
    assert files, prefix
    return load_file(str(files[-1]))["latent_tensor"]


@pytest.mark.parametrize("what", ["probe", "stats", "train"])
def test_interrupt_leaves_the_server_usable_and_the_next_prompt_correct(server, what):
    """A long probe (12,800 predictions), stats estimate (4,096 clips) or toy LoRA training is
    cancelled through POST /interrupt a second after it starts; then a short prompt, which must
    recompute the node (one input that does not change its numbers differs), equals the same
    prompt run before. After a cancelled training the input MODEL samples as before (no LoRA hook
    left on the shared model)."""
    import torch
    from safetensors.torch import load_file

    graphs = bases()
    if what == "train":
        short, long, again = training("short_before", 2), training("long", 100_000), training("short_after", 2, noise_seed=1)
    elif what == "probe":
        short = graphs["probe"]
        short["5"]["inputs"].update(grid_count=6, samples_per_t=2, filename_prefix="cancel/before")
        long = json.loads(json.dumps(short))
        long["5"]["inputs"].update(grid_count=200, samples_per_t=64, max_batch=1, seed=1, filename_prefix="cancel/never")
        again = json.loads(json.dumps(short))
        again["5"]["inputs"]["filename_prefix"] = "cancel/after"
    else:
        short = {k: v for k, v in graphs["stats"].items() if k in ("2", "3", "40", "41", "f40_0")}
        short["41"]["inputs"]["filename"] = "cancel/before"
        long = json.loads(json.dumps(short))
        long["50"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["3", 0], "amount": 4096}}
        long["40"]["inputs"].update(images=["50", 0], width=256, height=256)
        long["41"]["inputs"]["filename"] = "cancel/never"
        again = json.loads(json.dumps(short))
        again["40"]["inputs"]["max_videos"] = 1000  # folder mode only: recomputes, same numbers
        again["41"]["inputs"]["filename"] = "cancel/after"
    before = run(server, short)
    assert before["kind"] == "success", before
    status, reply = submit(server, long)
    assert status == 200, reply
    assert _started(server, reply["prompt_id"])
    time.sleep(1.0)
    server.post("/interrupt", {})
    cut = server.wait_for(reply["prompt_id"], 120)
    assert cut is not None and cut["status"].get("status_str") == "error", cut and cut["status"]
    assert any(event == "execution_interrupted" for event, _ in cut["status"]["messages"])
    after = run(server, again)
    assert after["kind"] == "success", after
    assert all(finite_reports(after["entry"])) and (finite_reports(after["entry"]) or what == "train")
    if what == "train":
        import torch

        for kind in ("trained", "input"):
            assert torch.equal(saved(server, f"cancel/short_before_{kind}"), saved(server, f"cancel/short_after_{kind}")), kind
        assert not (server.base / "models" / "loras" / "long.safetensors").exists()
    elif what == "probe":
        def tables(entry):
            return [t.rsplit("\nsaved:", 1)[0] for out in entry["outputs"].values() for t in out.get("text", [])]

        assert tables(after["entry"]) and tables(after["entry"]) == tables(before["entry"])
        assert not list((server.base / "output" / "cancel").glob("never*"))
    else:
        folder = server.base / "models" / "cil_stats" / "cancel"
        one, two = load_file(str(folder / "before.safetensors")), load_file(str(folder / "after.safetensors"))
        assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
        assert not (folder / "never.safetensors").exists()
