"""simulate(): the same frames as run_live, determinism, the state machine underneath."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from stemlab import Scenario, compare, simulate
from stemlab.core.state import QueueState
from stemlab.instrument.records import ops_to_frame
from stemlab.model.profile import BROKER_NAMES
from stemlab.model.protocol import QUEUE
from stemlab.model.result import OP_COLUMNS, SUMMARY_KEYS, TASK_COLUMNS
from stemlab.sim import BrokerProfile, Constant, Exponential, LogNormal


def small(**changes: object) -> Scenario:
    base = Scenario(
        name="small",
        arrival_rate=6.0,
        tasks=400,
        service_time=LogNormal(0.5, 0.6),
        workers=4,
        priority_weights={0: 2.0, 5: 1.0},
        visibility_timeout=3.0,
        failure_probability=0.1,
        crash_probability=0.03,
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("broker", BROKER_NAMES)
def test_frames_have_run_lives_columns_and_dtypes(broker: str) -> None:
    result = simulate(small(), broker, seed=1)
    assert list(result.tasks.columns) == TASK_COLUMNS
    assert list(result.ops.columns) == OP_COLUMNS
    assert list(result.summary()) == SUMMARY_KEYS
    live_like = ops_to_frame([(0.0, "get", QUEUE, "t", 1, 0.1, True, None, "c", 1)])
    assert result.ops.dtypes.to_dict() == live_like.dtypes.to_dict()
    assert result.kind == "sim"
    assert result.broker == broker
    assert len(result.tasks) == 400
    assert set(result.ops["op"]) <= {"publish", "consume", "get", "ack", "dead_letter"}
    assert (result.ops["queue"] == QUEUE).all()


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    sc = small()
    a, b = simulate(sc, "redis", seed=7), simulate(sc, "redis", seed=7)
    pd.testing.assert_frame_equal(a.tasks, b.tasks)
    pd.testing.assert_frame_equal(a.ops, b.ops)
    c = simulate(sc, "redis", seed=8)
    assert not a.tasks["enqueued_at"].equals(c.tasks["enqueued_at"])


def test_seed_sequence_is_accepted() -> None:
    seq = np.random.SeedSequence(3)
    a = simulate(small(), "ideal", seed=seq)
    b = simulate(small(), "ideal", seed=np.random.SeedSequence(3))
    pd.testing.assert_frame_equal(a.tasks, b.tasks)


def test_record_ops_false_keeps_the_columns_and_the_tasks() -> None:
    with_ops = simulate(small(), "sqlite", seed=2)
    without = simulate(small(), "sqlite", seed=2, record_ops=False)
    assert without.ops.empty
    assert list(without.ops.columns) == OP_COLUMNS
    pd.testing.assert_frame_equal(with_ops.tasks, without.tasks)


def test_one_row_per_broker_call() -> None:
    result = simulate(small(failure_probability=0.0, crash_probability=0.0), "ideal", seed=4)
    counts = result.ops["op"].value_counts()
    assert counts["publish"] == 400
    assert counts["get"] == result.tasks["deliveries"].sum()
    assert counts["ack"] == counts["get"]
    assert counts["consume"] == 4
    gets = result.ops[result.ops["op"] == "get"]
    assert gets["consumer"].str.fullmatch(r"s\d+-g\d+").all()
    assert (gets["duration_s"] >= 0).all()


def test_every_task_is_accounted_for() -> None:
    result = simulate(small(), "postgres", seed=5)
    s = result.summary()
    assert s["acked"] + s["dead"] == 400
    assert s["lost"] == 0
    assert not result.meta["timed_out"]
    assert result.meta["dead_letters"] == s["dead"]
    assert result.duration_s >= result.tasks["acked_at"].max()


def test_until_cuts_the_run_short_and_the_rest_is_lost() -> None:
    result = simulate(small(failure_probability=0.0, crash_probability=0.0), seed=1, until=20.0)
    assert result.meta["timed_out"]
    assert result.duration_s == pytest.approx(20.0)
    assert result.summary()["lost"] > 0
    assert (result.tasks.loc[result.tasks["outcome"] == "acked", "acked_at"] <= 20.0).all()


def test_labels_compare_side_by_side() -> None:
    sc = small(tasks=100)
    table = compare([simulate(sc, b, seed=1) for b in ("memory", "redis")])
    assert list(table.index) == ["small sim memory", "small sim redis"]
    assert table.loc["small sim redis", "broker"] == "redis"


def test_the_simulator_runs_the_shared_state_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = QueueState.claim

    def spy(self: QueueState, *args: object, **kwargs: object) -> object:
        calls.append("claim")
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(QueueState, "claim", spy)
    simulate(small(tasks=20), "ideal", seed=1)
    assert len(calls) >= 20


def test_fewer_priority_levels_merge_priorities() -> None:
    flat = BrokerProfile("flat", priority_levels=1)
    result = simulate(small(tasks=50), flat, seed=1)
    assert set(result.ops.loc[result.ops["op"] == "get", "priority"]) == {0}
    assert set(result.tasks["priority"]) == {0, 5}  # the ledger keeps the scenario's priority


def test_latency_shows_in_ops_and_in_waits() -> None:
    slow = BrokerProfile("slow", latency={op: Constant(0.01) for op in ("publish", "claim", "ack")})
    sc = small(tasks=50, arrival_rate=0.5, failure_probability=0.0, crash_probability=0.0)
    result = simulate(sc, slow, seed=1)
    publishes = result.ops[result.ops["op"] == "publish"]
    assert np.allclose(publishes["duration_s"], 0.01)
    wait = result.tasks["started_at"] - result.tasks["enqueued_at"]
    assert wait.min() == pytest.approx(0.02)  # publish + claim, with an idle worker


def _redelivery_gaps(result: object) -> np.ndarray:
    """Seconds between a task's first and second delivery reaching a worker."""
    ops = result.ops  # type: ignore[attr-defined]
    gets = ops[ops["op"] == "get"].assign(received=lambda f: f["ts"] + f["duration_s"])
    firsts = gets[gets["delivery_count"] == 1].set_index("task_id")["received"]
    seconds = gets[gets["delivery_count"] == 2].set_index("task_id")["received"]
    return (seconds - firsts.reindex(seconds.index)).to_numpy(dtype=float)


def test_a_sweeping_broker_finds_expired_leases_only_at_its_sweeps() -> None:
    """Crashed deliveries come back one lease later at claim-time reclaim, later on a sweep."""
    sc = small(
        tasks=150,
        arrival_rate=1.0,
        service_time=Constant(0.1),
        failure_probability=0.0,
        crash_probability=0.2,
        visibility_timeout=1.0,
    )
    at_claim = _redelivery_gaps(simulate(sc, "ideal", seed=3))
    swept = simulate(sc, BrokerProfile("sweeper", reclaim_interval=5.0), seed=3)
    gaps = _redelivery_gaps(swept)
    assert swept.summary()["lost"] == 0
    assert len(at_claim) > 5 and len(gaps) > 5
    assert np.median(at_claim) == pytest.approx(1.0)
    assert gaps.min() >= 1.0 - 1e-9
    assert np.median(gaps) > 2.0  # 1 s lease + on average 2.5 s to the next sweep
    gets = swept.ops[(swept.ops["op"] == "get") & (swept.ops["delivery_count"] > 1)]
    offsets = np.mod((gets["ts"] + gets["duration_s"]).to_numpy(dtype=float), 5.0)
    on_grid = np.isclose(offsets, np.median(offsets), atol=1e-6).mean()
    assert on_grid >= 0.8  # idle workers get them at the sweep instant itself


def test_rejects_non_scenarios() -> None:
    with pytest.raises(TypeError):
        simulate({"tasks": 3}, "ideal")  # type: ignore[arg-type]


def test_exponential_service_has_the_right_mean() -> None:
    sc = small(
        tasks=3000,
        arrival_rate=2.0,
        service_time=Exponential(0.5),
        failure_probability=0.0,
        crash_probability=0.0,
        visibility_timeout=30.0,  # with 3 s the few tasks longer than it are retaken forever
    )
    t = simulate(sc, "ideal", seed=9).tasks
    service = (t["finished_at"] - t["started_at"]).mean()
    assert service == pytest.approx(0.5, rel=0.08)  # 3000 draws: se ~ 1.8 %


def test_frames_line_up_with_a_real_run_live() -> None:
    """The same scenario live (memory broker) and simulated: same columns, dtypes, keys, ops."""
    from stemlab import run_live

    sc = Scenario(
        name="tiny",
        arrival_rate=100.0,
        tasks=60,
        service_time=Exponential(0.005),
        workers=3,
        priority_weights={0: 1.0, 5: 1.0},
    )
    live = run_live(sc, "memory://", seed=1, progress=False)
    sim = simulate(sc, "memory", seed=1)
    assert list(live.tasks.columns) == list(sim.tasks.columns)
    assert live.tasks.dtypes.to_dict() == sim.tasks.dtypes.to_dict()
    assert live.ops.dtypes.to_dict() == sim.ops.dtypes.to_dict()
    assert list(live.summary()) == list(sim.summary())
    assert live.summary()["acked"] == sim.summary()["acked"] == 60
    for op in ("publish", "get", "ack", "consume"):
        assert (live.ops["op"] == op).sum() == (sim.ops["op"] == op).sum()
    shared = {"crashes", "failures", "retries", "renewals", "lease_lost", "empty_gets", "timed_out"}
    assert shared <= set(live.meta) & set(sim.meta)
    # the same seed draws the same workload: identical priorities in publish order
    assert list(live.tasks["priority"]) == list(sim.tasks["priority"])
