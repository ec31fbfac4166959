"""A small concat-conditioned video denoiser, shaped like SVD / DynamiCrafter at toy scale.

Network input (as ComfyUI's ``BaseModel._apply_model`` builds it for SVD):
    cat(c_in·x [B, C, F, h, w], conditional first-frame latent repeated over F [B, C, F, h, w])
plus two scalars per item: the ComfyUI ``timestep`` of the family (EDM: 0.25·ln σ; VP discrete:
the table index 0…N−1) and the conditional image's noise level β (SVD's augmentation level /
TimeNoise's β_s). Output: the family's raw prediction (v for the shipped models).

Body: a small 3-D U-Net (levels at h×w, h/2×w/2, h/4×w/4 by default) of (2+1)-D residual blocks (3×3 spatial conv, then a 3-tap temporal
conv), FiLM-conditioned on an embedding of (timestep, β), space-time self-attention at the deepest
level (4×4 × frames tokens), a learned per-frame embedding
(so the net knows which frame the conditional image is), plus a linear path whose per-channel
(and, for the conditional image, per-frame) gains are functions of (timestep, β): the linear
part of the denoiser, which lets a small net learn "copy the conditional image" in a few hundred
steps instead of thousands. Everything is plain torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from cil_core.families import EDM, DiffusionFamily, VPDiscrete
from cil_core.validation import CILValueError


@dataclass(frozen=True)
class ToyNetConfig:
    """Architecture hyper-parameters (stored in the weights' metadata)."""

    latent_channels: int = 12
    frames: int = 8
    outer_width: int = 32  # channels at full latent resolution (0: no such level)
    width: int = 64  # channels at the next level (half resolution when outer_width > 0)
    mid_width: int = 128  # channels at the deepest level (half the resolution of ``width``)
    blocks_outer: int = 1  # residual blocks per side at each level above the deepest
    blocks_mid: int = 2  # residual blocks at the deepest level
    embed_dim: int = 64
    groups: int = 8
    attn_heads: int = 4  # space-time self-attention after each deepest-level block (0: none)
    latent_size: int = 16  # latent height = width (sizes the attention's position embedding)
    beta_conditioning: int = 1  # 1: embed the cond noise level β (SVD-like); 0: ignore it (DynamiCrafter-like)
    level_attn: int = 0  # 1: space-time attention also at the ``width`` level (after its down and its up blocks)

    def to_meta(self) -> dict[str, str]:
        return {f"arch.{k}": str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> "ToyNetConfig":
        """Inverse of ``to_meta``; keys added later (``ARCH_LEGACY``) take the value older files were built with."""
        values = {k: meta.get(f"arch.{k}", ARCH_LEGACY.get(k)) for k in asdict(cls())}
        missing = [k for k, v in values.items() if v is None]
        if missing:
            raise CILValueError(f"toy weights metadata lacks architecture keys {missing}; retrain with 'cil toy-train'.")
        return cls(**{k: int(v) for k, v in values.items()})


ARCH_LEGACY = {"level_attn": "0"}  # files written before these keys existed


def comfy_timestep(family: DiffusionFamily, sigma: torch.Tensor) -> torch.Tensor:
    """The scalar ComfyUI hands the diffusion model for ``sigma`` (model_sampling.timestep).

    EDM (ModelSamplingContinuousEDM): 0.25·ln σ. VP discrete: the table index, continuous here
    (ComfyUI rounds to the nearest index; the net is smooth in it).
    """
    sigma = sigma.to(torch.float64)
    if isinstance(family, EDM):
        return 0.25 * sigma.clamp(min=1e-12).log()
    if isinstance(family, VPDiscrete):
        return family.index_at(sigma)
    raise CILValueError(f"the toy models support the EDM and VP-discrete families, not {type(family).__name__}.")


def _interp_log_sigma(log_sigmas: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """ln σ at a (continuous) VP table index, linear between entries (float32)."""
    idx = index.float().clamp(0, log_sigmas.numel() - 1)
    lo = idx.floor().long()
    hi = (lo + 1).clamp(max=log_sigmas.numel() - 1)
    w = idx - lo.float()
    return (1 - w) * log_sigmas[lo] + w * log_sigmas[hi]


def fourier_embedding(u: torch.Tensor, dim: int, max_freq: float = 16.0) -> torch.Tensor:
    """[B] → [B, dim] sin/cos features at log-spaced frequencies 1…max_freq."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), half, device=u.device, dtype=torch.float32))
    angles = u.float().unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock21(nn.Module):
    """(2+1)-D residual block: GN → SiLU → conv 1×3×3 → FiLM → GN → SiLU → conv 3×1×1."""

    def __init__(self, ch_in: int, ch_out: int, embed_dim: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, ch_in)
        self.spatial = nn.Conv3d(ch_in, ch_out, (1, 3, 3), padding=(0, 1, 1))
        self.film = nn.Linear(embed_dim, 2 * ch_out)
        self.norm2 = nn.GroupNorm(groups, ch_out)
        self.temporal = nn.Conv3d(ch_out, ch_out, (3, 1, 1), padding=(1, 0, 0))
        self.skip = nn.Conv3d(ch_in, ch_out, 1) if ch_in != ch_out else nn.Identity()
        nn.init.zeros_(self.temporal.weight)
        nn.init.zeros_(self.temporal.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.spatial(F.silu(self.norm1(x)))
        scale, shift = self.film(emb).view(emb.shape[0], -1, 1, 1, 1).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.temporal(F.silu(h)) + h
        return self.skip(x) + h


class SpaceTimeAttention(nn.Module):
    """Pre-norm multi-head self-attention over all (frame, y, x) tokens of a small feature map,
    with a learned position embedding: global reasoning about where each sprite goes."""

    def __init__(self, ch: int, frames: int, size: int, heads: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, ch)
        self.attn = nn.MultiheadAttention(ch, heads, batch_first=True)
        self.pos = nn.Parameter(torch.zeros(1, frames * size * size, ch))
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, F·h·w, C]
        if tokens.shape[1] != self.pos.shape[1]:
            raise CILValueError(
                f"this toy net was built for {self.pos.shape[1]} deepest-level tokens (its latent_size and frames); "
                f"got a latent giving {tokens.shape[1]}. Use the video size the model was trained on."
            )
        tokens = tokens + self.pos
        out, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, f, h, w)


class ToyVideoNet(nn.Module):
    """forward(x_in [B, C, F, h, w], cond_latent [B, C, h, w], timestep [B], noise_level [B]).

    ``x_in`` is the family's ``network_input`` (c_in·x); the return value is the raw network
    output that ``family.denoised`` turns into x̂0. ``timestep`` is what ComfyUI's
    model_sampling.timestep(σ) gives (``comfy_timestep``); the net turns it into the common
    feature u = 0.25·ln σ (a VP net reads ln σ from its family's table, a registered buffer),
    so EDM and VP nets share one function of σ and one can initialise the other.
    With ``cfg.beta_conditioning`` false the net ignores ``noise_level`` (DynamiCrafter has no
    augmentation input; SVD has one).
    """

    def __init__(self, cfg: ToyNetConfig, family: DiffusionFamily):
        super().__init__()
        if not isinstance(family, (EDM, VPDiscrete)):
            raise CILValueError(f"the toy net supports the EDM and VP-discrete families, not {type(family).__name__}.")
        self.cfg, self.family_name = cfg, family.name
        log_sigmas = family.sigmas.log().float() if isinstance(family, VPDiscrete) else torch.zeros(1)
        self.register_buffer("log_sigmas", log_sigmas, persistent=False)
        c, m, e = cfg.latent_channels, cfg.mid_width, cfg.embed_dim
        widths = self.level_widths  # full resolution first; each further level halves h and w
        w = widths[0]
        self.embed = nn.Sequential(nn.Linear(2 * e, e), nn.SiLU(), nn.Linear(e, e))
        self.frame_embed = nn.Parameter(torch.zeros(1, w, cfg.frames, 1, 1))
        self.stem = nn.Conv3d(2 * c, w, (1, 3, 3), padding=(0, 1, 1))
        nxt = list(widths[1:]) + [m]
        self.down_blocks = nn.ModuleList(
            [nn.ModuleList([ResBlock21(wi, wi, e, cfg.groups) for _ in range(cfg.blocks_outer)]) for wi in widths]
        )
        self.downs = nn.ModuleList([nn.Conv3d(wi, wn, (1, 2, 2), stride=(1, 2, 2)) for wi, wn in zip(widths, nxt)])
        self.mid_blocks = nn.ModuleList([ResBlock21(m, m, e, cfg.groups) for _ in range(cfg.blocks_mid)])
        mid_size = cfg.latent_size // 2 ** len(widths)
        self.mid_attn = nn.ModuleList(
            [SpaceTimeAttention(m, cfg.frames, mid_size, cfg.attn_heads, cfg.groups) for _ in range(cfg.blocks_mid if cfg.attn_heads else 0)]
        )
        # optional attention at the `width` level: lets every position gather the conditional image's
        # appearance from anywhere in the frame (a sprite's colours, to wherever x_t puts it)
        lw, ls = widths[-1], 2 * mid_size
        self.level_attn = nn.ModuleList([SpaceTimeAttention(lw, cfg.frames, ls, cfg.attn_heads, cfg.groups) for _ in range(2 * cfg.level_attn)])
        self.ups = nn.ModuleList([nn.ConvTranspose3d(wn, wi, (1, 2, 2), stride=(1, 2, 2)) for wi, wn in zip(widths, nxt)])
        self.up_blocks = nn.ModuleList(
            [nn.ModuleList([ResBlock21(2 * wi if i == 0 else wi, wi, e, cfg.groups) for i in range(cfg.blocks_outer)]) for wi in widths]
        )
        self.out_norm = nn.GroupNorm(cfg.groups, w)
        self.out = nn.Conv3d(w, c, (1, 3, 3), padding=(0, 1, 1))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # linear path: out += a(σ, β)[c]·x_in + b(σ, β)[c, f]·cond, the (per channel and frame)
        # linear part of the denoiser, which the conv body would otherwise learn slowly
        self.linear_gain = nn.Linear(e, c + c * cfg.frames)
        nn.init.zeros_(self.linear_gain.weight)
        nn.init.zeros_(self.linear_gain.bias)

    @property
    def level_widths(self) -> tuple[int, ...]:
        return ((self.cfg.outer_width,) if self.cfg.outer_width else ()) + (self.cfg.width,)

    def time_feature(self, timestep: torch.Tensor) -> torch.Tensor:
        """u = 0.25·ln σ from the ComfyUI timestep (EDM: it already is; VP: via the table)."""
        if self.family_name == "edm":
            return timestep.float()
        return 0.25 * _interp_log_sigma(self.log_sigmas, timestep)

    def embedding(self, timestep: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        e = self.cfg.embed_dim
        u_t = self.time_feature(timestep)
        if not self.cfg.beta_conditioning:
            noise_level = torch.zeros_like(noise_level)
        u_b = torch.log1p(noise_level.float().clamp(min=0)) - 1.0  # β ∈ [0, ~100] → about [−1, 3.6]
        return self.embed(torch.cat([fourier_embedding(u_t, e, 8.0), fourier_embedding(u_b, e, 4.0)], dim=1))

    def forward(self, x_in: torch.Tensor, cond_latent: torch.Tensor, timestep: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x_in.shape
        if cond_latent.dim() == 4:
            cond_latent = cond_latent.unsqueeze(2).expand(b, c, f, h, w)
        emb = self.embedding(timestep.reshape(-1).expand(b), noise_level.reshape(-1).expand(b))
        hid = self.stem(torch.cat([x_in, cond_latent.to(x_in.dtype)], dim=1)) + self.frame_embed[:, :, :f]
        skips = []
        last = len(self.down_blocks) - 1
        for i, (blocks, down) in enumerate(zip(self.down_blocks, self.downs)):
            for block in blocks:
                hid = block(hid, emb)
            if i == last and self.level_attn:
                hid = self.level_attn[0](hid)
            skips.append(hid)
            hid = down(hid)
        for i, block in enumerate(self.mid_blocks):
            hid = block(hid, emb)
            if i < len(self.mid_attn):
                hid = self.mid_attn[i](hid)
        for j, (blocks, up, skip) in enumerate(zip(reversed(self.up_blocks), reversed(self.ups), reversed(skips))):
            hid = torch.cat([up(hid), skip], dim=1)
            for block in blocks:
                hid = block(hid, emb)
            if j == 0 and self.level_attn:
                hid = self.level_attn[1](hid)
        gains = self.linear_gain(emb)
        a = gains[:, :c].view(b, c, 1, 1, 1)
        g = gains[:, c:].view(b, c, self.cfg.frames, 1, 1)[:, :, :f]
        return self.out(F.silu(self.out_norm(hid))) + a * x_in + g * cond_latent.to(x_in.dtype)


class ToyDenoiser:
    """x̂0 = family.denoised(x, σ, net(c_in·x, cond, timestep(σ), β)): the ComfyUI convention.

    ``__call__(x, sigma, cond)`` matches ``cil_core.losses.CondDenoiser`` (cond: {"image":
    [B, C, h, w] model-space latent, "noise_level": [B] β}); ``bind(image, noise_level)``
    returns the probe's two-argument ``denoise(x, sigma)``.
    """

    def __init__(self, net: ToyVideoNet, family: DiffusionFamily):
        self.net, self.family = net, family

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        sigma = sigma.reshape(-1).expand(x.shape[0])
        beta = cond.get("noise_level")
        beta = torch.zeros(x.shape[0]) if beta is None else torch.as_tensor(beta).reshape(-1).expand(x.shape[0])
        timestep = comfy_timestep(self.family, sigma).to(torch.float32)
        out = self.net(self.family.network_input(x, sigma), cond["image"], timestep, beta.to(torch.float32))
        return self.family.denoised(x, sigma, out)

    def bind(self, image: torch.Tensor, noise_level: float = 0.0):
        """denoise(x [B, ...], sigma [B]) with a fixed conditional image [C, h, w] or [B, C, h, w]."""

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            img = image if image.dim() == 4 else image.unsqueeze(0)
            img = img.expand(x.shape[0], *img.shape[1:])
            return self(x, sigma, {"image": img, "noise_level": torch.full((x.shape[0],), float(noise_level))})

        return denoise
