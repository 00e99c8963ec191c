"""The simulator's hot-path draws: execution plans equal `draw_execution`, draw for draw;
only a constant `LatencyDraw` lets the hot path skip the latency call."""

from __future__ import annotations

import numpy as np
import pytest

from stemlab.model.distributions import Constant, LogNormal
from stemlab.model.scenario import Scenario
from stemlab.model.workload import draw_execution
from stemlab.sim.broker import LatencyDraw, fixed_latency
from stemlab.sim.draws import ExecutionDraw


@pytest.mark.parametrize(("failure", "crash"), [(0.0, 0.0), (0.2, 0.0), (0.0, 0.3), (0.25, 0.25)])
def test_execution_draw_matches_draw_execution(failure: float, crash: float) -> None:
    sc = Scenario(
        tasks=10,
        service_time=LogNormal(0.5, 1.0),
        failure_probability=failure,
        crash_probability=crash,
    )
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    draw = ExecutionDraw(sc, ours)
    outcomes = set()
    for i in range(2_000):
        same = 0.125 if i % 3 == 0 else None  # a redelivery keeps its first service time
        outcome, service, work = draw(same)
        plan = draw_execution(sc, theirs, same)
        expected_work = plan.crash_after_s if plan.outcome == "crash" else plan.service_s
        assert (outcome, service, work) == (plan.outcome, plan.service_s, expected_work)
        outcomes.add(outcome)
    assert outcomes == {"ok"} | ({"fail"} if failure else set()) | ({"crash"} if crash else set())
    assert ours.random() == theirs.random()  # both generators are at the same point


def test_fixed_latency_only_for_constant_latency_draws() -> None:
    rng = np.random.default_rng(0)
    assert fixed_latency(LatencyDraw(Constant(0.002), rng)) == 0.002
    assert fixed_latency(LatencyDraw(Constant(0.0), rng)) == 0.0
    assert fixed_latency(LatencyDraw(LogNormal(0.01, 0.5), rng)) is None
    assert fixed_latency(lambda: 0.002) is None  # a wrapped latency is always called
