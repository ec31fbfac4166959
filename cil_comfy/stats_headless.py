"""``cil stats estimate``: Analytic-Init stats of a folder or CSV of videos, headless, resumable,
on one process or several (torchrun).

The encoder is ComfyUI's own: ``load_encoder`` loads a checkpoint (its MODEL gives the latent
format, as in a graph) or a VAE file plus a named latent format, booted by ``cil_comfy.host``.
Every clip goes through the node's engine, ``cil_comfy.stats.estimate_through_vae``.

Resumable: every ``every`` videos the output file is rewritten atomically with the Welford state
(count, float64 mean and M2), the ids of the videos it includes and of those skipped; ``--resume``
continues from it, never counting a video twice, and first removes the temporary file a killed
write left. One process streams the videos in order through
the file's state, so a run killed and resumed gives the bits of one uninterrupted run.

Several processes: each takes every W-th of the videos left to do; every ``every`` videos per
process their Welford states are gathered and merged (Chan) in rank order into the file's state by
rank 0, which alone writes. The result equals one process's up to float64 round-off.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from cil_core.analytic_init import AnalyticStats
from cil_core.atomic import leftover_temporaries, remove_temporaries
from cil_core.moments import StreamingMoments
from cil_core.stats_io import load_stats, save_stats
from cil_core.stats_merge import skipped_list, video_list, videos_digest
from cil_core.validation import CILValueError
from cil_media.clips import FolderReport
from cil_media.video import VIDEO_EXTENSIONS, video_files

from .stats import estimate_through_vae

# --model-kind: model families → ComfyUI latent format (any comfy.latent_formats class name works too)
MODEL_KINDS = {"svd": "SD15", "dynamicrafter": "SD15", "sd15": "SD15", "wan2.1": "Wan21", "wan2.2-a14b": "Wan21",
               "wan2.2-5b": "Wan22", "ltxv": "LTXV", "hunyuanvideo": "HunyuanVideo"}


@dataclass(frozen=True)
class Job:
    videos: str  # folder or CSV
    out: Path
    frames: int
    width: int
    height: int
    fps: float = 0.0
    stride: int = 1
    every: int = 50  # videos per process between checkpoints of the output file
    shard: tuple[int, int] = (0, 1)  # (k, n): this job's share of the videos (cluster array jobs)
    resume: bool = False

    def settings(self) -> dict[str, str]:
        """Metadata a resumed file must match."""
        return {"pixel_frames": str(self.frames), "height": str(self.height), "width": str(self.width),
                "stride": str(self.stride), "fps": repr(float(self.fps))}


# --- encoder ---------------------------------------------------------------------------------------

def load_encoder(checkpoint: str = "", vae: str = "", model_kind: str = "", comfyui_path: str = "", device: str = "auto"):
    """(MODEL or None, VAE, latent format or None) with ComfyUI's loaders."""
    from .host import boot

    comfy = boot(comfyui_path, device)
    for flag, path in (("--checkpoint", checkpoint), ("--vae", vae)):
        if path and not Path(path).is_file():
            raise CILValueError(f"{flag} {path!r} does not exist.")
    if checkpoint:
        model, _, vae_obj, _ = comfy.sd.load_checkpoint_guess_config(checkpoint, output_vae=True, output_clip=False,
                                                                    output_clipvision=False)[:4]
        if model is None:
            raise CILValueError(f"--checkpoint {checkpoint!r}: ComfyUI found no diffusion model in it; give --vae and --model-kind instead.")
        if vae:
            vae_obj = comfy.sd.VAE(sd=comfy.utils.load_torch_file(vae))
        return model, vae_obj, None
    if not vae:
        raise CILValueError("give --checkpoint (a model checkpoint with its VAE) or --vae with --model-kind.")
    fmt = latent_format(model_kind)
    vae_obj = comfy.sd.VAE(sd=comfy.utils.load_torch_file(vae))
    channels = getattr(vae_obj, "latent_channels", None)
    if channels is not None and channels != fmt.latent_channels:
        raise CILValueError(f"--vae {Path(vae).name} makes {channels}-channel latents but --model-kind {model_kind!r} "
                            f"({type(fmt).__name__}) expects {fmt.latent_channels}; give the model's own VAE or kind.")
    return None, vae_obj, fmt


def latent_format(model_kind: str):
    import comfy.latent_formats as lf

    name = MODEL_KINDS.get(model_kind.lower(), model_kind)
    cls = getattr(lf, name, None)
    if not (isinstance(cls, type) and issubclass(cls, lf.LatentFormat)):
        raise CILValueError(f"--model-kind {model_kind!r} is not known; use one of {', '.join(MODEL_KINDS)} or a class name "
                            "of comfy.latent_formats (e.g. SD15, Wan21).")
    return cls()


# --- videos ----------------------------------------------------------------------------------------

def list_videos_with_ids(source: str) -> list[tuple[str, Path]]:
    """(id, path) of every video: ids are paths relative to the folder (or the CSV's folder)."""
    path = Path(source).expanduser()
    if path.is_dir():
        root, files = path, video_files(path)
    elif path.is_file():
        from cil_train.config import DataSection
        from cil_train.data import list_entries

        root, files = path.parent, [Path(e.path) for e in list_entries(DataSection(source=str(path), kind="csv"))]
    else:
        raise CILValueError(f"--videos {source!r} is neither a folder of videos nor a CSV file.")
    if not files:
        raise CILValueError(f"--videos {source!r} holds no videos ({', '.join(VIDEO_EXTENSIONS)}).")
    out = []
    for f in files:
        try:
            vid = f.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            vid = str(f.resolve())
        out.append((vid, f))
    return out


def starting_stats(job: Job) -> AnalyticStats | None:
    """The output file's stats when resuming (checked against the job), else None."""
    if not job.out.exists():
        return None
    if not job.resume:
        raise CILValueError(f"--out {str(job.out)!r} exists; pass --resume to add videos to it, or choose another --out.")
    stats = load_stats(job.out)
    if stats.m2 is None:
        raise CILValueError(f"--out {job.out.name} carries no Welford state (m2); it cannot be extended: estimate to a new file.")
    for key, value in job.settings().items():
        if stats.meta.get(key) != value:
            raise CILValueError(f"--out {job.out.name} was estimated with {key}={stats.meta.get(key)!r}, this run has {value!r}; "
                                "resume with the same settings or choose another --out.")
    return stats


# --- the run ---------------------------------------------------------------------------------------

def estimate_videos(job: Job, model, vae, fmt, dist) -> AnalyticStats | None:
    """Run the estimate ``job`` on this process's share of the videos; rank 0 writes the output
    file every ``job.every`` videos per process and returns the stats (other ranks: None)."""
    from tqdm import tqdm

    if dist.main:
        remove_temporaries(leftover_temporaries(job.out.parent, job.out.name))  # what a killed run left
    total = starting_stats(job)
    included = video_list(total) if total is not None else []
    skipped = skipped_list(total) if total is not None else {}
    done = set(included) | set(skipped)
    todo = [(vid, p) for vid, p in list_videos_with_ids(job.videos)[job.shard[0]::job.shard[1]] if vid not in done]
    mine = todo[dist.rank::dist.world]
    rounds = -(-(-(-len(todo) // dist.world)) // job.every)  # the same number of rounds on every rank
    ids = {str(p): vid for vid, p in mine}
    bar = tqdm(total=len(mine), disable=not dist.main, desc="estimate", unit="video", file=sys.stderr)
    try:
        for r in range(rounds):
            chunk = mine[r * job.every:(r + 1) * job.every]
            report = FolderReport()
            part, _ = estimate_through_vae(model, vae, job.frames, job.width, job.height, "", job.stride, 0,
                                           resume=None if dist.active else total, videos=[p for _, p in chunk], fps=job.fps,
                                           latent_format=fmt, on_clip=lambda: bar.update(1), report=report, allow_empty=True)
            used = [ids[p] for p in report.used_paths]
            bad = {ids[p]: why for p, why in report.reasons.items()}
            bar.update(len(bad))
            if dist.active:
                total = merge_ranks(total, part, dist)
                used = [v for part_used in dist.gather_json(used) for v in part_used]
                bad = {k: v for part_bad in dist.gather_json(bad) for k, v in part_bad.items()}
            elif part is not None:
                total = part
            included += used
            skipped.update(bad)
            if dist.main and total is not None:
                _write(job, total, included, skipped, complete=r == rounds - 1)
    finally:
        bar.close()
    if not dist.main:
        return None
    if total is None:
        raise CILValueError(f"no usable video in --videos {job.videos!r} ({len(skipped)} skipped); nothing was written.")
    if rounds == 0:  # nothing left to add: the file is complete
        _write(job, total, included, skipped, complete=True)
    for vid, why in sorted(bad_new(skipped, done).items()):
        print(f"cil stats estimate: skipped {vid}: {why}", file=sys.stderr)
    return total


def bad_new(skipped: dict[str, str], done: set[str]) -> dict[str, str]:
    return {k: v for k, v in skipped.items() if k not in done}


def merge_ranks(total: AnalyticStats | None, part: AnalyticStats | None, dist) -> AnalyticStats | None:
    """``total`` ⊕ every rank's ``part`` in rank order (Chan), on rank 0; a collective."""
    infos = dist.gather_json(None if part is None else {"count": part.count, "shape": list(part.shape), "meta": part.meta})
    known = [i for i in infos if i]
    if not known:
        return total
    shape = known[0]["shape"]
    zeros = torch.zeros(shape, dtype=torch.float64)
    local = part.to_moments() if part is not None else StreamingMoments(0, zeros, zeros.clone())
    means, m2s = dist.gather(local.mean), dist.gather(local.m2)
    if not dist.main:
        return total
    acc = total.to_moments() if total is not None else StreamingMoments()
    for info, mean, m2 in zip(infos, means, m2s):
        if info:
            acc.merge(StreamingMoments(info["count"], mean, m2))
    return AnalyticStats.from_moments(acc, dict(total.meta) if total is not None else dict(known[0]["meta"]))


def _write(job: Job, stats: AnalyticStats, videos: list[str], skipped: dict[str, str], complete: bool) -> None:
    stats.meta.update(job.settings())
    stats.meta.update(videos=json.dumps(videos), videos_sha256=videos_digest(videos), skipped=json.dumps(skipped, sort_keys=True),
                      status="complete" if complete else "partial", source=str(Path(job.videos).expanduser().resolve()))
    if job.shard[1] > 1:
        stats.meta["shard"] = f"{job.shard[0]}/{job.shard[1]}"
    save_stats(stats, job.out)
