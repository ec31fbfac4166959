"""The one atomic write (cil_core.atomic): no temporary file is left on success, a failed write
keeps the old file, the folder is fsynced after the rename, and what a kill leaves is found."""

from __future__ import annotations

import os
import stat

import pytest

from cil_core import atomic


def temporaries(folder):
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "out.json"
    atomic.atomic_write_bytes(target, b"old")
    atomic.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and not temporaries(target.parent)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and not temporaries(tmp_path)


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_replace, real_fsync_folder = os.replace, atomic.fsync_folder
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    monkeypatch.setattr(atomic, "fsync_folder", lambda folder: (events.append(("fsync", str(folder))), real_fsync_folder(folder))[1])
    atomic.atomic_write_bytes(tmp_path / "x", b"1")
    assert events == ["replace", ("fsync", str(tmp_path))]


def test_leftovers_of_a_killed_write_are_found_by_target_name(tmp_path):
    with atomic.atomic_path(tmp_path / "step_00000008.safetensors") as tmp:
        tmp.write_bytes(b"half")
        found = atomic.leftover_temporaries(tmp_path, "step_*.safetensors")  # what a kill here would leave
        assert found == [tmp.parent] and tmp.parent.parent == tmp_path
        assert atomic.leftover_temporaries(tmp_path, "other_*") == []
    assert atomic.leftover_temporaries(tmp_path, "step_*.safetensors") == []
    assert atomic.leftover_temporaries(tmp_path / "missing") == []


def test_a_writers_own_temporary_stays_inside_ours_and_goes_with_it(tmp_path):
    """safetensors (>= 0.6) writes ``.tmpXXXXXX`` beside the path it is given, 0600, and renames
    it: killed there, that file must not be left in the user's folder under a name not ours."""
    from safetensors.torch import save_file
    import torch

    with atomic.atomic_path(tmp_path / "lora.safetensors") as tmp:
        (tmp.parent / ".tmpAbC123").write_bytes(b"a writer's half file")  # where a kill would find it
        found = atomic.remove_temporaries(atomic.leftover_temporaries(tmp_path, "lora.safetensors"))
        assert found == [tmp.parent] and list(tmp_path.iterdir()) == []
        tmp.parent.mkdir()  # (not killed after all: let the write finish)
        save_file({"a": torch.zeros(3)}, str(tmp))
    assert [p.name for p in tmp_path.iterdir()] == ["lora.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "lora.safetensors").stat().st_mode) == 0o666 & ~umask
