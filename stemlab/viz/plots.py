"""Plots over RunResult frames; each function returns a matplotlib Figure.

Figures are built without pyplot (no global figure state, no double display
in notebooks, any backend); a notebook shows the returned Figure, a script
calls ``fig.savefig(...)``. Every function takes one RunResult, a sequence
of them, or a mapping label -> RunResult, so simulated and live runs of one
scenario can be overlaid; a mapping value may also be a list of RunResults
(replications, e.g. one per seed), drawn as their mean with a 95 %
confidence band. Each broker has its fixed colour (`BROKER_COLOURS`); a
second run of the same broker in one figure gets another line style.
Latencies are drawn in milliseconds (the frames stay in seconds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from stemlab.model.replications import Replications
from stemlab.model.result import RunResult
from stemlab.viz.style import MS, broker_colour, integer_ticks, latency_axis, mean_ci

__all__ = ["Results", "latency_cdf", "queue_depth", "redeliveries_over_time", "wait_by_priority"]

Results = (
    RunResult
    | Replications
    | Sequence[RunResult | Replications]
    | Mapping[str, RunResult]
    | Mapping[str, Sequence[RunResult]]
    | Mapping[str, Replications]
)
_SIZE = (7.0, 4.0)
_STYLES = ("-", "--", ":", "-.")
_BAND_ALPHA = 0.2
_GRID_POINTS = 200


@dataclass
class _Group:
    """One legend entry: a run, or the replications of one configuration."""

    label: str
    runs: list[RunResult]
    colour: str
    style: str

    @property
    def replicated(self) -> bool:
        return len(self.runs) > 1


def _runs(result: RunResult | Replications | Sequence[RunResult]) -> list[RunResult]:
    """The runs of one legend entry: a run, or the replications of one configuration."""
    return [result] if isinstance(result, RunResult) else list(result)


def _groups(results: Results) -> list[_Group]:
    """Legend entries from any accepted shape, each with its broker's colour and a style."""
    items: list[tuple[str, list[RunResult]]]
    if isinstance(results, RunResult | Replications):
        items = [(results.label, _runs(results))]
    elif isinstance(results, Mapping):
        items = [(str(k), _runs(v)) for k, v in results.items()]
    else:
        items = [(r.label, _runs(r)) for r in results]
    seen: dict[str, int] = {}
    groups = []
    for label, runs in items:
        name = runs[0].broker if runs and runs[0].broker else label
        k = seen.get(name, 0)
        seen[name] = k + 1
        groups.append(_Group(label, runs, broker_colour(name), _STYLES[k % len(_STYLES)]))
    return groups


def _figure(title: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=_SIZE, layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig, ax


_BANDS = "bands: 95 % confidence interval over replications"


def _finish(ax: Axes, drawn: int, *, replicated: bool = False, note: str = _BANDS) -> None:
    """Legend (or a "nothing to plot" notice), and a note saying what the bands are."""
    if drawn:
        ax.legend(fontsize="small")
        if replicated:
            ax.text(
                0.99,
                0.01,
                note,
                ha="right",
                va="bottom",
                fontsize="x-small",
                transform=ax.transAxes,
            )
    else:
        ax.text(0.5, 0.5, "nothing to plot", ha="center", va="center", transform=ax.transAxes)


def _label(group: _Group) -> str:
    return f"{group.label} (n={len(group.runs)})" if group.replicated else group.label


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
    """Empirical CDF per run of end-to-end latency (acked tasks) or of wait ("wait"), in ms.

    Replications are averaged quantile by quantile, with a 95 % band (clipped
    to the range of that quantile over the replications). `log` puts latency
    on a log axis (symmetric-log when some values are zero).
    """
    what = "end-to-end latency" if metric == "e2e" else "wait"
    fig, ax = _figure(f"{what} CDF")
    drawn = 0
    replicated = False
    shown: list[np.ndarray] = []
    probs = np.linspace(0.0, 1.0, _GRID_POINTS + 1)[1:]
    for group in _groups(results):
        samples = [x * MS for x in (_latencies(r.tasks, metric) for r in group.runs) if x.size]
        if not samples:
            continue
        kw: dict[str, Any] = {"color": group.colour, "ls": group.style, "label": _label(group)}
        if len(samples) == 1:
            x = samples[0]
            ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", **kw)
        else:
            q = np.vstack([np.quantile(s, probs, method="inverted_cdf") for s in samples])
            mean, lo, hi = mean_ci(q)
            # a quantile cannot lie outside the values seen: clip the band to them
            lo, hi = np.clip(lo, q.min(axis=0), None), np.clip(hi, None, q.max(axis=0))
            ax.plot(mean, probs, drawstyle="steps-post", **kw)
            ax.fill_betweenx(probs, lo, hi, color=group.colour, alpha=_BAND_ALPHA, lw=0)
            replicated = True
        shown.extend(samples)
        drawn += 1
    values = np.concatenate(shown) if shown else np.array([])
    ax.set_xlabel(latency_axis(ax, "x", values, log=log, what=what))
    ax.set_ylabel("fraction of tasks")
    ax.set_ylim(0, 1.02)
    _finish(ax, drawn, replicated=replicated)
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


def _on_grid(steps: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Step functions sampled on one common time grid (0 before their first step)."""
    end = max(float(x[-1]) for x, _ in steps if x.size)
    grid = np.linspace(0.0, end, _GRID_POINTS * 2)
    rows = []
    for x, y in steps:
        at = np.searchsorted(x, grid, side="right") - 1
        rows.append(np.where(at >= 0, y[np.clip(at, 0, None)] if y.size else 0.0, 0.0))
    return grid, np.vstack(rows)


def _draw_steps(
    ax: Axes, group: _Group, steps: list[tuple[np.ndarray, np.ndarray]], label: str, ls: str
) -> bool:
    """One step line, or the mean of replications with a band; True when a band was drawn."""
    steps = [(x, y) for x, y in steps if x.size]
    if not steps:
        return False
    if len(steps) == 1:
        x, y = steps[0]
        ax.step(x, y, where="post", color=group.colour, ls=ls, label=label)
        return False
    grid, rows = _on_grid(steps)
    mean, lo, hi = mean_ci(rows, floor=0.0)
    ax.plot(grid, mean, color=group.colour, ls=ls, label=label)
    ax.fill_between(grid, lo, hi, color=group.colour, alpha=_BAND_ALPHA, lw=0)
    return True


def queue_depth(results: Results, *, in_system: bool = False) -> Figure:
    """Tasks waiting for a worker over time (enqueued, not yet started), per run.

    With `in_system=True`, also tasks not yet settled (enqueued, not acked or
    dead), dotted. Both come from `.tasks`, so simulated and live runs compare.
    """
    fig, ax = _figure("queue depth")
    drawn = 0
    replicated = False
    for group in _groups(results):
        runs = [r for r in group.runs if not r.tasks.empty]
        if not runs:
            continue
        waiting = [_depth(r.tasks["enqueued_at"], r.tasks["started_at"]) for r in runs]
        replicated |= _draw_steps(ax, group, waiting, f"{_label(group)} waiting", group.style)
        if in_system:
            settled = []
            for r in runs:
                t = r.tasks
                done = t["acked_at"].where(t["outcome"] == "acked", t["finished_at"])
                settled.append(_depth(t["enqueued_at"], done.where(t["outcome"] != "lost")))
            _draw_steps(ax, group, settled, f"{_label(group)} in system", ":")
        drawn += 1
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("tasks")
    integer_ticks(ax.yaxis)
    _finish(ax, drawn, replicated=replicated)
    return fig


def _priority_waits(tasks: pd.DataFrame) -> pd.DataFrame:
    wait = (tasks["started_at"] - tasks["enqueued_at"]).rename("wait")
    frame = pd.concat([tasks["priority"], wait], axis=1).dropna()
    return frame.groupby("priority")["wait"].quantile([0.5, 0.95]).unstack()


def wait_by_priority(results: Results) -> Figure:
    """Median (solid bar) and p95 (pale bar behind it) wait per priority, per run, in ms.

    Bars of one priority stand side by side, one per run; replications show
    their mean with a 95 % confidence interval as error bars.
    """
    fig, ax = _figure("wait by priority")
    tables: list[tuple[_Group, list[pd.DataFrame]]] = []
    for group in _groups(results):
        per_run = [_priority_waits(r.tasks) for r in group.runs if not r.tasks.empty]
        per_run = [q for q in per_run if not q.empty]
        if per_run:
            tables.append((group, per_run))
    prios = sorted({int(p) for _, qs in tables for q in qs for p in q.index})
    pos = {p: i for i, p in enumerate(prios)}
    width = 0.8 / max(len(tables), 1)
    replicated = False
    for k, (group, per_run) in enumerate(tables):
        x = np.array([pos[p] for p in prios]) + (k - (len(tables) - 1) / 2) * width
        for quantile, alpha, label in ((0.95, 0.35, "p95"), (0.5, 1.0, "p50")):
            values = np.vstack([q[quantile].reindex(prios).to_numpy() for q in per_run]) * MS
            mean, lo, hi = mean_ci(values, floor=0.0)
            err = np.vstack([mean - lo, hi - mean]) if len(per_run) > 1 else None
            ax.bar(
                x,
                np.nan_to_num(mean),
                width * 0.9,
                yerr=err,
                color=group.colour,
                alpha=alpha,
                capsize=2,
                label=f"{_label(group)} {label}",
            )
        replicated |= len(per_run) > 1
    ax.set_xticks(range(len(prios)), [str(p) for p in prios])
    ax.set_xlabel("priority (higher is served first)")
    ax.set_ylabel(latency_axis(ax, "y", [], log=False, what="wait"))
    ax.grid(False, axis="x")
    note = "error bars: 95 % confidence interval over replications"
    _finish(ax, len(tables), replicated=replicated, note=note)
    return fig


def _redeliveries(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    ops = result.ops
    if ops.empty or "op" not in ops:
        return np.array([]), np.array([])
    gets = ops[(ops["op"] == "get") & ops["ok"].astype(bool)].sort_values("ts", kind="stable")
    again = gets[gets["task_id"].duplicated()]
    x = np.concatenate([[0.0], again["ts"].to_numpy(dtype=float)])
    return x, np.arange(x.size, dtype=float)


def redeliveries_over_time(results: Results) -> Figure:
    """Cumulative redeliveries (a task delivered again) over time, from the `get` records.

    A redelivery is any `get` of a task that was delivered before (lease
    expiry, nack, or a retry), the same count as the summary's `redeliveries`.
    """
    fig, ax = _figure("redeliveries")
    drawn = 0
    replicated = False
    for group in _groups(results):
        steps = [_redeliveries(r) for r in group.runs]
        if not any(x.size for x, _ in steps):
            continue
        replicated |= _draw_steps(ax, group, steps, _label(group), group.style)
        drawn += 1
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("redeliveries (cumulative)")
    integer_ticks(ax.yaxis)
    _finish(ax, drawn, replicated=replicated)
    return fig
