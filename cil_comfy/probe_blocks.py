"""The Leakage Probe in blocks of grid times, so its memory is bounded by what it keeps, not by
grid_count x samples_per_t.

cil_core's ``probe_leakage`` holds every prediction of a call until their motion is measured. Run
on a block of consecutive grid times at a time (the noise generator continues from block to
block, so every (t, sample) gets the same noise as in one call), only one block's predictions
are alive at once. What outlives a block: the motions, sample 0 of every t (the node's preview),
and all predictions only when the pixel metric needs them. ``plan`` says how much that is, and
refuses with the numbers (``cil_core.memory``) before the first model call when it cannot fit.
"""

from __future__ import annotations

import dataclasses

import torch

from cil_core.memory import check_fits, human
from cil_core.probe import ProbeResult, probe_leakage

BLOCK_BYTES = 256 * 1024**2  # predictions alive at once (one block), at most, unless one t alone needs more
FLOAT_BYTES = 4


@dataclasses.dataclass(frozen=True)
class Plan:
    block_t: int  # grid times per block
    kept_bytes: int  # what outlives the blocks (previews, or every prediction for the pixel metric)
    block_bytes: int


def plan(video_numel: int, t_count: int, samples: int, keep_all: bool, max_batch: int) -> Plan:
    """Blocks of whole grid times, at most BLOCK_BYTES of predictions each (one t at least), and
    the memory check of the whole run."""
    video = video_numel * FLOAT_BYTES
    per_t = samples * video
    block_t = max(1, min(t_count, BLOCK_BYTES // max(1, per_t)))
    kept = t_count * (samples if keep_all else 1) * video
    block = block_t * per_t
    batch = 2 * min(max_batch, samples * t_count) * video  # a chunk's noisy input and prediction
    need = kept + block + batch
    fix = ("lower grid_count x samples_per_t, or set pixel_metric off (it keeps every prediction)" if keep_all
           else "lower samples_per_t or max_batch, or probe a shorter or smaller video")
    what = (f"the probe ({t_count} times x {samples} samples of a {human(video)} video"
            + (", every prediction kept for the pixel metric)" if keep_all else ")"))
    check_fits(what, need, fix + ".")
    return Plan(block_t, kept, block)


def probe_in_blocks(denoise, x0: torch.Tensor, family, t_grid: list[float], samples_per_t: int, *, generator, max_batch: int,
                    progress=None, skip_frames: int = 0, keep_all: bool = False) -> ProbeResult:
    """``probe_leakage`` over the grid in blocks (``plan``); predictions: all, or sample 0 of each t."""
    steps = plan(x0.numel(), len(t_grid), samples_per_t, keep_all, max_batch)
    parts = []
    for start in range(0, len(t_grid), steps.block_t):
        block = t_grid[start:start + steps.block_t]
        offset = start * samples_per_t
        tick = None if progress is None else (lambda done, _total, o=offset: progress(o + done, len(t_grid) * samples_per_t))
        part = probe_leakage(denoise, x0, family, block, samples_per_t, generator=generator, max_batch=max_batch,
                             keep_predictions=True, progress=tick, skip_frames=skip_frames)
        if not keep_all:
            part.predictions = part.predictions[:, :1].clone()  # the rest of the block is freed here
        parts.append(part)
    return concat_results(parts)


def concat_results(parts: list[ProbeResult]) -> ProbeResult:
    """One ProbeResult from results on consecutive blocks of grid times: per-t tensors are joined
    along t; everything else (the reference's motion, skipped frames, …) is taken from the first."""
    if len(parts) == 1:
        return parts[0]
    t_counts = [p.t.numel() for p in parts]
    joined = {}
    for field in dataclasses.fields(ProbeResult):
        values = [getattr(p, field.name) for p in parts]
        per_t = all(isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n for v, n in zip(values, t_counts))
        joined[field.name] = torch.cat(values) if per_t else values[0]
    return ProbeResult(**joined)
