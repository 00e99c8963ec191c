"""What a scenario asks for, drawn once from a seed: the tasks and how each execution goes.

`simulate` and `run_live` both draw from here, so "the same scenario" means
the same arrival times, priorities, delays and execution plans for one seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stemlab.model.scenario import Scenario

__all__ = ["Execution", "Workload", "draw_execution", "make_workload", "streams"]


@dataclass(frozen=True)
class Workload:
    """Arrival offsets (s since start), priorities and not_before offsets (s, 0 = none)."""

    arrivals: np.ndarray
    priorities: np.ndarray
    delays: np.ndarray

    def __len__(self) -> int:
        return int(self.arrivals.size)


@dataclass(frozen=True, slots=True)
class Execution:
    """How one execution of a task goes: work for `service_s`, then ok / fail / crash.

    A crash happens `crash_after_s` into the work: the worker dies holding the
    delivery un-acked, so its lease must expire before anyone sees it again.
    """

    service_s: float
    outcome: str  # "ok" | "fail" | "crash"
    crash_after_s: float = 0.0


def streams(seed: int | np.random.SeedSequence, n: int = 3) -> list[np.random.Generator]:
    """Independent generators spawned from one seed: workload, executions, broker latency."""
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return [np.random.default_rng(s) for s in seq.spawn(n)]


def make_workload(scenario: Scenario, rng: np.random.Generator) -> Workload:
    """Poisson arrivals at `arrival_rate`, priorities by weight, optional delays."""
    n = scenario.tasks
    gaps = rng.exponential(1.0 / scenario.arrival_rate, n)
    gaps[0] = 0.0
    arrivals = np.cumsum(gaps)
    shares = scenario.priority_shares()
    prios = np.array(list(shares), dtype=np.int64)
    priorities = rng.choice(prios, size=n, p=np.array(list(shares.values())))
    delays = np.zeros(n) if scenario.delay is None else scenario.delay.sample_many(rng, n)
    return Workload(arrivals, priorities, delays)


def draw_execution(
    scenario: Scenario, rng: np.random.Generator, service_s: float | None = None
) -> Execution:
    """Draw one execution plan: service time, then crash, fail or succeed.

    `service_s` (a redelivery with `redelivery_service="same"`) replaces the
    drawn service time; the draw is still made, so the stream of draws, and
    every later plan, is the same whichever choice the scenario makes.
    """
    service = scenario.service_time.sample(rng)
    if service_s is not None:
        service = service_s
    u = rng.random()
    if u < scenario.crash_probability:
        return Execution(service, "crash", service * rng.random())
    if u < scenario.crash_probability + scenario.failure_probability:
        return Execution(service, "fail")
    return Execution(service, "ok")
