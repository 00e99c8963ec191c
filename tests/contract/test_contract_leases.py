"""Contract: leases, redelivery, extend_lease, stale receipts, nack, prefetch.

Leases here are short envelope visibility timeouts (0.3-0.5 s); every wait for
a redelivery is bounded by lease + capabilities.reclaim_delay + poll_interval
+ a margin, and every "must not happen" check watches for a short window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from stemlab import Broker, Delivery, LeaseLost
from tests.contract.support import (
    MARGIN,
    counts,
    delivery_wait,
    env,
    nothing,
    now,
    poll,
    redelivery_wait,
    take,
)

MakeBroker = Callable[..., Broker]
LEASE = 0.4
SLACK = timedelta(milliseconds=50)
QUIET_CAP = 0.3


@pytest.fixture
def broker(make_broker: MakeBroker) -> Broker:
    """A long broker default (30 s): every short lease here must come from the envelope."""
    return make_broker(default_visibility_timeout=30.0)


def _close_to(actual: object, lo: object, hi: object) -> bool:
    return lo - SLACK <= actual <= hi + SLACK  # type: ignore[operator]


def _quiet_window(broker: Broker, lease: float) -> float:
    """Long enough that an expired lease WOULD have been redelivered by now."""
    caps = broker.capabilities
    return lease + caps.reclaim_delay + (caps.poll_interval or 0.0) + 0.5


def _let_expire(broker: Broker, lease: float) -> None:
    """Sleep until a `lease`-second lease has expired and the adapter has noticed."""
    time.sleep(lease + broker.capabilities.reclaim_delay + 0.2)


# ----------------------------------------------------------------- lease length
def test_lease_defaults_to_the_broker_default(make_broker: MakeBroker) -> None:
    broker = make_broker(default_visibility_timeout=5.0)
    broker.publish(env())
    with broker.consume("q") as consumer:
        before = now()
        d = take(consumer, delivery_wait(broker))
        after = now()
    assert d.lease_expires_at is not None
    assert _close_to(
        d.lease_expires_at, before + timedelta(seconds=5), after + timedelta(seconds=5)
    )


def test_envelope_visibility_timeout_shortens_the_lease(broker: Broker) -> None:
    broker.publish(env(visibility_timeout=LEASE))
    with broker.consume("q") as consumer:
        before = now()
        d = take(consumer, delivery_wait(broker))
        after = now()
    lease = timedelta(seconds=LEASE)
    assert _close_to(d.lease_expires_at, before + lease, after + lease)


def test_envelope_visibility_timeout_lengthens_the_lease(make_broker: MakeBroker) -> None:
    broker = make_broker(default_visibility_timeout=0.3)
    broker.publish(env(visibility_timeout=30.0))
    with broker.consume("q") as first, broker.consume("q") as second:
        before = now()
        d = take(first, delivery_wait(broker))
        after = now()
        lease = timedelta(seconds=30)
        assert _close_to(d.lease_expires_at, before + lease, after + lease)
        nothing(second, _quiet_window(broker, 0.3))
    assert counts(broker) == (0, 1, 0, 0)
    broker.ack(d)


# ------------------------------------------------------------------ redelivery
def test_expired_lease_is_redelivered_with_count_plus_one(broker: Broker) -> None:
    sent = env(visibility_timeout=LEASE, attempt=2)
    broker.publish(sent)
    with broker.consume("q") as first, broker.consume("q") as second:
        d1 = take(first, delivery_wait(broker))
        d2 = take(second, redelivery_wait(broker, LEASE))
        arrived = now()
        assert arrived >= d1.lease_expires_at - SLACK
        d3 = take(first, redelivery_wait(broker, LEASE))
    for d, n in ((d1, 1), (d2, 2), (d3, 3)):
        assert d.envelope == sent
        assert d.envelope.attempt == 2
        assert d.delivery_count == n
    assert len({d1.receipt, d2.receipt, d3.receipt}) == 3
    broker.ack(d3)
    assert counts(broker) == (0, 0, 0, 0)


def test_messages_of_a_dead_consumer_come_back(make_broker: MakeBroker) -> None:
    doomed_broker, survivor = make_broker(), make_broker()
    doomed_broker.publish_many(
        [env("a", visibility_timeout=LEASE), env("b", visibility_timeout=LEASE)]
    )
    doomed = doomed_broker.consume("q", prefetch=2)
    taken = {take(doomed, delivery_wait(doomed_broker)).envelope.name for _ in range(2)}
    doomed.close()
    doomed_broker.close()
    assert taken == {"a", "b"}
    with survivor.consume("q", prefetch=2) as consumer:
        again = [take(consumer, redelivery_wait(survivor, LEASE)) for _ in range(2)]
    assert {d.envelope.name for d in again} == {"a", "b"}
    assert all(d.delivery_count == 2 for d in again)
    for d in again:
        survivor.ack(d)
    assert counts(survivor) == (0, 0, 0, 0)


# ---------------------------------------------------------------- extend_lease
def test_extend_lease_postpones_redelivery_and_returns_the_expiry(broker: Broker) -> None:
    broker.publish(env(visibility_timeout=LEASE))
    by = _quiet_window(broker, LEASE) + 3.0
    with broker.consume("q") as first:
        d = take(first, delivery_wait(broker))
        before = now()
        expiry = broker.extend_lease(d, by)
        after = now()
    assert expiry.tzinfo is not None
    assert _close_to(expiry, before + timedelta(seconds=by), after + timedelta(seconds=by))
    with broker.consume("q") as second:
        nothing(second, _quiet_window(broker, LEASE))
    assert counts(broker) == (0, 1, 0, 0)
    broker.ack(d)
    assert counts(broker) == (0, 0, 0, 0)


def test_extended_lease_expires_at_its_new_time(broker: Broker) -> None:
    broker.publish(env(visibility_timeout=0.3))
    with broker.consume("q") as first:
        d1 = take(first, delivery_wait(broker))
        expiry = broker.extend_lease(d1, timedelta(seconds=1.0))
    with broker.consume("q") as second:
        d2 = take(second, redelivery_wait(broker, 1.0))
        assert now() >= expiry - SLACK
    assert d2.delivery_count == 2
    with pytest.raises(LeaseLost):
        broker.ack(d1)
    broker.ack(d2)


def test_extend_after_expiry_but_before_redelivery_releases_it(broker: Broker) -> None:
    broker.publish(env(visibility_timeout=0.3))
    with broker.consume("q") as first:
        d = take(first, delivery_wait(broker))
    _let_expire(broker, 0.3)
    expiry = broker.extend_lease(d, _quiet_window(broker, 0.3) + 3.0)
    assert expiry > now()
    assert counts(broker) == (0, 1, 0, 0)
    with broker.consume("q") as second:
        nothing(second, _quiet_window(broker, 0.3))
    broker.ack(d)
    assert counts(broker) == (0, 0, 0, 0)


# -------------------------------------------------------------- stale receipts
def _redelivered_pair(broker: Broker) -> tuple[Delivery, Delivery]:
    broker.publish(env(visibility_timeout=LEASE))
    with broker.consume("q") as first, broker.consume("q") as second:
        d1 = take(first, delivery_wait(broker))
        d2 = take(second, redelivery_wait(broker, LEASE))
    assert d2.delivery_count == 2
    return d1, d2


@pytest.mark.parametrize(
    "stale_call",
    [
        pytest.param(lambda b, d: b.ack(d), id="ack"),
        pytest.param(lambda b, d: b.nack(d), id="nack-requeue"),
        pytest.param(lambda b, d: b.nack(d, requeue=False), id="nack-no-requeue"),
        pytest.param(lambda b, d: b.dead_letter(d, reason="stale"), id="dead_letter"),
        pytest.param(lambda b, d: b.extend_lease(d, 30), id="extend_lease"),
    ],
)
def test_stale_receipt_raises_lease_lost_and_changes_nothing(
    broker: Broker, stale_call: Callable[[Broker, Delivery], object]
) -> None:
    d1, d2 = _redelivered_pair(broker)
    with pytest.raises(LeaseLost):
        stale_call(broker, d1)
    assert counts(broker) == (0, 1, 0, 0)
    broker.ack(d2)
    assert counts(broker) == (0, 0, 0, 0)


def test_settling_twice_raises_lease_lost(broker: Broker) -> None:
    broker.publish(env())
    with broker.consume("q") as consumer:
        d = take(consumer, delivery_wait(broker))
    broker.ack(d)
    for again in (
        lambda: broker.ack(d),
        lambda: broker.nack(d),
        lambda: broker.nack(d, requeue=False),
        lambda: broker.dead_letter(d),
        lambda: broker.extend_lease(d, 5),
    ):
        with pytest.raises(LeaseLost):
            again()
    assert counts(broker) == (0, 0, 0, 0)


def test_ack_after_expiry_before_redelivery_succeeds(broker: Broker) -> None:
    broker.publish(env(visibility_timeout=0.3))
    with broker.consume("q") as consumer:
        d = take(consumer, delivery_wait(broker))
    _let_expire(broker, 0.3)
    broker.ack(d)
    assert counts(broker) == (0, 0, 0, 0)
    with broker.consume("q") as consumer:
        nothing(consumer, poll(broker) + 0.2)
    with pytest.raises(LeaseLost):
        broker.ack(d)


def test_nack_and_dead_letter_after_expiry_before_redelivery_succeed(broker: Broker) -> None:
    broker.publish_many([env("n", visibility_timeout=0.3), env("x", visibility_timeout=0.3)])
    with broker.consume("q", prefetch=2) as consumer:
        dn = take(consumer, delivery_wait(broker))
        dx = take(consumer, delivery_wait(broker))
    _let_expire(broker, 0.3)
    broker.dead_letter(dx, reason="late")
    broker.nack(dn)
    assert counts(broker) == (1, 0, 0, 1)
    with broker.consume("q") as consumer:
        again = take(consumer, delivery_wait(broker))
    assert again.envelope.name == "n" and again.delivery_count == 2
    assert broker.get_dead_letter("q", dx.envelope.id).reason == "late"
    broker.ack(again)


def test_settling_after_the_consumer_closed_works(broker: Broker) -> None:
    broker.publish_many([env("a"), env("b"), env("c")])
    consumer = broker.consume("q", prefetch=3)
    da, db, dc = (take(consumer, delivery_wait(broker)) for _ in range(3))
    consumer.close()
    assert counts(broker) == (0, 3, 0, 0), "closing a consumer must not release its leases"
    broker.ack(da)
    broker.nack(db)
    broker.dead_letter(dc, reason="closed")
    assert counts(broker) == (1, 0, 0, 1)


# ------------------------------------------------------------------------ nack
def test_nack_requeue_is_ready_at_once_with_count_plus_one(broker: Broker) -> None:
    sent = env(attempt=1)
    broker.publish(sent)
    with broker.consume("q") as consumer:
        d1 = take(consumer, delivery_wait(broker))
        broker.nack(d1, requeue=True)
        assert counts(broker) == (1, 0, 0, 0)
        start = time.monotonic()
        d2 = take(consumer, delivery_wait(broker))
        assert time.monotonic() - start <= poll(broker) + MARGIN
    assert d2.envelope == sent
    assert d2.delivery_count == 2
    assert d2.receipt != d1.receipt
    with pytest.raises(LeaseLost):
        broker.ack(d1)
    broker.ack(d2)


def test_nack_requeue_goes_to_the_tail_of_its_level(broker: Broker) -> None:
    broker.publish_many([env("a", priority=3), env("b", priority=3), env("low", priority=1)])
    with broker.consume("q") as consumer:
        broker.nack(take(consumer, delivery_wait(broker)))
        got = []
        for _ in range(3):
            d = take(consumer, delivery_wait(broker))
            got.append((d.envelope.name, d.delivery_count))
            broker.ack(d)
    assert got == [("b", 1), ("a", 2), ("low", 1)]


def test_nack_without_requeue_dead_letters_with_reason_nack(broker: Broker) -> None:
    sent = env(attempt=3)
    broker.publish(sent)
    with broker.consume("q") as consumer:
        before = now()
        broker.nack(take(consumer, delivery_wait(broker)), requeue=False)
        after = now()
        nothing(consumer)
    assert counts(broker) == (0, 0, 0, 1)
    entry = broker.get_dead_letter("q", sent.id)
    assert entry is not None
    assert entry.reason == "nack"
    assert entry.envelope == sent
    assert _close_to(entry.dead_at, before, after)


def test_dead_letter_keeps_reason_and_meta(broker: Broker) -> None:
    sent, bare = env("with-reason"), env("bare")
    broker.publish_many([sent, bare])
    with broker.consume("q", prefetch=2) as consumer:
        broker.dead_letter(
            take(consumer, delivery_wait(broker)),
            reason="boom",
            meta={"error": "ValueError", "n": 3},
        )
        broker.dead_letter(take(consumer, delivery_wait(broker)))
    entry = broker.get_dead_letter("q", sent.id)
    assert entry is not None and entry.envelope == sent
    assert entry.reason == "boom" and entry.meta == {"error": "ValueError", "n": 3}
    assert entry.dead_at.tzinfo is not None
    other = broker.get_dead_letter("q", bare.id)
    assert other is not None and other.reason is None and other.meta == {}


# -------------------------------------------------------------------- prefetch
def test_prefetch_is_a_hard_cap(broker: Broker) -> None:
    broker.publish_many([env(f"m{i}") for i in range(6)])
    with broker.consume("q", prefetch=3) as consumer:
        held = [take(consumer, delivery_wait(broker)) for _ in range(3)]
        nothing(consumer, poll(broker) + QUIET_CAP)
        assert counts(broker) == (3, 3, 0, 0)
        broker.ack(held[0])
        take(consumer, delivery_wait(broker))
        nothing(consumer, poll(broker) + QUIET_CAP)


def test_prefetch_counts_leases_over_all_queues_of_a_consumer(broker: Broker) -> None:
    broker.publish(env("one"))
    broker.publish(env("two", queue="q2"))
    with broker.consume(["q", "q2"], prefetch=1) as consumer:
        d = take(consumer, delivery_wait(broker))
        nothing(consumer, poll(broker) + QUIET_CAP)
        broker.ack(d)
        take(consumer, delivery_wait(broker))


@pytest.mark.parametrize(
    "settle",
    [
        pytest.param(lambda b, d: b.ack(d), id="ack"),
        pytest.param(lambda b, d: b.nack(d), id="nack"),
        pytest.param(lambda b, d: b.nack(d, requeue=False), id="nack-no-requeue"),
        pytest.param(lambda b, d: b.dead_letter(d, reason="x"), id="dead_letter"),
    ],
)
def test_settling_through_another_broker_object_frees_the_slot(
    make_broker: MakeBroker, settle: Callable[[Broker, Delivery], None]
) -> None:
    broker, other = make_broker(), make_broker()
    broker.publish_many([env("a"), env("b")])
    with broker.consume("q", prefetch=1) as consumer:
        d = take(consumer, delivery_wait(broker))
        nothing(consumer, poll(broker) + QUIET_CAP)
        settle(other, d)
        nxt = take(consumer, delivery_wait(broker))
    assert nxt.envelope.name == "b"


def test_lease_expiry_frees_the_slot(broker: Broker) -> None:
    broker.publish_many([env("a", visibility_timeout=LEASE), env("b", visibility_timeout=LEASE)])
    with broker.consume("q", prefetch=1) as consumer:
        first = take(consumer, delivery_wait(broker))
        second = take(consumer, redelivery_wait(broker, LEASE))
    assert first.envelope.name == "a"
    assert (second.envelope.name, second.delivery_count) == ("b", 1)
