"""Clip sets for the stats estimate (cil_media.clips): one clip per usable video of a folder, the
skipped ones reported as too short or unreadable, sizes fitted to the first video at 0 × 0."""

from __future__ import annotations

import pytest
import torch

from cil_core.validation import CILValueError
from cil_media.clips import (
    FolderReport,
    clips_from_folder,
    clips_from_images,
    list_videos,
)


def write_gif(path, n: int, size=(32, 24), level: int = 0):
    from PIL import Image

    frames = [Image.new("RGB", size, (level + 10 * i,) * 3) for i in range(n)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def test_a_folder_gives_float_clips_and_reports_what_it_skipped(tmp_path):
    write_gif(tmp_path / "a.gif", 6)
    write_gif(tmp_path / "b.gif", 6, size=(64, 48), level=100)
    write_gif(tmp_path / "short.gif", 2)
    (tmp_path / "broken.gif").write_bytes(b"not a gif")
    report = FolderReport()
    clips = list(clips_from_folder(list_videos(tmp_path), 4, 1, report))
    assert report.used == ["a.gif", "b.gif"] and report.too_short == ["short.gif"] and report.failed == ["broken.gif"]
    assert [c.shape for c in clips] == [(4, 24, 32, 3)] * 2  # b.gif fitted to a.gif's size
    assert clips[0].dtype == torch.float32 and torch.allclose(clips[0][:, 0, 0, 0], torch.tensor([0, 10, 20, 30]) / 255.0)
    assert "2 video(s) used, 1 too short skipped (short.gif), 1 unreadable skipped (broken.gif)" == report.summary()
    sized = list(clips_from_folder(list_videos(tmp_path), 2, 1, FolderReport(), width=16, height=16))
    assert [c.shape for c in sized] == [(2, 16, 16, 3)] * 3


def test_an_image_batch_gives_consecutive_clips():
    images = torch.rand(7, 8, 8, 4)
    clips = clips_from_images(images, 3)
    assert len(clips) == 2 and torch.equal(clips[1], images[3:6, :, :, :3])
    with pytest.raises(CILValueError, match="lower frames"):
        clips_from_images(images, 8)


def test_a_folder_without_videos_is_refused(tmp_path):
    with pytest.raises(CILValueError, match="no video files"):
        list_videos(tmp_path)
    with pytest.raises(CILValueError, match="not a folder"):
        list_videos(tmp_path / "missing")
