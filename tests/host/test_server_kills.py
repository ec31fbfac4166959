"""SIGKILL a real ComfyUI server while the pack's nodes write (Save Analytic Stats over the same
name, Leakage Probe reports), restart it, and count: every file that was complete before a kill
is still complete after it (bytes lost: 0), the files being written are whole or absent (never
half), and the restarted server gives the same probe table as the first one.

CIL_KILLS (default 3) kills, at moments drawn with a fixed seed (CIL_KILL_SEED, default 14); the
figures it prints are README's (Reliability). The trainer's and ``cil stats estimate``'s own kill
soaks live with the trainer (cil_train)."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from comfy_server import ComfyServer
from prompt_fuzz import bases

pytestmark = pytest.mark.host

KILLS = int(os.environ.get("CIL_KILLS", "3"))
SEED = int(os.environ.get("CIL_KILL_SEED", "14"))


def writers(round_: int) -> list[dict]:
    """Prompts that write: stats over one name (overwrite) from clips of another seed each round,
    and a probe report (a new numbered file each time)."""
    graphs = bases()
    stats = {k: v for k, v in graphs["stats"].items() if k in ("2", "3", "40", "41")}
    stats["3"]["inputs"]["index"] = round_ % 64
    stats["41"]["inputs"].update(filename="soak/stats", overwrite=True)
    probe = {k: v for k, v in graphs["probe"].items() if k in ("2", "3", "4", "5")}
    probe["5"]["inputs"].update(grid_count=8, samples_per_t=4, max_batch=1, filename_prefix="soak/probe", seed=round_)
    return [stats, probe]


def reference_probe() -> dict:
    probe = {k: v for k, v in bases()["probe"].items() if k in ("2", "3", "4", "5", "7")}
    probe["5"]["inputs"].update(grid_count=4, samples_per_t=2, filename_prefix="soak/reference")
    return probe


def complete_files(base: Path) -> dict[Path, int]:
    """Every file the nodes wrote that reads back whole: stats through load_stats, reports as JSON
    with their CSV and PNG next to them. {path: size}; a damaged file raises."""
    from cil_core.stats_io import load_stats

    found = {}
    for path in (base / "models" / "cil_stats" / "soak").glob("*.safetensors"):
        load_stats(path)
        found[path] = path.stat().st_size
    for path in (base / "output" / "soak").glob("*.json"):
        json.loads(path.read_text())
        for twin in (path.with_suffix(".csv"), path.with_suffix(".png")):
            assert twin.stat().st_size > 0, twin
            found[twin] = twin.stat().st_size
        found[path] = path.stat().st_size
    return found


def probe_table(server: ComfyServer) -> list[str]:
    status, reply = server.post("/prompt", {"prompt": reference_probe()})
    assert status == 200, reply
    entry = server.wait_for(reply["prompt_id"], 120)
    assert entry and entry["status"]["status_str"] == "success", entry and entry["status"]
    return [t.rsplit("\nsaved:", 1)[0] for out in entry["outputs"].values() for t in out.get("text", [])]


def test_sigkill_while_writing_loses_no_byte(tmp_path):
    rng = random.Random(SEED)
    server = ComfyServer(tmp_path / "base")
    kept: dict[Path, int] = {}
    lost, survived, temporaries, writes = 0, 0, 0, 0
    try:
        server.start()
        reference = probe_table(server)
        for round_ in range(KILLS):
            for prompt in writers(round_) * 3:
                status, reply = server.post("/prompt", {"prompt": prompt})
                assert status == 200, reply
                writes += 1
            time.sleep(rng.uniform(0.5, 6.0))
            server.kill()
            now = complete_files(server.base)
            for path, size in kept.items():  # complete before this kill: still there and whole (stats may be a newer whole version)
                if path not in now:
                    lost += size
            kept.update(now)
            temporaries += len(list(server.base.rglob("*.tmp")))
            server.start()
            assert probe_table(server) == reference
            survived += 1
    finally:
        server.stop()
    total = sum(kept.values())
    print(f"\nkill soak (seed {SEED}): {survived} of {KILLS} SIGKILLs survived during {writes} queued writes; "
          f"{len(kept)} complete files ({total} bytes) checked after each kill; bytes lost: {lost}; "
          f"temporary files left by kills mid-write: {temporaries}")
    assert survived == KILLS and lost == 0
