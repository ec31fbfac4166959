"""Procedural toy videos with ground truth: textured backgrounds, bouncing sprites, camera pan.

A video is a *scene* (what the conditional image, frame 0, shows: sprites at their start, the
background's parameters; ``draw_scene``) moved by a *motion* draw (``draw_motion``: a point of
the unit cube, uniform under the prior, that ``motion_tracks`` turns into sprite velocities and
a camera pan). ``render(scene, motion)`` makes the pixels; every motion of one scene gives the
same frame 0 exactly, so the world can render many futures of one conditional image (the
Bayes reference of ``cil_toy.reference``). Every video is a deterministic function of
(seed, index): ``make_videos(seed, n)`` draws n scenes and then n motions from one
``torch.Generator`` seeded with ``seed`` and renders them.

    pixels  [N, 3, F, H, W] in [-1, 1] (CFHW per video)
    tracks  ``SpriteTracks``: sprite centres [N, S, F, 2] (x, y in pixels, pixel centres at
            i + 0.5), colours [N, S, 3] in [-1, 1], radii [N, S], shape (0 square, 1 disc),
            ``present`` [N, S] (bool: 1–3 sprites per video, unused slots are False)

Scene (the same distribution for training and held-out videos, different seeds):
- background: a desaturated base colour + two oriented sinusoidal gratings + a linear gradient,
  evaluated in world coordinates, so a camera pan (probability ``pan_prob``) shifts it smoothly,
  times a screen-fixed "light from above" falloff (so E[x0] varies over the frame, as it does
  for real footage);
- 1–3 sprites (square or disc, anti-aliased edges) with distinct saturated colours from
  ``SPRITE_PALETTE``; each is static with probability ``static_prob``, else moves at
  ``speed_range`` px/frame in a random direction and bounces off the frame borders.
Backgrounds stay desaturated so that colour matching finds the sprites (``metrics``).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields

import torch

from cil_core.validation import CILValueError

# Saturated sprite colours in [0, 1] RGB; backgrounds keep saturation ≤ ``bg_max_saturation``.
SPRITE_PALETTE = torch.tensor(
    [
        [0.95, 0.10, 0.10],  # red
        [0.10, 0.85, 0.15],  # green
        [0.15, 0.25, 1.00],  # blue
        [1.00, 0.90, 0.05],  # yellow
        [0.95, 0.15, 0.95],  # magenta
        [0.05, 0.90, 0.95],  # cyan
    ],
    dtype=torch.float32,
)

HELD_OUT_SEED = 20_241_210  # evaluation videos; training streams use other seeds (see ``training_batches``)


@dataclass(frozen=True)
class WorldConfig:
    """Size and scene statistics of the toy world (all lengths in pixels)."""

    frames: int = 8
    height: int = 32
    width: int = 32
    max_sprites: int = 3
    radius_range: tuple[float, float] = (3.0, 5.0)
    speed_range: tuple[float, float] = (0.5, 1.5)  # px/frame for moving sprites
    static_prob: float = 0.25
    pan_prob: float = 0.25
    pan_speed_range: tuple[float, float] = (0.3, 1.0)  # px/frame camera pan
    bg_max_saturation: float = 0.25
    top_light: float = 0.8  # strength of the top-to-bottom brightness falloff (screen-fixed)
    heading_cue: float = 0.0  # radius of a dark "nose" dot / sprite radius (0: none; see the module docstring)
    cue_offset: float = 0.55  # nose centre's offset from the sprite centre / radius, for a moving sprite

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise CILValueError(f"frames={self.frames}: a toy video needs at least 2 frames.")
        if self.height % 2 or self.width % 2 or self.height < 8 or self.width < 8:
            raise CILValueError(
                f"frame size {self.height}x{self.width}: height and width must be even and >= 8 "
                "(the toy codec packs 2x2 pixel blocks)."
            )
        if not 1 <= self.max_sprites <= len(SPRITE_PALETTE):
            raise CILValueError(f"max_sprites={self.max_sprites}; expected 1..{len(SPRITE_PALETTE)}.")

    def describe(self) -> dict[str, str]:
        """``world.<field>`` → repr(value), for weights metadata."""
        return {f"world.{f.name}": repr(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> "WorldConfig":
        """Inverse of ``describe`` (values are Python literals); fields added after a file was
        written take the value that reproduces the older world (``LEGACY``)."""
        kwargs = {}
        for f in fields(cls):
            key = f"world.{f.name}"
            if key not in meta and f.name in LEGACY:
                kwargs[f.name] = LEGACY[f.name]
                continue
            if key not in meta:
                raise CILValueError(f"metadata lacks {key!r}; the file was not written by 'cil toy-train'.")
            kwargs[f.name] = ast.literal_eval(meta[key])
        return cls(**kwargs)


LEGACY = {"heading_cue": 0.0, "cue_offset": 0.55}  # worlds written before these fields existed


@dataclass
class SpriteTracks:
    """Ground truth of a batch of videos (see the module docstring for shapes)."""

    centers: torch.Tensor  # [N, S, F, 2]
    colors: torch.Tensor  # [N, S, 3] in [-1, 1]
    radii: torch.Tensor  # [N, S]
    shapes: torch.Tensor  # [N, S] long, 0 square / 1 disc
    present: torch.Tensor  # [N, S] bool
    pan: torch.Tensor  # [N, 2] camera pan, px/frame
    nose: torch.Tensor  # [N, S, 2] nose centre − sprite centre (px; zero without a heading cue or when static)

    def __getitem__(self, index) -> "SpriteTracks":
        return SpriteTracks(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def cat(parts: list["SpriteTracks"]) -> "SpriteTracks":
        return SpriteTracks(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(SpriteTracks)))


def _uniform(gen: torch.Generator, shape, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def _reflect(p: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Fold free motion p into [lo, hi] as a ball bouncing off both walls (triangle wave)."""
    span = (hi - lo).clamp(min=1e-6)
    u = torch.remainder(p - lo, 2 * span)
    return lo + span - (u - span).abs()


def _background_colors(gen: torch.Generator, n: int, max_sat: float) -> torch.Tensor:
    """[n, 3] desaturated colours in [0, 1]: grey level plus a small tint."""
    grey = _uniform(gen, (n, 1), 0.15, 0.85)
    tint = torch.randn(n, 3, generator=gen)
    tint = tint - tint.mean(dim=1, keepdim=True)
    tint = tint / tint.abs().amax(dim=1, keepdim=True).clamp(min=1e-6)
    sat = _uniform(gen, (n, 1), 0.0, max_sat)
    return (grey + sat * tint * torch.minimum(grey, 1 - grey)).clamp(0, 1)


@dataclass
class Scene:
    """What the conditional image (frame 0) shows, for N videos: sprites where they start and the
    background's parameters. A ``Motion`` draw turns it into a video; every motion gives the same
    frame 0 (sprites start at ``start``; the pan moves the camera from frame 1 on)."""

    present: torch.Tensor  # [N, S] bool
    colors: torch.Tensor  # [N, S, 3] in [-1, 1]
    radii: torch.Tensor  # [N, S]
    shapes: torch.Tensor  # [N, S] long, 0 square / 1 disc
    start: torch.Tensor  # [N, S, 2] centre at frame 0 (px)
    bg_base: torch.Tensor  # [N, 3] background colour in [0, 1]
    gratings: torch.Tensor  # [N, 2, 4] angle, period, phase, amplitude of two sinusoidal gratings
    gradient: torch.Tensor  # [N, 2] linear gradient per px (x, y)
    light: torch.Tensor  # [N] strength of the screen-fixed top light
    heading: torch.Tensor  # [N, S] direction of motion (rad); frame 0 shows it only with a heading cue
    moving: torch.Tensor  # [N, S] bool; likewise

    def __len__(self) -> int:
        return self.present.shape[0]

    def __getitem__(self, index) -> "Scene":
        return Scene(*(getattr(self, f.name)[index] for f in fields(self)))

    def repeat(self, k: int) -> "Scene":
        """Video 0 of this scene, k times (to render k futures of one conditional image)."""
        return Scene(*(getattr(self, f.name)[:1].expand(k, *getattr(self, f.name).shape[1:]) for f in fields(self)))


def motion_dims(cfg: WorldConfig) -> int:
    """Length of a motion draw: (static flag, speed, angle) per sprite slot, then (pan flag, pan
    speed, pan angle). Each entry is a uniform draw in [0, 1); the prior is uniform on the cube."""
    return 3 * cfg.max_sprites + 3


def motion_flag_dims(cfg: WorldConfig) -> list[int]:
    """Indices of the on/off entries of a motion draw that change the video (each sprite's static
    flag unless the heading cue shows it, and the pan flag)."""
    sprites = [] if cfg.heading_cue > 0 else [3 * j for j in range(cfg.max_sprites)]
    return sprites + [3 * cfg.max_sprites]


def draw_scene(gen: torch.Generator, cfg: WorldConfig, n: int) -> Scene:
    """N scenes from the world's prior (independent of any motion)."""
    s = cfg.max_sprites
    count = torch.randint(1, s + 1, (n,), generator=gen)
    present = torch.arange(s).view(1, s) < count.view(n, 1)
    colour_idx = torch.argsort(torch.rand(n, len(SPRITE_PALETTE), generator=gen), dim=1)[:, :s]
    radii = _uniform(gen, (n, s), *cfg.radius_range)
    shapes = torch.randint(0, 2, (n, s), generator=gen)
    lo = radii.unsqueeze(-1)
    hi = torch.tensor([cfg.width, cfg.height], dtype=torch.float32) - lo
    start = lo + (hi - lo) * torch.rand(n, s, 2, generator=gen)
    base = _background_colors(gen, n, cfg.bg_max_saturation)
    gratings = torch.stack([torch.stack([_uniform(gen, (n,), 0, math.pi), _uniform(gen, (n,), 6.0, 20.0),
                                         _uniform(gen, (n,), 0, 2 * math.pi), _uniform(gen, (n,), 0.0, 0.25)], dim=1)
                            for _ in range(2)], dim=1)
    gradient = _uniform(gen, (n, 2), -0.3, 0.3) / max(cfg.height, cfg.width)
    light = _uniform(gen, (n,), 0.0, cfg.top_light)
    heading = _uniform(gen, (n, s), 0, 2 * math.pi)
    moving = torch.rand(n, s, generator=gen) >= cfg.static_prob
    return Scene(present, SPRITE_PALETTE[colour_idx] * 2 - 1, radii, shapes, start, base, gratings, gradient, light, heading, moving)


def draw_motion(gen: torch.Generator, cfg: WorldConfig, n: int) -> torch.Tensor:
    """[N, motion_dims] uniform motion draws (the prior of ``motion_tracks``)."""
    return torch.rand(n, motion_dims(cfg), generator=gen, dtype=torch.float64)


def motion_tracks(scene: Scene, motion: torch.Tensor, cfg: WorldConfig) -> SpriteTracks:
    """Sprite centres over time and the camera pan of a motion draw [N, motion_dims]: a sprite
    moves iff its flag is >= ``static_prob``, at speed_range[0] + span·u px/frame in direction
    2π·u, bouncing off the borders; the camera pans iff its flag is < ``pan_prob``. With a heading
    cue the scene's ``moving`` and ``heading`` replace the flag and the direction (frame 0 shows
    them), and the motion draw sets only the speeds and the pan."""
    n, s = len(scene), cfg.max_sprites
    if motion.shape != (n, motion_dims(cfg)):
        raise CILValueError(f"motion has shape {tuple(motion.shape)}; expected [{n}, {motion_dims(cfg)}] (see motion_dims).")
    u = motion.to(torch.float32)
    per = u[:, : 3 * s].reshape(n, s, 3)
    lo_s, hi_s = cfg.speed_range
    cue = cfg.heading_cue > 0
    moving = scene.moving if cue else per[..., 0] >= cfg.static_prob
    speed = (lo_s + (hi_s - lo_s) * per[..., 1]) * moving
    angle = scene.heading if cue else 2 * math.pi * per[..., 2]
    velocity = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1) * speed.unsqueeze(-1)
    lo = scene.radii.unsqueeze(-1)
    hi = torch.tensor([cfg.width, cfg.height], dtype=torch.float32) - lo
    f = torch.arange(cfg.frames, dtype=torch.float32).view(1, 1, cfg.frames, 1)
    centers = _reflect(scene.start.unsqueeze(2) + velocity.unsqueeze(2) * f, lo.unsqueeze(2), hi.unsqueeze(2))
    pan_u = u[:, 3 * s :]
    lo_p, hi_p = cfg.pan_speed_range
    pan_speed = (lo_p + (hi_p - lo_p) * pan_u[:, 1]) * (pan_u[:, 0] < cfg.pan_prob)
    pan_angle = 2 * math.pi * pan_u[:, 2]
    pan = torch.stack([torch.cos(pan_angle), torch.sin(pan_angle)], dim=-1) * pan_speed.unsqueeze(-1)
    nose = torch.stack([torch.cos(scene.heading), torch.sin(scene.heading)], dim=-1) * (cfg.cue_offset * scene.radii * scene.moving).unsqueeze(-1)
    nose = nose * cue
    return SpriteTracks(centers=centers, colors=scene.colors, radii=scene.radii, shapes=scene.shapes, present=scene.present, pan=pan,
                        nose=nose)


def _render_backgrounds(scene: Scene, cfg: WorldConfig, pan: torch.Tensor) -> torch.Tensor:
    """[n, 3, F, H, W] in [0, 1]: base colour × (1 + gratings + gradient + light), shifted by the pan."""
    n = len(scene)
    f = torch.arange(cfg.frames, dtype=torch.float32).view(1, cfg.frames, 1, 1)
    ys = torch.arange(cfg.height, dtype=torch.float32).view(1, 1, cfg.height, 1) + 0.5
    xs = torch.arange(cfg.width, dtype=torch.float32).view(1, 1, 1, cfg.width) + 0.5
    # world coordinates seen by the camera at frame f (camera moves by +pan per frame)
    wx = xs + pan[:, 0].view(n, 1, 1, 1) * f
    wy = ys + pan[:, 1].view(n, 1, 1, 1) * f
    texture = torch.zeros(n, cfg.frames, cfg.height, cfg.width)
    for g in range(scene.gratings.shape[1]):
        angle, period, phase, amp = (scene.gratings[:, g, i].view(n, 1, 1, 1) for i in range(4))
        proj = wx * torch.cos(angle) + wy * torch.sin(angle)
        texture = texture + amp * torch.sin(2 * math.pi * proj / period + phase)
    grad = scene.gradient
    texture = texture + grad[:, 0].view(n, 1, 1, 1) * (wx - cfg.width / 2) + grad[:, 1].view(n, 1, 1, 1) * (wy - cfg.height / 2)
    # light from above, in screen coordinates (like sky over ground in real footage): E[x0] is
    # not flat, as in real latents (the official DynamiCrafter stats have RMS(E[x0]) ≈ 0.3)
    texture = texture + scene.light.view(n, 1, 1, 1) * (0.5 - ys / cfg.height)
    return (scene.bg_base.view(n, 3, 1, 1, 1) * (1 + texture.unsqueeze(1))).clamp(0, 1)


def _coverage(centers: torch.Tensor, radii: torch.Tensor, discs: torch.Tensor, present: torch.Tensor, cfg: WorldConfig) -> torch.Tensor:
    """[N, S, F, H, W] anti-aliased coverage of squares / discs (``discs`` [N, S] bool) at centres [N, S, F, 2]."""
    ys = torch.arange(cfg.height, dtype=torch.float32).view(1, 1, 1, cfg.height, 1) + 0.5
    xs = torch.arange(cfg.width, dtype=torch.float32).view(1, 1, 1, 1, cfg.width) + 0.5
    dx = xs - centers[..., 0].unsqueeze(-1).unsqueeze(-1)
    dy = ys - centers[..., 1].unsqueeze(-1).unsqueeze(-1)
    disc = torch.sqrt(dx**2 + dy**2)
    square = torch.maximum(dx.abs(), dy.abs())
    dist = torch.where(discs.view(*discs.shape, 1, 1, 1), disc, square)
    cover = (radii.view(*radii.shape, 1, 1, 1) + 0.5 - dist).clamp(0, 1)
    return cover * present.view(*present.shape, 1, 1, 1)


def sprite_coverage(tracks: SpriteTracks, cfg: WorldConfig) -> torch.Tensor:
    """[N, S, F, H, W] anti-aliased coverage in [0, 1] of each sprite (before occlusion)."""
    return _coverage(tracks.centers, tracks.radii, tracks.shapes == 1, tracks.present, cfg)


def nose_coverage(tracks: SpriteTracks, cfg: WorldConfig) -> torch.Tensor:
    """[N, S, F, H, W] coverage of each sprite's dark heading dot (zero without a heading cue)."""
    if cfg.heading_cue <= 0:
        return torch.zeros(*tracks.present.shape, cfg.frames, cfg.height, cfg.width)
    discs = torch.ones_like(tracks.present)
    return _coverage(tracks.centers + tracks.nose.unsqueeze(2), cfg.heading_cue * tracks.radii, discs, tracks.present, cfg)


def render(scene: Scene, motion: torch.Tensor, cfg: WorldConfig) -> tuple[torch.Tensor, SpriteTracks]:
    """Pixels [N, 3, F, H, W] in [-1, 1] and ground truth of scenes moved by motion draws."""
    tracks = motion_tracks(scene, motion, cfg)
    video = _render_backgrounds(scene, cfg, tracks.pan)
    cover, nose = sprite_coverage(tracks, cfg), nose_coverage(tracks, cfg)
    colors01 = (tracks.colors + 1) / 2
    n = len(scene)
    for s in range(cfg.max_sprites):  # later sprites (and their noses) occlude earlier ones
        a = cover[:, s].unsqueeze(1)
        video = video * (1 - a) + colors01[:, s].view(n, 3, 1, 1, 1) * a
        video = video * (1 - nose[:, s].unsqueeze(1))  # the nose is black
    return video * 2 - 1, tracks


def make_scenes(seed: int, n: int, cfg: WorldConfig | None = None) -> tuple[Scene, torch.Tensor]:
    """The scenes and motion draws behind ``make_videos(seed, n, cfg)`` (scene first, then motion)."""
    cfg = cfg or WorldConfig()
    if n < 1:
        raise CILValueError(f"n={n}: ask for at least one video.")
    gen = torch.Generator().manual_seed(int(seed))
    scene = draw_scene(gen, cfg, n)
    return scene, draw_motion(gen, cfg, n)


def make_videos(seed: int, n: int, cfg: WorldConfig | None = None) -> tuple[torch.Tensor, SpriteTracks]:
    """n videos [n, 3, F, H, W] in [-1, 1] and their ground truth, deterministic in (seed, n, cfg)."""
    cfg = cfg or WorldConfig()
    return render(*make_scenes(seed, n, cfg), cfg)


def held_out_set(n: int, cfg: WorldConfig | None = None, seed: int = HELD_OUT_SEED) -> tuple[torch.Tensor, SpriteTracks]:
    """The fixed evaluation videos (never drawn by ``training_batches``)."""
    return make_videos(seed, n, cfg)


def training_batches(seed: int, batch_size: int, cfg: WorldConfig | None = None, start_step: int = 0) -> Iterator[torch.Tensor]:
    """Infinite stream of [batch, 3, F, H, W] pixel videos; batch k uses seed (seed, k).

    The per-batch seed is 1_000_003·seed + k + 1, kept away from ``HELD_OUT_SEED`` for the
    seeds the tools use (0–999).
    """
    step = start_step
    while True:
        batch_seed = 1_000_003 * int(seed) + step + 1
        if batch_seed == HELD_OUT_SEED:
            batch_seed += 7_919
        yield make_videos(batch_seed, batch_size, cfg)[0]
        step += 1
