"""Streaming, mergeable first and second moments of video latents (Welford / Chan et al.).

Memory is O(one latent) whatever the number of videos: the accumulator keeps the count, the
per-element mean and the per-element sum of squared deviations (M2), all in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .validation import CILValueError, check_finite


@dataclass
class StreamingMoments:
    """Per-element mean and M2 over samples of one fixed latent shape.

    ``update(batch)`` takes a batch [N, *shape]; ``merge`` combines two partial results exactly
    (Chan, Golub & LeVeque 1979), so estimation can run in shards or resume from a file.
    """

    count: int = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, ...] | None:
        return None if self.mean is None else tuple(self.mean.shape)

    def _check_shape(self, shape: tuple[int, ...]) -> None:
        if self.shape is not None and shape != self.shape:
            raise CILValueError(
                f"latent of shape {shape} does not match the {self.shape} seen so far; "
                "estimate one resolution and frame count per stats file."
            )

    def update(self, batch: torch.Tensor) -> "StreamingMoments":
        """Add a batch of samples [N, *shape]."""
        if batch.dim() < 2:
            raise CILValueError(f"batch has shape {tuple(batch.shape)}; expected [N, *latent_shape].")
        if not bool(torch.isfinite(batch).all()):
            check_finite("latent batch", batch)  # raises with the count of bad values
        x = batch.detach().to(device="cpu", dtype=torch.float64)
        n_b = x.shape[0]
        if n_b == 0:
            return self
        self._check_shape(tuple(x.shape[1:]))
        if n_b == 1:  # one video: its M2 is zero, skip the reduction
            return self._combine(1, x[0], torch.zeros_like(x[0]))
        mean_b = x.mean(dim=0)
        m2_b = ((x - mean_b) ** 2).sum(dim=0)
        return self._combine(n_b, mean_b, m2_b)

    def merge(self, other: "StreamingMoments") -> "StreamingMoments":
        if other.count == 0:
            return self
        self._check_shape(other.shape)
        return self._combine(other.count, other.mean, other.m2)

    def _combine(self, n_b: int, mean_b: torch.Tensor, m2_b: torch.Tensor) -> "StreamingMoments":
        if self.count == 0:
            self.count, self.mean, self.m2 = n_b, mean_b.clone(), m2_b.clone()
            return self
        n_a, n = self.count, self.count + n_b
        delta = mean_b - self.mean
        self.mean.add_(delta, alpha=n_b / n)
        self.m2.add_(m2_b).addcmul_(delta, delta, value=n_a * n_b / n)
        self.count = n
        return self

    def variance(self) -> torch.Tensor:
        """Per-element population variance (divide by n: the moment-matched Gaussian's)."""
        if self.count == 0:
            raise CILValueError("no samples were accumulated: give at least one video latent.")
        return self.m2 / self.count
