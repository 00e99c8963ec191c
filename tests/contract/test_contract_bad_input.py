"""Contract: bad input raises the documented error before anything is written.

Each bad call runs against a broker holding one ready, one delayed, one leased
message and one dead letter; afterwards every count must be unchanged and the
lease still settleable. Undecodable bytes found in a queue are dead-lettered
with reason "undecodable" (only for adapters with an injector in INJECTORS).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from stemlab import Broker, Delivery, EnvelopeError, StemlabError
from tests.contract.conftest import ADAPTERS, INJECTORS
from tests.contract.support import counts, delivery_wait, env, in_seconds, nothing, take

MakeBroker = Callable[..., Broker]
Call = Callable[[Broker, Delivery], object]
NAIVE = datetime(2030, 1, 1, 12, 0, 0)


@dataclass
class Loaded:
    broker: Broker
    leased: Delivery


@pytest.fixture
def loaded(broker: Broker) -> Loaded:
    """A broker with q = (1 pending, 1 inflight, 1 delayed, 1 dead) and q2 = 1 pending."""
    broker.publish_many([env("dies", priority=9), env("leased", priority=8), env("ready")])
    broker.publish(env("later", not_before=in_seconds(600)))
    broker.publish(env("other", queue="q2"))
    with broker.consume("q", prefetch=2) as consumer:
        broker.dead_letter(take(consumer, delivery_wait(broker)), reason="setup")
        leased = take(consumer, delivery_wait(broker))
    assert leased.envelope.name == "leased"
    assert counts(broker) == (1, 1, 1, 1)
    return Loaded(broker, leased)


def _case(name: str, error: type[BaseException], call: Call) -> object:
    return pytest.param(error, call, id=name)


BAD_CALLS = [
    # priority
    _case("priority-10", ValueError, lambda b, d: b.publish(env(), priority=10)),
    _case("priority-negative", ValueError, lambda b, d: b.publish(env(), priority=-1)),
    _case("priority-str", ValueError, lambda b, d: b.publish(env(), priority="5")),
    _case("priority-bool", ValueError, lambda b, d: b.publish(env(), priority=True)),
    _case("priority-float", ValueError, lambda b, d: b.publish(env(), priority=5.0)),
    _case("envelope-priority", EnvelopeError, lambda b, d: b.publish(env(priority=10))),
    # instants
    _case("naive-not_before", EnvelopeError, lambda b, d: b.publish(env(not_before=NAIVE))),
    _case("naive-replay-since", ValueError, lambda b, d: b.replay_dead_letters("q", since=NAIVE)),
    _case("str-replay-since", TypeError, lambda b, d: b.replay_dead_letters("q", since="today")),
    _case("naive-purge-dl-since", ValueError, lambda b, d: b.purge_dead_letters("q", since=NAIVE)),
    # queue and channel names
    _case("queue-empty", ValueError, lambda b, d: b.publish(env(), queue="")),
    _case("queue-space", ValueError, lambda b, d: b.publish(env(), queue="has space")),
    _case("queue-slash", ValueError, lambda b, d: b.publish(env(), queue="a/b")),
    _case("queue-too-long", ValueError, lambda b, d: b.publish(env(), queue="x" * 201)),
    _case("queue-int", ValueError, lambda b, d: b.publish(env(), queue=5)),
    _case("envelope-queue", EnvelopeError, lambda b, d: b.publish(env(queue="bad queue"))),
    _case("consume-empty-name", ValueError, lambda b, d: b.consume("")),
    _case("consume-bad-in-list", ValueError, lambda b, d: b.consume(["q", "bad/q"])),
    _case("consume-nothing", ValueError, lambda b, d: b.consume([])),
    _case("consume-bad-channel", ValueError, lambda b, d: b.consume("q", channels="no way")),
    _case("consume-empty-consumer", ValueError, lambda b, d: b.consume("q", consumer="")),
    _case("broadcast-bad-channel", ValueError, lambda b, d: b.broadcast("bad channel", env())),
    _case("pending-bad-queue", ValueError, lambda b, d: b.pending_count("")),
    _case("inflight-bad-queue", ValueError, lambda b, d: b.inflight_count("a b")),
    _case("delayed-bad-queue", ValueError, lambda b, d: b.delayed_count(None)),
    _case("purge-bad-queue", ValueError, lambda b, d: b.purge("")),
    _case("list-dl-bad-queue", ValueError, lambda b, d: b.list_dead_letters("?")),
    _case("replay-bad-queue", ValueError, lambda b, d: b.replay_dead_letters("")),
    # payloads
    _case("args-object", EnvelopeError, lambda b, d: b.publish(env(args={"o": object()}))),
    _case("args-nan", EnvelopeError, lambda b, d: b.publish(env(args={"x": float("nan")}))),
    _case("args-list", EnvelopeError, lambda b, d: b.publish(env(args=[1, 2]))),
    _case("meta-set", EnvelopeError, lambda b, d: b.publish(env(meta={"s": {1}}))),
    _case("headers-int", EnvelopeError, lambda b, d: b.publish(env(headers={"h": 1}))),
    _case(
        "dead-letter-meta",
        EnvelopeError,
        lambda b, d: b.dead_letter(d, reason="x", meta={"o": object()}),
    ),
    _case("dead-letter-reason", TypeError, lambda b, d: b.dead_letter(d, reason=5)),
    # prefetch
    _case("prefetch-0", ValueError, lambda b, d: b.consume("q", prefetch=0)),
    _case("prefetch-negative", ValueError, lambda b, d: b.consume("q", prefetch=-1)),
    _case("prefetch-float", ValueError, lambda b, d: b.consume("q", prefetch=1.5)),
    _case("prefetch-bool", ValueError, lambda b, d: b.consume("q", prefetch=True)),
    _case("prefetch-str", ValueError, lambda b, d: b.consume("q", prefetch="2")),
    # extend_lease
    _case("extend-zero", ValueError, lambda b, d: b.extend_lease(d, 0)),
    _case("extend-negative", ValueError, lambda b, d: b.extend_lease(d, -1.0)),
    _case("extend-negative-td", ValueError, lambda b, d: b.extend_lease(d, timedelta(seconds=-1))),
    _case("extend-str", TypeError, lambda b, d: b.extend_lease(d, "5")),
    _case("extend-none", TypeError, lambda b, d: b.extend_lease(d, None)),
    _case("extend-bool", TypeError, lambda b, d: b.extend_lease(d, True)),
    # wrong types
    _case("publish-str", TypeError, lambda b, d: b.publish("not an envelope")),
    _case("publish-dict", TypeError, lambda b, d: b.publish({"name": "x"})),
    _case("publish-many-mixed", TypeError, lambda b, d: b.publish_many([env("ok"), "bad"])),
    _case("broadcast-str", TypeError, lambda b, d: b.broadcast("ch", "x")),
    _case("ack-str", TypeError, lambda b, d: b.ack(d.receipt)),
    _case("ack-none", TypeError, lambda b, d: b.ack(None)),
    _case("nack-envelope", TypeError, lambda b, d: b.nack(d.envelope)),
    _case("dead-letter-str", TypeError, lambda b, d: b.dead_letter("x")),
    _case("extend-envelope", TypeError, lambda b, d: b.extend_lease(d.envelope, 5)),
    _case("get-dl-int-id", TypeError, lambda b, d: b.get_dead_letter("q", 123)),
    _case("list-dl-limit", ValueError, lambda b, d: b.list_dead_letters("q", limit=-1)),
    _case("list-dl-offset", ValueError, lambda b, d: b.list_dead_letters("q", offset=-1)),
    _case("list-dl-limit-str", ValueError, lambda b, d: b.list_dead_letters("q", limit="5")),
    _case("replay-limit", ValueError, lambda b, d: b.replay_dead_letters("q", limit=-1)),
    _case("replay-delay-negative", ValueError, lambda b, d: b.replay_dead_letters("q", delay=-1)),
    _case("replay-delay-str", TypeError, lambda b, d: b.replay_dead_letters("q", delay="1s")),
    _case("purge-dl-limit", ValueError, lambda b, d: b.purge_dead_letters("q", limit=-1)),
    _case("purge-dl-limit-float", ValueError, lambda b, d: b.purge_dead_letters("q", limit=1.5)),
]


@pytest.mark.parametrize(("error", "call"), BAD_CALLS)
def test_bad_input_raises_before_anything_is_written(
    loaded: Loaded, error: type[BaseException], call: Call
) -> None:
    broker, leased = loaded.broker, loaded.leased
    before = (counts(broker, "q"), counts(broker, "q2"), broker.delayed_count("q"))
    with pytest.raises(error):
        call(broker, leased)
    assert (counts(broker, "q"), counts(broker, "q2"), broker.delayed_count("q")) == before
    assert broker.get_dead_letter("q", leased.envelope.id) is None
    broker.ack(leased)
    assert counts(broker) == (1, 0, 1, 1)


def test_a_closed_broker_refuses_calls(make_broker: MakeBroker) -> None:
    broker = make_broker()
    broker.close()
    broker.close()  # idempotent
    assert broker.closed
    with pytest.raises(StemlabError):
        broker.publish(env())
    with pytest.raises(StemlabError):
        broker.consume("q")
    with pytest.raises(StemlabError):
        broker.pending_count("q")


# ---------------------------------------------------------------- undecodable
GARBAGE = [b"\xff\xfe\x00 not json", b'{"name": 5, "queue": "q"}', b"[1, 2, 3]"]


@pytest.mark.parametrize("adapter", sorted(set(INJECTORS) & set(ADAPTERS)))
def test_undecodable_message_is_dead_lettered_and_consumption_goes_on(
    adapter: str, make_broker: MakeBroker
) -> None:
    broker = make_broker(default_visibility_timeout=5.0)
    inject = INJECTORS[adapter]
    broker.publish(env("good-1"))
    for raw in GARBAGE:
        inject(broker, "q", raw)
    broker.publish(env("good-2"))
    got = []
    with broker.consume("q") as consumer:
        for _ in range(2):
            d = take(consumer, delivery_wait(broker) + 1.0)
            broker.ack(d)
            got.append(d.envelope.name)
        nothing(consumer)
    assert got == ["good-1", "good-2"]
    page = broker.list_dead_letters("q")
    assert len(page.entries) == len(GARBAGE)
    assert all(e.reason == "undecodable" for e in page.entries)
    assert all(e.envelope.queue == "q" for e in page.entries)
    assert counts(broker) == (0, 0, 0, len(GARBAGE))
