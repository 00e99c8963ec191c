"""Confidence intervals of a mean over replications (Student t, 95 %, no scipy needed)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

__all__ = ["mean_ci", "t95"]

# two-sided 97.5 % Student t quantiles for 1..30 degrees of freedom
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(n: int) -> float:
    """The multiplier of the standard error for a 95 % interval of a mean of `n` values."""
    if n < 2:
        return math.nan
    df = n - 1
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_ci(values: Iterable[float]) -> tuple[float, float, float, float, int]:
    """(mean, ci_low, ci_high, sd, n) of the finite values; one value: bounds = the value."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, 0
    mean = float(arr.mean())
    if n == 1:
        return mean, mean, mean, 0.0, 1
    sd = float(arr.std(ddof=1))
    half = t95(n) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, sd, n
