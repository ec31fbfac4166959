"""The training loss curve: raw loss (light) and its moving average (dark) against step, drawn
with ``cil_media.charts``; log-scaled y when the loss spans more than a factor of 20."""

from __future__ import annotations

import math

from cil_media.charts import Axes, padded_limits

RAW_COLOR, SMOOTH_COLOR = (170, 190, 230), (20, 60, 160)


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average (``weight`` on the past)."""
    out, acc = [], None
    for v in values:
        acc = v if acc is None else weight * acc + (1 - weight) * v
        out.append(acc)
    return out


def draw_loss_curve(steps: list[int], losses: list[float], size: tuple[int, int] = (640, 360)):
    """A PIL RGB image of the finite, positive losses against their steps."""
    good = [(s, v) for s, v in zip(steps, losses) if math.isfinite(v) and v > 0]
    if not good:
        ax = Axes(size, margin=(60, 30, 15, 50), xlabel="step", ylabel="loss")
        ax.label((ax.box[0] + 10, ax.box[1] + 10), "no finite loss yet")
        return ax.finish()
    xs, ys = zip(*good)
    use_log = max(ys) / min(ys) > 20
    xlim = (min(xs), max(xs)) if max(xs) > min(xs) else (min(xs) - 1, min(xs) + 1)
    if use_log:
        ylim = (min(ys) / 1.2, max(ys) * 1.2)
    else:
        ylim = padded_limits(ys, 0.05)
    ax = Axes(size, margin=(60, 30, 15, 50), xlim=xlim, ylim=ylim, ylog=use_log, xlabel="step",
              ylabel="loss" + (" (log scale)" if use_log else ""))
    if len(good) > 1:
        ax.line(xs, ys, RAW_COLOR, "loss", width=1, marker=None)
        ax.line(xs, smooth(list(ys)), SMOOTH_COLOR, "moving average", width=2, marker=None)
    else:
        ax.point(xs[0], ys[0], SMOOTH_COLOR, "loss", shape="o", radius=3)
    return ax.finish()
