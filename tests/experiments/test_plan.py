"""`stemlab.plan`: fewest workers meeting an SLO per broker, with confidence; fast."""

from __future__ import annotations

import time

import pandas as pd
import pytest

import stemlab
from stemlab import Scenario
from stemlab.experiments.plan import CapacityPlan, _first_good
from stemlab.sim import Exponential
from stemlab.sim.theory import erlang_c

SC = Scenario(name="plan", arrival_rate=8.0, tasks=2_000, service_time=Exponential(0.5), workers=1)


def test_plan_finds_the_fewest_workers_and_agrees_with_erlang_c() -> None:
    """On `ideal` the planner's answer is an M/M/c question: P(wait) < 5 % needs c such that
    Erlang C drops under 0.05; the planner (wait_p95 <= 1 ms, 95 % confidence) must
    land on that c or one above it (the interval is conservative)."""
    result = stemlab.plan(SC, {"wait_p95": 0.001}, ["ideal"], range(1, 33), tasks=1_500)
    row = result.rows[0]
    offered = SC.arrival_rate * SC.service_time.mean  # 4 Erlangs
    need = next(c for c in range(5, 33) if erlang_c(c, offered) < 0.05)
    assert row["meets"] and need <= row["workers"] <= need + 1
    assert row["wait_p95_ci_high"] <= 0.001
    assert row["evaluations"] <= 8  # galloping + bisection, not a linear scan


def test_plan_row_is_flat_and_has_saturation_and_headroom() -> None:
    result = stemlab.plan(SC, {"e2e_p95": 2.0}, ["ideal", "redis"], range(1, 17), tasks=800)
    assert isinstance(result, CapacityPlan)
    frame = result.frame()
    assert list(frame.index) == ["ideal", "redis"]
    for col in ("workers", "meets", "e2e_p95_mean", "e2e_p95_ci_low", "e2e_p95_ci_high",
                "e2e_p95_target", "saturation_throughput", "headroom"):  # fmt: skip
        assert col in frame.columns
    row = result.rows[0]
    capacity = row["workers"] / SC.service_time.mean
    assert row["saturation_throughput"] == pytest.approx(capacity, rel=0.15)
    assert row["headroom"] == pytest.approx(1 - SC.arrival_rate / row["saturation_throughput"])
    assert "e2e_p95 <= 2000 ms with the fewest workers" in result.verdict()


def test_an_unreachable_slo_says_so() -> None:
    """e2e p95 can never beat the service time's p95 (1.5 s here): no simulation needed;
    a reachable target that needs more than the range allows is searched and refused."""
    result = stemlab.plan(SC, {"e2e_p95": 0.01}, ["ideal"], range(1, 9), tasks=500)
    row = result.rows[0]
    assert not row["meets"] and row["workers"] is pd.NA and row["evaluations"] == 0
    assert result.verdict().startswith("no broker meets")
    short = stemlab.plan(SC, {"wait_p95": 0.001}, ["ideal"], range(1, 6), tasks=500)
    assert not short.rows[0]["meets"] and short.rows[0]["evaluations"] >= 1


def test_the_search_is_binary_over_a_monotone_predicate() -> None:
    counts = list(range(1, 101))

    class Fake:
        def __init__(self, first: int) -> None:
            self.first, self.asked = first, 0

        def good(self, c: int) -> bool:
            self.asked += 1
            return c >= self.first

    for first in (1, 2, 37, 100, 101):
        fake = Fake(first)
        found = _first_good(fake, counts, 0)  # type: ignore[arg-type]
        assert (counts[found] if found is not None else None) == (first if first <= 100 else None)
        assert fake.asked <= 16


def test_plan_on_the_shipped_profiles_is_fast() -> None:
    wall = time.perf_counter()
    result = stemlab.plan(SC, {"e2e_p95": 2.0})
    assert time.perf_counter() - wall < 30
    assert [r["broker"] for r in result.rows] == ["memory", "sqlite", "redis", "postgres"]
    assert all(r["meets"] for r in result.rows)


def test_bad_slo_is_refused() -> None:
    with pytest.raises(ValueError, match="slo"):
        stemlab.plan(SC, {"p95": 1.0}, ["ideal"])
