"""sweep(): parameter grids on any Executor, one tidy DataFrame."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pandas as pd
import pytest

from stemlab import Scenario, sweep
from stemlab.model.result import SUMMARY_KEYS
from stemlab.model.scenario import ScenarioError
from stemlab.sim import Exponential
from stemlab.sim.sweeps import grid_points

SC = Scenario(name="grid", arrival_rate=3.0, tasks=300, service_time=Exponential(0.5), workers=2)


def test_grid_points_product_and_explicit_lists() -> None:
    assert grid_points({"workers": [1, 2], "prefetch": [1, 2, 3]}) == [
        {"workers": w, "prefetch": p} for w in (1, 2) for p in (1, 2, 3)
    ]
    assert grid_points([{"workers": 3}, {"broker": "redis"}]) == [
        {"workers": 3},
        {"broker": "redis"},
    ]
    with pytest.raises(ScenarioError, match="unknown sweep key"):
        grid_points({"wrkers": [1]})
    with pytest.raises(ValueError, match="list of values"):
        grid_points({"workers": 3})  # type: ignore[dict-item]


def test_sweep_is_tidy_and_in_grid_order() -> None:
    grid = {"workers": [2, 3], "broker": ["ideal", "redis"]}
    frame = sweep(SC, grid, seeds=(1, 2))
    assert len(frame) == 8
    assert list(frame.columns[:5]) == ["workers", "broker", "seed", "load", "tasks"]
    assert set(SUMMARY_KEYS) <= set(frame.columns)
    assert list(frame["seed"]) == [1, 2] * 4
    assert list(frame["workers"]) == [2, 2, 2, 2, 3, 3, 3, 3]
    assert (frame["acked"] == 300).all()
    assert frame.loc[frame["workers"] == 2, "load"].iloc[0] == pytest.approx(0.75)


def test_profile_fields_and_distributions_in_a_grid() -> None:
    grid = {
        "profile.poll_interval": [0.01, 0.05],
        "service_time": [Exponential(0.2), Exponential(0.4)],
    }
    frame = sweep(SC, grid, broker="sqlite")
    assert list(frame["service_time"].unique()) == [
        "Exponential(mean=0.2)",
        "Exponential(mean=0.4)",
    ]
    slow = frame[frame["profile.poll_interval"] == 0.05]["wait_p50"].mean()
    fast = frame[frame["profile.poll_interval"] == 0.01]["wait_p50"].mean()
    assert slow > fast


def test_an_executor_gives_the_same_frame_as_serial() -> None:
    grid = {"workers": [2, 3]}
    serial = sweep(SC, grid, seeds=(4, 5))
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = sweep(SC, grid, pool, seeds=(4, 5))
    cols = [c for c in serial.columns if c != "wall_s"]
    pd.testing.assert_frame_equal(serial[cols], threaded[cols])


@pytest.mark.slow
def test_a_process_pool_runs_a_sweep() -> None:
    grid = [{"workers": 2, "seed": 1}, {"workers": 3, "seed": 1}]
    with ProcessPoolExecutor(max_workers=2) as pool:
        frame = sweep(SC, grid, pool)
    serial = sweep(SC, grid)
    assert list(frame["acked"]) == [300, 300]
    assert list(frame["wait_p95"]) == list(serial["wait_p95"])
