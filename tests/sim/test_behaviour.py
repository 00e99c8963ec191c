"""Worker behaviour in the model: leases, renewal, crashes, retries, prefetch and pickup.

Seeded, so every number below is reproducible; tolerances are stated where a
test is statistical.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stemlab import Scenario, simulate
from stemlab.model.protocol import RETRY_MAX
from stemlab.sim import BrokerProfile, Constant, Exponential, load_profile
from stemlab.sim.workers import GET_TIMEOUT

ZERO = {op: Constant(0.0) for op in ("publish", "claim", "ack", "extend")}


def long_work(renewal: bool) -> Scenario:
    """Light load (rho = 0.15), service Exp(0.6 s) against a 1 s lease: ~19 % outlive it.

    Redeliveries draw a fresh service time here (the p / (1 - p) formula below
    assumes it); with the default "same" a task that outlives its lease once
    outlives it every time (see test_issue12_leases.py).
    """
    return Scenario(
        name="long",
        arrival_rate=1.0,
        tasks=300,
        service_time=Exponential(0.6),
        workers=4,
        visibility_timeout=1.0,
        lease_renewal=renewal,
        redelivery_service="fresh",
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_work_longer_than_its_lease_is_duplicated_and_counted(seed: int) -> None:
    """Without renewal every execution that outlives the lease is run again elsewhere.

    P(S > 1 s) = exp(-1/0.6) = 0.189, and a duplicate can itself outlive the
    lease, so the expected count is 300 * p / (1 - p) = 70; accepted: 35..105.
    """
    result = simulate(long_work(renewal=False), "ideal", seed=seed)
    s = result.summary()
    assert 35 <= s["duplicates"] <= 105
    assert s["redeliveries"] >= s["duplicates"]
    assert result.meta["lease_lost"] >= s["duplicates"]  # each loser's ack raised LeaseLost
    acks = result.ops[result.ops["op"] == "ack"]
    assert (acks["error"] == "LeaseLost").sum() == result.meta["lease_lost"]
    assert s["acked"] == 300
    assert s["lost"] == 0


@pytest.mark.parametrize("broker", ["ideal", "redis", "sqlite"])
def test_with_renewal_there_are_no_duplicates(broker: str) -> None:
    result = simulate(long_work(renewal=True), broker, seed=1)
    s = result.summary()
    assert s["duplicates"] == 0
    assert s["redeliveries"] == 0
    assert result.meta["lease_lost"] == 0
    assert result.meta["renewals"] > 0
    assert (result.ops["op"] == "extend_lease").sum() == result.meta["renewals"]
    assert s["acked"] == 300


def crashing(broker: str = "ideal") -> Scenario:
    return Scenario(
        name="crashy",
        arrival_rate=2.0,
        tasks=500,
        service_time=Exponential(0.3),
        workers=4,
        visibility_timeout=2.0,
        crash_probability=0.1,
    )


@pytest.mark.parametrize("broker", ["ideal", "memory", "postgres", "sqlite"])
def test_crashes_cause_redeliveries_and_lose_nothing(broker: str) -> None:
    result = simulate(crashing(), broker, seed=11)
    s = result.summary()
    crashes = result.meta["crashes"]
    assert 25 <= crashes <= 90  # ~10 % of ~550 executions
    assert s["lost"] == 0
    assert s["acked"] == 500
    assert s["redeliveries"] >= crashes
    # each crash drops the slot's consumer; the slot opens a fresh one at once
    assert (result.ops["op"] == "consume").sum() == 4 + crashes


def test_the_abandoned_delivery_waits_for_its_lease() -> None:
    """On `ideal` a redelivery comes exactly when the previous lease ran out, never before."""
    result = simulate(crashing(), "ideal", seed=11)
    gets = result.ops[result.ops["op"] == "get"].copy()
    gets["received"] = gets["ts"] + gets["duration_s"]
    gaps = gets.sort_values("received").groupby("task_id")["received"].diff().dropna()
    assert len(gaps) > 20
    assert gaps.min() >= 2.0 - 1e-9
    assert np.median(gaps) == pytest.approx(2.0)


def test_failures_are_retried_then_dead_lettered() -> None:
    """p(fail) = 0.5: a task dies after RETRY_MAX + 1 failures, p = 1/16; 400 tasks -> ~25."""
    sc = Scenario(
        name="flaky",
        arrival_rate=4.0,
        tasks=400,
        service_time=Constant(0.05),
        workers=4,
        failure_probability=0.5,
    )
    result = simulate(sc, "redis", seed=5)
    s = result.summary()
    assert 10 <= s["dead"] <= 45
    assert s["acked"] + s["dead"] == 400
    assert s["lost"] == 0
    assert result.meta["dead_letters"] == s["dead"]
    dead = result.tasks[result.tasks["outcome"] == "dead"]
    assert (dead["deliveries"] == RETRY_MAX + 1).all()
    assert result.meta["retries"] == result.meta["failures"] - s["dead"]
    dl = result.ops[result.ops["op"] == "dead_letter"]
    assert set(dl["task_id"]) == set(dead["id"])


def test_retries_wait_for_their_backoff() -> None:
    sc = Scenario(
        name="flaky",
        arrival_rate=0.5,
        tasks=100,
        service_time=Constant(0.01),
        workers=2,
        failure_probability=0.3,
    )
    result = simulate(sc, "ideal", seed=2)
    gets = result.ops[result.ops["op"] == "get"].copy()
    gets["received"] = gets["ts"] + gets["duration_s"]
    first_retry = gets.sort_values("received").groupby("task_id")["received"].diff().dropna()
    assert len(first_retry) > 5
    # work, then RETRY_BACKOFF; not_before is a datetime, so due times are rounded to 1 us
    assert first_retry.min() >= 0.01 + 0.05 - 1e-6


def test_prefetch_holds_deliveries_per_slot() -> None:
    """Under a backlog each slot holds up to `prefetch` deliveries (seen as gets without wait)."""
    sc = Scenario(
        name="prefetch",
        arrival_rate=9.0,
        tasks=1500,
        service_time=Exponential(0.4),
        workers=4,
        prefetch=3,
        visibility_timeout=60.0,
    )
    result = simulate(sc, "ideal", seed=1)
    s = result.summary()
    assert s["acked"] == 1500 and s["duplicates"] == 0
    gets = result.ops[result.ops["op"] == "get"].copy()
    gets["received"] = gets["ts"] + gets["duration_s"]
    started = result.tasks.set_index("id")["started_at"]
    held = (started.reindex(gets["task_id"]).to_numpy() - gets["received"].to_numpy()) > 0
    assert held.mean() > 0.2  # many deliveries wait in a slot's buffer before they start
    one = simulate(dataclasses.replace(sc, prefetch=1), "ideal", seed=1)
    assert one.summary()["wait_p95"] < s["wait_p95"]  # head-of-line blocking costs waiting


def test_prefetched_deliveries_expire_in_the_buffer() -> None:
    sc = Scenario(
        name="prefetch-short-lease",
        arrival_rate=9.0,
        tasks=800,
        service_time=Exponential(0.4),
        workers=4,
        prefetch=4,
        visibility_timeout=1.0,
        redelivery_service="fresh",  # "same" would retake the 8 % longer than 1 s forever
    )
    result = simulate(sc, "ideal", seed=1)
    assert result.meta["expired_skips"] > 0  # expired in the buffer: given up, not started
    assert result.summary()["duplicates"] > 0
    assert result.summary()["lost"] == 0


def light(tasks: int = 400) -> Scenario:
    return Scenario(
        name="light",
        arrival_rate=0.5,
        tasks=tasks,
        service_time=Constant(0.01),
        workers=1,
    )


def test_a_polling_brokers_pickup_wait_shows_its_poll_interval() -> None:
    """Zero latency, 50 ms polls: waits are uniform on [0, 50 ms]; mean 25 ms +- 20 %.

    A blocking broker with the same zero latency picks up at once (median
    wait 0; only the rare arrival during the 10 ms of work waits at all).
    """
    polling = load_profile("sqlite").with_overrides(latency=ZERO, poll_interval=0.05)
    blocking = load_profile("redis").with_overrides(latency=ZERO, meta={})  # no wake-up either
    pw = _waits(simulate(light(), polling, seed=1))
    bw = _waits(simulate(light(), blocking, seed=1))
    assert pw.mean() == pytest.approx(0.025, rel=0.2)
    assert pw.max() <= 0.05 + 1e-9
    assert np.quantile(pw, 0.95) > 0.04
    assert np.median(bw) == 0.0
    assert bw.mean() < 0.001


def test_shipped_profiles_pickup_sqlite_polls_redis_is_woken() -> None:
    """Shipped profiles: SQLite waits ~ poll/2 + publish + claim (about 3.5 ms, +- 30 %).

    Redis is woken at once, so it waits far less: a publish, the calibrated wake-up of
    an idle consumer (p50 62 us, p99 1.5 ms) and a claim."""
    profile = load_profile("sqlite")
    assert profile.poll_interval is not None
    expected = (
        profile.poll_interval / 2 + profile.latency["publish"].mean + profile.latency["claim"].mean
    )
    sqlite = _waits(simulate(light(), "sqlite", seed=2))
    redis = _waits(simulate(light(), "redis", seed=2))
    assert sqlite.mean() == pytest.approx(expected, rel=0.3)
    assert redis.mean() < sqlite.mean() / 3
    assert np.quantile(redis, 0.5) < 0.001  # woken at once: publish + wake-up + claim
    assert np.quantile(redis, 0.95) < 0.0025


def test_a_slots_get_timeout_caps_the_effective_poll_interval() -> None:
    """run_live's idle slots call get(timeout=0.1) again and again, and a polling broker
    asks at the start of every call: a 300 ms poll interval behaves like 100 ms."""
    slow_poll = BrokerProfile("slowpoll", pickup="polling", poll_interval=0.3)
    waits = _waits(simulate(light(), slow_poll, seed=1))
    assert waits.max() <= GET_TIMEOUT + 1e-9
    assert waits.mean() == pytest.approx(GET_TIMEOUT / 2, rel=0.2)


def test_delayed_tasks_start_no_earlier_than_their_delay() -> None:
    sc = dataclasses.replace(light(100), delay=Constant(0.5))
    for broker in ("ideal", "sqlite", "postgres"):
        waits = _waits(simulate(sc, broker, seed=1))
        assert waits.min() >= 0.5 - 1e-6
        assert waits.mean() < 0.5 + 0.01


def _waits(result: object) -> np.ndarray:
    tasks = result.tasks  # type: ignore[attr-defined]
    return (tasks["started_at"] - tasks["enqueued_at"]).to_numpy(dtype=float)
