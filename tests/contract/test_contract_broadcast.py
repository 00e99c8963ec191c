"""Contract: broadcast reaches every current subscriber once, without a lease.

Skipped (with the reason) only for adapters whose `capabilities.broadcast_scope`
is None. Subscribers here live in this process, which every scope covers.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stemlab import Broker, Consumer, Delivery, LeaseLost
from tests.contract.support import counts, delivery_wait, env, nothing, poll, take

MakeBroker = Callable[..., Broker]


@pytest.fixture(autouse=True)
def _needs_broadcast(make_broker: MakeBroker) -> None:
    probe = make_broker()
    if probe.capabilities.broadcast_scope is None:
        pytest.skip("adapter declares broadcast_scope=None (no broadcast)")


def _quiet(broker: Broker) -> float:
    return poll(broker) + 0.3


def _check(d: Delivery, channel: str, sent: object) -> None:
    assert d.channel == channel
    assert d.envelope == sent
    assert d.queue == d.envelope.queue
    assert d.lease_expires_at is None
    assert d.delivery_count == 1


def test_every_current_subscriber_gets_it_once(make_broker: MakeBroker) -> None:
    a, b = make_broker(), make_broker()
    sent = env("hello", queue="q2")
    with (
        a.consume(channels="ch") as s1,
        a.consume(channels=["ch", "other"]) as s2,
        b.consume(channels="ch") as s3,
        a.consume("q2") as queue_only,
    ):
        a.broadcast("ch", sent)
        got = [take(s, delivery_wait(a)) for s in (s1, s2, s3)]
        for d in got:
            _check(d, "ch", sent)
        assert len({d.receipt for d in got}) == 3
        for s in (s1, s2, s3, queue_only):
            nothing(s, _quiet(a))
        assert counts(a, "q2") == (0, 0, 0, 0)
        for d in got:
            a.ack(d)


def test_late_subscribers_do_not_see_it(broker: Broker) -> None:
    with broker.consume(channels="ch") as early:
        broker.broadcast("ch", env("before"))
        with broker.consume(channels="ch") as late:
            assert take(early, delivery_wait(broker)).envelope.name == "before"
            nothing(late, _quiet(broker))


def test_no_subscriber_means_nobody_gets_it(broker: Broker) -> None:
    broker.broadcast("ch", env("lost-on-purpose"))
    assert counts(broker) == (0, 0, 0, 0)
    with broker.consume(channels="ch") as consumer:
        nothing(consumer, _quiet(broker))


def test_unacked_broadcast_is_not_redelivered(broker: Broker) -> None:
    with broker.consume(channels="ch") as consumer:
        broker.broadcast("ch", env("once"))
        d = take(consumer, delivery_wait(broker))
        caps = broker.capabilities
        nothing(consumer, 0.5 + caps.reclaim_delay + poll(broker))
    broker.ack(d)


def test_settling_releases_it_and_a_second_settle_is_stale(broker: Broker) -> None:
    with broker.consume(channels="ch") as one, broker.consume(channels="ch") as two:
        broker.broadcast("ch", env("x"))
        d1, d2 = take(one, delivery_wait(broker)), take(two, delivery_wait(broker))
    broker.ack(d1)
    broker.nack(d2)
    for stale in (d1, d2):
        with pytest.raises(LeaseLost):
            broker.ack(stale)
        with pytest.raises(LeaseLost):
            broker.nack(stale)
    assert counts(broker) == (0, 0, 0, 0)


def test_extend_lease_on_a_broadcast_is_refused(broker: Broker) -> None:
    with broker.consume(channels="ch") as consumer:
        broker.broadcast("ch", env("x"))
        d = take(consumer, delivery_wait(broker))
    with pytest.raises(ValueError):
        broker.extend_lease(d, 5)
    broker.ack(d)


def test_dead_lettering_a_broadcast_keeps_a_copy_in_its_queue_dlq(broker: Broker) -> None:
    sent = env("poison", queue="q2")
    with broker.consume(channels="ch") as one, broker.consume(channels="ch") as two:
        broker.broadcast("ch", sent)
        d1, d2 = take(one, delivery_wait(broker)), take(two, delivery_wait(broker))
    broker.dead_letter(d1, reason="bad", meta={"k": 1})
    broker.ack(d2)
    entry = broker.get_dead_letter("q2", sent.id)
    assert entry is not None and entry.envelope == sent
    assert (entry.reason, entry.meta) == ("bad", {"k": 1})
    assert counts(broker, "q2") == (0, 0, 0, 1)
    with pytest.raises(LeaseLost):
        broker.dead_letter(d1)


def test_broadcast_does_not_count_against_prefetch(broker: Broker) -> None:
    broker.publish_many([env("job1"), env("job2")])
    with broker.consume("q", channels="ch", prefetch=1) as consumer:
        job = take(consumer, delivery_wait(broker))
        assert job.channel is None
        broker.broadcast("ch", env("note"))
        note = take(consumer, delivery_wait(broker))
        assert note.channel == "ch" and note.envelope.name == "note"
        nothing(consumer, _quiet(broker))
        broker.ack(job)
        assert take(consumer, delivery_wait(broker)).envelope.name == "job2"


def test_closed_subscribers_stop_receiving(broker: Broker) -> None:
    gone: Consumer = broker.consume(channels="ch")
    with broker.consume(channels="ch") as stays:
        gone.close()
        broker.broadcast("ch", env("after-close"))
        assert take(stays, delivery_wait(broker)).envelope.name == "after-close"
    assert gone.get(timeout=0.1) is None


def test_broadcast_stays_inside_its_namespace(make_broker: MakeBroker, namespace: str) -> None:
    a, b = make_broker(), make_broker(namespace + "-other")
    with a.consume(channels="ch") as mine, b.consume(channels="ch") as theirs:
        a.broadcast("ch", env("private"))
        assert take(mine, delivery_wait(a)).envelope.name == "private"
        nothing(theirs, _quiet(b))
