"""`plan(workload, slo, brokers, workers)`: the fewest workers that meet an SLO, per broker.

For each broker's profile the planner simulates the workload (with a modest
number of tasks) at a worker count, `replications` times, and calls the
count good when the upper end of the 95 % interval of every SLO metric is
within its target (the lower end, for "throughput"), no task is lost and no
run hit its deadline. It assumes more workers never hurt, and searches:
it starts at the smallest count that keeps the offered load below 1,
gallops (1, 2, 4, ... counts further) to the first good count, then bisects
back between the last bad and the first good one. That is about
2 log2(range) evaluations instead of one per count. An end-to-end target
below the service time's own percentile is reported out of reach at once.

Per broker it also measures the saturation throughput (tasks acked per
second when the planned workers are offered twice what they can serve) and
reports the headroom at the workload's rate, `1 - rate / saturation`: the
share of the capacity left unused (0 = no headroom, negative = overloaded).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stemlab.model.profile import BrokerProfile, load_profile
from stemlab.model.replications import Replications
from stemlab.model.result import SUMMARY_KEYS, RunResult
from stemlab.model.scenario import Scenario
from stemlab.sim import simulate

__all__ = ["DEFAULT_BROKERS", "DEFAULT_SLO", "CapacityPlan", "plan"]

DEFAULT_BROKERS = ("memory", "sqlite", "redis", "postgres")
DEFAULT_SLO: dict[str, float] = {"e2e_p95": 0.25}
_HIGHER_IS_BETTER = {"throughput"}
_SATURATION_TASKS = 2_000


@dataclass
class CapacityPlan:
    """The planner's answer: one flat row per broker (`.frame()`), and a one-line verdict."""

    rows: list[dict[str, Any]]
    slo: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """One row per broker: workers (fewest meeting the SLO, NA if none in range), meets,
        per SLO metric its mean / ci_low / ci_high / target at that count, saturation
        throughput, headroom, and the search's cost (evaluations, runs)."""
        return pd.DataFrame(self.rows).set_index("broker")

    def best(self) -> dict[str, Any] | None:
        """The broker needing the fewest workers (ties: more headroom); None if none meets."""
        good = [r for r in self.rows if r["meets"]]
        if not good:
            return None
        return min(good, key=lambda r: (r["workers"], -r["headroom"]))

    def verdict(self) -> str:
        """One line: who meets the SLO with the fewest workers, and who cannot."""
        slo = ", ".join(f"{k} <= {_fmt(k, v)}" for k, v in self.slo.items())
        best = self.best()
        failing = [r["broker"] for r in self.rows if not r["meets"]]
        top = self.meta.get("max_workers")
        tail = f"; cannot within {top} workers: {', '.join(failing)}" if failing else ""
        if best is None:
            return f"no broker meets {slo} within {top} workers"
        tied = [r["broker"] for r in self.rows if r["meets"] and r["workers"] == best["workers"]]
        who = best["broker"] if len(tied) == 1 else f"{', '.join(tied)} (tied; most headroom: "
        who += "" if len(tied) == 1 else f"{best['broker']})"
        verb = "meets" if len(tied) == 1 else "meet"
        return (
            f"{who} {verb} {slo} with the fewest workers: {best['workers']} "
            f"(headroom {best['headroom']:.0%} at {self.meta['arrival_rate']:g}/s){tail}"
        )


def _fmt(metric: str, value: float) -> str:
    return f"{value:g}/s" if metric == "throughput" else f"{value * 1000:g} ms"


def plan(
    workload: Scenario,
    slo: Mapping[str, float] | None = None,
    brokers: Iterable[str | Path | BrokerProfile] = DEFAULT_BROKERS,
    workers: Sequence[int] | range = range(1, 33),
    *,
    replications: int = 3,
    tasks: int = 2_000,
    seed: int = 0,
) -> CapacityPlan:
    """Per broker, the fewest workers (from `workers`) meeting `slo` with 95 % confidence.

    `slo` maps summary keys (e.g. "e2e_p95", "wait_p99" in seconds, or
    "throughput" in tasks/s) to targets; default {"e2e_p95": 0.25}.
    `tasks` caps the simulated tasks per run (the workload's own count if
    smaller). Brokers are profile names, JSON paths or `BrokerProfile`s.
    """
    targets = dict(DEFAULT_SLO if slo is None else slo)
    unknown = set(targets) - set(SUMMARY_KEYS)
    if not targets or unknown:
        raise ValueError(f"slo keys must be summary keys {SUMMARY_KEYS}, got {sorted(targets)}")
    counts = sorted({int(c) for c in workers})
    if not counts or counts[0] < 1:
        raise ValueError("workers must be a non-empty range of counts >= 1")
    if replications < 2:
        raise ValueError("replications must be >= 2 (an interval needs two runs)")
    sc = replace(workload, tasks=min(tasks, workload.tasks))
    profiles = [load_profile(b) for b in brokers]
    wall = time.perf_counter()
    rows = [_plan_one(sc, p, targets, counts, replications, seed) for p in profiles]
    meta = {
        "scenario": sc.to_dict(),
        "arrival_rate": sc.arrival_rate,
        "replications": replications,
        "tasks": sc.tasks,
        "seed": seed,
        "min_workers": counts[0],
        "max_workers": counts[-1],
        "wall_s": time.perf_counter() - wall,
    }
    return CapacityPlan(rows, targets, meta)


class _Search:
    """Evaluations of one broker at worker counts, cached."""

    def __init__(
        self,
        sc: Scenario,
        profile: BrokerProfile,
        targets: dict[str, float],
        k: int,
        seed: int,
    ) -> None:
        self.sc, self.profile, self.targets, self.k, self.seed = sc, profile, targets, k, seed
        self.done: dict[int, tuple[bool, pd.DataFrame]] = {}

    def good(self, c: int) -> bool:
        if c not in self.done:
            runs = simulate(
                replace(self.sc, workers=c),
                self.profile,
                self.seed,
                record_ops=False,
                replications=self.k,
            )
            assert isinstance(runs, Replications)
            ci = runs.summary_ci()
            ok = not runs.timed_out and ci.loc["lost", "ci_high"] == 0
            for metric, target in self.targets.items():
                if metric in _HIGHER_IS_BETTER:
                    ok = ok and ci.loc[metric, "ci_low"] >= target
                else:
                    ok = ok and ci.loc[metric, "ci_high"] <= target
            self.done[c] = (bool(ok), ci)
        return self.done[c][0]


def _first_good(search: _Search, counts: list[int], start: int) -> int | None:
    """Gallop from index `start` (steps 1, 2, 4, ...) to a good count, then bisect back."""
    bad, i, step = start - 1, start, 1
    while i < len(counts) and not search.good(counts[i]):
        bad, i, step = i, i + step, step * 2
    if i >= len(counts):
        if bad == len(counts) - 1:
            return None
        i = len(counts) - 1  # the largest count, not yet tried
        if not search.good(counts[i]):
            return None
    lo, hi = bad, i  # counts[lo] bad (or before the range), counts[hi] good
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if search.good(counts[mid]):
            hi = mid
        else:
            lo = mid
    return hi


def _plan_one(
    sc: Scenario,
    profile: BrokerProfile,
    targets: dict[str, float],
    counts: list[int],
    k: int,
    seed: int,
) -> dict[str, Any]:
    search = _Search(sc, profile, targets, k, seed)
    offered = sc.arrival_rate * sc.service_time.mean  # busy workers needed on average
    start = next((i for i, c in enumerate(counts) if c > offered), len(counts) - 1)
    found = None if _out_of_reach(sc, targets, seed) else _first_good(search, counts, start)
    chosen = counts[found] if found is not None else counts[-1]
    ci = search.done[chosen][1] if chosen in search.done else None
    saturation = _saturation(sc, profile, chosen, seed)
    row: dict[str, Any] = {
        "broker": profile.name,
        "workers": chosen if found is not None else pd.NA,
        "meets": found is not None,
        "evaluated_at": chosen,
    }
    for metric, target in targets.items():
        for stat in ("mean", "ci_low", "ci_high"):  # NaN: out of reach, not simulated
            row[f"{metric}_{stat}"] = math.nan if ci is None else float(ci.loc[metric, stat])
        row[f"{metric}_target"] = float(target)
    row["arrival_rate"] = sc.arrival_rate
    row["saturation_throughput"] = saturation
    row["headroom"] = 1.0 - sc.arrival_rate / saturation if saturation > 0 else -math.inf
    row["evaluations"] = len(search.done)
    row["runs"] = len(search.done) * k
    return row


def _out_of_reach(sc: Scenario, targets: dict[str, float], seed: int) -> bool:
    """An e2e percentile target below the service time's own percentile: no worker count helps.

    (End to end includes the execution, so it can never beat the service time.)
    The check is made on 20,000 draws with a 2 % margin, before any simulation.
    """
    draws = sc.service_time.sample_many(np.random.default_rng(seed), 20_000)
    for metric, target in targets.items():
        if metric.startswith("e2e_p"):
            floor = float(np.percentile(draws, float(metric.removeprefix("e2e_p"))))
            if target < 0.98 * floor:
                return True
    return False


def _saturation(sc: Scenario, profile: BrokerProfile, workers: int, seed: int) -> float:
    """Tasks acked per second when `workers` are offered twice what they can serve."""
    capacity = workers / sc.service_time.mean
    overload = replace(
        sc,
        workers=workers,
        arrival_rate=2.0 * max(capacity, sc.arrival_rate),
        tasks=min(_SATURATION_TASKS, max(sc.tasks, 200)),
        failure_probability=0.0,
        crash_probability=0.0,
        delay=None,
    )
    result = simulate(overload, profile, seed, record_ops=False)
    assert isinstance(result, RunResult)
    thr = result.summary()["throughput"]
    return float(thr) if math.isfinite(thr) else 0.0
