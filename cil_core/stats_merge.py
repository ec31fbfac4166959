"""Merging Analytic-Init estimates made apart (shards of one data set) through the Welford state
(count, mean, M2) our files keep: the merge (Chan et al.) equals one pass over all the videos up
to float64 round-off.

Estimates merge only when they describe the same latents: same latent format, latent shape (which
holds the latent frames), pixel frames, pixel size, stride and fps. The video lists (metadata ``videos``, JSON) must not overlap, or a
video would count twice.
"""

from __future__ import annotations

import hashlib
import json

from .analytic_init import AnalyticStats
from .moments import StreamingMoments
from .validation import CILValueError

SAME = ("latent_format", "frames", "pixel_frames", "height", "width", "stride", "fps")  # metadata that must agree


def video_list(stats: AnalyticStats) -> list[str]:
    return list(json.loads(stats.meta.get("videos", "[]")))


def skipped_list(stats: AnalyticStats) -> dict[str, str]:
    return dict(json.loads(stats.meta.get("skipped", "{}")))


def videos_digest(videos: list[str]) -> str:
    """sha256 of the sorted video ids, one per line: equal sets of videos, equal digests."""
    return hashlib.sha256("\n".join(sorted(videos)).encode("utf-8")).hexdigest()


def check_mergeable(name_a: str, a: AnalyticStats, name_b: str, b: AnalyticStats) -> None:
    """Refuse (one line, naming both and the field) estimates of different latents."""
    if a.m2 is None or b.m2 is None:
        name = name_a if a.m2 is None else name_b
        raise CILValueError(f"{name} carries no Welford state (m2), e.g. an official file; only this pack's estimates can be merged.")
    if a.shape != b.shape:
        raise CILValueError(f"{name_a} and {name_b} differ in latent shape [C,F,H,W]: {list(a.shape)} vs {list(b.shape)}; "
                            "merge estimates of one latent format, size and frame count.")
    for key in SAME:
        if a.meta.get(key, "") != b.meta.get(key, ""):
            raise CILValueError(f"{name_a} and {name_b} differ in {key}: {a.meta.get(key, '')!r} vs {b.meta.get(key, '')!r}; "
                                "merge estimates of one latent format, size and frame count.")
    shared = set(video_list(a)) & set(video_list(b))
    if shared:
        raise CILValueError(f"{name_a} and {name_b} both include {len(shared)} video(s) (e.g. {sorted(shared)[0]!r}); merging "
                            "would count them twice: estimate disjoint shards (cil stats estimate --shard K/N).")


def merge_stats(named: list[tuple[str, AnalyticStats]]) -> AnalyticStats:
    """One estimate from several disjoint ones, merged in the order given."""
    if not named:
        raise CILValueError("nothing to merge: give at least one stats file.")
    acc, videos, skipped, seen = StreamingMoments(), [], {}, []
    for name, stats in named:
        for other_name, other in seen:
            check_mergeable(other_name, other, name, stats)
        seen.append((name, stats))
        acc.merge(stats.to_moments())
        videos += video_list(stats)
        skipped.update(skipped_list(stats))
    meta = dict(named[0][1].meta)
    meta.update(videos=json.dumps(videos), videos_sha256=videos_digest(videos), skipped=json.dumps(skipped, sort_keys=True),
                status="complete" if all(s.meta.get("status", "complete") == "complete" for _, s in named) else "partial",
                source=json.dumps([n for n, _ in named]))
    meta.pop("shard", None)
    return AnalyticStats.from_moments(acc, meta)
