"""Video data: frame sampling (fps, stride, start), resize + crop, broken videos skipped and
reported (also in worker processes), CSV / WebVid listing, captions, the latent cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cil_train import data as data_mod
from cil_train.config import DataSection, config_from_dict
from cil_train.data import ClipDataset, ClipSpec, Cursor, decode_clip, list_entries, record_stream

pytest.importorskip("av", reason="PyAV is needed for the video tests (pip install av)")


def picked_indices(clip: torch.Tensor) -> list[int]:
    """Source frame indices from the grey level 20·i the test video carries."""
    return [round(float(f.float().mean()) / 20.0) for f in clip]


@pytest.fixture(scope="module")
def indexed_video(tmp_path_factory, make_video) -> Path:
    return make_video(tmp_path_factory.mktemp("idx") / "idx.mp4", frames=12, fps=8, index_stripe=True)


@pytest.mark.parametrize("fps,stride,start,expected", [
    (0.0, 1, "first", [0, 1, 2, 3]),
    (0.0, 2, "first", [0, 2, 4, 6]),
    (4.0, 1, "first", [0, 2, 4, 6]),  # resample 8 → 4 fps
    (4.0, 2, "first", [0, 4, 8, 10 + 2]),  # 4 fps, every 2nd: 0, 0.5, 1.0, 1.5 s
    (0.0, 2, "center", [2, 4, 6, 8]),  # 1.5 s video, 0.75 s span: start at (1.5 − 1/8 − 0.75)/2
])
def test_fps_stride_and_start_pick_the_right_frames(indexed_video, fps, stride, start, expected):
    spec = ClipSpec(frames=4, height=16, width=16, fps=fps, stride=stride, clip_start=start)
    if expected[-1] >= 12:
        with pytest.raises(data_mod.VideoDecodeError, match="too short"):
            decode_clip(str(indexed_video), spec)
        return
    clip = decode_clip(str(indexed_video), spec)
    assert clip["pixels"].shape == (4, 16, 16, 3) and clip["pixels"].dtype == torch.uint8
    assert picked_indices(clip["pixels"]) == expected
    assert clip["fps"] == pytest.approx((fps or 8.0) / stride)


def test_random_start_is_a_function_of_seed_epoch_and_video(indexed_video):
    spec = ClipSpec(frames=3, height=8, width=8, clip_start="random")
    starts = {decode_clip(str(indexed_video), spec, f"0/{e}/0")["start"] for e in range(8)}
    assert len(starts) > 3
    assert decode_clip(str(indexed_video), spec, "0/1/0")["start"] == decode_clip(str(indexed_video), spec, "0/1/0")["start"]
    for e in range(8):
        assert max(picked_indices(decode_clip(str(indexed_video), spec, f"0/{e}/0")["pixels"])) <= 11


def test_resize_covers_then_centre_crops(tmp_path, make_video):
    video = make_video(tmp_path / "wide.mp4", frames=4, width=64, height=16)
    clip = decode_clip(str(video), ClipSpec(frames=2, height=32, width=32, clip_start="first"))["pixels"]
    assert clip.shape == (2, 32, 32, 3)


@pytest.mark.parametrize("workers", [0, 2])
def test_broken_videos_are_skipped_and_reported(video_folder, bad_videos, workers):
    entries = list_entries(DataSection(source=str(video_folder)))
    assert len(entries) == 7
    dataset = ClipDataset(entries, ClipSpec(frames=4, height=16, width=16, clip_start="center"), seed=0)
    stream = record_stream(dataset, seed=0, start=Cursor(), workers=workers)
    records = [next(stream) for _ in range(len(entries))]
    del stream
    failed = {Path(r["path"]).name: r["error"] for r in records if not r["ok"]}
    assert set(failed) == set(bad_videos)
    assert all(msg for msg in failed.values())
    good = [r for r in records if r["ok"]]
    assert len(good) == 4 and all(r["pixels"].shape == (4, 16, 16, 3) for r in good)
    assert sorted(r["key"][1] for r in records) == list(range(7))  # one epoch, in sampler order
    # the intact start of the cut MKV still gives a clip (only what is needed is decoded)
    first = ClipSpec(frames=4, height=16, width=16, clip_start="first")
    assert decode_clip(str(video_folder / "half.mkv"), first)["pixels"].shape == (4, 16, 16, 3)


def test_trainer_counts_and_lists_skipped_videos(tmp_path, video_folder, bad_videos, make_config):
    from cil_train.run import run_training

    cfg = config_from_dict(make_config(tmp_path / "out", video_folder, data={"clip_start": "center"},
                                       run={"steps": 2, "checkpoint_every": 2}))
    result = run_training(cfg)
    assert {Path(p).name for p in result.skipped} == set(bad_videos)
    listed = (tmp_path / "out" / "skipped_videos.txt").read_text().splitlines()
    assert {Path(line.split("\t")[0]).name for line in listed} == set(bad_videos)
    rows = [json.loads(r) for r in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["skipped"] == len(bad_videos)


def test_webvid_csv_and_captions(tmp_path, make_video):
    make_video(tmp_path / "vids" / "0001" / "11.mp4", frames=6)
    (tmp_path / "webvid.csv").write_text("videoid,contentUrl,duration,page_dir,name\n"
                                         "11,http://x,PT00H00M01S,0001,a red ball\n12,http://y,PT1S,0001,missing clip\n")
    entries = list_entries(DataSection(source=str(tmp_path / "webvid.csv"), video_root=str(tmp_path / "vids")))
    assert [Path(e.path).name for e in entries] == ["11.mp4", "12.mp4"]
    assert [e.caption for e in entries] == ["a red ball", "missing clip"]
    dataset = ClipDataset(entries, ClipSpec(frames=2, height=8, width=8), seed=0)
    assert dataset[(0, 0, 0)]["ok"] and dataset[(0, 1, 1)]["error"] == "file not found"

    (tmp_path / "plain.csv").write_text("path,caption\nvids/0001/11.mp4,hello\n")
    entries = list_entries(DataSection(source=str(tmp_path / "plain.csv")))
    assert entries[0].caption == "hello" and Path(entries[0].path).is_file()
    (tmp_path / "nocol.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(ValueError, match="no video column"):
        list_entries(DataSection(source=str(tmp_path / "nocol.csv")))

    (tmp_path / "vids" / "0001" / "11.txt").write_text("sidecar caption\n")
    assert list_entries(DataSection(source=str(tmp_path / "vids")))[0].caption == "sidecar caption"


def test_latent_cache_skips_decoding_on_later_runs(tmp_path, video_folder, make_config, monkeypatch):
    from cil_train.run import run_training

    raw = make_config(tmp_path / "first", video_folder, data={"latent_cache": str(tmp_path / "cache"), "clip_start": "center"},
                      optim={"grad_accum": 1}, run={"steps": 2, "checkpoint_every": 2})  # 2 × 2 clips: every good video once
    first = run_training(config_from_dict(raw))
    cached = sorted((tmp_path / "cache").glob("*.safetensors"))
    assert len(cached) == 4  # the good videos

    decode = data_mod.decode_clip

    def no_decoding(path, *args, **kwargs):
        if Path(path).name.startswith("good"):
            raise AssertionError(f"decoded {path} although its latents are cached")
        return decode(path, *args, **kwargs)  # broken videos are never cached

    monkeypatch.setattr(data_mod, "decode_clip", no_decoding)
    raw["run"]["output_dir"] = str(tmp_path / "second")
    second = run_training(config_from_dict(raw))
    assert second.losses == first.losses  # same clips, same draws: cached latents equal fresh ones

    with pytest.raises(ValueError, match="clip_start"):
        config_from_dict(dict(raw, data=dict(raw["data"], clip_start="random")))


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_the_one_order_and_skips_never_move_a_key(world):
    """Rank r takes every world-th key of one process's endless order (across epochs): B
    consecutive keys per rank make up world × B consecutive keys of one process, interleaved;
    a known-bad entry is dropped from its own rank only, after the split."""
    from itertools import islice

    from cil_train.data import Cursor, KeySampler

    n, seed = 7, 4
    one = list(islice(KeySampler(n, seed, Cursor()), 30 * world))
    ranks = [list(islice(KeySampler(n, seed, Cursor(), rank=r, world=world), 30)) for r in range(world)]
    for i in range(30):
        assert [ranks[r][i] for r in range(world)] == one[i * world:(i + 1) * world]
    bad = {one[1][2]}
    for r in range(world):
        skipped = list(islice(KeySampler(n, seed, Cursor(), bad, rank=r, world=world), 12))
        assert skipped == [k for k in ranks[r] if k[2] not in bad][:12]
    start = Cursor(*ranks[1][4][:2])  # a resumed rank continues its own share
    assert list(islice(KeySampler(n, seed, start, rank=1, world=world), 3)) == ranks[1][4:7]
