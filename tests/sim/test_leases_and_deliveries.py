"""Issue #12, part A: runs that always end, the lease boundary, prefetch with renewal,
the service time of a redelivery and when an extension takes effect.

Seeded; each test failed before the change it pins (except the last, which
pins the documented timing of an extension).
"""

from __future__ import annotations

import time

from stemlab import Scenario, simulate
from stemlab.sim import Constant, Exponential, LogNormal, load_profile


def test_work_that_always_outlives_its_lease_ends_at_the_default_deadline() -> None:
    """Every execution (2 s) outlives its 1 s lease and idle workers retake it: no end
    but the deadline. Before: `simulate` had no default deadline and ran forever."""
    sc = Scenario(
        arrival_rate=2, tasks=1, service_time=Constant(2.0), workers=8, visibility_timeout=1.0
    )
    wall = time.perf_counter()
    result = simulate(sc, "ideal", seed=0)
    assert time.perf_counter() - wall < 5.0
    assert result.timed_out and result.meta["timed_out"]
    assert result.duration_s == result.meta["deadline_s"] < 60.0
    assert result.summary()["lost"] == 1


def test_max_deliveries_dead_letters_the_next_delivery() -> None:
    """max_deliveries=3: three executions, the fourth delivery is dead-lettered unexecuted."""
    sc = Scenario(
        arrival_rate=2,
        tasks=1,
        service_time=Constant(2.0),
        workers=8,
        visibility_timeout=1.0,
        max_deliveries=3,
    )
    result = simulate(sc, "ideal", seed=0)
    assert not result.timed_out
    row = result.tasks.iloc[0]
    assert (row["outcome"], row["deliveries"]) == ("dead", 4)
    assert result.duplicates == 2
    assert result.meta["max_deliveries"] == 1 and result.meta["dead_letters"] == 1
    dead = result.ops[result.ops["op"] == "dead_letter"]
    assert dead["delivery_count"].tolist() == [4] and dead["ok"].all()
    assert Scenario.from_json(sc.to_json()) == sc


def test_an_ack_at_exactly_the_expiry_instant_loses_to_an_idle_worker() -> None:
    """A lease ends AT its expiry instant (docs/contract.md): service == lease means
    every execution is retaken by an idle worker (at this light load there
    always is one), every time, so with max_deliveries=2 each task runs twice
    and is dead-lettered. Before: the ack and the expiry timer raced at the
    same simulated instant and which one won depended on event order."""
    sc = Scenario(
        arrival_rate=0.5,
        tasks=200,
        service_time=Constant(1.0),
        workers=8,
        visibility_timeout=1.0,
        max_deliveries=2,
    )
    for seed in (0, 1):
        s = simulate(sc, "ideal", seed=seed).summary()
        assert (s["dead"], s["duplicates"], s["acked"]) == (200, 200, 0)


def test_an_ack_at_the_expiry_instant_wins_when_nobody_took_the_message() -> None:
    """With no idle worker the expired message is untaken, and a late ack still succeeds."""
    sc = Scenario(
        arrival_rate=0.5, tasks=5, service_time=Constant(1.0), workers=1, visibility_timeout=1.0
    )
    s = simulate(sc, "ideal", seed=0).summary()
    assert (s["acked"], s["duplicates"], s["redeliveries"]) == (5, 0, 0)


def test_prefetch_with_renewal_neither_duplicates_nor_tips_into_overload() -> None:
    """M/M/4 at load 0.85, prefetch 8, 6 s leases renewed: buffered leases are renewed
    too (and an expired one is never started), so no task runs twice and the
    system keeps up. Before: buffered leases expired, were run twice, and the
    extra work tipped the system into a self-sustaining overload."""
    sc = Scenario(
        name="mm4-prefetch",
        arrival_rate=3.4,
        tasks=3_000,
        service_time=Exponential(1.0),
        workers=4,
        prefetch=8,
        visibility_timeout=6.0,
        lease_renewal=True,
    )
    result = simulate(sc, "ideal", seed=3, record_ops=False)
    s = result.summary()
    assert s["duplicates"] == 0
    assert s["acked"] == 3_000
    assert result.meta["lease_lost"] == 0
    assert abs(s["throughput"] - 3.4) / 3.4 < 0.1


def test_without_renewal_an_expired_buffered_delivery_is_not_started() -> None:
    """Prefetch 8 and 3 s unrenewed leases at load 0.85: buffered deliveries expire;
    the slot gives them up unexecuted (counted), so duplicates come only from
    executions that outlive their own lease."""
    sc = Scenario(
        arrival_rate=3.4,
        tasks=1_000,
        service_time=Exponential(1.0),
        workers=4,
        prefetch=8,
        visibility_timeout=3.0,
        max_deliveries=20,
    )
    result = simulate(sc, "ideal", seed=1, record_ops=False)
    assert result.meta["expired_skips"] > 0
    t = result.tasks
    # a task executed more than once had an execution that outlived its lease: P(S > 3) = 5 %
    assert result.duplicates < 0.15 * len(t)


def test_a_redelivery_takes_the_same_service_time_by_default() -> None:
    """Leases of 1 s, no renewal, plenty of idle workers, max_deliveries=5: with "same"
    a task longer than its lease is retaken every time and ends dead; with "fresh"
    it needs five long draws in a row (P ~ 0.2**5), so almost none die."""
    base = dict(
        arrival_rate=1.0,
        tasks=200,
        service_time=LogNormal(0.6, 1.0),
        workers=20,
        visibility_timeout=1.0,
        max_deliveries=5,
    )
    same = simulate(Scenario(**base), "ideal", seed=2).summary()  # type: ignore[arg-type]
    fresh = simulate(
        Scenario(**base, redelivery_service="fresh"),  # type: ignore[arg-type]
        "ideal",
        seed=2,
    ).summary()
    assert same["dead"] > 20
    assert fresh["dead"] <= 2
    assert same["acked"] + same["dead"] == fresh["acked"] + fresh["dead"] == 200


def test_an_extension_takes_effect_when_the_heartbeat_sends_it() -> None:
    """docs/simulator.md: an extend takes effect at the call's start (the heartbeat runs
    beside the work). With a 0.9 s extend latency and a 1 s lease the first
    heartbeat (at 1/3 s) would land after the lease ended if it took effect at
    completion, and an idle worker would retake the task."""
    profile = load_profile("ideal").with_overrides(latency={"extend": Constant(0.9)})
    sc = Scenario(
        arrival_rate=0.5,
        tasks=20,
        service_time=Constant(2.0),
        workers=4,
        visibility_timeout=1.0,
        lease_renewal=True,
    )
    result = simulate(sc, profile, seed=0)
    assert result.summary()["duplicates"] == 0 and result.meta["lease_lost"] == 0
    ext = result.ops[result.ops["op"] == "extend_lease"]
    assert (ext["duration_s"] == 0.9).all()


def test_the_fresh_choice_keeps_the_old_draws() -> None:
    """Without redeliveries "same" and "fresh" give identical frames (same draws)."""
    sc = Scenario(arrival_rate=5.0, tasks=300, service_time=Exponential(0.5), workers=4)
    a = simulate(sc, "ideal", seed=4, record_ops=False)
    b = simulate(
        Scenario(**{**sc.__dict__, "redelivery_service": "fresh"}),
        "ideal",
        seed=4,
        record_ops=False,
    )
    assert a.tasks.equals(b.tasks)
