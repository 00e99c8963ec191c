"""The `ideal` broker against queueing theory (Erlang C, Cobham's priority formula).

Statistical and seeded. Each check runs several independent replications
(seeds 1..6), discards a warm-up of the first 2,000 tasks of each, and
requires the theoretical mean to lie inside the replications' two-sided 99 %
Student-t confidence interval (t quantile for 5 degrees of freedom: 4.032).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from stemlab import Scenario, simulate
from stemlab.sim import Exponential
from stemlab.sim.theory import erlang_c, mmc_mean_wait, priority_mean_waits

SEEDS = range(1, 7)
WARMUP = 2_000
T_99_DF5 = 4.032


def _replicate(sc: Scenario, *stats: Callable[[pd.DataFrame], float]) -> list[tuple[float, float]]:
    """For each statistic: its mean over SEEDS (tasks after warm-up) and 99 % CI half-width."""
    values = []
    for seed in SEEDS:
        tasks = simulate(sc, "ideal", seed=seed, record_ops=False).tasks.iloc[WARMUP:]
        values.append([stat(tasks) for stat in stats])
    arr = np.asarray(values, dtype=float)
    half = T_99_DF5 * arr.std(axis=0, ddof=1) / np.sqrt(len(arr))
    return [(float(m), float(h)) for m, h in zip(arr.mean(axis=0), half, strict=True)]


def _mean_wait(tasks: pd.DataFrame) -> float:
    return float((tasks["started_at"] - tasks["enqueued_at"]).mean())


def _waited(tasks: pd.DataFrame) -> float:
    return float(((tasks["started_at"] - tasks["enqueued_at"]) > 0).mean())


def _class_wait(prio: int) -> Callable[[pd.DataFrame], float]:
    return lambda tasks: _mean_wait(tasks[tasks["priority"] == prio])


def test_erlang_c_reference_values() -> None:
    assert erlang_c(1, 0.8) == pytest.approx(0.8)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert mmc_mean_wait(0.8, 1.0, 1) == pytest.approx(4.0)  # rho / (mu - lambda)
    waits = priority_mean_waits({0: 0.4}, 1.0, 1)
    assert waits[0] == pytest.approx(mmc_mean_wait(0.4, 1.0, 1))
    with pytest.raises(ValueError):
        erlang_c(2, 2.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("servers", "arrival_rate"),
    [(1, 0.8), (3, 2.1), (10, 8.0)],
    ids=["M/M/1 rho=0.8", "M/M/3 rho=0.7", "M/M/10 rho=0.8"],
)
def test_ideal_mmc_reproduces_erlang_c(servers: int, arrival_rate: float) -> None:
    """Mean wait and P(wait > 0): Erlang C inside the 99 % CI of 6 x 20,000 tasks."""
    sc = Scenario(
        name="mmc",
        arrival_rate=arrival_rate,
        tasks=20_000,
        service_time=Exponential(1.0),
        workers=servers,
    )
    (mean, half), (p_wait, half_p) = _replicate(sc, _mean_wait, _waited)
    theory = mmc_mean_wait(arrival_rate, 1.0, servers)
    assert abs(mean - theory) <= half, f"mean wait {mean:.4f} +- {half:.4f} vs {theory:.4f}"
    p_theory = erlang_c(servers, arrival_rate)
    assert abs(p_wait - p_theory) <= half_p, f"P(wait) {p_wait:.4f} +- {half_p:.4f}"


@pytest.mark.slow
def test_high_priority_waits_far_less_under_contention() -> None:
    """M/M/4 at rho = 0.8, half the tasks at priority 9 and half at 0 (non-preemptive).

    Cobham: W(9) = 0.249 s, W(0) = 1.243 s (a factor of 5). Each class's mean
    wait must lie inside its 99 % CI, and priority 9 must wait < 1/3 of priority 0.
    """
    sc = Scenario(
        name="prio",
        arrival_rate=3.2,
        tasks=30_000,
        service_time=Exponential(1.0),
        workers=4,
        priority_weights={0: 1.0, 9: 1.0},
    )
    theory = priority_mean_waits({0: 1.6, 9: 1.6}, 1.0, 4)
    results = dict(zip((0, 9), _replicate(sc, _class_wait(0), _class_wait(9)), strict=True))
    for prio, (mean, half) in results.items():
        assert abs(mean - theory[prio]) <= half, f"priority {prio}: {mean:.4f} +- {half:.4f}"
    assert results[9][0] < results[0][0] / 3
