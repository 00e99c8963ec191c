"""The one plot the explorer needs that `stemlab.viz` does not have: metrics against load."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

__all__ = ["throughput_vs_load"]


def throughput_vs_load(points: pd.DataFrame, current_load: float | None = None) -> Figure:
    """Throughput (left) and p95 wait (right) against offered load, one line per broker.

    `points` has columns broker, load, throughput and wait_p95 (one row per
    simulated point); `current_load` draws a vertical line where the sliders are.
    """
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    left, right = fig.subplots(1, 2)
    fig.suptitle("against offered load (rho = lambda E[S] / c)")
    for broker, group in points.groupby("broker", sort=False):
        group = group.sort_values("load")
        left.plot(group["load"], group["throughput"], "o-", label=str(broker), ms=3)
        right.plot(group["load"], group["wait_p95"] * 1000, "o-", label=str(broker), ms=3)
    left.set_ylabel("throughput (tasks/s)")
    right.set_ylabel("wait p95 (ms)")
    right.set_yscale("symlog", linthresh=1.0)
    for ax in (left, right):
        ax.set_xlabel("offered load")
        ax.grid(True, alpha=0.3)
        if current_load is not None and math.isfinite(current_load):
            ax.axvline(current_load, color="grey", ls=":", lw=1)
    if not points.empty:
        left.legend(fontsize="small")
    return fig
