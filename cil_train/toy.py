"""A tiny built-in video denoiser (``model.kind = "tiny"``): exercises the whole trainer without
ComfyUI — data, TimeNoise loss, LoRA, EMA, checkpoints, resume — in seconds on a CPU.

Latents: pixels in [−1, 1] average-pooled by ``downsample`` (3 channels), layout [B, C, F, h, w];
the conditional image is the first latent frame [B, C, h, w] (unscaled, like SVD's concat).
The network sees the preconditioned state (``family.network_input``), the image repeated over
frames, the schedule time t and log(1 + β) (β = TimeNoise level, as SVD's augmentation input).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cil_core.validation import CILValueError
from cil_core.families import DiffusionFamily, dynamicrafter_family, svd_family, wan_family
from cil_core.stats_io import atomic_save_safetensors

from .adapters import Batch, TrainAdapter, apply_drop

TOY_FAMILIES = {"edm": ("svd", svd_family), "svd": ("svd", svd_family), "auto": ("svd", svd_family),
                "vp": ("dynamicrafter", dynamicrafter_family), "dynamicrafter": ("dynamicrafter", dynamicrafter_family),
                "flow": ("wan", wan_family), "wan": ("wan", wan_family)}


def fourier(x: torch.Tensor, dim: int = 8) -> torch.Tensor:
    """[B] → [B, 2·dim] sin/cos features at frequencies 1 … 2^(dim−1)."""
    freqs = 2.0 ** torch.arange(dim, dtype=x.dtype, device=x.device)
    angles = x[:, None] * freqs[None] * math.pi
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ToyAttention(nn.Module):
    """Space-time self-attention with the UNet's projection names (to_q/to_k/to_v/to_out.0)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.to_q = nn.Linear(width, width, bias=False)
        self.to_k = nn.Linear(width, width, bias=False)
        self.to_v = nn.Linear(width, width, bias=False)
        self.to_out = nn.Sequential(nn.Linear(width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, c, f, y, x = h.shape
        tokens = h.flatten(2).transpose(1, 2)  # [B, N, C]
        q, k, v = self.to_q(tokens), self.to_k(tokens), self.to_v(tokens)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return self.to_out(out).transpose(1, 2).reshape(b, c, f, y, x)


class ToyBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(4, width)
        self.conv = nn.Conv3d(width, width, 3, padding=1)
        self.emb = nn.Linear(width, width)
        self.attn = ToyAttention(width)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = h + self.conv(F.silu(self.norm(h))) + self.emb(emb)[:, :, None, None, None]
        return h + self.attn(h)


class TinyVideoNet(nn.Module):
    def __init__(self, channels: int = 3, width: int = 16, depth: int = 2) -> None:
        super().__init__()
        if width % 4:
            raise CILValueError(f"model.tiny_width={width} must be a multiple of 4 (GroupNorm of 4 groups).")
        self.inp = nn.Conv3d(2 * channels, width, 3, padding=1)
        self.embed = nn.Sequential(nn.Linear(32, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(ToyBlock(width) for _ in range(depth))
        self.out = nn.Conv3d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, image: torch.Tensor, t: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        h = self.inp(torch.cat([x, image[:, :, None].expand(-1, -1, frames, -1, -1)], dim=1))
        emb = self.embed(torch.cat([fourier(t), fourier(torch.log1p(level) / 5.0)], dim=1))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(h))


def init_tiny(net: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else p.numel()
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
    return net


class TinyAdapter(TrainAdapter):
    lora_prefix = "tiny."

    def __init__(self, net: TinyVideoNet, family: DiffusionFamily, family_name: str, downsample: int = 4,
                 device: torch.device | str = "cpu") -> None:
        self.net, self.family, self.family_name, self.downsample = net, family, family_name, downsample
        self.device = torch.device(device)

    @classmethod
    def from_config(cls, cfg) -> "TinyAdapter":
        if cfg.model.family not in TOY_FAMILIES:
            raise CILValueError(f"model.family={cfg.model.family!r} is not available for the tiny model; use edm, vp or flow.")
        name, factory = TOY_FAMILIES[cfg.model.family]
        net = init_tiny(TinyVideoNet(3, cfg.model.tiny_width, cfg.model.tiny_depth), cfg.run.seed)
        device = "cuda" if cfg.model.device == "cuda" else "cpu"
        return cls(net.to(device), factory(), name, cfg.model.tiny_downsample, device)

    def trainable_root(self) -> nn.Module:
        return self.net

    def encoder_id(self) -> str:
        return f"tiny-avgpool-{self.downsample}"

    def encode(self, record: dict) -> dict[str, torch.Tensor]:
        if "encoded" in record:
            return record["encoded"]
        pixels = record["pixels"].float().div(127.5).sub(1.0)  # [F, H, W, 3] in [−1, 1]
        video = pixels.permute(3, 0, 1, 2)[None]  # [1, 3, F, H, W]
        latent = F.avg_pool3d(video, (1, self.downsample, self.downsample))[0]
        return {"latent": latent, "image": latent[:, 0].clone()}

    def collate(self, encoded: list[dict[str, torch.Tensor]]) -> Batch:
        x0 = torch.stack([e["latent"] for e in encoded]).to(self.device, torch.float32)
        image = torch.stack([e["image"] for e in encoded]).to(self.device, torch.float32)
        return Batch(x0, {"image": image})

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> torch.Tensor:
        image = apply_drop(cond, cond["image"])
        t = self.family.time_at(sigma.detach().double().cpu()).to(x.device, torch.float32)
        level = torch.as_tensor(cond.get("noise_level", torch.zeros(x.shape[0])), dtype=torch.float32).to(x.device)
        out = self.net(self.family.network_input(x, sigma), image, t, level)
        return self.family.denoised(x, sigma, out.to(x.dtype))

    def export_full(self, path: Path, metadata: dict[str, str], state_dict: dict | None = None) -> Path:
        return atomic_save_safetensors(dict(self.net.state_dict()) if state_dict is None else state_dict, path, metadata)
