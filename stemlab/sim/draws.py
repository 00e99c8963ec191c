"""Execution plans drawn for the simulator's hot path, without building `Execution` objects.

`ExecutionDraw` makes exactly the draws `draw_execution` makes, in the same
order and from the same generator (service time, then the outcome's uniform,
then a crash's fraction), so a seed gives the same plans as before; it only
returns a plain tuple and binds its lookups once, which matters at one plan
per task.
"""

from __future__ import annotations

import numpy as np

from stemlab.model.scenario import Scenario

__all__ = ["ExecutionDraw"]


class ExecutionDraw:
    """`draw_execution(scenario, rng, service_s)` as `(outcome, service_s, work_s)`.

    `work_s` is how long the execution runs: the service time, or for a crash
    the time until the worker dies (`Execution.crash_after_s`).
    """

    __slots__ = ("_crash", "_fail", "_random", "_rng", "_sample")

    def __init__(self, scenario: Scenario, rng: np.random.Generator) -> None:
        self._sample = scenario.service_time.sample
        self._rng = rng
        self._random = rng.random
        self._crash = scenario.crash_probability
        self._fail = scenario.crash_probability + scenario.failure_probability

    def __call__(self, service_s: float | None = None) -> tuple[str, float, float]:
        service = self._sample(self._rng)
        if service_s is not None:
            service = service_s
        u = self._random()
        if u < self._crash:
            return "crash", service, service * self._random()
        if u < self._fail:
            return "fail", service, service
        return "ok", service, service
