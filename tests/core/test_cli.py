"""The ``cil`` command: every --help exits 0; ``cil stats`` on real and synthetic files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cil_core.analytic_init import estimate_stats
from cil_core.stats_io import load_stats, save_stats
from cil_tools import cli

OFFICIAL = next(
    (p for p in (Path(__file__).resolve().parents[3] / "shared", Path("/work/shared")) if (p / "data").is_dir()), Path("/work/shared")
) / "data" / "official-analytic-init" / "dynamicrafter_320x512.safetensors"


def run_help(argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    return exc.value.code


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in cli.SUBCOMMANDS])
def test_help_exits_zero(argv, capsys):
    assert run_help(argv) == 0
    out = capsys.readouterr().out
    assert "usage: cil" in out and len(out) > 100


@pytest.mark.parametrize("action", ["show", "convert", "fit"])
def test_stats_actions_help(action, capsys):
    assert run_help(["stats", action, "--help"]) == 0
    assert "usage: cil stats " + action in capsys.readouterr().out


def test_no_subcommand_is_an_error(capsys):
    assert run_help([]) == 2
    assert "required" in capsys.readouterr().err


def test_stats_show_official(capsys):
    if not OFFICIAL.exists():
        pytest.skip(f"{OFFICIAL} not present on this machine")
    assert cli.main(["stats", "show", str(OFFICIAL)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape_CFHW"] == [4, 16, 40, 64]
    assert info["tr_cov_d"] == pytest.approx(load_stats(OFFICIAL).tr_cov_d)
    assert info["resumable"] is False


def test_stats_convert_fit_and_errors(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    src = save_stats(estimate_stats([torch.randn(2, 4, 6, 8, generator=g) for _ in range(3)]), tmp_path / "a.safetensors")
    assert cli.main(["stats", "convert", str(src), str(tmp_path / "b.safetensors"), "--family", "edm"]) == 0
    assert load_stats(tmp_path / "b.safetensors").meta["family"] == "edm"
    assert cli.main(["stats", "fit", str(src), str(tmp_path / "c.safetensors"), "--shape", "2,2,3,4"]) == 0
    assert load_stats(tmp_path / "c.safetensors").shape == (2, 2, 3, 4)
    capsys.readouterr()
    assert cli.main(["stats", "fit", str(src), str(tmp_path / "d.safetensors"), "--shape", "2,2"]) == 2
    assert "C,F,H,W" in capsys.readouterr().err
    assert cli.main(["stats", "show", str(tmp_path / "missing.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_probe_reads_its_video_with_the_one_reader_and_names_the_fix(tmp_path):
    """``cil probe --video``: a GIF through cil_media.video as float frames; too short or unreadable
    videos are refused with what to change."""
    from PIL import Image

    from cil_core.validation import CILValueError
    from cil_tools import probe_cmd

    frames = [Image.new("RGB", (40, 20), (30 * i, 0, 0)) for i in range(5)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    video = probe_cmd.load_video(str(tmp_path / "clip.gif"), frames=3, stride=2, width=16, height=16)
    assert video.shape == (3, 16, 16, 3) and video.dtype == torch.float32
    assert [round(float(f[..., 0].mean()) * 255 / 30) for f in video] == [0, 2, 4]
    with pytest.raises(CILValueError, match="lower --frames / --stride"):
        probe_cmd.load_video(str(tmp_path / "clip.gif"), frames=6, stride=1, width=16, height=16)
    (tmp_path / "broken.gif").write_bytes(b"GIF89a?")
    with pytest.raises(CILValueError, match="give a video file"):
        probe_cmd.load_video(str(tmp_path / "broken.gif"), frames=2, stride=1, width=16, height=16)
    with pytest.raises(CILValueError, match="does not exist"):
        probe_cmd.load_video(str(tmp_path / "missing.gif"), frames=2, stride=1, width=16, height=16)
