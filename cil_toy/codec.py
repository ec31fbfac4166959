"""The toy "VAE": a fixed, exactly invertible map between pixels and a latent space.

encode: pixels [N, 3, F, H, W] in [-1, 1] → raw latent [N, 3·b², F, H/b, W/b]: every b×b pixel
block (b = ``block``, 2 by default; 4 packs more like a VAE's 8× downsampling) of each colour
channel goes through the orthonormal 2-D Walsh–Hadamard transform (b = 2: the Haar transform
LL, LH, HL, HH), so the raw latent has exactly the energy of the pixels. The *model* latent is raw × ``scale_factor``
(like SD's 0.18215): diffusion, the Analytic-Init stats and TimeNoise's β all live in model
space. ``scale_factor`` is a fixed constant chosen once (see ``LatentCodec``); it is never
re-estimated, so stats files and weights stay comparable.
Channel order: colour-major, c·b² + k; k = 0 is the block mean ×b (the "LL" channel).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cil_core.validation import CILValueError, check_rank



def hadamard_2d(block: int) -> torch.Tensor:
    """Orthonormal [b², b²] 2-D Walsh–Hadamard matrix acting on a row-major flattened b×b block."""
    if block < 1 or block & (block - 1):
        raise CILValueError(f"block={block}: the codec's block size must be a power of two (1, 2, 4, 8).")
    h = torch.ones(1, 1)
    while h.shape[0] < block:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return torch.kron(h, h) / block


@dataclass(frozen=True)
class LatentCodec:
    """Pixels ↔ model latents. ``scale_factor`` ≈ 1/std of raw latents over the toy world,
    rounded (measured once on 2048 training videos: raw std 0.49 → 2.0), as SD's 0.18215."""

    scale_factor: float = 2.0
    block: int = 2

    def __post_init__(self) -> None:
        hadamard_2d(self.block)  # validates the block size
        if not self.scale_factor > 0:
            raise CILValueError(f"scale_factor={self.scale_factor} must be > 0.")

    @property
    def channels(self) -> int:
        return 3 * self.block**2

    def describe(self) -> dict[str, str]:
        return {"codec": "walsh_hadamard_blocks", "codec.block": str(self.block), "codec.scale_factor": repr(self.scale_factor)}

    @classmethod
    def from_meta(cls, meta: dict[str, str]) -> "LatentCodec":
        if meta.get("codec") != "walsh_hadamard_blocks":
            raise CILValueError(f"unknown toy codec {meta.get('codec')!r}; expected 'walsh_hadamard_blocks'.")
        return cls(scale_factor=float(meta["codec.scale_factor"]), block=int(meta["codec.block"]))

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """[N, 3, F, H, W] (or [3, F, H, W]) pixels → model latent [N, 3b², F, H/b, W/b]."""
        squeeze = pixels.dim() == 4
        video = pixels.unsqueeze(0) if squeeze else pixels
        check_rank("pixel video", video, (5,), "[N, 3, frames, height, width]")
        n, c, f, h, w = video.shape
        b, k = self.block, self.block**2
        if c != 3 or h % b or w % b:
            raise CILValueError(
                f"pixel video has shape {tuple(video.shape)}; expected 3 colour channels and H, W divisible by {b}."
            )
        frames = video.permute(0, 2, 1, 3, 4).reshape(n * f, c, h, w)
        blocks = F.pixel_unshuffle(frames, b).reshape(n * f, c, k, h // b, w // b)
        coeffs = torch.einsum("kj,bcjhw->bckhw", hadamard_2d(b).to(blocks), blocks)
        latent = coeffs.reshape(n, f, c * k, h // b, w // b).permute(0, 2, 1, 3, 4) * self.scale_factor
        return latent[0] if squeeze else latent

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Model latent [N, 3b², F, h, w] (or CFHW) → pixels [N, 3, F, b·h, b·w] (not clamped)."""
        squeeze = latent.dim() == 4
        z = latent.unsqueeze(0) if squeeze else latent
        check_rank("latent video", z, (5,), "[N, channels, frames, height, width]")
        n, c, f, h, w = z.shape
        b, k = self.block, self.block**2
        if c != self.channels:
            raise CILValueError(f"latent has {c} channels; this toy codec (block {b}) expects {self.channels}.")
        coeffs = (z / self.scale_factor).permute(0, 2, 1, 3, 4).reshape(n * f, 3, k, h, w)
        blocks = torch.einsum("jk,bcjhw->bckhw", hadamard_2d(b).to(coeffs), coeffs).reshape(n * f, 3 * k, h, w)
        frames = F.pixel_shuffle(blocks, b).reshape(n, f, 3, b * h, b * w).permute(0, 2, 1, 3, 4)
        return frames[0] if squeeze else frames

    def encode_raw(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels → *raw* latent (model latent / scale_factor): what a ComfyUI VAE node would output;
        ComfyUI's latent_format.process_in (× scale_factor) then gives the model latent."""
        return self.encode(pixels) / self.scale_factor

    def decode_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw latent → pixels (inverse of ``encode_raw``)."""
        return self.decode(raw * self.scale_factor)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] image → [N, 3b², H/b, W/b] model latent (a one-frame video)."""
        return self.encode(image.unsqueeze(2))[:, :, 0]
