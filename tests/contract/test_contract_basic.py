"""Contract: publishing, priority and FIFO, delays, counts, routing, consumers, sharing.

Runs over every adapter in `ADAPTERS`; tests read only the public contract and
`broker.capabilities`, never the adapter's name.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

from stemlab import Broker, Delivery
from tests.contract.support import (
    MARGIN,
    counts,
    delivery_wait,
    env,
    in_seconds,
    nothing,
    now,
    poll,
    take,
    take_n,
    wait_until,
)

MakeBroker = Callable[..., Broker]


# ------------------------------------------------------------------ round trip
def test_publish_consume_ack_round_trips_the_envelope(broker: Broker) -> None:
    sent = env(
        args={"n": 1, "nested": {"x": [1, 2.5, None, "s"]}},
        headers={"h": "v"},
        meta={"m": True},
        attempt=2,
        max_retries=5,
    )
    broker.publish(sent)
    assert counts(broker) == (1, 0, 0, 0)
    with broker.consume("q") as consumer:
        before = now()
        d = take(consumer, delivery_wait(broker))
    assert d.envelope == sent
    assert d.queue == "q"
    assert d.channel is None
    assert d.delivery_count == 1
    assert isinstance(d.receipt, str) and d.receipt
    assert d.lease_expires_at is not None and d.lease_expires_at.tzinfo is not None
    assert d.lease_expires_at > before
    assert counts(broker) == (0, 1, 0, 0)
    broker.ack(d)
    assert counts(broker) == (0, 0, 0, 0)


def test_counts_start_at_zero_for_unknown_queues(broker: Broker) -> None:
    assert counts(broker, "never-used") == (0, 0, 0, 0)
    assert broker.purge("never-used") == 0
    assert broker.get_dead_letter("never-used", "nope") is None


def test_counts_follow_each_state(broker: Broker) -> None:
    broker.publish_many([env("a"), env("b"), env("c", not_before=in_seconds(60))])
    assert counts(broker) == (2, 0, 1, 0)
    with broker.consume("q", prefetch=2) as consumer:
        d1 = take(consumer, delivery_wait(broker))
        assert counts(broker) == (1, 1, 1, 0)
        d2 = take(consumer, delivery_wait(broker))
        assert counts(broker) == (0, 2, 1, 0)
        broker.ack(d1)
        assert counts(broker) == (0, 1, 1, 0)
        broker.dead_letter(d2, reason="x")
        assert counts(broker) == (0, 0, 1, 1)
    assert broker.purge("q") == 1
    assert counts(broker) == (0, 0, 0, 1)


# -------------------------------------------------------------------- priority
def test_higher_priority_first_and_fifo_within_a_level(broker: Broker) -> None:
    plan = [("a", 0), ("b", 5), ("c", 9), ("d", 5), ("e", 0), ("f", 9), ("g", 1), ("h", 5)]
    for name, prio in plan:
        broker.publish(env(name, priority=prio))
    with broker.consume("q") as consumer:
        got = [d.envelope.name for d in take_n(broker, consumer, len(plan))]
    assert got == ["c", "f", "b", "d", "h", "g", "a", "e"]


def test_fifo_holds_for_many_messages_of_one_level(broker: Broker) -> None:
    names = [f"m{i:03d}" for i in range(60)]
    broker.publish_many([env(n, priority=3) for n in names])
    with broker.consume("q", prefetch=60) as consumer:
        got = [d.envelope.name for d in take_n(broker, consumer, len(names), ack=False)]
    assert got == names


def test_priority_is_global_across_queues_consumed_together(broker: Broker) -> None:
    broker.publish(env("q-low", priority=1))
    broker.publish(env("q2-top", queue="q2", priority=9))
    broker.publish(env("q-mid", priority=5))
    broker.publish(env("q2-low", queue="q2", priority=0))
    broker.publish(env("q2-mid", queue="q2", priority=3))
    with broker.consume(["q", "q2"]) as consumer:
        got = [(d.queue, d.envelope.name) for d in take_n(broker, consumer, 5)]
    assert got == [
        ("q2", "q2-top"),
        ("q", "q-mid"),
        ("q2", "q2-mid"),
        ("q", "q-low"),
        ("q2", "q2-low"),
    ]


def test_fifo_within_a_level_across_queues_consumed_together(broker: Broker) -> None:
    # Small gaps between publishes so adapters that order by a clock of ms resolution
    # have a defined order; the contract is FIFO by the order messages became ready.
    order = [("q", "1"), ("q2", "2"), ("q2", "3"), ("q", "4"), ("other", "5"), ("q", "6")]
    for queue, name in order:
        broker.publish(env(name, queue=queue, priority=4))
        time.sleep(0.005)
    with broker.consume(["q", "q2", "other"]) as consumer:
        got = [d.envelope.name for d in take_n(broker, consumer, len(order))]
    assert got == [name for _, name in order]


def test_publish_overrides_queue_and_priority(broker: Broker) -> None:
    sent = env("routed", priority=0)
    broker.publish(env("plain", queue="q2", priority=5))
    broker.publish(sent, queue="q2", priority=7)
    assert counts(broker, "q") == (0, 0, 0, 0)
    assert counts(broker, "q2") == (2, 0, 0, 0)
    with broker.consume("q2") as consumer:
        first, second = take_n(broker, consumer, 2)
    assert first.envelope.name == "routed"
    assert first.queue == "q2" and first.envelope.queue == "q2"
    assert first.envelope.priority == 7
    assert first.envelope.id == sent.id
    assert second.envelope.name == "plain"


def test_publish_many_stores_all_and_respects_priority(broker: Broker) -> None:
    batch = [env(f"m{i}", priority=i % 3) for i in range(9)]
    batch.append(env("elsewhere", queue="q2"))
    broker.publish_many(batch)
    broker.publish_many([])
    broker.publish_many(e for e in [env("from-generator")])
    assert counts(broker, "q") == (10, 0, 0, 0)
    assert counts(broker, "q2") == (1, 0, 0, 0)
    with broker.consume("q") as consumer:
        got = [d.envelope.name for d in take_n(broker, consumer, 10)]
    assert got == ["m2", "m5", "m8", "m1", "m4", "m7", "m0", "m3", "m6", "from-generator"]


# ---------------------------------------------------------------------- delays
def test_delayed_message_is_invisible_until_due(broker: Broker) -> None:
    delay = 1.5
    due = in_seconds(delay)
    broker.publish(env("later", not_before=due))
    broker.publish(env("now"))
    assert counts(broker) == (1, 0, 1, 0)
    with broker.consume("q", prefetch=5) as consumer:
        broker.ack(take(consumer, delivery_wait(broker)))
        nothing(consumer, timeout=0.3)
        assert broker.delayed_count("q") == 1 and broker.pending_count("q") == 0
        d = take(consumer, delay + poll(broker) + MARGIN)
        arrived = now()
    assert d.envelope.name == "later"
    assert arrived >= due - timedelta(milliseconds=20)
    assert arrived <= due + timedelta(seconds=poll(broker) + MARGIN)
    assert counts(broker) == (0, 1, 0, 0)


def test_delayed_message_becomes_due_without_a_running_consumer(broker: Broker) -> None:
    due = in_seconds(0.8)
    broker.publish(env("later", not_before=due))
    assert broker.delayed_count("q") == 1
    time.sleep(0.8)
    assert wait_until(
        lambda: (broker.pending_count("q"), broker.delayed_count("q")) == (1, 0),
        poll(broker) + MARGIN,
    ), counts(broker)
    with broker.consume("q") as consumer:
        start = time.monotonic()
        d = take(consumer, delivery_wait(broker))
        assert time.monotonic() - start <= poll(broker) + MARGIN
    assert d.envelope.name == "later"


def test_not_before_in_the_past_is_due_at_once(broker: Broker) -> None:
    broker.publish(env("past", not_before=in_seconds(-60)))
    assert counts(broker) == (1, 0, 0, 0)
    with broker.consume("q") as consumer:
        assert take(consumer, delivery_wait(broker)).envelope.name == "past"


def test_delayed_messages_keep_priority_once_due(broker: Broker) -> None:
    due = in_seconds(0.3)
    broker.publish(env("low", not_before=due, priority=1))
    broker.publish(env("high", not_before=due, priority=8))
    time.sleep(0.3)
    assert wait_until(lambda: broker.pending_count("q") == 2, poll(broker) + MARGIN)
    with broker.consume("q") as consumer:
        got = [d.envelope.name for d in take_n(broker, consumer, 2)]
    assert got == ["high", "low"]


# ------------------------------------------------------------------- consumers
def test_consumer_iterates_and_closes_as_a_context_manager(broker: Broker) -> None:
    broker.publish_many([env(f"m{i}") for i in range(3)])
    seen: list[str] = []
    with broker.consume("q") as consumer:
        for d in consumer:
            seen.append(d.envelope.name)
            broker.ack(d)
            if len(seen) == 3:
                break
    assert seen == ["m0", "m1", "m2"]
    assert consumer.closed
    broker.publish(env("after-close"))
    assert consumer.get(timeout=0.2) is None
    assert list(consumer) == []
    assert counts(broker) == (1, 0, 0, 0)


def test_get_with_timeout_returns_none_when_empty(broker: Broker) -> None:
    with broker.consume("q") as consumer:
        start = time.monotonic()
        assert consumer.get(timeout=0.2) is None
        assert time.monotonic() - start < 0.2 + MARGIN


def test_a_second_broker_object_sees_the_same_messages(make_broker: MakeBroker) -> None:
    producer, worker = make_broker(), make_broker()
    producer.publish(env("shared"))
    assert worker.pending_count("q") == 1
    with worker.consume("q") as consumer:
        d = take(consumer, delivery_wait(worker))
    assert producer.inflight_count("q") == 1
    producer.ack(d)
    assert counts(worker) == (0, 0, 0, 0)


def test_producer_and_worker_threads_each_connect(make_broker: MakeBroker) -> None:
    received: list[Delivery] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            worker = make_broker()
            with worker.consume("q") as consumer:
                for _ in range(5):
                    d = take(consumer, delivery_wait(worker) + MARGIN)
                    worker.ack(d)
                    received.append(d)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    producer = make_broker()
    for i in range(5):
        producer.publish(env(f"m{i}"))
    thread.join(timeout=30)
    assert not thread.is_alive() and not errors, errors
    assert [d.envelope.name for d in received] == [f"m{i}" for i in range(5)]
    assert counts(producer) == (0, 0, 0, 0)


def test_threads_publish_and_consume_concurrently(make_broker: MakeBroker) -> None:
    producers, consumers, per_producer = 3, 3, 30
    total = producers * per_producer
    shared = make_broker(default_visibility_timeout=30.0)
    got: list[Delivery] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    done = threading.Event()

    def produce(p: int) -> None:
        try:
            target = shared if p % 2 else make_broker(default_visibility_timeout=30.0)
            for i in range(per_producer):
                target.publish(env(f"p{p}-{i}", priority=i % 3))
        except BaseException as exc:
            errors.append(exc)

    def consume(c: int) -> None:
        try:
            own = shared if c % 2 else make_broker(default_visibility_timeout=30.0)
            with own.consume("q", prefetch=2) as consumer:
                while not done.is_set():
                    d = consumer.get(timeout=0.1)
                    if d is None:
                        continue
                    own.ack(d)
                    with lock:
                        got.append(d)
                        if len(got) >= total:
                            done.set()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    threads += [threading.Thread(target=consume, args=(c,)) for c in range(consumers)]
    for t in threads:
        t.start()
    done.wait(timeout=40)
    done.set()
    for t in threads:
        t.join(timeout=10)
    assert not errors, errors
    names = [d.envelope.name for d in got]
    assert len(names) == total, f"{len(names)} of {total} delivered"
    assert len(set(names)) == total, "a message was delivered twice"
    assert all(d.delivery_count == 1 for d in got)
    assert counts(shared) == (0, 0, 0, 0)


# ------------------------------------------------------------------ namespaces
def test_namespaces_isolate_queues_counts_and_dead_letters(
    make_broker: MakeBroker, namespace: str
) -> None:
    a = make_broker()
    b = make_broker(namespace + "-other")
    a.publish(env("a-dead", priority=9))
    a.publish(env("a-ready"))
    a.publish(env("a-later", not_before=in_seconds(60)))
    with a.consume("q") as ca:
        dying = take(ca, delivery_wait(a))
        assert dying.envelope.name == "a-dead"
        a.dead_letter(dying, reason="x")
    assert counts(a) == (1, 0, 1, 1)
    assert counts(b) == (0, 0, 0, 0)
    with b.consume("q") as cb:
        nothing(cb)
    assert b.purge("q") == 0
    assert b.purge_dead_letters("q") == 0
    assert b.replay_dead_letters("q").count == 0
    assert counts(a) == (1, 0, 1, 1)
    b.publish(env("b-only"))
    with a.consume("q") as ca:
        assert take(ca, delivery_wait(a)).envelope.name == "a-ready"
        nothing(ca)
    assert counts(b) == (1, 0, 0, 0)
