"""README's toy-world numbers, generated from the demo's metrics.json files so they cannot go stale.

The README holds blocks between ``<!-- cil-demo:NAME:begin -->`` and ``<!-- cil-demo:NAME:end -->``;
``render_blocks(results)`` writes each block from the results (``{label: metrics.json dict}``,
e.g. docs/toy_results/seed0.json and seed1.json, each the metrics.json of one ``cil demo`` run),
``rewrite`` puts them into the README text, and ``stale_blocks`` lists the blocks whose text
differs (``cil readme-tables --check`` and tests/toy/test_readme_tables.py).

Blocks: ``toy-metrics`` (the first result's metrics table), ``toy-probe`` (its probe tables),
``toy-claims`` (the paper's claims, one column per result) and ``choosing-m`` (every start rule
on every probe curve against the FD-best band, per result and model).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cil_core.validation import CILValueError

from .report_md import ROLES, fmt, metrics_table, pm, probe_tables, ts

BLOCK = re.compile(r"(<!-- cil-demo:(?P<name>[\w-]+):begin -->\n)(?P<body>.*?)(<!-- cil-demo:(?P=name):end -->)", re.S)


def load_results(folder: str | Path) -> dict[str, dict]:
    """{file stem: metrics dict} of every *.json in ``folder``, sorted by name."""
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise CILValueError(f"no metrics .json files in {folder}; run 'cil demo' and copy its metrics.json there.")
    return {f.stem: json.loads(f.read_text(encoding="utf-8")) for f in files}


def _seed(doc: dict) -> str:
    meta = doc.get("model_meta", {}).get("baseline", {})
    return str(meta.get("seed", "?"))


def claims_table(results: dict[str, dict]) -> list[str]:
    names = list(results)
    head = "| claim | " + " | ".join(f"{n} (training seed {_seed(results[n])})" for n in names) + " |"
    out = [head, "|" + "---|" * (len(names) + 1)]

    def cell(doc: dict, key: str) -> str:
        a = doc["answers"][key]
        if key == "leak":
            return (f"{a['verdict']}: below the reference at t = {ts(a.get('below_corrected'))} (noise removed), "
                    f"{ts(a.get('below_raw'))} (raw), {ts(a.get('below_regen'))} (regeneration)")
        if key == "late_start":
            b = a.get("best", {})
            return (f"{a['verdict']}: best {b.get('init')} M = {fmt(b.get('M'))}, speed {pm(b.get('speed_delta'), b.get('speed_delta_se'))}, "
                    f"FD {pm(b.get('fd_delta'), b.get('fd_delta_se'))}")
        if key == "analytic_init":
            s = a.get("smallest", {})
            return f"{a['verdict']}: M = {fmt(s.get('M'))}, FD Analytic − naive {pm(s.get('fd_delta'), s.get('fd_delta_se'))}"
        if key == "timenoise":
            return (f"{a['verdict']}: closer, noise removed {pm(a['corrected_closer'], a['corrected_closer_se'])}, regeneration "
                    f"{pm(a['regen_closer'], a['regen_closer_se'])}; speed from T {pm(a['speed_delta'], a['speed_delta_se'])}")
        return f"{a['verdict']}"

    labels = {"leak": "(a) baseline leaks beyond the reference", "late_start": "(b) late start: more motion, same FD",
              "analytic_init": "(c) Analytic-Init beats naive at the smallest M", "timenoise": "(d) TimeNoise: curves toward the "
              "reference, more motion", "start": "(e) recommended M in the FD-best band"}
    for key, label in labels.items():
        out.append(f"| {label} | " + " | ".join(cell(results[n], key) for n in names) + " |")
    return out


def choosing_m_table(results: dict[str, dict]) -> list[str]:
    first = next(iter(results.values()))
    picks = list(first["start_check"]["baseline"]["rules"])
    curve_names = first["probe"]["curve_names"]
    head = "| run | model | best M (band) | " + " | ".join(f"{curve_names[k.split('/')[0]]}, {k.split('/')[1]}" for k in picks) + " |"
    out = [head, "|" + "---|" * (3 + len(picks))]
    for name, doc in results.items():
        for role, c in doc["start_check"].items():
            cells = []
            for k in picks:
                v = c["rules"][k]
                cells.append(f"{fmt(v['M'])} ({'in band' if v['in_band'] else pm(v['excess'], v['excess_se'])})")
            band = ", ".join(fmt(m) for m in c["band"])
            out.append(f"| {name} | {ROLES[role]} | {fmt(c['best_M'])} ({band}) | " + " | ".join(cells) + " |")
    return out


def render_blocks(results: dict[str, dict]) -> dict[str, str]:
    """Every block's text (without its markers), from the results in order."""
    if not results:
        raise CILValueError("no demo results to render README tables from.")
    first = next(iter(results.values()))
    blocks = {
        "toy-metrics": metrics_table(first),
        "toy-probe": probe_tables(first["probe"]),
        "toy-claims": claims_table(results),
        "choosing-m": choosing_m_table(results),
    }
    return {k: "\n".join(v) + "\n" for k, v in blocks.items()}


def rewrite(text: str, blocks: dict[str, str]) -> str:
    """``text`` with each marked block's body replaced; every block must be marked exactly once."""
    found = [m.group("name") for m in BLOCK.finditer(text)]
    missing = [k for k in blocks if found.count(k) != 1]
    if missing:
        raise CILValueError(f"README lacks (or repeats) the markers of blocks {missing}: add "
                            f"'<!-- cil-demo:NAME:begin -->' and '<!-- cil-demo:NAME:end -->' lines.")
    return BLOCK.sub(lambda m: m.group(1) + blocks.get(m.group("name"), m.group("body")) + m.group(4), text)


def stale_blocks(text: str, blocks: dict[str, str]) -> list[str]:
    """Names of the blocks whose README text differs from what the results give."""
    bodies = {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}
    return [k for k, v in blocks.items() if bodies.get(k) != v]
