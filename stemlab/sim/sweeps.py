"""`sweep(scenario, grid, executor=None)`: many simulations, one tidy DataFrame.

Each grid point is a set of overrides: Scenario fields (`workers`,
`arrival_rate`, `service_time`, ...), `broker` (a name or a profile), `seed`,
or profile fields prefixed with `profile.` (`profile.poll_interval`, ...).
Points run on any `concurrent.futures.Executor` (a `ProcessPoolExecutor`
locally, a Dask `client.get_executor()` on a cluster) or, with
`executor=None`, one after another in this process.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed
from dataclasses import fields, replace
from typing import Any

import pandas as pd

from stemlab.core.progress import Progress
from stemlab.model.distributions import Distribution
from stemlab.model.profile import BrokerProfile, load_profile
from stemlab.model.scenario import Scenario, ScenarioError
from stemlab.sim.simulation import simulate

__all__ = ["grid_points", "run_point", "sweep"]

_SCENARIO_FIELDS = {f.name for f in fields(Scenario)}
_PROFILE_FIELDS = {f.name for f in fields(BrokerProfile)}
Grid = Mapping[str, Sequence[Any]] | Iterable[Mapping[str, Any]]


def grid_points(grid: Grid) -> list[dict[str, Any]]:
    """A mapping of lists becomes its cartesian product; a list of mappings is taken as is."""
    if isinstance(grid, Mapping):
        keys = list(grid)
        values = []
        for key in keys:
            options = grid[key]
            if isinstance(options, str | bytes) or not isinstance(options, Iterable):
                raise ValueError(f"grid[{key!r}] must be a list of values, got {options!r}")
            values.append(list(options))
        points = [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
    else:
        points = [dict(point) for point in grid]
    for point in points:
        for key in point:
            _check_key(key)
    return points


def _check_key(key: str) -> None:
    if key in _SCENARIO_FIELDS or key in ("broker", "seed"):
        return
    if key.startswith("profile.") and key[len("profile.") :] in _PROFILE_FIELDS - {"name"}:
        return
    raise ScenarioError(
        f"unknown sweep key {key!r}: use Scenario fields, 'broker', 'seed' or 'profile.<field>'"
    )


def _split(point: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    scenario = {k: v for k, v in point.items() if k in _SCENARIO_FIELDS}
    profile = {k[len("profile.") :]: v for k, v in point.items() if k.startswith("profile.")}
    return scenario, profile


def run_point(
    scenario: Scenario,
    point: Mapping[str, Any],
    broker: str | BrokerProfile,
    seed: int,
    record_ops: bool = False,
) -> dict[str, Any]:
    """Simulate one grid point and return its tidy row (a plain dict, cheap to ship back)."""
    scenario_changes, profile_changes = _split(point)
    sc = replace(scenario, **scenario_changes) if scenario_changes else scenario
    profile = load_profile(point.get("broker", broker))
    if profile_changes:
        profile = profile.with_overrides(**profile_changes)
    seed = int(point.get("seed", seed))
    start = time.perf_counter()
    result = simulate(sc, profile, seed, record_ops=record_ops)
    row: dict[str, Any] = {k: _cell(v) for k, v in point.items()}
    row.update(broker=profile.name, seed=seed, load=sc.load)
    row.update(result.summary())
    row.update(sim_time_s=result.duration_s, wall_s=time.perf_counter() - start)
    return row


def _cell(value: Any) -> Any:
    """Grid values as table cells: distributions and profiles by a short readable name."""
    if isinstance(value, BrokerProfile):
        return value.name
    if isinstance(value, Distribution):
        params = ", ".join(f"{k}={v}" for k, v in value.to_dict().items() if k != "kind")
        return f"{type(value).__name__}({params})"
    return value


def sweep(
    scenario: Scenario,
    grid: Grid,
    executor: Executor | None = None,
    *,
    broker: str | BrokerProfile = "ideal",
    seeds: Sequence[int] = (0,),
    record_ops: bool = False,
    progress: bool = False,
) -> pd.DataFrame:
    """Simulate every grid point for every seed; one row per run, in grid order.

    Columns: the grid keys, `broker`, `seed`, `load`, then the summary keys of
    `RunResult.summary()`, `sim_time_s` and `wall_s`. A grid point's own
    `seed` or `broker` wins over the `seeds` and `broker` arguments.
    `progress=True` draws a bar of finished runs (in a terminal or a notebook).
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a Scenario, got {type(scenario).__name__}")
    jobs: list[tuple[dict[str, Any], int]] = []
    for point in grid_points(grid):
        point_seeds = [point["seed"]] if "seed" in point else list(seeds)
        jobs.extend((point, seed) for seed in point_seeds)
    with Progress(len(jobs), f"sweeping {scenario.name}", enabled=progress, unit="run") as bar:
        if executor is None:
            rows = []
            for p, s in jobs:
                rows.append(run_point(scenario, p, broker, s, record_ops))
                bar.advance()
        else:
            futures: list[Future[dict[str, Any]]] = [
                executor.submit(run_point, scenario, p, broker, s, record_ops) for p, s in jobs
            ]
            for _ in as_completed(futures):  # counts runs as they finish, in any order
                bar.advance()
            rows = [future.result() for future in futures]
    return pd.DataFrame(rows)
