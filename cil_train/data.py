"""Training clips from a video folder, a WebVid-style CSV or a folder of pre-encoded latents.

Clips come from the pack's one video reader (``cil_media.video.decode_clip``, ``ClipSpec``):
resampled to ``fps``, every ``stride``-th frame, from a ``clip_start`` that is random per epoch
and video (or first, or centre), resized to cover ``height × width`` and centre-cropped.
Decoding runs in DataLoader worker processes; a video that fails (missing, corrupt, truncated,
too short) comes back as a failure record, which the trainer counts, lists in its log and
skips — never fatal.

Order: ``KeySampler`` walks a seeded permutation per epoch from a cursor (epoch, position), so
a resumed run sees exactly the clips an uninterrupted run would have seen.

Records (dicts): ``{"ok": True, "key", "pixels" uint8 [F, H, W, 3], "fps", "caption", "path"}``,
``{"ok": True, "key", "encoded": {name: tensor}, ...}`` (latent file or cache hit) or
``{"ok": False, "key", "path", "error"}``.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from cil_core.stats_io import atomic_save_safetensors
from cil_core.validation import CILValueError
from cil_media.video import VIDEO_EXTENSIONS, ClipSpec, VideoDecodeError, decode_clip, video_files

VIDEO_COLUMNS = ("path", "video", "video_path", "file", "filename")
CAPTION_COLUMNS = ("caption", "name", "text", "prompt")


@dataclass(frozen=True)
class Entry:
    path: str
    caption: str = ""
    kind: str = "video"  # video | latent


# --- listing ---------------------------------------------------------------------------------

def list_entries(data) -> list[Entry]:
    """Entries of ``data.source`` (a DataSection); kind auto-detected from the path."""
    source = Path(data.source) if data.source else None
    if source is None or not source.exists():
        raise CILValueError(f"data.source={data.source!r} does not exist; give a video folder, a CSV file or a latent folder.")
    kind = data.kind
    if kind == "auto":
        if source.is_file():
            kind = "csv"
        elif any(source.glob("*.safetensors")) and not video_files(source):
            kind = "latents"
        else:
            kind = "folder"
    if kind == "csv":
        entries = _csv_entries(source, Path(data.video_root) if data.video_root else source.parent, data)
    elif kind == "latents":
        entries = [Entry(str(p), kind="latent") for p in sorted(source.glob("*.safetensors"))]
    else:
        entries = [Entry(str(p), _sidecar_caption(p, data.caption)) for p in video_files(source)]
    if not entries:
        raise CILValueError(f"data.source={str(source)!r} holds no {kind} entries (video types: {', '.join(VIDEO_EXTENSIONS)}).")
    return entries


def _sidecar_caption(video: Path, default: str) -> str:
    txt = video.with_suffix(".txt")
    return txt.read_text(encoding="utf-8").strip() if txt.is_file() else default


def _csv_entries(csv_path: Path, root: Path, data) -> list[Entry]:
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return []
    columns = rows[0].keys()
    video_col = data.csv_video_column or next((c for c in VIDEO_COLUMNS if c in columns), "")
    caption_col = data.csv_caption_column or next((c for c in CAPTION_COLUMNS if c in columns), "")
    webvid = not video_col and {"videoid", "page_dir"} <= set(columns)
    if not video_col and not webvid:
        raise CILValueError(
            f"{csv_path.name}: no video column; expected one of {VIDEO_COLUMNS} or WebVid's videoid + page_dir "
            f"(columns found: {list(columns)}); set data.csv_video_column."
        )
    if data.csv_video_column and data.csv_video_column not in columns:
        raise CILValueError(f"{csv_path.name}: data.csv_video_column={video_col!r} is not a column ({list(columns)}).")
    entries = []
    for row in rows:
        rel = f"{row['page_dir']}/{row['videoid']}.mp4" if webvid else row[video_col]
        caption = row.get(caption_col, "") if caption_col else data.caption
        entries.append(Entry(str(root / rel), caption or data.caption))
    return entries


# --- encoded clips (latent folders and the latent cache) ---------------------------------------

def load_encoded(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(path, framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
    except Exception as exc:
        raise VideoDecodeError(f"unreadable latent file: {type(exc).__name__}: {exc}") from None


class LatentCache:
    """VAE latents on disk, one safetensors file per clip, keyed by video + clip spec + encoder."""

    def __init__(self, folder: str | Path, encoder_id: str, spec: ClipSpec) -> None:
        self.folder = Path(folder)
        self.encoder_id = encoder_id
        self.spec = spec

    def path_for(self, video: str) -> Path:
        st = os.stat(video)
        ident = [os.path.abspath(video), st.st_size, st.st_mtime_ns, self.spec.__dict__, self.encoder_id]
        digest = hashlib.sha256(repr(ident).encode()).hexdigest()[:24]
        return self.folder / f"{Path(video).stem[:40]}-{digest}.safetensors"

    def lookup(self, video: str) -> Path | None:
        try:
            p = self.path_for(video)
        except OSError:
            return None
        return p if p.is_file() else None

    def store(self, video: str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
        return atomic_save_safetensors(tensors, self.path_for(video), meta)


# --- dataset, order and stream ---------------------------------------------------------------

Key = tuple[int, int, int]  # (epoch, position in the epoch, entry index)


class ClipDataset(torch.utils.data.Dataset):
    """Map-style dataset keyed by ``Key``; never raises for a bad video (returns a failure record)."""

    def __init__(self, entries: list[Entry], spec: ClipSpec, seed: int, cache: LatentCache | None = None) -> None:
        self.entries, self.spec, self.seed, self.cache = entries, spec, seed, cache

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: Key) -> dict:
        epoch, _, idx = key
        entry = self.entries[idx]
        base = {"key": key, "path": entry.path, "caption": entry.caption}
        try:
            if entry.kind == "latent":
                tensors, meta = load_encoded(entry.path)
                return base | {"ok": True, "encoded": tensors, "caption": meta.get("caption", entry.caption), "meta": meta}
            cached = self.cache.lookup(entry.path) if self.cache is not None else None
            if cached is not None:
                tensors, meta = load_encoded(str(cached))
                return base | {"ok": True, "encoded": tensors, "meta": meta, "cached": True}
            clip = decode_clip(entry.path, self.spec, f"{self.seed}/{epoch}/{idx}")
            return base | {"ok": True} | clip
        except VideoDecodeError as exc:
            return base | {"ok": False, "error": str(exc)}


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    gen = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=gen).tolist()


@dataclass
class Cursor:
    epoch: int = 0
    position: int = 0

    def after(self, key: Key, n: int) -> "Cursor":
        epoch, pos, _ = key
        return Cursor(epoch + 1, 0) if pos + 1 >= n else Cursor(epoch, pos + 1)


class KeySampler(torch.utils.data.Sampler):
    """Endless keys from ``start``; entries in ``skip`` (known bad) are passed over.

    With ``world`` > 1 processes, process ``rank`` takes every ``world``-th key of the one endless
    order (global index epoch·n + position), like ``DistributedSampler``: together the processes see
    exactly the keys one process would, a global batch of world × B keys being B consecutive keys
    per process, interleaved. The skip list is applied after that split, so learning that a
    video is bad never moves a key to another process.
    """

    def __init__(self, n: int, seed: int, start: Cursor, skip: set[int] = frozenset(), rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.start, self.skip = n, seed, start, set(skip)
        self.rank, self.world = rank, world
        if len(self.skip) >= n:
            raise CILValueError(f"all {n} training videos failed to decode; see the skipped list in the log.")

    def __iter__(self) -> Iterator[Key]:
        epoch, pos = self.start.epoch, self.start.position
        while True:
            order = epoch_order(self.seed, epoch, self.n)
            for p in range(pos, self.n):
                if (epoch * self.n + p) % self.world == self.rank and order[p] not in self.skip:
                    yield (epoch, p, order[p])
            epoch, pos = epoch + 1, 0


def _identity(x):
    return x


def record_stream(dataset: ClipDataset, seed: int, start: Cursor, workers: int, skip: set[int] = frozenset(),
                  rank: int = 0, world: int = 1) -> Iterator[dict]:
    """Records in sampler order (this process's share of it), decoded by ``workers`` processes (0: in
    this process)."""
    sampler = KeySampler(len(dataset), seed, start, skip, rank, world)
    if workers == 0:
        return (dataset[k] for k in sampler)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=sampler, num_workers=workers, collate_fn=_identity,
        prefetch_factor=2, generator=torch.Generator().manual_seed(seed),  # keeps the global RNG untouched
    )
    return iter(loader)


class InMemoryDataset(ClipDataset):
    """Already-encoded items (the node's LATENT + conditioning): same order and cursor logic."""

    def __init__(self, items: list[dict], seed: int) -> None:
        super().__init__([Entry(f"<item {i}>", kind="memory") for i in range(len(items))], None, seed)
        self.items = items

    def __getitem__(self, key: Key) -> dict:
        idx = key[2]
        return {"key": key, "path": self.entries[idx].path, "caption": "", "ok": True, "encoded": self.items[idx], "meta": {}}
