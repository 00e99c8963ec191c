"""Contract: a receipt settles only what this broker issued it for.

A receipt from another namespace, from another store (a second SQLite file,
another Redis database, another Postgres schema, another memory namespace),
or a forged string raises `LeaseLost` for every settling call and changes
nothing: both brokers' counts stay put and their messages stay settleable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import stemlab
from stemlab import Broker, Delivery, LeaseLost
from tests.conftest import AMQP_URL, POSTGRES_URL, REDIS_URL, require_service
from tests.contract.conftest import ADAPTERS, INSTRUMENTED, delete_redis_namespace, streams_url
from tests.contract.support import counts, delivery_wait, env, take

MakeBroker = Callable[..., Broker]
Settle = Callable[[Broker, Delivery], Any]

SETTLES: dict[str, Settle] = {
    "ack": lambda b, d: b.ack(d),
    "nack": lambda b, d: b.nack(d),
    "nack-dead": lambda b, d: b.nack(d, requeue=False),
    "dead_letter": lambda b, d: b.dead_letter(d, reason="x", meta={"k": 1}),
    "extend_lease": lambda b, d: b.extend_lease(d, 60),
}
CAST_SETTLES = {k: v for k, v in SETTLES.items() if k != "extend_lease"}
OTHER_REDIS_DB = 14
OTHER_PG_SCHEMA = "stemlab_receipts_other"


def _one_leased(broker: Broker, queue: str = "q") -> Delivery:
    broker.publish(env(queue=queue))
    consumer = broker.consume(queue)
    return take(consumer, delivery_wait(broker))


def _one_cast(broker: Broker) -> Delivery:
    consumer = broker.consume(channels="ch")
    broker.broadcast("ch", env())
    return take(consumer, delivery_wait(broker))


@pytest.fixture
def other_store(adapter: str, namespace: str, tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """other_store(**options): a broker of this adapter, same namespace, on another store."""
    base = adapter.removesuffix(INSTRUMENTED)
    opened: list[Broker] = []
    cleanups: list[Callable[[], Any]] = []

    def make(**options: Any) -> Broker:
        if base == "memory":  # a memory store is one namespace of the process
            broker = stemlab.connect("memory://", namespace=namespace + "o", **options)
        elif base == "sqlite":
            other = tmp_path / "other"
            other.mkdir(exist_ok=True)
            broker = ADAPTERS["sqlite"](namespace, other, **options)
        elif base in ("redis", "redis-streams"):
            url = require_service("redis", REDIS_URL).rsplit("/", 1)[0] + f"/{OTHER_REDIS_DB}"
            opened_url = streams_url(url) if base == "redis-streams" else url
            broker = stemlab.connect(opened_url, namespace=namespace, **options)
            cleanups.append(lambda: delete_redis_namespace(url, namespace))
        elif base == "postgres":
            from stemlab.brokers.postgres.maintenance import delete_namespaces

            url = require_service("postgres", POSTGRES_URL)
            broker = stemlab.connect(url, namespace=namespace, schema=OTHER_PG_SCHEMA, **options)
            cleanups.append(
                lambda: delete_namespaces(POSTGRES_URL, [namespace], schema=OTHER_PG_SCHEMA)
            )
        elif base == "amqp" and "127.0.0.1" in AMQP_URL:
            # The same server reached by another name is another store (receipts name the
            # URL as given); the namespace's queues are cleaned up by the conftest fixture.
            url = require_service("amqp", AMQP_URL).replace("127.0.0.1", "localhost")
            broker = stemlab.connect(url, namespace=namespace, **options)
        elif base == "sqs":  # another region of the same endpoint is another store
            from tests.sqs_server import delete_namespace, sqs_url

            url = sqs_url().replace("region=us-east-1", "region=eu-west-1")
            broker = stemlab.connect(url, namespace=namespace, **options)
            cleanups.append(lambda: delete_namespace(url, namespace))
        else:
            pytest.skip(f"no second store known for {adapter}")
        if adapter.endswith(INSTRUMENTED):
            broker = stemlab.instrument(broker)
        opened.append(broker)
        return broker

    yield make
    for broker in opened:
        broker.close()
    for cleanup in cleanups:
        cleanup()


def _assert_refused_and_intact(
    settle: Settle, owner: Broker, mine: Delivery, other: Broker, theirs: Delivery
) -> None:
    """`other` refuses `mine`; nothing changes; both deliveries still settle normally."""
    before = counts(owner), counts(other)
    with pytest.raises(LeaseLost):
        settle(other, mine)
    assert (counts(owner), counts(other)) == before
    other.ack(theirs)
    owner.ack(mine)
    assert counts(owner) == counts(other) == (0, 0, 0, 0)


@pytest.mark.parametrize("op", sorted(SETTLES))
def test_receipt_of_another_namespace_is_refused(make_broker: MakeBroker, op: str) -> None:
    a = make_broker()
    b = make_broker(a.namespace + "b")  # type: ignore[attr-defined]
    da, db = _one_leased(a), _one_leased(b)
    _assert_refused_and_intact(SETTLES[op], a, da, b, db)


@pytest.mark.parametrize("op", sorted(SETTLES))
def test_receipt_of_another_store_is_refused(
    make_broker: MakeBroker, other_store: Callable[..., Broker], op: str
) -> None:
    a = make_broker()
    b = other_store()
    da, db = _one_leased(a), _one_leased(b)
    _assert_refused_and_intact(SETTLES[op], a, da, b, db)


@pytest.mark.parametrize("op", sorted(CAST_SETTLES))
def test_broadcast_receipt_of_another_namespace_is_refused(
    make_broker: MakeBroker, op: str
) -> None:
    a = make_broker()
    if a.capabilities.broadcast_scope is None:
        pytest.skip("no broadcast")
    b = make_broker(a.namespace + "b")  # type: ignore[attr-defined]
    ca, cb = _one_cast(a), _one_cast(b)
    _assert_refused_and_intact(CAST_SETTLES[op], a, ca, b, cb)


@pytest.mark.parametrize("op", sorted(CAST_SETTLES))
def test_broadcast_receipt_of_another_store_is_refused(
    make_broker: MakeBroker, other_store: Callable[..., Broker], op: str
) -> None:
    a = make_broker()
    if a.capabilities.broadcast_scope is None:
        pytest.skip("no broadcast")
    b = other_store()
    ca, cb = _one_cast(a), _one_cast(b)
    _assert_refused_and_intact(CAST_SETTLES[op], a, ca, b, cb)


def _forgeries(receipt: str) -> list[str]:
    return [
        "",
        "x",
        "m:1",
        "q:1:1",
        "q|||",
        "|".join(["q", "0" * 12, "ns", "1"]),
        receipt + "0",
        receipt[:-1],
        receipt + "|1",
        receipt.replace("|", ":"),
        receipt.upper(),
        "\x00" * 8,
        receipt + "9" * 40,
        "a" * 5000,
    ]


@pytest.mark.parametrize("op", sorted(SETTLES))
def test_forged_receipts_are_refused_and_change_nothing(make_broker: MakeBroker, op: str) -> None:
    broker = make_broker()
    delivery = _one_leased(broker)
    before = counts(broker)
    for forged in _forgeries(delivery.receipt):
        if forged == delivery.receipt:
            continue
        with pytest.raises(LeaseLost):
            SETTLES[op](broker, replace(delivery, receipt=forged))
        assert counts(broker) == before, forged
    with pytest.raises(LeaseLost):  # a queue receipt presented as a broadcast one
        SETTLES["ack"](broker, replace(delivery, channel="ch"))
    assert counts(broker) == before
    broker.ack(delivery)
    assert counts(broker) == (0, 0, 0, 0)


@pytest.mark.parametrize("op", sorted(CAST_SETTLES))
def test_forged_broadcast_receipts_are_refused(make_broker: MakeBroker, op: str) -> None:
    broker = make_broker()
    if broker.capabilities.broadcast_scope is None:
        pytest.skip("no broadcast")
    cast = _one_cast(broker)
    for forged in _forgeries(cast.receipt):
        if forged == cast.receipt:
            continue
        with pytest.raises(LeaseLost):
            CAST_SETTLES[op](broker, replace(cast, receipt=forged))
    with pytest.raises(LeaseLost):  # a broadcast receipt presented as a queue one
        broker.ack(replace(cast, channel=None))
    assert counts(broker) == (0, 0, 0, 0)
    broker.ack(cast)


def test_a_receipt_that_is_not_a_string_is_a_type_error(make_broker: MakeBroker) -> None:
    broker = make_broker()
    delivery = _one_leased(broker)
    with pytest.raises(TypeError):
        broker.ack(replace(delivery, receipt=12))  # type: ignore[arg-type]
    broker.ack(delivery)


def test_a_second_client_of_the_same_store_settles_the_receipt(make_broker: MakeBroker) -> None:
    a = make_broker()
    b = make_broker()  # same namespace, same store
    delivery = _one_leased(a)
    b.ack(delivery)
    assert counts(a) == (0, 0, 0, 0)
