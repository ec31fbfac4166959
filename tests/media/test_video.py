"""The one video reader (cil_media.video): GIF / WebP via PIL with their frame delays, folders of
frames, video files via PyAV, fps resampling, stride and start, resize + centre crop, the source
size kept at 0 × 0, and one error type for every failure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from cil_core.validation import CILValueError
from cil_media.video import (
    ClipSpec,
    VideoDecodeError,
    cover_crop,
    decode_clip,
    resize_frames,
    video_files,
)


def grey_frames(n: int, height: int = 24, width: int = 32) -> list:
    """PIL frames whose grey level 20·i tells which source frame was picked."""
    from PIL import Image

    return [Image.new("RGB", (width, height), (20 * i,) * 3) for i in range(n)]


def picked(clip: torch.Tensor) -> list[int]:
    return [round(float(f.float().mean()) / 20.0) for f in clip]


def write_gif(path: Path, n: int, delay_ms: int = 100) -> Path:
    frames = grey_frames(n)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=delay_ms, loop=0)
    return path


def write_mp4(path: Path, n: int, fps: int = 8, width: int = 32, height: int = 24) -> Path:
    av = pytest.importorskip("av", reason="PyAV is needed for video files (pip install av)")
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"}
        for i in range(n):
            image = np.full((height, width, 3), 20 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("spec,expected,fps", [
    (ClipSpec(4, clip_start="first"), [0, 1, 2, 3], 10.0),
    (ClipSpec(3, stride=2, clip_start="first"), [0, 2, 4], 5.0),
    (ClipSpec(3, fps=5.0, clip_start="first"), [0, 2, 4], 5.0),  # 10 → 5 fps
    (ClipSpec(4, fps=30.0, clip_start="first"), [0, 0, 1, 1], 30.0),  # 10 → 30 fps: the nearest frame, repeated
    (ClipSpec(2, clip_start="center"), [2, 3], 10.0),  # 0.6 s video, 0.1 s span: start at (0.6 − 0.1 − 0.1)/2
])
def test_a_gif_is_read_by_pil_at_its_frame_delays(tmp_path, spec, expected, fps):
    clip = decode_clip(write_gif(tmp_path / "clip.gif", 6), spec)
    assert clip["pixels"].dtype == torch.uint8 and clip["pixels"].shape == (len(expected), 24, 32, 3)
    assert picked(clip["pixels"]) == expected and clip["fps"] == pytest.approx(fps)


def test_a_gif_without_delays_plays_at_ten_frames_per_second(tmp_path):
    clip = decode_clip(write_gif(tmp_path / "fast.gif", 4, delay_ms=0), ClipSpec(2, fps=5.0, clip_start="first"))
    assert picked(clip["pixels"]) == [0, 2] and clip["fps"] == 5.0


def test_an_animated_webp_is_read_by_pil(tmp_path):
    from PIL import features

    if not features.check("webp"):
        pytest.skip("this PIL has no WebP support")
    frames = grey_frames(4)
    frames[0].save(tmp_path / "clip.webp", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    clip = decode_clip(tmp_path / "clip.webp", ClipSpec(2, stride=3, clip_start="first"))
    assert picked(clip["pixels"]) == [0, 3]


def test_a_folder_of_frames_in_name_order_at_25_fps(tmp_path):
    for i, frame in enumerate(grey_frames(5)):
        frame.save(tmp_path / f"frame_{i:03d}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = decode_clip(tmp_path, ClipSpec(3, stride=2, clip_start="first"))
    assert picked(clip["pixels"]) == [0, 2, 4] and clip["fps"] == pytest.approx(12.5)


def test_a_video_file_is_read_by_pyav_with_fps_resampling(tmp_path):
    video = write_mp4(tmp_path / "clip.mp4", 12, fps=8)
    clip = decode_clip(video, ClipSpec(4, fps=4.0, clip_start="first"))
    assert picked(clip["pixels"]) == [0, 2, 4, 6] and clip["fps"] == 4.0
    assert clip["pixels"].shape == (4, 24, 32, 3)  # 0 × 0 keeps the source size
    resized = decode_clip(video, ClipSpec(2, height=16, width=16, clip_start="first"))["pixels"]
    assert resized.shape == (2, 16, 16, 3)
    assert decode_clip(video, ClipSpec(3, clip_start="random"), "a")["start"] == decode_clip(video, ClipSpec(3, clip_start="random"), "a")["start"]


def test_without_pyav_video_files_need_it_but_gifs_do_not(tmp_path, monkeypatch):
    gif = write_gif(tmp_path / "clip.gif", 3)
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(CILValueError, match="pip install av") as caught:
        decode_clip(tmp_path / "clip.mp4", ClipSpec(2))
    assert not isinstance(caught.value, VideoDecodeError)  # not the file's fault: never skipped silently
    assert decode_clip(gif, ClipSpec(2, clip_start="first"))["pixels"].shape[0] == 2


def test_resize_covers_then_centre_crops_bicubic():
    from PIL import Image

    stripes = Image.new("RGB", (64, 16), (0, 0, 0))
    stripes.paste((255, 255, 255), (16, 0, 48, 16))  # a white band in the middle half
    out = cover_crop(stripes, 32, 32)  # 64×16 → 128×32 (band 32..96), then the middle 32 columns (48..80)
    assert out.shape == (32, 32, 3) and int(out.min()) == 255
    same = cover_crop(stripes, 64, 16)
    assert torch.equal(same, torch.frombuffer(bytearray(stripes.tobytes()), dtype=torch.uint8).reshape(16, 64, 3))


def test_resize_frames_takes_floats_through_8_bits_like_a_decoded_video():
    frames = torch.rand(3, 20, 30, 3, generator=torch.Generator().manual_seed(0))
    as_uint8 = (frames * 255).round().to(torch.uint8)
    assert torch.equal(resize_frames(frames, 16, 12), resize_frames(as_uint8, 16, 12))
    assert resize_frames(frames, 16, 12).shape == (3, 12, 16, 3)


def test_keeping_the_source_size_fits_later_frames_to_the_first(tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 24), (40, 40, 40)).save(tmp_path / "a.png")
    Image.new("RGB", (64, 48), (60, 60, 60)).save(tmp_path / "b.png")
    assert decode_clip(tmp_path, ClipSpec(2, clip_start="first"))["pixels"].shape == (2, 24, 32, 3)


def test_every_failure_is_one_error_type(tmp_path):
    with pytest.raises(VideoDecodeError, match="file not found") as missing:
        decode_clip(tmp_path / "missing.gif", ClipSpec(2))
    with pytest.raises(VideoDecodeError, match="too short") as short:
        decode_clip(write_gif(tmp_path / "short.gif", 3), ClipSpec(4, clip_start="first"))
    (tmp_path / "broken.gif").write_bytes(b"GIF89a not really")
    with pytest.raises(VideoDecodeError) as broken:
        decode_clip(tmp_path / "broken.gif", ClipSpec(2))
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoDecodeError, match="no frame images") as empty:
        decode_clip(tmp_path / "empty", ClipSpec(2))
    assert short.value.too_short and not broken.value.too_short and not missing.value.too_short and not empty.value.too_short
    assert all(isinstance(e.value, CILValueError) for e in (missing, short, broken, empty))


@pytest.mark.parametrize("kwargs,message", [
    ({"frames": 0}, "frames >= 1"),
    ({"frames": 2, "stride": 0}, "stride >= 1"),
    ({"frames": 2, "fps": -1.0}, "fps=-1.0 must be >= 0"),
    ({"frames": 2, "clip_start": "middle"}, "clip_start='middle'"),
    ({"frames": 2, "width": 64}, "give both"),
])
def test_a_bad_clip_spec_is_refused_with_a_fix(kwargs, message):
    with pytest.raises(CILValueError, match=message):
        ClipSpec(**kwargs)


def test_video_files_lists_the_video_extensions_recursively(tmp_path):
    for name in ("b.mp4", "sub/a.MKV", "c.gif", "notes.txt", "still.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in video_files(tmp_path)] == ["b.mp4", "c.gif", "sub/a.MKV"]
