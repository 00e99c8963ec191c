"""Plots over RunResult frames; each function returns a matplotlib Figure.

Figures are built without pyplot (no global figure state, no double display
in notebooks, any backend); a notebook shows the returned Figure, a script
calls ``fig.savefig(...)``. Every function takes one RunResult, a sequence
of them, or a mapping label -> RunResult, so simulated and live runs of one
scenario can be overlaid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from stemlab.model.result import RunResult

__all__ = ["latency_cdf", "queue_depth", "redeliveries_over_time", "wait_by_priority"]

Results = RunResult | Sequence[RunResult] | Mapping[str, RunResult]
_SIZE = (7.0, 4.0)


def _runs(results: Results) -> list[tuple[str, RunResult]]:
    """(label, result) pairs from any of the accepted shapes."""
    if isinstance(results, RunResult):
        return [(results.label, results)]
    if isinstance(results, Mapping):
        return [(str(k), v) for k, v in results.items()]
    return [(r.label, r) for r in results]


def _figure(title: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=_SIZE, layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _finish(ax: Axes, drawn: int) -> None:
    if drawn:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "nothing to plot", ha="center", va="center", transform=ax.transAxes)


def _latencies(tasks: pd.DataFrame, metric: str) -> np.ndarray:
    if metric == "e2e":
        done = tasks[tasks["outcome"] == "acked"]
        values = done["finished_at"] - done["enqueued_at"]
    elif metric == "wait":
        values = tasks["started_at"] - tasks["enqueued_at"]
    else:
        raise ValueError(f"metric must be 'e2e' or 'wait', got {metric!r}")
    arr = values.to_numpy(dtype=float)
    return np.sort(arr[~np.isnan(arr)])


def latency_cdf(results: Results, *, metric: str = "e2e", log: bool = True) -> Figure:
    """Empirical CDF per run of end-to-end latency (acked tasks) or of wait ("wait")."""
    what = "end-to-end latency" if metric == "e2e" else "wait"
    fig, ax = _figure(f"{what} CDF")
    drawn = 0
    positive = True
    for label, result in _runs(results):
        x = _latencies(result.tasks, metric)
        if not x.size:
            continue
        y = np.arange(1, x.size + 1) / x.size
        ax.step(x, y, where="post", label=label)
        positive = positive and bool(x[0] > 0)
        drawn += 1
    if log and drawn and positive:
        ax.set_xscale("log")
    ax.set_xlabel(f"{what} (s)")
    ax.set_ylabel("fraction of tasks")
    ax.set_ylim(0, 1.02)
    _finish(ax, drawn)
    return fig


def _depth(starts: pd.Series, ends: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Step function of how many intervals [start, end) are open (a NaN end stays open)."""
    s = starts.to_numpy(dtype=float)
    e = ends.to_numpy(dtype=float)
    s_ok = ~np.isnan(s)
    e_ok = s_ok & ~np.isnan(e)
    times = np.concatenate([s[s_ok], e[e_ok]])
    steps = np.concatenate([np.ones(int(s_ok.sum())), -np.ones(int(e_ok.sum()))])
    order = np.argsort(times, kind="stable")
    return times[order], np.cumsum(steps[order])


def queue_depth(results: Results, *, in_system: bool = False) -> Figure:
    """Tasks waiting for a worker over time (enqueued, not yet started), per run.

    With `in_system=True`, also tasks not yet settled (enqueued, not acked or
    dead), dashed. Both come from `.tasks`, so simulated and live runs compare.
    """
    fig, ax = _figure("queue depth")
    drawn = 0
    for label, result in _runs(results):
        t = result.tasks
        if t.empty:
            continue
        x, y = _depth(t["enqueued_at"], t["started_at"])
        (line,) = ax.step(x, y, where="post", label=f"{label} waiting")
        if in_system:
            settled = t["acked_at"].where(t["outcome"] == "acked", t["finished_at"])
            settled = settled.where(t["outcome"] != "lost")
            xs, ys = _depth(t["enqueued_at"], settled)
            ax.step(
                xs, ys, where="post", ls="--", color=line.get_color(), label=f"{label} in system"
            )
        drawn += 1
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("tasks")
    _finish(ax, drawn)
    return fig


def _priority_waits(tasks: pd.DataFrame) -> pd.DataFrame:
    wait = (tasks["started_at"] - tasks["enqueued_at"]).rename("wait")
    frame = pd.concat([tasks["priority"], wait], axis=1).dropna()
    return frame.groupby("priority")["wait"].quantile([0.5, 0.95]).unstack()


def wait_by_priority(results: Results) -> Figure:
    """Median (solid) and p95 (dashed) wait per priority, per run."""
    fig, ax = _figure("wait by priority")
    drawn = 0
    for label, result in _runs(results):
        if result.tasks.empty:
            continue
        q = _priority_waits(result.tasks)
        if q.empty:
            continue
        prios = q.index.to_numpy()
        (line,) = ax.plot(prios, q[0.5].to_numpy(), "o-", label=f"{label} p50")
        ax.plot(prios, q[0.95].to_numpy(), "s--", color=line.get_color(), label=f"{label} p95")
        drawn += 1
    ax.set_xlabel("priority (higher is served first)")
    ax.set_ylabel("wait (s)")
    ax.set_xticks(range(10))
    _finish(ax, drawn)
    return fig


def redeliveries_over_time(results: Results) -> Figure:
    """Cumulative redeliveries (a task delivered again) over time, from the `get` records.

    A redelivery is any `get` of a task that was delivered before (lease
    expiry, nack, or a retry), the same count as the summary's `redeliveries`.
    """
    fig, ax = _figure("redeliveries")
    drawn = 0
    for label, result in _runs(results):
        ops = result.ops
        if ops.empty or "op" not in ops:
            continue
        gets = ops[(ops["op"] == "get") & ops["ok"].astype(bool)].sort_values("ts", kind="stable")
        again = gets[gets["task_id"].duplicated()]
        x = np.concatenate([[0.0], again["ts"].to_numpy(dtype=float)])
        ax.step(x, np.arange(x.size), where="post", label=label)
        drawn += 1
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("redeliveries (cumulative)")
    _finish(ax, drawn)
    return fig
