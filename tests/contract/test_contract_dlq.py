"""Contract: dead letters (list, get, replay, purge) and purge of a queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from stemlab import Broker, LeaseLost
from tests.contract.support import (
    MARGIN,
    counts,
    dead_names,
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
GAP = 0.05  # separates dead_at instants on either side of a `since` cut


def _kill(broker: Broker, names: list[str], queue: str = "q", **fields: object) -> list[str]:
    """Publish and dead-letter `names` in order (oldest first); return their envelope ids."""
    ids = []
    with broker.consume(queue, prefetch=len(names)) as consumer:
        for name in names:
            sent = env(name, queue=queue, **fields)  # type: ignore[arg-type]
            broker.publish(sent)
            d = take(consumer, delivery_wait(broker))
            assert d.envelope.id == sent.id
            broker.dead_letter(d, reason=f"r-{name}")
            ids.append(sent.id)
    return ids


def _cut() -> datetime:
    """An instant strictly between dead letters made before and after it."""
    time.sleep(GAP)
    cut = now()
    time.sleep(GAP)
    return cut


# ------------------------------------------------------------------------ list
def test_list_is_newest_first_and_paginates(broker: Broker) -> None:
    _kill(broker, ["m0", "m1", "m2", "m3", "m4"])
    pages, offset = [], 0
    while True:
        page = broker.list_dead_letters("q", limit=2, offset=offset)
        pages.append([e.envelope.name for e in page.entries])
        if page.next_offset is None:
            break
        assert page.next_offset == offset + 2
        offset = page.next_offset
    assert pages == [["m4", "m3"], ["m2", "m1"], ["m0"]]
    assert broker.list_dead_letters("q", limit=5).next_offset is None
    assert broker.list_dead_letters("q", limit=4).next_offset == 4
    assert broker.list_dead_letters("q", offset=10).entries == []
    assert broker.list_dead_letters("q", offset=10).next_offset is None
    entry = broker.list_dead_letters("q", limit=1).entries[0]
    assert entry.reason == "r-m4" and entry.dead_at.tzinfo is not None


def test_dead_letters_are_kept_per_queue(broker: Broker) -> None:
    _kill(broker, ["a"], queue="q")
    _kill(broker, ["b"], queue="q2")
    assert dead_names(broker, "q") == ["a"]
    assert dead_names(broker, "q2") == ["b"]


def test_get_finds_an_entry_by_envelope_id(broker: Broker) -> None:
    before = now()
    (dead_id,) = _kill(broker, ["x"], attempt=4, meta={"k": "v"})
    after = now()
    entry = broker.get_dead_letter("q", dead_id)
    assert entry is not None
    assert entry.envelope.id == dead_id and entry.envelope.name == "x"
    assert entry.envelope.attempt == 4 and entry.envelope.meta == {"k": "v"}
    assert entry.reason == "r-x"
    assert (
        before - timedelta(milliseconds=50) <= entry.dead_at <= after + timedelta(milliseconds=50)
    )
    assert broker.get_dead_letter("q", "no-such-id") is None
    assert broker.get_dead_letter("q2", dead_id) is None


# ---------------------------------------------------------------------- replay
def test_replay_takes_oldest_first_up_to_limit_with_the_same_attempt(broker: Broker) -> None:
    ids = _kill(broker, ["m0", "m1", "m2", "m3"], attempt=2)
    result = broker.replay_dead_letters("q", limit=2)
    assert result.dry_run is False
    assert result.count == 2
    assert [e.envelope.id for e in result.entries] == ids[:2]
    assert counts(broker) == (2, 0, 0, 2)
    assert dead_names(broker) == ["m3", "m2"]
    with broker.consume("q") as consumer:
        got = take_n(broker, consumer, 2)
    assert [d.envelope.id for d in got] == ids[:2]
    assert all(d.envelope.attempt == 2 and d.envelope.not_before is None for d in got)
    assert all(d.delivery_count == 1 for d in got)


def test_replay_dry_run_changes_nothing(broker: Broker) -> None:
    ids = _kill(broker, ["m0", "m1", "m2"])
    before = counts(broker)
    result = broker.replay_dead_letters("q", limit=2, dry_run=True)
    assert result.dry_run is True
    assert [e.envelope.id for e in result.entries] == ids[:2]
    assert result.count == 2
    assert counts(broker) == before == (0, 0, 0, 3)
    assert dead_names(broker) == ["m2", "m1", "m0"]


def test_replay_since_only_takes_later_dead_letters(broker: Broker) -> None:
    _kill(broker, ["old0", "old1"])
    cut = _cut()
    _kill(broker, ["new0", "new1"])
    result = broker.replay_dead_letters("q", since=cut)
    assert [e.envelope.name for e in result.entries] == ["new0", "new1"]
    assert dead_names(broker) == ["old1", "old0"]
    assert counts(broker)[0] == 2


def test_replay_with_delay_lands_in_delayed(broker: Broker) -> None:
    _kill(broker, ["later"])
    start = now()
    result = broker.replay_dead_letters("q", delay=timedelta(seconds=1.0))
    assert result.count == 1
    assert counts(broker) == (0, 0, 1, 0)
    with broker.consume("q") as consumer:
        nothing(consumer, 0.2)
        d = take(consumer, 1.0 + poll(broker) + MARGIN)
        assert now() >= start + timedelta(seconds=1.0) - timedelta(milliseconds=20)
    assert d.envelope.name == "later"
    assert d.envelope.not_before is not None
    broker.ack(d)


def test_replay_with_float_delay_and_empty_dlq(broker: Broker) -> None:
    empty = broker.replay_dead_letters("q", delay=5.0)
    assert empty.count == 0 and empty.entries == [] and empty.dry_run is False
    _kill(broker, ["a"])
    assert broker.replay_dead_letters("q", delay=5.0).count == 1
    assert counts(broker) == (0, 0, 1, 0)


def test_replay_limit_zero_replays_nothing(broker: Broker) -> None:
    _kill(broker, ["a"])
    assert broker.replay_dead_letters("q", limit=0).count == 0
    assert counts(broker) == (0, 0, 0, 1)


# ------------------------------------------------------------- purge dead letters
def test_purge_dead_letters_with_since_and_limit_takes_oldest_first(broker: Broker) -> None:
    _kill(broker, ["a0", "a1"])
    cut = _cut()
    _kill(broker, ["b0", "b1"])
    assert broker.purge_dead_letters("q", since=cut, limit=1) == 1
    assert dead_names(broker) == ["b1", "a1", "a0"]
    assert broker.purge_dead_letters("q", limit=2) == 2
    assert dead_names(broker) == ["b1"]
    assert broker.purge_dead_letters("q", since=in_seconds(60)) == 0
    assert broker.purge_dead_letters("q") == 1
    assert dead_names(broker) == []
    assert broker.purge_dead_letters("q") == 0


def test_purge_dead_letters_since_without_limit(broker: Broker) -> None:
    _kill(broker, ["a0"])
    cut = _cut()
    _kill(broker, ["b0", "b1"])
    assert broker.purge_dead_letters("q", since=cut) == 2
    assert dead_names(broker) == ["a0"]


# ----------------------------------------------------------------------- purge
def test_purge_removes_ready_delayed_and_leased_but_not_dead(broker: Broker) -> None:
    _kill(broker, ["dead"])
    broker.publish_many([env("r1"), env("r2"), env("leased", priority=9)])
    broker.publish(env("later", not_before=in_seconds(60)))
    broker.publish(env("elsewhere", queue="q2"))
    with broker.consume("q") as consumer:
        leased = take(consumer, delivery_wait(broker))
        assert leased.envelope.name == "leased"
        assert counts(broker) == (2, 1, 1, 1)
        assert broker.purge("q") == 4
        assert counts(broker) == (0, 0, 0, 1)
        nothing(consumer)
    with pytest.raises(LeaseLost):
        broker.ack(leased)
    assert counts(broker) == (0, 0, 0, 1)
    assert counts(broker, "q2") == (1, 0, 0, 0)
    assert broker.purge("q") == 0


def test_purged_delayed_messages_never_come_back(broker: Broker) -> None:
    broker.publish(env("later", not_before=in_seconds(0.3)))
    assert broker.purge("q") == 1
    time.sleep(0.3)
    assert not wait_until(lambda: broker.pending_count("q") > 0, poll(broker) + 0.3)
    with broker.consume("q") as consumer:
        nothing(consumer, poll(broker) + 0.2)
