"""Posterior means by self-normalised importance sampling (SNIS): the Bayes reference of the probe.

A perfect denoiser predicts E[x0 | x], the mean of the clean video given the noisy one. When the
prior over x0 is known through a parametrisation x0 = g(u), u ~ p (the toy world renders a
video from a scene and a motion draw), the posterior mean is a ratio of two integrals over u. With
candidates u_k drawn from a proposal q,

    log w_k = log p(u_k) − log q(u_k) − ‖x − a·g(u_k)‖² / (2b²)        (x = a·x0 + b·ε)
    E[x0 | x] ≈ Σ_k w_k g(u_k) / Σ_k w_k,

which converges to the exact posterior mean as K grows, for any q that covers the posterior.
Its effective sample size (Σw)²/Σw² says how many candidates carry the estimate.

``SNISAccumulator`` streams candidates in chunks (a running log-sum-exp), so K is not bounded by
memory; ``TruncNormalMixture`` is a proposal on the unit cube: the uniform prior mixed with
product truncated normals around chosen centres (one component per noise level), evaluated as a
deterministic mixture, so every weight stays bounded by p/(π_c·q_c) of its best component.
Everything is float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .validation import CILValueError


def log_likelihoods(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """[B, K] log N(x_i; a_i·c_k, b_i² I) up to a constant per i: −‖x_i − a_i·c_k‖² / (2 b_i²).

    x [B, d], a and b [B], candidates [K, d]; expanded as ‖x‖² − 2a⟨x, c⟩ + a²‖c‖² in float64."""
    x, c = x.to(torch.float64), candidates.to(torch.float64)
    a, b = a.to(torch.float64).reshape(-1, 1), b.to(torch.float64).reshape(-1, 1)
    sq = x.pow(2).sum(1, keepdim=True) - 2 * a * (x @ c.T) + a.pow(2) * c.pow(2).sum(1).reshape(1, -1)
    return -sq.clamp(min=0) / (2 * b.pow(2))


class SNISAccumulator:
    """Weighted means over candidates streamed in chunks, for B targets at once.

    ``add(log_w [B, k], values [k, d], scalars [k, m] | None)`` folds in one chunk; ``mean()``
    returns Σw·v/Σw [B, d], ``scalar_mean()`` Σw·s/Σw [B, m], ``ess()`` (Σw)²/Σw² [B]."""

    def __init__(self) -> None:
        self.log_max: torch.Tensor | None = None
        self.sum_w = self.sum_w2 = self.sum_wv = self.sum_ws = None

    def add(self, log_w: torch.Tensor, values: torch.Tensor, scalars: torch.Tensor | None = None) -> None:
        log_w = log_w.to(torch.float64)
        if log_w.dim() != 2 or log_w.shape[1] != values.shape[0]:
            raise CILValueError(f"log weights {tuple(log_w.shape)} do not match {values.shape[0]} candidate values.")
        chunk_max = log_w.amax(1)
        new_max = chunk_max if self.log_max is None else torch.maximum(self.log_max, chunk_max)
        w = (log_w - new_max.unsqueeze(1)).exp()
        v = values.to(torch.float64).reshape(values.shape[0], -1)
        parts = [w.sum(1), w.pow(2).sum(1), w @ v, None if scalars is None else w @ scalars.to(torch.float64).reshape(values.shape[0], -1)]
        if self.log_max is None:
            self.sum_w, self.sum_w2, self.sum_wv, self.sum_ws = parts
        else:
            old = (self.log_max - new_max).exp()
            self.sum_w = self.sum_w * old + parts[0]
            self.sum_w2 = self.sum_w2 * old.pow(2) + parts[1]
            self.sum_wv = self.sum_wv * old.unsqueeze(1) + parts[2]
            if parts[3] is not None:
                self.sum_ws = self.sum_ws * old.unsqueeze(1) + parts[3]
        self.log_max = new_max

    def _check(self) -> None:
        if self.log_max is None:
            raise CILValueError("no candidates were added to the importance sampler.")

    def mean(self) -> torch.Tensor:
        self._check()
        return self.sum_wv / self.sum_w.unsqueeze(1)

    def scalar_mean(self) -> torch.Tensor:
        self._check()
        if self.sum_ws is None:
            raise CILValueError("no scalars were given to the importance sampler.")
        return self.sum_ws / self.sum_w.unsqueeze(1)

    def ess(self) -> torch.Tensor:
        self._check()
        return self.sum_w.pow(2) / self.sum_w2


def _log_ndtr_diff(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Φ(hi) − Φ(lo)) for lo < hi, stable in both tails."""
    flip = lo > 0  # both in the upper tail: use the symmetry Φ(hi) − Φ(lo) = Φ(−lo) − Φ(−hi)
    lo2, hi2 = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
    log_hi, log_lo = torch.special.log_ndtr(hi2), torch.special.log_ndtr(lo2)
    return log_hi + torch.log1p(-(log_lo - log_hi).exp().clamp(max=1.0 - 1e-300))


@dataclass
class TruncNormalMixture:
    """A proposal on [0, 1]^D: weight ``prior_weight`` on the uniform density, the rest shared
    equally by components c with density Π_j N(u_j; centers[c, j], scales[c, j]²) truncated to
    [lows[c, j], highs[c, j]] (default [0, 1]). A scale of inf makes that dimension uniform on its
    interval in that component (e.g. an on/off flag kept in its state)."""

    centers: torch.Tensor  # [C, D]
    scales: torch.Tensor  # [C, D], > 0 (inf allowed)
    prior_weight: float = 0.25
    lows: torch.Tensor | None = None  # [C, D] truncation intervals inside [0, 1]
    highs: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.centers = self.centers.to(torch.float64)
        self.scales = self.scales.to(torch.float64)
        self.lows = torch.zeros_like(self.centers) if self.lows is None else self.lows.to(torch.float64)
        self.highs = torch.ones_like(self.centers) if self.highs is None else self.highs.to(torch.float64)
        if self.centers.shape != self.scales.shape or self.centers.dim() != 2 or self.lows.shape != self.centers.shape \
                or self.highs.shape != self.centers.shape:
            raise CILValueError(f"centers {tuple(self.centers.shape)}, scales, lows and highs must all be [C, D].")
        if not (self.scales > 0).all() or ((self.centers < 0) | (self.centers > 1)).any():
            raise CILValueError("proposal scales must be > 0 and centres inside [0, 1].")
        if (self.lows < 0).any() or (self.highs > 1).any() or not (self.lows < self.highs).all():
            raise CILValueError("proposal intervals must satisfy 0 <= low < high <= 1.")
        if not 0 < self.prior_weight <= 1 or (self.prior_weight < 1 and self.centers.shape[0] == 0):
            raise CILValueError(f"prior_weight={self.prior_weight} must lie in (0, 1] (1 when there are no components).")

    @property
    def dims(self) -> int:
        return self.centers.shape[1]

    def counts(self, n: int) -> list[int]:
        """Samples per component for n draws (prior first): stratified, not random."""
        c = self.centers.shape[0]
        n_prior = n if c == 0 else max(1, round(self.prior_weight * n))
        rest = n - n_prior
        return [n_prior] + [rest // c + (1 if i < rest % c else 0) for i in range(c)]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n, D] draws, ``counts(n)`` from each component (the density is the mixture's)."""
        out = []
        for comp, k in enumerate(self.counts(n)):
            v = torch.rand(k, self.dims, generator=generator, dtype=torch.float64)
            if comp == 0 or k == 0:
                out.append(v)
                continue
            c, s = self.centers[comp - 1], self.scales[comp - 1]
            a, b = self.lows[comp - 1], self.highs[comp - 1]
            finite = torch.isfinite(s)
            s_f = torch.where(finite, s, torch.ones_like(s))
            lo, hi = torch.special.ndtr((a - c) / s_f), torch.special.ndtr((b - c) / s_f)
            p = (lo + v * (hi - lo)).clamp(1e-300, 1 - 1e-16)
            u = torch.minimum(torch.maximum(c + s_f * torch.special.ndtri(p), a), b)
            out.append(torch.where(finite, u, a + v * (b - a)))
        return torch.cat(out)

    def component_log_probs(self, u: torch.Tensor) -> torch.Tensor:
        """[n, C] log densities of each truncated-normal component at u [n, D]."""
        u = u.to(torch.float64).unsqueeze(1)
        c, s = self.centers.unsqueeze(0), self.scales.unsqueeze(0)
        a, b = self.lows.unsqueeze(0), self.highs.unsqueeze(0)
        finite = torch.isfinite(s)
        s_f = torch.where(finite, s, torch.ones_like(s))
        z = (u - c) / s_f
        log_norm = _log_ndtr_diff((a - c) / s_f, (b - c) / s_f)
        per_dim = torch.where(finite, -0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi) - s_f.log() - log_norm, -(b - a).log())
        inside = (u >= a) & (u <= b)
        return torch.where(inside, per_dim, torch.full_like(per_dim, -math.inf)).sum(-1)

    def log_prob(self, u: torch.Tensor, n: int | None = None) -> torch.Tensor:
        """[len(u)] log mixture density (the uniform prior has density 1 on the cube). With ``n``,
        the mixture weights are the stratified shares ``counts(n)/n`` that ``sample(n)`` used (the
        balance heuristic, exact for stratified draws); without, the nominal weights."""
        c = self.centers.shape[0]
        if n is None:
            shares = [self.prior_weight] + [(1 - self.prior_weight) / c] * c
        else:
            shares = [k / n for k in self.counts(n)]
        log_shares = torch.tensor(shares, dtype=torch.float64).clamp(min=1e-300).log()
        comps = torch.zeros(u.shape[0], 1, dtype=torch.float64)
        if c:
            comps = torch.cat([comps, self.component_log_probs(u)], 1)
        return torch.logsumexp(comps + log_shares, 1)
