"""The ``cil`` command against hostile arguments: outputs that are files, binary configs, bad
shapes, missing videos, folders for files. Each is refused before any work, with one line
``cil <cmd>: error: …`` and exit code 2; a bounded campaign counts the rest (README, Reliability)."""

from __future__ import annotations

import itertools
import os
import random

import pytest
import torch

from cil_core.analytic_init import estimate_stats
from cil_core.stats_io import save_stats
from cil_core.validation import shown
from cil_tools import cli


class Reached(Exception):
    """The command got past its checks into the real work."""


@pytest.fixture
def no_work(monkeypatch):
    """The long work of every command replaced by a sentinel: a test sees where a command stopped."""
    import cil_core.probe
    import cil_toy.demo
    import cil_toy.train
    import cil_train.run

    def reached(*_a, **_k):
        raise Reached

    for module, name in ((cil_toy.demo, "run_demo"), (cil_toy.train, "train_shipped_set"), (cil_train.run, "run_training"),
                         (cil_core.probe, "probe_leakage")):
        monkeypatch.setattr(module, name, reached)


def run(argv, capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


@pytest.fixture
def stats_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    return save_stats(estimate_stats([torch.randn(2, 3, 4, 4, generator=g) for _ in range(3)]), tmp_path / "s.safetensors")


@pytest.mark.parametrize("argv", [
    ["demo", "--out", "{file}"],
    ["probe", "--toy", "baseline", "--out", "{file}"],
    ["train", "--config", "{config}", "--output-dir", "{file}"],
    ["toy-train", "--out", "{file}"],
])
def test_an_output_folder_that_is_a_file_is_refused_before_any_work(argv, tmp_path, capsys, no_work):
    file = tmp_path / "taken.txt"
    file.write_text("mine")
    config = tmp_path / "c.json"
    config.write_text('{"model": {"kind": "tiny"}, "data": {"source": "x"}}')
    argv = [a.format(file=file, config=config) for a in argv]
    code, err = run(argv, capsys)
    assert code == 2 and f"cil {argv[0]}: error:" in err and "is an existing file, not a folder" in err
    assert file.read_text() == "mine"


def test_a_binary_config_is_one_line(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_bytes(bytes(range(256)) * 4)
    code, err = run(["train", "--config", str(config)], capsys)
    assert code == 2 and "is not UTF-8 text" in err and "Traceback" not in err


@pytest.mark.parametrize("shape, match", [("12,-1,8,8", "at least 1"), ("12,0,8,8", "at least 1"),
                                          ("12,8,40000,40000", "of memory"), ("1,2", "four integers")])
def test_stats_fit_shapes_are_checked_before_allocating(stats_file, tmp_path, capsys, shape, match):
    out = tmp_path / "out.safetensors"
    code, err = run(["stats", "fit", str(stats_file), str(out), "--shape", shape], capsys)
    assert code == 2 and match in err and not out.exists()


def test_a_special_file_is_never_replaced(stats_file, tmp_path, capsys):
    """``cil stats convert IN /dev/null`` run as root replaced the device with a regular file (found
    by the campaign below); a FIFO stands in for the device here."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, err = run(["stats", "convert", str(stats_file), str(fifo)], capsys)
    assert code == 2 and "special file" in err
    from cil_core.atomic import atomic_write_bytes
    from cil_core.validation import CILValueError

    with pytest.raises(CILValueError, match="not a regular file"):
        atomic_write_bytes(fifo, b"x")
    assert fifo.is_fifo()


def test_stats_output_that_is_a_folder_and_input_that_is_a_folder(stats_file, tmp_path, capsys):
    code, err = run(["stats", "convert", str(stats_file), str(tmp_path)], capsys)
    assert code == 2 and "is a folder; give a file name" in err
    code, err = run(["stats", "show", str(tmp_path)], capsys)
    assert code == 2 and "is a folder, not a stats file" in err and "pickle" not in err


def test_probe_checkpoint_looks_at_the_video_before_comfyui(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    code, err = run(["probe", "--checkpoint", str(tmp_path / "svd.safetensors"), "--video", str(tmp_path / "missing.mp4")], capsys)
    assert code == 2 and "--video" in err and "missing.mp4" in err and "ComfyUI" not in err


def test_probe_toy_vp_names_the_command_that_makes_vp_models(capsys):
    from cil_toy.weights_io import available_toy_models

    if "vp_baseline" in available_toy_models():
        pytest.skip("VP toy weights are installed here")
    code, err = run(["probe", "--toy", "vp_baseline"], capsys)
    assert code == 2 and "cil toy-train --vp" in err


# --- the campaign --------------------------------------------------------------------------------------------

HOSTILE_NUMBERS = ["0", "-1", "-7", "nan", "inf", "-inf", "1e309", "99999999999", "2.5", "abc", ""]


def hostile_argvs(tmp_path, stats, seed: int = 14, count: int = 400) -> list[list[str]]:
    """``count`` argument lists: one option of a command set to a hostile value (numbers, paths that
    are files or folders or missing or 4,096 characters long), drawn with a fixed seed."""
    file = tmp_path / "a_file"
    file.write_text("x")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)))
    fifo = tmp_path / "a_fifo"  # a special file; never a real device: a regression must not replace /dev/null
    os.mkfifo(fifo)
    paths = [str(file), str(tmp_path), str(tmp_path / "missing" / "x"), "a" * 4096, str(binary), str(fifo)]
    numeric = {
        "probe": ["--count", "--t-min", "--t-max", "--samples", "--seed", "--cfg", "--threshold", "--plateau-tolerance",
                  "--max-batch", "--videos"],
        "demo": ["--samples", "--steps", "--seed", "--m", "--threshold", "--plateau-tolerance", "--probe-videos",
                 "--probe-samples", "--bootstrap", "--threads"],
        "toy-train": ["--seed", "--pretrain-steps", "--finetune-steps", "--batch-size", "--stats-videos", "--beta-m", "--threads"],
    }
    base = {"probe": ["probe", "--toy", "baseline", "--count", "2", "--samples", "1", "--videos", "1"], "demo": ["demo"],
            "toy-train": ["toy-train"]}
    cases = [base[c] + [o, v] for c, opts in numeric.items() for o, v in itertools.product(opts, HOSTILE_NUMBERS)]
    cases += [["probe", "--toy", p] for p in paths] + [["probe", "--toy", "baseline", "--out", p] for p in paths]
    cases += [["demo", "--out", p] for p in paths] + [["demo", "--weights-dir", p] for p in paths]
    cases += [["train", "--config", p] for p in paths] + [["stats", a, p] for a in ("show",) for p in paths]
    cases += [["stats", "convert", str(stats), p] for p in paths] + [["stats", "convert", p, str(tmp_path / "o.safetensors")] for p in paths]
    cases += [["stats", "fit", str(stats), str(tmp_path / "f.safetensors"), "--shape", s]
              for s in ("0,0,0,0", "1,-1,1,1", "4,16,2000000,2000000", "nan,1,1,1", "1,1,1", "", "1,1,1,1,1")]
    rng = random.Random(seed)
    return [rng.choice(cases) for _ in range(count)]


def test_hostile_arguments_campaign(tmp_path, capsys, no_work):
    """Every hostile argument list ends in a clean refusal (exit 2, one ``cil <cmd>: error:`` line
    or argparse's usage error), reaches the work (a value the command accepts), or succeeds
    (``stats``); none ends in a traceback. Prints the figures quoted in README's Reliability."""
    stats = save_stats(estimate_stats([torch.randn(2, 1, 2, 2) for _ in range(2)]), tmp_path / "s.safetensors")
    argvs = hostile_argvs(tmp_path, stats)
    counts = {"clean error": 0, "accepted": 0, "traceback": 0}
    tracebacks, accepted = [], []
    for argv in argvs:
        try:
            code, err = run(argv, capsys)
        except Reached:
            counts["accepted"] += 1
            accepted.append(argv)
            continue
        except Exception as exc:  # noqa: BLE001 - a traceback is what the campaign looks for
            counts["traceback"] += 1
            tracebacks.append(f"{shown(argv, 200)}: {type(exc).__name__}: {shown(str(exc), 200)}")
            continue
        if code == 0:
            counts["accepted"] += 1
            accepted.append(argv)
        else:
            last = err.strip().splitlines()[-1] if err.strip() else ""
            assert code == 2 and last.startswith(f"cil {argv[0]}") and "error:" in last and "Traceback" not in err, (argv, err)
            counts["clean error"] += 1
    print(f"\ncil campaign: {len(argvs)} argument lists, {counts['clean error']} clean errors, "
          f"{counts['accepted']} accepted, {counts['traceback']} tracebacks; accepted: "
          + "; ".join(sorted({" ".join(shown(a, 40) for a in argv) for argv in accepted})))
    assert not tracebacks, "\n".join(tracebacks[:10])
