"""`simulate(scenario, broker, seed)`: one scenario in simpy time, the same frames as `run_live`."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import simpy

from stemlab.instrument.records import Row, ops_to_frame
from stemlab.model.profile import BrokerProfile, load_profile
from stemlab.model.result import RunResult, empty_ops
from stemlab.model.scenario import Scenario
from stemlab.model.workload import make_workload, streams
from stemlab.sim.broker import SIM_QUEUE, SimBroker
from stemlab.sim.workers import SimRun

__all__ = ["simulate", "task_ids"]


def task_ids(n: int) -> list[str]:
    """Deterministic task ids (envelope ids), so one seed gives identical frames."""
    return [f"task-{i:07d}" for i in range(n)]


def _ops_frame(rows: list[Row] | None) -> pd.DataFrame:
    """The `.ops` frame, built exactly as run_live's (same columns and dtypes)."""
    if not rows:
        return empty_ops()
    return ops_to_frame(rows)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic collector: a run makes almost no cyclic garbage, but its many
    live ledger rows and op records make every full collection slow."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def simulate(
    scenario: Scenario,
    broker: str | Path | BrokerProfile = "ideal",
    seed: int | np.random.SeedSequence = 0,
    *,
    record_ops: bool = True,
    label: str | None = None,
    until: float | None = None,
) -> RunResult:
    """Run `scenario` against a modelled broker in simulated time.

    `broker` is a profile name ("ideal", "memory", "sqlite", "redis",
    "postgres"), a profile JSON path or a `BrokerProfile`. Every random draw
    comes from generators spawned from `seed` (workload, executions, broker
    latencies), so the same seed gives identical frames. The run ends when
    every task is acked or dead and the queue is empty, or at simulated time
    `until` (unfinished tasks are then "lost", `meta["timed_out"]` is True).
    `record_ops=False` leaves `.ops` empty, for big studies. `meta` carries
    run_live's counters (crashes, failures, retries, renewals, lease_lost,
    empty_gets) plus the profile used and the wall time taken.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    with _gc_paused():
        return _simulate(scenario, load_profile(broker), seed, record_ops, label, until)


def _simulate(
    scenario: Scenario,
    profile: BrokerProfile,
    seed: int | np.random.SeedSequence,
    record_ops: bool,
    label: str | None,
    until: float | None,
) -> RunResult:
    workload_rng, exec_rng, latency_rng = streams(seed, 3)
    workload = make_workload(scenario, workload_rng)
    env = simpy.Environment()
    model = SimBroker(
        env,
        profile,
        latency_rng,
        visibility_timeout=scenario.visibility_timeout,
        record_ops=record_ops,
    )
    run = SimRun(scenario, model, workload, exec_rng, task_ids(scenario.tasks))
    run.start()
    stop: simpy.Event = run.finished
    if until is not None:
        stop = env.any_of([run.finished, env.timeout(until)])
    wall = time.perf_counter()
    env.run(until=stop)
    wall = time.perf_counter() - wall
    timed_out = not run.finished.triggered
    run.close()
    ops, model.ops = _ops_frame(model.ops), None
    return RunResult(
        tasks=run.ledger.tasks_frame(),
        ops=ops,
        label=label or f"{scenario.name} sim {profile.name}",
        kind="sim",
        broker=profile.name,
        duplicates=run.ledger.duplicates,
        duration_s=float(env.now),
        meta={
            "seed": seed if isinstance(seed, int) else repr(seed),
            "scenario": scenario.to_dict(),
            "profile": profile.to_dict(),
            "published": scenario.tasks,
            "timed_out": timed_out,
            **run.counters,
            "dead_letters": len(model.state.list_dead(SIM_QUEUE, limit=scenario.tasks).entries),
            "wall_s": wall,
        },
    )
