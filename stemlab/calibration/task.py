"""`measure_task`: time a registered task's own service time and fit it like a broker op.

The simulator then predicts every broker with the user's real work instead of
a guessed distribution: ``Scenario(service_time=measure_task(app, "name", args))``.
The calls run in this process, one after another (the service time is the work
itself; queueing and broker costs are what the simulator adds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from stemlab.calibration.fit import fit_latency
from stemlab.errors import CalibrationError, ConfigError
from stemlab.model.distributions import Distribution
from stemlab.runtime import Stem

__all__ = ["measure_task"]

TaskArgs = dict[str, Any] | Callable[[int], dict[str, Any]]


def measure_task(
    app: Stem,
    name: str,
    args: TaskArgs | None = None,
    *,
    n: int = 200,
    warmup: int = 5,
    info: dict[str, Any] | None = None,
) -> Distribution:
    """Call task `name` `warmup + n` times and fit the `n` timed durations (seconds).

    `args` is a dict of keyword arguments, or a callable of the call index giving
    one (to vary the inputs). The fit is `stemlab.calibration.fit.fit_latency`'s:
    a constant, a lognormal when it passes the KS and tail checks, else the
    empirical quantiles. Pass a dict as `info` to receive the samples' quantiles
    and which fit was chosen. A task that raises stops the measurement
    (`CalibrationError`).
    """
    if not isinstance(app, Stem):
        raise TypeError(f"measure_task needs a stemlab.Stem, got {type(app).__name__}")
    task = app.tasks.get(name)
    if task is None:
        raise ConfigError(f"no task {name!r} in the app (registered: {sorted(app.tasks)})")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")

    def kwargs(i: int) -> dict[str, Any]:
        return dict(args(i)) if callable(args) else dict(args or {})

    samples = np.empty(n)
    for i in range(warmup + n):
        call_args = kwargs(i)
        start = time.perf_counter()
        try:
            task.fn(**call_args)
        except Exception as exc:
            raise CalibrationError(f"task {name!r} raised on call {i}: {exc!r}") from exc
        if i >= warmup:
            samples[i - warmup] = time.perf_counter() - start
    dist, fit_info = fit_latency(samples)
    if info is not None:
        info.update(fit_info, task=name, samples=n)
    return dist
