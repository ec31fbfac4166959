"""From a Leakage Probe curve to a late-start time M (paper Sec. 4.1).

The probe gives r(t) = motion(x̂0)/motion(x0) on a grid of times. Two rules turn it into M; both
return a grid time.

``plateau`` (default). A leaking curve has three parts: r ≈ 1 at small t (the model reads the
video from x_t), a transition, and a plateau at its floor r_floor, the lowest ratio on the grid
(the prediction is as still as it gets: the model has stopped reading x_t and copies the
conditional image). The plateau is the run of grid times, from the floor's t toward smaller t,
whose ratio stays within ``plateau_tolerance`` of the collapse, r(t) ≤ r_floor + tol·(r_bottom −
r_floor) with r_bottom = r at the smallest t; M is its lower edge. Grid times above the floor's
t are skipped as well; if their ratio rises above the plateau again (an unreliable prediction at
the last steps, e.g. an under-trained terminal time), the recommendation says so.
Why there: on the plateau the one-step prediction carries hardly more motion than at the floor,
so those steps add no motion and only pull x toward a still copy (the paper's unreliable late
steps); below the plateau each step still reads motion from x_t, and a late start would hand that
work to the Gaussian start, whose mismatch with the true marginal (minimised by Analytic-Init,
never removed) grows as σ_M falls. The plateau's lower edge is the latest start that skips all of
the copying regime. Skipping steps is never free: on the toy world every late start, even this
one, costs some fidelity (README, "Choosing M"); the probe finds where the copying regime begins,
not whether a given model gains from skipping it. tol = 0.1 is the usual 10–90 % transition
convention: 90 % of the collapse has happened on the plateau. The curve counts as leaking only
when r_floor < ``threshold`` (otherwise M is the largest grid time: no late start needed), and
needs a faithful end, r_bottom ≥ ``threshold`` (otherwise M is the smallest grid time: probe
smaller t).

``threshold``. M = the largest grid t with r ≥ ``threshold`` at that t and every smaller grid t.
It picks a point inside the transition (with 0.5: the half-collapse point), skipping steps that
still generate motion; on the toy world it costs far more fidelity than the plateau rule.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from .families import as_float64
from .validation import CILValueError

START_RULES = ("plateau", "threshold")
VERDICTS = {
    "late_start": "leakage found: start at M",
    "no_leakage": "no leakage on this grid (ratio at the largest t >= threshold): no late start needed",
    "leaks_everywhere": "every grid t leaks: M is the smallest grid t; probe smaller t",
    "plateau_at_top": "the collapse is steeper than the grid: only the largest t is on the plateau; refine the grid near t_max",
}


@dataclass(frozen=True)
class StartRule:
    rule: str = "plateau"
    threshold: float = 0.5  # a mean motion ratio below this counts as leaking
    plateau_tolerance: float = 0.1  # share of the collapse still ahead on the plateau (plateau rule)

    def __post_init__(self) -> None:
        if self.rule not in START_RULES:
            raise CILValueError(f"rule={self.rule!r} is not a start rule; choose one of {', '.join(START_RULES)}.")
        if not math.isfinite(self.threshold) or self.threshold <= 0:
            raise CILValueError(f"threshold={self.threshold!r} must be a finite motion ratio > 0 (e.g. 0.5).")
        if not math.isfinite(self.plateau_tolerance) or not 0 <= self.plateau_tolerance < 1:
            raise CILValueError(f"plateau_tolerance={self.plateau_tolerance!r} must lie in [0, 1) (e.g. 0.1 for the 10-90 % convention).")

    def describe(self) -> str:
        if self.rule == "threshold":
            return (f"threshold rule: M = the largest grid t with mean motion ratio >= {self.threshold:g} at that t and every "
                    "smaller grid t; if the smallest t fails, M = smallest t")
        return (f"plateau rule: leaking if the lowest ratio (r_floor) is < {self.threshold:g}; then M = the lower edge of the "
                f"plateau, the smallest grid t from which every ratio up to the floor's t is <= r_floor + {self.plateau_tolerance:g} x "
                f"(r_bottom - r_floor) (r_bottom: ratio at the smallest t); not leaking: M = the largest t; r_bottom < "
                f"{self.threshold:g} too: M = the smallest t")


@dataclass(frozen=True)
class StartRecommendation:
    m: float
    verdict: str  # a key of VERDICTS
    rule: str
    plateau_level: float | None = None  # plateau rule: ratios at or below it are on the plateau
    rises_after_plateau: list[float] = field(default_factory=list)  # plateau rule: larger t whose ratio rises above it

    @property
    def found(self) -> bool:
        """True when the rule reached a confident answer (a late start, or none needed)."""
        return self.verdict in ("late_start", "no_leakage")

    @property
    def message(self) -> str:
        if self.rises_after_plateau:
            times = ", ".join(f"{v:g}" for v in self.rises_after_plateau)
            return (VERDICTS[self.verdict] + f"; the ratio rises above the plateau again at t = {times} (predictions that move more "
                    "than the collapse allows there are unreliable, e.g. an under-trained last step; M skips them too)")
        return VERDICTS[self.verdict]

    def to_json(self) -> dict:
        return {**asdict(self), "found": self.found, "message": self.message}


def _sorted_curve(t, mean_ratio) -> tuple[list[float], list[float]]:
    t, r = as_float64(t).reshape(-1), as_float64(mean_ratio).reshape(-1)
    if t.numel() != r.numel() or t.numel() == 0:
        raise CILValueError(f"need one ratio per grid time; got {t.numel()} times and {r.numel()} ratios.")
    if not torch.isfinite(r).all():
        raise CILValueError(f"the motion ratios must be finite; got {r.tolist()} (did the model return NaN?).")
    order = torch.argsort(t)
    return t[order].tolist(), r[order].tolist()


def _threshold_start(t: list[float], r: list[float], rule: StartRule) -> StartRecommendation:
    passing = 0
    while passing < len(t) and r[passing] >= rule.threshold:
        passing += 1
    if passing == 0:
        return StartRecommendation(t[0], "leaks_everywhere", rule.rule)
    return StartRecommendation(t[passing - 1], "late_start" if passing < len(t) else "no_leakage", rule.rule)


def _plateau_start(t: list[float], r: list[float], rule: StartRule) -> StartRecommendation:
    floor = max(range(len(r)), key=lambda i: (-r[i], t[i]))  # the lowest ratio (the largest t on ties)
    bottom = r[0]
    if r[floor] >= rule.threshold:
        return StartRecommendation(t[-1], "no_leakage", rule.rule)
    if bottom < rule.threshold:  # no faithful end on this grid: nothing to measure a plateau against
        return StartRecommendation(t[0], "leaks_everywhere", rule.rule)
    level = r[floor] + rule.plateau_tolerance * (bottom - r[floor])
    edge = floor
    while r[edge - 1] <= level:  # stops at the latest at index 1: r[0] = bottom > level
        edge -= 1
    rises = [t[i] for i in range(floor + 1, len(t)) if r[i] > level]
    verdict = "plateau_at_top" if edge == len(t) - 1 else "late_start"
    return StartRecommendation(t[edge], verdict, rule.rule, plateau_level=level, rises_after_plateau=rises)


def recommend_start(t, mean_ratio, rule: StartRule | None = None) -> StartRecommendation:
    """The late-start time M for a probe curve (mean motion ratio per grid t), by ``rule``."""
    rule = rule or StartRule()
    ts, rs = _sorted_curve(t, mean_ratio)
    return _threshold_start(ts, rs, rule) if rule.rule == "threshold" else _plateau_start(ts, rs, rule)


def recommendation_stability(t, ratios: torch.Tensor, rule: StartRule, resamples: int = 200, seed: int = 0) -> dict:
    """How firmly the probe's samples pin M: the rule re-run on ``resamples`` bootstrap resamples
    of the sample columns of ``ratios`` [T, S] (a column is one noise draw, or one video's draw
    when videos are pooled, and is kept whole across t). Returns the share of resamples that give
    the full-data M and the range of M they give."""
    ratios = as_float64(ratios)
    if ratios.dim() != 2 or ratios.shape[1] < 1:
        raise CILValueError(f"ratios must be [grid times, samples]; got shape {tuple(ratios.shape)}.")
    if resamples < 1:
        raise CILValueError(f"resamples={resamples} must be >= 1.")
    m = recommend_start(t, ratios.mean(dim=1), rule).m
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for _ in range(resamples):
        cols = torch.randint(0, ratios.shape[1], (ratios.shape[1],), generator=gen)
        picks.append(recommend_start(t, ratios[:, cols].mean(dim=1), rule).m)
    return {"resamples": resamples, "agreement": sum(p == m for p in picks) / resamples, "m_min": min(picks), "m_max": max(picks)}
