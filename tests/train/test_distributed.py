"""``cil train`` under ``torchrun --nproc_per_node 2`` (gloo, CPU) on the built-in tiny model.

* 2 processes × batch B = 1 process × batch 2B: the same loss sequence. The per-rank draws are
  the rank's rows of what one process draws for the 2B batch, and the ranks' clips are the 2B
  clips one process takes, so the only differences are float32 round-off: convolutions and means
  over B items instead of 2B, and the gradient average of two ranks instead of one mean over 2B
  (a few ulps). AdamW normalises each gradient entry by its own running size, which lets those
  ulps grow to ~1e-5 relative in the weights within a few steps (measured here: losses within
  9e-7 (LoRA) and 1.4e-5 (full fine-tune) relative, gradient norms within 3e-5). The tolerances,
  1e-4 on the loss and 1e-3 on the gradient norm, are far below what a wrong draw or clip changes
  (O(1)); mean σ and β must agree to 1e-12 (float64 round-off of their means).
* SIGKILL of one rank mid-run, then ``--resume`` with 2 processes: the same log and weights as
  an uninterrupted 2-process run, exactly (DDP LoRA; FSDP2 full fine-tune with sharded
  checkpoints, killed while a shard is half written).
* Resuming with another number of processes is refused in one line; a rank that fails takes
  the job down with its error, instead of hanging, and rank 0's skip list already holds the
  broken videos both ranks met.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import bounded_run
import pytest
from safetensors.torch import load_file

from cil_tools import cli

pytestmark = pytest.mark.distributed

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
TIMEOUT = 240  # one launch takes ~10-20 s on 2 busy cores; a hang fails here instead of blocking the suite


def launch(config: Path, *extra: str, procs: int = 2, fault: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, CIL_TRAIN_FAULT=fault, OMP_NUM_THREADS="1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    head = TORCHRUN if procs == 2 else [sys.executable, "-m", "cil_tools.cli"]
    argv = [*head, *(["-m", "cil_tools.cli"] if procs == 2 else []), "train", "--config", str(config), "--no-progress", *extra]
    return bounded_run.run(argv, TIMEOUT, env=env, cwd=config.parent)


def rows(out: Path) -> list[dict]:
    """The run's log rows (a line cut by a kill ends the list), without the wall time."""
    from cil_train.progress import TrainLog

    return [{k: v for k, v in r.items() if k != "step_time"} for r in TrainLog(out, write=False).rows()]


def write(tmp: Path, name: str, make_config, source: Path, **sections) -> Path:
    """A tiny-model config (conftest's, with ``sections`` on top) as ``tmp/<name>.json``, output in ``tmp/<name>``."""
    cfg = make_config(tmp / name, source, **sections)
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture(scope="module")
def clean_videos(tmp_path_factory, make_video) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    for i in range(6):
        make_video(folder / f"v{i}.mp4", frames=6, seed=i)
    return folder


MODES = {  # the config sections of both runs (batch: 4 for one process, 2 each for two)
    "lora-ddp": dict(loss={"cond_dropout": 0.2}, run={"steps": 6, "checkpoint_every": 2, "keep_checkpoints": 5}),
    "full-fsdp": dict(mode="full", optim={"lr": 1e-3, "grad_accum": 2, "ema_decay": 0.9},
                      run={"steps": 5, "checkpoint_every": 2, "keep_checkpoints": 2, "parallel": "fsdp", "grad_checkpointing": True}),
}


def one_and_two(tmp: Path, make_config, source: Path, sections: dict) -> tuple[Path, Path]:
    """One process (in this one) with batch 4, then two (torchrun) with batch 2; their output folders."""
    one = write(tmp, "one", make_config, source, data={"batch_size": 4}, **sections)
    two = write(tmp, "two", make_config, source, data={"batch_size": 2}, **sections)
    assert cli.main(["train", "--config", str(one), "--no-progress"]) == 0
    done = launch(two)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp / "one", tmp / "two"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, make_config, clean_videos):
    """``runs(mode)``: (folder, one process's output, two processes' output), made once per mode."""
    made = {}

    def get(mode: str):
        if mode not in made:
            tmp = tmp_path_factory.mktemp(f"dist_{mode}")
            made[mode] = (tmp, *one_and_two(tmp, make_config, clean_videos, MODES[mode]))
        return made[mode]

    return get


def relaunch(tmp: Path, name: str, *extra: str, fault: str = "") -> subprocess.CompletedProcess:
    """The 2-process run's config of ``tmp`` into output folder ``name``, launched with 2 processes."""
    cfg = json.loads((tmp / "two.json").read_text())
    cfg["run"]["output_dir"] = str(tmp / name)
    (tmp / f"{name}.json").write_text(json.dumps(cfg))
    return launch(tmp / f"{name}.json", *extra, fault=fault)


def assert_same_run(ours: list[dict], ref: list[dict], rel: float) -> None:
    assert [r["step"] for r in ours] == [r["step"] for r in ref]
    for a, b in zip(ours, ref):
        assert a["loss"] == pytest.approx(b["loss"], rel=rel), (a["step"], a["loss"], b["loss"])
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=10 * rel)
        assert a["sigma"] == pytest.approx(b["sigma"], rel=1e-12) and a["beta"] == pytest.approx(b["beta"], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_equal_one_process_with_twice_the_batch(mode, runs):
    _, one, two = runs(mode)
    assert_same_run(rows(two), rows(one), rel=1e-4)
    assert len({r["loss"] for r in rows(one)}) == len(rows(one))  # the losses move: this compares more than constants
    weights = "lora.safetensors" if mode == "lora-ddp" else "model.safetensors"
    a, b = load_file(str(one / weights)), load_file(str(two / weights))
    assert a.keys() == b.keys()
    for k in a:
        assert float((a[k] - b[k]).abs().max()) <= 1e-3 * float(a[k].abs().max()) + 1e-12, k
    assert not [p for p in two.rglob("*") if p.name.endswith(".tmp")]


def test_sigkill_of_one_rank_then_resume_equals_the_uninterrupted_run(runs):
    """DDP LoRA: rank 1 dies (SIGKILL) right after step 3 (last checkpoint: 2); torchrun stops rank 0;
    the resumed 2-process run ends with the uninterrupted run's log and LoRA, bit for bit."""
    tmp, _, two = runs("lora-ddp")
    killed = relaunch(tmp, "killed", fault="kill_after_step=3@1")
    assert killed.returncode != 0
    assert [r["step"] for r in rows(tmp / "killed")][-1] <= 3
    resumed = relaunch(tmp, "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step_00000002" in resumed.stderr
    assert rows(tmp / "killed") == rows(two)
    a, b = load_file(str(two / "lora.safetensors")), load_file(str(tmp / "killed" / "lora.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_resume_with_another_number_of_processes_is_refused(runs, capsys):
    tmp, _, two = runs("lora-ddp")
    assert cli.main(["train", "--config", str(tmp / "two.json"), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run of 2 process(es) and this run has 1" in err and "torchrun --nproc_per_node 2" in err


def test_fsdp_sharded_checkpoints_survive_a_kill(runs):
    """FSDP2 full fine-tune: rank 1 is killed while writing its shard of checkpoint 4 (half a
    file); the resumed run equals the uninterrupted one exactly (log, exported model) and no
    shard of the unfinished checkpoint or temporary file is left over."""
    tmp, _, two = runs("full-fsdp")
    names = {p.name for p in (two / "checkpoints").iterdir()}
    assert names == {f"step_0000000{s}{r}.safetensors" for s in (4, 5) for r in ("", ".rank00001")}
    first = relaunch(tmp, "killed", fault="kill_in_checkpoint=4@1")
    assert first.returncode != 0
    assert any(p.name.endswith(".tmp") for p in (tmp / "killed" / "checkpoints").iterdir())
    second = relaunch(tmp, "killed", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from step_00000002" in second.stderr
    assert rows(tmp / "killed") == rows(two)
    a, b = load_file(str(two / "model.safetensors")), load_file(str(tmp / "killed" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert {p.name for p in (tmp / "killed" / "checkpoints").iterdir()} == names
    assert not [p for p in (tmp / "killed").rglob("*") if p.name.endswith(".tmp")]


def bad_met(folder: Path, cfg: dict, steps: int) -> set[str]:
    """The broken videos ranks 0 and 1 of 2 meet in ``steps`` steps (the trainer's order and decoder)."""
    from cil_train.config import config_from_dict
    from cil_train.data import ClipDataset, ClipSpec, Cursor, KeySampler, list_entries

    c = config_from_dict(cfg)
    dataset = ClipDataset(list_entries(c.data), ClipSpec.from_config(c.data), c.run.seed)
    need, bad = steps * c.optim.grad_accum * c.data.batch_size, set()
    for rank in (0, 1):
        good = 0
        for key in KeySampler(len(dataset), c.run.seed, Cursor(), rank=rank, world=2):
            if good == need:
                break
            record = dataset[key]
            good += record["ok"]
            bad |= set() if record["ok"] else {Path(record["path"]).name}
    return bad


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path, make_config, video_folder):
    """Rank 1 raises after step 3: the job ends (not a hang) with that error on stderr, and rank 0's
    skip list already holds the broken videos both ranks met."""
    config = write(tmp_path, "fails", make_config, video_folder, run={"steps": 6, "dist_timeout": 60})
    done = launch(config, fault="fail_after_step=3@1")
    assert done.returncode != 0
    assert "cil train: error: injected failure after step 3 (CIL_TRAIN_FAULT) (rank 1 of 2)" in done.stderr
    listed = {Path(line.split("\t")[0]).name for line in (tmp_path / "fails" / "skipped_videos.txt").read_text().splitlines()}
    expected = bad_met(video_folder, json.loads(config.read_text()), 3)
    assert listed == expected and expected
