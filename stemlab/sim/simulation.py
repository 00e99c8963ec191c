"""`simulate(scenario, broker, seed)`: one scenario in simpy time, the same frames as `run_live`."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, overload

import numpy as np
import pandas as pd
import simpy

from stemlab.instrument.records import Row, ops_to_frame
from stemlab.model.profile import BrokerProfile, load_profile
from stemlab.model.protocol import RETRY_MAX, retry_delay
from stemlab.model.replications import Replications
from stemlab.model.result import RunResult, empty_ops
from stemlab.model.scenario import Scenario
from stemlab.model.workload import Workload, make_workload, streams
from stemlab.sim.broker import SIM_QUEUE, SimBroker
from stemlab.sim.workers import SimRun

__all__ = ["default_until", "simulate", "task_ids"]


def task_ids(n: int) -> list[str]:
    """Deterministic task ids (envelope ids), so one seed gives identical frames."""
    return [f"task-{i:07d}" for i in range(n)]


def _ops_frame(rows: list[Row] | None) -> pd.DataFrame:
    """The `.ops` frame, built exactly as run_live's (same columns and dtypes)."""
    if not rows:
        return empty_ops()
    return ops_to_frame(rows)


def default_until(scenario: Scenario, workload: Workload, profile: BrokerProfile) -> float:
    """A generous simulated end (s), like run_live's `default_deadline` plus the broker's costs.

    Last arrival + longest delay + twice the work (service and the broker's
    mean claim and ack per task, spread over the workers) + the producer's
    publishes + every retry backoff + `RETRY_MAX + 3` lease expiries on the
    unluckiest task's path + 10 s. A run still going then is stopped and
    reported `timed_out` (e.g. work that always outlives an unrenewed lease
    and no `max_deliveries`): without it such a scenario would never end.
    """
    sc = scenario
    lat = profile.latency
    per_task = sc.service_time.mean * (
        1 + sc.failure_probability * RETRY_MAX + sc.crash_probability
    )
    broker = lat["claim"].mean + lat["ack"].mean
    work = sc.tasks * (per_task + broker) / sc.workers
    publishing = sc.tasks * lat["publish"].mean
    retries = sum(retry_delay(a) or 0.0 for a in range(RETRY_MAX))
    lease = (
        sc.visibility_timeout + (profile.reclaim_interval or 0.0) + (profile.poll_interval or 0.0)
    )
    last = float(workload.arrivals[-1]) + float(workload.delays.max(initial=0.0))
    return last + 2 * work + publishing + retries + (RETRY_MAX + 3) * lease + 10.0


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


@overload
def simulate(
    scenario: Scenario,
    broker: str | Path | BrokerProfile = ...,
    seed: int | np.random.SeedSequence = ...,
    *,
    record_ops: bool = ...,
    label: str | None = ...,
    until: float | None = ...,
    replications: Literal[1] = ...,
) -> RunResult: ...


@overload
def simulate(
    scenario: Scenario,
    broker: str | Path | BrokerProfile = ...,
    seed: int | np.random.SeedSequence = ...,
    *,
    record_ops: bool = ...,
    label: str | None = ...,
    until: float | None = ...,
    replications: int,
) -> RunResult | Replications: ...


def simulate(
    scenario: Scenario,
    broker: str | Path | BrokerProfile = "ideal",
    seed: int | np.random.SeedSequence = 0,
    *,
    record_ops: bool = True,
    label: str | None = None,
    until: float | None = None,
    replications: int = 1,
) -> RunResult | Replications:
    """Run `scenario` against a modelled broker in simulated time.

    `broker` is a profile name ("ideal", "memory", "sqlite", "redis",
    "postgres"), a profile JSON path or a `BrokerProfile`. Every random draw
    comes from generators spawned from `seed` (workload, executions, broker
    latencies), so the same seed gives identical frames. The run ends when
    every task is acked or dead, or at simulated time `until` (default
    `default_until`, a generous bound like run_live's deadline); unfinished
    tasks are then "lost" and `meta["timed_out"]` / `RunResult.timed_out` is True.
    `record_ops=False` leaves `.ops` empty, for big studies. `meta` carries
    run_live's counters (crashes, failures, retries, renewals, lease_lost,
    empty_gets, expired_skips, max_deliveries) plus the profile used and the
    wall time taken.

    `replications=k` (k > 1) runs k independent replications, seeded by
    `SeedSequence(seed).spawn(k)`, and returns a `Replications` (means and 95 %
    intervals); k = 1 returns the one `RunResult`, exactly as before.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise ValueError(f"replications must be an int >= 1, got {replications!r}")
    profile = load_profile(broker)
    if replications == 1:
        with _gc_paused():
            return _simulate(scenario, profile, seed, record_ops, label, until)
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    name = label or f"{scenario.name} sim {profile.name}"
    runs = []
    for i, child in enumerate(root.spawn(replications)):
        with _gc_paused():
            run = _simulate(scenario, profile, child, record_ops, f"{name} #{i}", until)
        run.meta["replication"] = i
        runs.append(run)
    seed_meta = seed if isinstance(seed, int) else repr(seed)
    return Replications(runs, name, {"seed": seed_meta, "replications": replications})


def _simulate(
    scenario: Scenario,
    profile: BrokerProfile,
    seed: int | np.random.SeedSequence,
    record_ops: bool,
    label: str | None,
    until: float | None,
) -> RunResult:
    # later streams (wake-up delays, work overshoot) leave the earlier ones exactly as they were
    workload_rng, exec_rng, latency_rng, wake_rng, work_rng = streams(seed, 5)
    workload = make_workload(scenario, workload_rng)
    env = simpy.Environment()
    model = SimBroker(
        env,
        profile,
        latency_rng,
        visibility_timeout=scenario.visibility_timeout,
        record_ops=record_ops,
        wake_rng=wake_rng,
        work_rng=work_rng,
    )
    run = SimRun(scenario, model, workload, exec_rng, task_ids(scenario.tasks))
    run.start()
    if until is None:
        until = default_until(scenario, workload, profile)
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
            "deadline_s": until,
            **run.counters,
            "dead_letters": len(model.state.list_dead(SIM_QUEUE, limit=scenario.tasks).entries),
            "wall_s": wall,
        },
    )
