"""Shipped toy weights: safetensors whose metadata says exactly how to retrain them.

Metadata (all strings): format, format_version, name, role, family (JSON of
``DiffusionFamily.describe()``), ``arch.*`` (``ToyNetConfig``), ``train.*`` (``TrainConfig``),
``world.*`` (``WorldConfig``), ``codec*`` (``LatentCodec``), command (the exact ``cil toy-train``
command line), seed, parent (name of the checkpoint a fine-tune started from, or "none"),
parent_sha256, train_seconds, final_loss, parameters, torch_version, stored_dtype.
Weights are stored as float16 (a few MB in all) and loaded as float32.

``load_toy_model(name_or_path)`` validates everything and returns a ``ToyModel``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from cil_core.families import DiffusionFamily, family_from_description
from cil_core.stats_io import atomic_save_safetensors
from cil_core.validation import CILValueError

from .codec import LatentCodec
from .data import WorldConfig
from .model import ToyDenoiser, ToyNetConfig, ToyVideoNet

FORMAT = "comfyui-cil/toy-video-model"
FORMAT_VERSION = "1"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
STATS_FILE = "toy_latent_stats.safetensors"
# name -> file in WEIGHTS_DIR; "edm_*" mirror SVD (EDM, v), "vp_*" DynamiCrafter (VP, v)
SHIPPED = {
    "edm_baseline": "toy_edm_baseline.safetensors",
    "edm_timenoise": "toy_edm_timenoise.safetensors",
    "vp_baseline": "toy_vp_baseline.safetensors",
    "vp_timenoise": "toy_vp_timenoise.safetensors",
}
REQUIRED_META = ("format", "format_version", "name", "role", "family", "command", "seed", "codec")


@dataclass
class ToyModel:
    """A loaded toy model: network, diffusion family, codec and the training metadata."""

    name: str
    net: ToyVideoNet
    family: DiffusionFamily
    codec: LatentCodec
    world: WorldConfig
    meta: dict[str, str]

    @property
    def denoiser(self) -> ToyDenoiser:
        return ToyDenoiser(self.net, self.family)

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """[C, F, h, w] of one video latent."""
        b = self.codec.block
        return (self.codec.channels, self.world.frames, self.world.height // b, self.world.width // b)


def weights_path(name_or_path: str | os.PathLike) -> Path:
    """Resolve a shipped model name (``SHIPPED``) or a path to a .safetensors file."""
    if str(name_or_path) in SHIPPED:
        return WEIGHTS_DIR / SHIPPED[str(name_or_path)]
    path = Path(name_or_path)
    if path.suffix != ".safetensors":
        raise CILValueError(
            f"toy model {str(name_or_path)!r} is neither a shipped name ({', '.join(SHIPPED)}) nor a .safetensors file."
        )
    return path


def available_toy_models() -> list[str]:
    """Shipped model names whose files are present."""
    return [name for name, file in SHIPPED.items() if (WEIGHTS_DIR / file).is_file()]


def save_toy_model(path: str | os.PathLike, net: ToyVideoNet, family: DiffusionFamily, codec: LatentCodec, meta: dict[str, str]) -> Path:
    """Atomically write float16 weights with the full metadata (see the module docstring)."""
    full = {k: str(v) for k, v in meta.items()}
    full.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        family=json.dumps(family.describe(), sort_keys=True),
        parameters=str(sum(p.numel() for p in net.parameters())),
        torch_version=torch.__version__,
        stored_dtype="float16",
    )
    full.update(codec.describe())
    full.update(net.cfg.to_meta())
    missing = [k for k in REQUIRED_META if k not in full]
    if missing:
        raise CILValueError(f"toy weights need metadata {missing}.")
    tensors = {k: v.detach().to(torch.float16) for k, v in net.state_dict().items()}
    written = atomic_save_safetensors(tensors, path, full)
    written.chmod(0o644)  # package data must be world-readable, whatever the umask
    return written


def read_meta(path: str | os.PathLike) -> dict[str, str]:
    with safe_open(str(path), "pt") as fh:
        return dict(fh.metadata() or {})


def _validate_meta(meta: dict[str, str], path: Path) -> None:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise CILValueError(f"{path.name}: metadata lacks {missing}; it is not a toy model written by 'cil toy-train'.")
    if meta["format"] != FORMAT:
        raise CILValueError(f"{path.name}: format {meta['format']!r}, expected {FORMAT!r}.")
    if meta["format_version"] != FORMAT_VERSION:
        raise CILValueError(
            f"{path.name}: format_version {meta['format_version']!r}; this build reads {FORMAT_VERSION!r}. "
            "Retrain with 'cil toy-train' or update the pack."
        )
    if not meta["command"].startswith("cil toy-train"):
        raise CILValueError(f"{path.name}: metadata 'command' must record the 'cil toy-train' call; got {meta['command']!r}.")


def load_toy_model(name_or_path: str | os.PathLike = "edm_baseline") -> ToyModel:
    """Load and validate a toy model (shipped name or path); float32, eval mode, no grad."""
    path = weights_path(name_or_path)
    if not path.is_file():
        raise CILValueError(
            f"toy weights {path} are missing; run 'cil toy-train' to create them (see README)."
        )
    meta = read_meta(path)
    _validate_meta(meta, path)
    family = family_from_description(json.loads(meta["family"]))
    cfg = ToyNetConfig.from_meta(meta)
    codec = LatentCodec.from_meta(meta)
    if cfg.latent_channels != codec.channels:
        raise CILValueError(f"{path.name}: net expects {cfg.latent_channels} latent channels, codec gives {codec.channels}.")
    world = WorldConfig.from_meta(meta)
    net = ToyVideoNet(cfg, family)
    with safe_open(str(path), "pt") as fh:
        state = {k: fh.get_tensor(k).to(torch.float32) for k in fh.keys()}
    expected = net.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise CILValueError(f"{path.name}: tensors do not match the architecture in its metadata (file damaged?).")
    if any(not torch.isfinite(t).all() for t in state.values()):
        raise CILValueError(f"{path.name}: weights hold NaN/inf values; retrain with 'cil toy-train'.")
    net.load_state_dict(state)
    net.eval().requires_grad_(False)
    return ToyModel(name=meta["name"], net=net, family=family, codec=codec, world=world, meta=meta)
