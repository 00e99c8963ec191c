"""Contract, property-based: random operation sequences with hostile values, every adapter.

Each call gets values drawn from the edges of what it takes: durations (NaN,
infinities, huge, tiny, negative, timedeltas), priorities, limits, offsets and
prefetch (up to 2^70, bools, floats), text (NUL, lone surrogates, emoji, 300
characters), JSON args (non-finite floats, huge ints, nesting around the depth
limit) and instants (naive, year 1 to 9999). The invariant: a call is either
refused with a `StemlabError`/`ValueError`/`TypeError` and nothing changed, or
honoured; afterwards no message is lost (published = acked + purged dead
letters + still stored, counts adding up) and no message was handed out twice
while a lease on it held. Derandomized and bounded, so the run is the same
every time (about 2-4 s per adapter).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stemlab import Broker, Consumer, Delivery, Envelope, StemlabError
from stemlab.core.limits import MAX_COUNT, MAX_DURATION, MIN_LEASE
from tests.contract.support import counts

MakeBroker = Callable[..., Broker]
REFUSED = (StemlabError, ValueError, TypeError)
LEASE_SLACK = 0.25  # seconds between a store's clock and ours, and our own delays


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


odd_text = st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "x\udfffy", "\U0001f600", "\u2028", "\ufeff", "x" * 300, ""]
)
texts = st.one_of(st.text(max_size=12), odd_text)
durations = st.one_of(
    st.sampled_from([0, -0.0, 5e-5, MIN_LEASE, 0.05, 30, MAX_DURATION, MAX_DURATION + 1, 1e12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.timedeltas(),
    st.sampled_from([timedelta.max, timedelta.min, True, None, "5"]),
)
counts_ = st.one_of(
    st.sampled_from([0, 1, 3, MAX_COUNT, MAX_COUNT + 1, 2**63, 2**64, -1, True, 1.0, None]),
    st.integers(-(2**70), 2**70),
)
priorities = st.one_of(st.integers(-3, 12), st.sampled_from([2**64, True, 1.5, "1", None]))
instants = st.one_of(
    st.none(),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),  # naive
    st.sampled_from(
        [
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime(2200, 1, 1, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
            datetime(1, 1, 1, tzinfo=UTC),
        ]
    ),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
args = st.one_of(
    st.dictionaries(texts, json_values, max_size=3),
    st.sampled_from([99, 100, 101, 1500]).map(lambda d: {"deep": _nested(d)}),
)


@st.composite
def envelope_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": draw(st.one_of(st.just("task"), texts)), "args": draw(args)}
    if draw(st.booleans()):
        spec["id"] = draw(texts)
    if draw(st.booleans()):
        spec["visibility_timeout"] = draw(durations)
    if draw(st.booleans()):
        spec["not_before"] = draw(instants)
    if draw(st.booleans()):
        spec["priority"] = draw(priorities)
    if draw(st.booleans()):
        spec["headers"] = draw(st.dictionaries(texts, texts, max_size=2))
    return spec


operations = st.one_of(
    st.tuples(st.just("publish"), envelope_specs(), st.one_of(st.none(), priorities)),
    st.tuples(st.just("publish_many"), st.lists(envelope_specs(), max_size=4)),
    st.tuples(st.just("get")),
    st.tuples(st.just("get")),
    st.tuples(st.just("ack"), st.integers(0, 7)),
    st.tuples(st.just("nack"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("dead_letter"), st.integers(0, 7), st.one_of(st.none(), texts)),
    st.tuples(st.just("extend"), st.integers(0, 7), durations),
    st.tuples(st.just("list"), counts_, counts_),
    st.tuples(st.just("get_dead"), texts),
    st.tuples(st.just("replay"), counts_, durations),
    st.tuples(st.just("purge_dead"), counts_),
    st.tuples(st.just("consume"), counts_, texts),
)


@dataclass
class Model:
    """What the test knows: accepted publishes, acks, purged dead letters, leases held."""

    published: int = 0
    acked: int = 0
    purged_dead: int = 0
    held: list[Delivery] = field(default_factory=list)
    leased: dict[str, Delivery] = field(default_factory=dict)  # message id -> live delivery
    expiry: dict[str, datetime] = field(default_factory=dict)  # message id -> lease expiry


def _envelope(spec: dict[str, Any]) -> Envelope:
    return Envelope(queue="q", **spec)


def _total(broker: Broker) -> tuple[int, int, int, int]:
    return counts(broker)


def _deliver(model: Model, delivery: Delivery) -> None:
    now = datetime.now(UTC)
    mid = delivery.envelope.id
    if mid in model.leased:
        holds = model.expiry[mid] - now > timedelta(seconds=LEASE_SLACK)
        assert not holds, f"{mid!r} handed out twice while its lease held"
    model.leased[mid] = delivery
    assert delivery.lease_expires_at is not None
    model.expiry[mid] = delivery.lease_expires_at
    model.held.append(delivery)


def _settled(model: Model, delivery: Delivery) -> None:
    model.held.remove(delivery)
    if model.leased.get(delivery.envelope.id) is delivery:
        del model.leased[delivery.envelope.id]


def _step(broker: Broker, consumer: list[Consumer], model: Model, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "get":
        delivery = consumer[0].get(timeout=0.02)
        if delivery is not None:
            _deliver(model, delivery)
        return
    if kind in ("ack", "nack", "dead_letter", "extend"):
        if not model.held:
            return
        delivery = model.held[op[1] % len(model.held)]
        try:
            if kind == "ack":
                broker.ack(delivery)
                model.acked += 1
            elif kind == "nack":
                broker.nack(delivery, requeue=op[2])
            elif kind == "dead_letter":
                broker.dead_letter(delivery, reason=op[2], meta={"why": op[2]})
            else:
                expiry = broker.extend_lease(delivery, op[2])
                if model.leased.get(delivery.envelope.id) is delivery:
                    model.expiry[delivery.envelope.id] = expiry
                return
        except REFUSED:
            return
        _settled(model, delivery)
        return
    before = _total(broker)
    try:
        if kind == "publish":
            broker.publish(_envelope(op[1]), priority=op[2])
            model.published += 1
        elif kind == "publish_many":
            batch = [_envelope(spec) for spec in op[1]]
            broker.publish_many(batch)
            model.published += len(batch)
        elif kind == "list":
            broker.list_dead_letters("q", limit=op[1], offset=op[2])
        elif kind == "get_dead":
            broker.get_dead_letter("q", op[1])
        elif kind == "replay":
            broker.replay_dead_letters("q", limit=op[1], delay=op[2])
        elif kind == "purge_dead":
            model.purged_dead += broker.purge_dead_letters("q", limit=op[1])
        elif kind == "consume":
            opened = broker.consume("q", prefetch=op[1], consumer=op[2])
            consumer[0].close()
            consumer[0] = opened
    except REFUSED:
        assert _total(broker) == before, f"{kind} was refused after writing something"


@pytest.mark.slow
def test_hostile_operation_sequences_lose_nothing_and_never_deliver_twice(
    make_broker: MakeBroker,
) -> None:
    broker = make_broker(default_visibility_timeout=5.0)

    @settings(
        max_examples=40,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(operations, min_size=5, max_size=25))
    def run(ops: list[tuple[Any, ...]]) -> None:
        broker.purge("q")
        broker.purge_dead_letters("q")
        model = Model()
        consumer = [broker.consume("q", prefetch=3)]
        try:
            for op in ops:
                _step(broker, consumer, model, op)
        finally:
            consumer[0].close()
        pending, inflight, delayed, dead = _total(broker)
        stored = pending + inflight + delayed + dead
        assert model.acked + model.purged_dead + stored == model.published, (
            f"published {model.published}, acked {model.acked}, purged dead letters "
            f"{model.purged_dead}, stored {stored} {(pending, inflight, delayed, dead)}"
        )
        assert not any(math.isnan(x) for x in (pending, inflight, delayed, dead))

    run()
