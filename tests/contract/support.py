"""Helpers shared by the contract tests: envelopes, bounded waits, count snapshots.

Every wait here is a poll loop bounded by a deadline derived from the adapter's
declared `capabilities` (poll interval, reclaim delay) plus a generous margin,
so the suite is quick on fast adapters and not flaky on a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from stemlab import Broker, Consumer, Delivery, Envelope

MARGIN = 2.0  # seconds of slack for scheduling noise on a shared 2-core machine
QUIET = 0.3  # how long we watch for something that must NOT happen


def env(name: str = "task", **fields: Any) -> Envelope:
    """An envelope on queue "q" unless told otherwise."""
    fields.setdefault("queue", "q")
    return Envelope(name=name, **fields)


def now() -> datetime:
    return datetime.now(UTC)


def in_seconds(seconds: float) -> datetime:
    return now() + timedelta(seconds=seconds)


def poll(broker: Broker) -> float:
    """The adapter's poll interval (0 for push delivery)."""
    return broker.capabilities.poll_interval or 0.0


def redelivery_wait(broker: Broker, lease: float) -> float:
    """Longest a correct adapter may take to redeliver after a `lease`-second lease."""
    caps = broker.capabilities
    return lease + caps.reclaim_delay + (caps.poll_interval or 0.0) + MARGIN


def delivery_wait(broker: Broker) -> float:
    """Longest a correct adapter may take to hand over a message that is ready now."""
    return poll(broker) + MARGIN


def counts(broker: Broker, queue: str = "q") -> tuple[int, int, int, int]:
    """(pending, inflight, delayed, dead letters) of one queue."""
    dead = len(broker.list_dead_letters(queue, limit=10_000).entries)
    return (
        broker.pending_count(queue),
        broker.inflight_count(queue),
        broker.delayed_count(queue),
        dead,
    )


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def take(consumer: Consumer, timeout: float) -> Delivery:
    """The next delivery, failing the test if none arrives within `timeout`."""
    delivery = consumer.get(timeout=timeout)
    assert delivery is not None, f"no delivery within {timeout:.2f}s"
    return delivery


def take_n(broker: Broker, consumer: Consumer, n: int, *, ack: bool = True) -> list[Delivery]:
    """Take `n` deliveries one by one (acking each unless told not to)."""
    out = []
    for _ in range(n):
        delivery = take(consumer, delivery_wait(broker))
        if ack:
            broker.ack(delivery)
        out.append(delivery)
    return out


def nothing(consumer: Consumer, timeout: float = QUIET) -> None:
    """Assert that the consumer receives nothing for `timeout` seconds."""
    delivery = consumer.get(timeout=timeout)
    assert delivery is None, f"unexpected delivery {delivery!r}"


def dead_names(broker: Broker, queue: str = "q") -> list[str]:
    """Envelope names in the DLQ, newest first."""
    return [e.envelope.name for e in broker.list_dead_letters(queue, limit=10_000).entries]
