"""RabbitMQ adapter: what the shared contract suite cannot see.

URL and option checks before connecting, one `BrokerUnavailable` line for a server
that is not there, the server-side objects of a namespace (prefixed names, and lease
slots reused by the next lease), delays that fall due with no
consumer running, and a consumer whose connection the server closes mid-drain
(`rabbitmqctl close_connection` on that connection only, found by the client-provided
name we set): nothing is lost. Every test uses its own namespace; the conftest fixture
deletes what it declared.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import stemlab
from stemlab import Broker, LeaseLost
from stemlab.errors import BrokerUnavailable, ConfigError
from tests.conftest import AMQP_URL, require_service
from tests.contract.conftest import _AMQP_NAMESPACES
from tests.contract.support import counts, env, in_seconds, take, wait_until

pytest.importorskip("pika")

MakeAmqp = Callable[..., Broker]


@pytest.fixture
def ns() -> str:
    return "amt" + uuid.uuid4().hex[:10]


@pytest.fixture
def ab(ns: str) -> Iterator[MakeAmqp]:
    """ab(**options): a broker on this test's namespace (cleaned up by the conftest)."""
    url = require_service("amqp", AMQP_URL)
    opened: list[Broker] = []

    def make(**options: Any) -> Broker:
        options.setdefault("namespace", ns)
        _AMQP_NAMESPACES.add(options["namespace"])
        broker = stemlab.connect(url, **options)
        opened.append(broker)
        return broker

    yield make
    for broker in opened:
        broker.close()


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", {"nosuch": 1}),
        ("amqp://guest:guest@127.0.0.1:5672/?nosuch=1", {}),
        ("amqp://guest:guest@127.0.0.1:notaport/", {}),
        ("amqp://127.0.0.1/", {"poll_interval": 0}),
        ("amqp://127.0.0.1/", {"namespace": "has space"}),
        ("amqp://127.0.0.1/#frag", {}),
    ],
)
def test_bad_urls_and_options_are_one_config_error(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        stemlab.connect(url, **options)
    assert "\n" not in str(info.value)


def test_an_unreachable_server_is_one_broker_unavailable_line() -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as info:
        stemlab.connect("amqp://guest:guest@127.0.0.1:1/", connect_timeout=0.5)
    assert time.monotonic() - started < 5.0
    assert "\n" not in str(info.value) and "127.0.0.1:1" in str(info.value)


def test_capabilities_and_name(ab: MakeAmqp) -> None:
    from stemlab.model.names import broker_name

    broker = ab()
    caps = broker.capabilities
    assert (caps.priority_levels, caps.delayed, caps.broadcast_scope) == (10, True, "cluster")
    assert (caps.durable, caps.cross_process) == (True, True)
    assert caps.poll_interval == 0.02 and caps.reclaim_delay > 0
    assert broker_name(stemlab.instrument(broker)) == "rabbitmq"


def test_leases_reuse_the_consumers_slot_queues(ab: MakeAmqp, ns: str) -> None:
    from stemlab.brokers.amqp.link import declared

    broker = ab()
    broker.publish_many([env("a"), env("b")])
    with broker.consume("q", prefetch=1) as consumer:
        first = take(consumer, 2.0)
        queue, slot, token = broker.receipts.read(first)
        lease = f"{ns}.l.q.{slot}"
        assert queue == "q" and ("queue", lease) in declared(ns)
        link = broker.link  # type: ignore[attr-defined]
        assert link.count(lease) == 1
        broker.ack(first)
        assert link.count(lease) == 0  # emptied, not deleted: the next lease reuses it
        with pytest.raises(LeaseLost):
            broker.ack(first)
        second = take(consumer, 2.0)
        _, slot2, token2 = broker.receipts.read(second)
        assert (slot2, link.count(lease)) == (slot, 1) and token2 != token
        with pytest.raises(LeaseLost):  # the slot holds another lease now
            broker.nack(first)
        broker.ack(second)
    assert link.count(lease) is None  # the last consumer of its name dropped it, empty
    assert counts(broker) == (0, 0, 0, 0)
    assert all(n.startswith(ns + ".") for _, n in declared(ns))


def test_a_late_extend_into_a_deleted_slot_is_counted_and_purged(ab: MakeAmqp) -> None:
    broker = ab()
    broker.publish(env("a", visibility_timeout=0.3))
    with broker.consume("q") as consumer:
        d = take(consumer, 2.0)
    assert wait_until(lambda: counts(broker) == (1, 0, 0, 0), 3.0)  # ran out: ready again
    # its empty slot deleted (as a consumer that saw the lease expire does when it closes),
    # then a count drops the slot's index record
    _, slot, _ = broker.receipts.read(d)
    link = broker.link  # type: ignore[attr-defined]
    link.delete(f"{broker.namespace}.l.q.{slot}")  # type: ignore[attr-defined]
    assert counts(broker) == (1, 0, 0, 0)
    broker.extend_lease(d, 30)  # back into its re-created slot, listed again
    assert counts(broker) == (0, 1, 0, 0)
    assert broker.purge("q") == 1
    assert counts(broker) == (0, 0, 0, 0)


def test_delays_fall_due_on_the_server_with_no_consumer(ab: MakeAmqp) -> None:
    broker = ab()
    broker.publish(env("later", not_before=in_seconds(0.5)))
    assert counts(broker) == (0, 0, 1, 0)
    assert wait_until(lambda: counts(broker) == (1, 0, 0, 0), 3.0)


def test_long_delays_hop_and_are_counted_as_delayed_until_due(
    ab: MakeAmqp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stemlab.brokers.amqp.messages as amqp_messages

    monkeypatch.setattr(amqp_messages, "MAX_HOP_MS", 200)  # 30 days in production
    broker = ab()
    due = in_seconds(2.0)
    broker.publish(env("later", not_before=due))
    hops = 0
    while True:  # each hop brings it back early: counted (and put back) as delayed
        time.sleep(0.25)
        started = time.time()
        seen = counts(broker)
        if started >= due.timestamp() - 0.05:  # a slow count (loaded machine) may end after it
            break
        # never pending before it is due; (0, 0, 0, 0) is a count that met it in transit
        # from its wait queue back to the ready queue (dead-lettering is asynchronous)
        assert seen in ((0, 0, 1, 0), (0, 0, 0, 0)), seen
        hops += seen == (0, 0, 1, 0)
    assert hops >= 2
    assert wait_until(lambda: counts(broker) == (1, 0, 0, 0), 3.0)


def test_long_delays_hop_and_are_never_delivered_early(
    ab: MakeAmqp, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stemlab.brokers.amqp.messages as amqp_messages

    monkeypatch.setattr(amqp_messages, "MAX_HOP_MS", 200)
    broker = ab()
    due = in_seconds(1.0)
    broker.publish(env("later", not_before=due))
    with broker.consume("q") as consumer:
        d = take(consumer, 4.0)
        assert d.envelope.name == "later" and d.delivery_count == 1
        assert time.time() >= due.timestamp()
        broker.ack(d)
    assert counts(broker) == (0, 0, 0, 0)


def _connection_pid(name: str) -> str | None:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for line in out.splitlines():
        if name in line:
            return line.split("\t", 1)[0]
    return None


@pytest.mark.slow
def test_consumer_connection_closed_by_the_server_mid_drain_loses_nothing(
    ab: MakeAmqp,
) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed (needed to close one connection)")
    broker, settler = ab(), ab()
    total = 300
    broker.publish_many([env(f"m{i}", visibility_timeout=2.0) for i in range(total)])
    consumer = broker.consume("q", prefetch=4, consumer="fault-drain")
    name = consumer.connection_name  # type: ignore[attr-defined]
    first = consumer.link.conn  # type: ignore[attr-defined]
    pid = _connection_pid(name)
    assert pid is not None, f"connection {name} not listed by rabbitmqctl"
    acked: set[str] = set()
    closed = threading.Event()

    def close_it() -> None:
        wait_until(lambda: len(acked) >= 40, 30.0)
        subprocess.run(
            ["rabbitmqctl", "-q", "close_connection", pid, "stemlab fault test"],
            capture_output=True,
            timeout=30,
            check=True,
        )
        closed.set()

    killer = threading.Thread(target=close_it)
    killer.start()
    deliveries = 0
    deadline = time.monotonic() + 90
    try:
        while len(acked) < total and time.monotonic() < deadline:
            d = consumer.get(timeout=1.0)
            if d is None:
                continue
            deliveries += 1
            time.sleep(0.03)  # some work, so the close (rabbitmqctl: seconds) lands mid-drain
            try:
                settler.ack(d)  # any client may settle
            except LeaseLost:
                continue  # its lease ran out and it was delivered again
            acked.add(d.envelope.name)
    finally:
        killer.join()
        consumer.close()
    assert closed.is_set()
    assert consumer.link.conn is not first, "the consumer never saw its connection closed"  # type: ignore[attr-defined]
    assert acked == {f"m{i}" for i in range(total)}
    assert counts(broker) == (0, 0, 0, 0)
    print(f"\nclosed after >= 40 acks, reconnected; {deliveries} deliveries for {total} messages")
