"""What every stemlab figure shares: one colour per broker, millisecond axes, integer counts.

A broker keeps its colour in every figure (redis is always the same red), so
figures can be read side by side without checking legends. Latencies are
kept in seconds in the frames and drawn in milliseconds; a latency axis may
be logarithmic, and when some values are zero (an ideal broker's waits) it
becomes symmetric-log with a stated linear floor instead of dropping them.
Replications are summarised as a mean and a 95 % confidence interval
(Student t), drawn as a band.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import Formatter, LogLocator, MaxNLocator

from stemlab.model.stats import t95

__all__ = [
    "BROKER_COLOURS",
    "FALLBACK_COLOURS",
    "MS",
    "MillisecondFormatter",
    "broker_colour",
    "integer_ticks",
    "latency_axis",
    "mean_ci",
    "t95",
]

MS = 1000.0  # seconds -> milliseconds, for display only

# Okabe-Ito colours (readable with the common colour-vision deficiencies); "ideal" is
# the theoretical reference, so it is black.
BROKER_COLOURS: dict[str, str] = {
    "ideal": "#000000",
    "memory": "#E69F00",
    "sqlite": "#009E73",
    "redis": "#D55E00",
    "postgres": "#0072B2",
    "redis-streams": "#CC79A7",
    "rabbitmq": "#8C564B",
    "sqs": "#9467BD",
}
# Names not listed above get one of these, chosen from a hash of the name (so the same
# unknown broker has the same colour in every figure and every session).
FALLBACK_COLOURS = ("#56B4E9", "#17BECF", "#BCBD22", "#7F7F7F", "#E377C2", "#1F3A93")
_ALIASES = {"postgresql": "postgres", "pg": "postgres", "in-memory": "memory"}


def broker_colour(name: str) -> str:
    """The fixed colour of broker `name`; unknown names get a stable fallback colour."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in BROKER_COLOURS:
        return BROKER_COLOURS[key]
    return FALLBACK_COLOURS[zlib.crc32(key.encode()) % len(FALLBACK_COLOURS)]


class MillisecondFormatter(Formatter):
    """Tick labels for an axis already in milliseconds: plain numbers, never 1e+02."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if x == 0:
            return "0"
        if abs(x) >= 1:
            return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"
        return f"{x:.3g}"


def integer_ticks(axis: Axis) -> None:
    """Counts (tasks, redeliveries) get whole-number ticks only."""
    axis.set_major_locator(MaxNLocator(integer=True))


def _floor(values_ms: np.ndarray) -> float:
    """The symlog linear threshold: the power of ten at or below the smallest non-zero
    value's 1st percentile, at least 0.001 ms (a microsecond)."""
    positive = values_ms[values_ms > 0]
    if not positive.size:
        return 1.0
    low = float(np.percentile(positive, 1))
    return max(1e-3, 10.0 ** math.floor(math.log10(low)))


def latency_axis(ax: Axes, which: str, values_ms: Iterable[float], *, log: bool, what: str) -> str:
    """Put a latency axis (`which` is "x" or "y") in ms, log when asked; returns its label.

    With zeros among the values a log axis becomes symmetric-log, linear below a
    floor (named in the label), so zero waits stay on the figure.
    """
    arr = np.asarray(list(values_ms), dtype=float)
    arr = arr[np.isfinite(arr)]
    label = f"{what} (ms)"
    set_scale = ax.set_xscale if which == "x" else ax.set_yscale
    axis = ax.xaxis if which == "x" else ax.yaxis
    if log and arr.size:
        if bool((arr > 0).all()):
            set_scale("log")
            if np.log10(arr.max() / arr.min()) <= 3:  # few decades: label 1, 2, 5 of each
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        else:
            floor = _floor(arr)
            set_scale("symlog", linthresh=floor)
            label = f"{what} (ms; symlog, linear below {MillisecondFormatter()(floor)} ms)"
            if arr.min() >= 0:  # latencies are never negative: no empty negative half
                (ax.set_xlim if which == "x" else ax.set_ylim)(0, None)
    axis.set_major_formatter(MillisecondFormatter())
    axis.set_minor_formatter(_Blank())
    return label


class _Blank(Formatter):
    """No labels on minor ticks (log axes label only the decades)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return ""


def mean_ci(
    values: Iterable[float] | Iterable[Iterable[float]],
    axis: int = 0,
    *,
    floor: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95 % confidence bounds (Student t) along `axis`; NaNs are left out.

    With one value the bounds are the value itself (no interval can be claimed).
    `floor` clips the lower bound (0 for latencies, which cannot be negative).
    """
    arr = np.asarray(values, dtype=float)
    n = np.sum(np.isfinite(arr), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(arr, axis=axis) if arr.size else np.asarray(math.nan)
        sd = np.nanstd(arr, axis=axis, ddof=1) if arr.shape[axis] > 1 else np.zeros_like(mean)
        t = np.vectorize(t95, otypes=[float])(n)
        half = np.where(n > 1, t * sd / np.sqrt(np.maximum(n, 1)), 0.0)
    low = mean - half if floor is None else np.maximum(mean - half, floor)
    return mean, low, mean + half
