"""Figures over `sweep` frames: a metric against a swept parameter, one line per broker."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from stemlab.viz.style import MS, broker_colour, integer_ticks, latency_axis, mean_ci

__all__ = ["sweep_lines"]

_LATENCY_PREFIXES = ("wait_", "e2e_")
_NAMES = {
    "wait_p50": "median wait",
    "wait_p95": "p95 wait",
    "wait_p99": "p99 wait",
    "e2e_p50": "median end-to-end latency",
    "e2e_p95": "p95 end-to-end latency",
    "e2e_p99": "p99 end-to-end latency",
    "throughput": "throughput (tasks/s)",
}


def sweep_lines(
    frame: pd.DataFrame,
    x: str,
    metric: str = "e2e_p95",
    *,
    by: str = "broker",
    target: float | None = None,
    log: bool = True,
) -> Figure:
    """`metric` against `x`, one line per value of `by` (a broker: its fixed colour).

    Rows that share `x` and `by` (seeds) are averaged, with a 95 % confidence
    band when there are several. Latency metrics (`wait_*`, `e2e_*`, in
    seconds in the frame) are drawn in ms on a log axis when `log`;
    `target` (seconds) draws the latency target as a dashed line.
    """
    for column in (x, metric, by):
        if column not in frame.columns:
            raise ValueError(f"the frame has no column {column!r}")
    latency = metric.startswith(_LATENCY_PREFIXES)
    scale = MS if latency else 1.0
    what = _NAMES.get(metric, metric)
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.set_title(f"{what} by {x}")
    ax.grid(True, alpha=0.3)
    replicated = False
    for name, part in frame.groupby(by, sort=False):
        xs = sorted(part[x].unique())
        cols = [part.loc[part[x] == v, metric].to_numpy(dtype=float) * scale for v in xs]
        width = max(len(c) for c in cols)
        table = np.full((width, len(xs)), np.nan)
        for j, c in enumerate(cols):
            table[: len(c), j] = c
        mean, lo, hi = mean_ci(table, floor=0.0 if latency else None)
        colour = broker_colour(str(name))
        n = f" (n={width})" if width > 1 else ""
        ax.plot(xs, mean, "o-", color=colour, label=f"{name}{n}", ms=4)
        if width > 1:
            ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, lw=0)
            replicated = True
    if target is not None:
        ax.axhline(target * scale, color="0.3", ls="--", lw=1, label=f"target {target * scale:g}")
    if latency:
        ax.set_ylabel(latency_axis(ax, "y", frame[metric] * scale, log=log, what=what))
    else:
        ax.set_ylabel(what)
    ax.set_xlabel(x)
    if pd.api.types.is_integer_dtype(frame[x]):
        integer_ticks(ax.xaxis)
    ax.legend(fontsize="small")
    if replicated:
        ax.text(
            0.99,
            0.01,
            "bands: 95 % confidence interval over seeds",
            ha="right",
            va="bottom",
            fontsize="x-small",
            transform=ax.transAxes,
        )
    return fig
