"""Redis Streams adapter: what the shared contract suite cannot see.

The data really lives in streams and a consumer group (one stream per queue and level),
extend_lease keeps the same PEL entry, an expired lease is reclaimed by any client with
XCLAIM (the PEL's delivery counter goes up), per-envelope leases are honoured one by one,
delayed messages wait for a consumer started later, a broadcast subscriber reads from the
tail it saw, settled entries leave no keys (and a 20,000-message soak returns to its
baseline), and a SIGKILL of our OWN redis-server loses nothing. Every test uses its own
namespace and deletes its keys afterwards. Measurements are printed (`-s` to see them).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import stemlab
from stemlab import Broker, Envelope, LeaseLost
from stemlab.errors import BrokerUnavailable, ConfigError
from tests.conftest import REDIS_URL, require_service
from tests.contract.conftest import delete_redis_namespace, streams_url
from tests.contract.support import counts, env, in_seconds, nothing, take, wait_until
from tests.contract.test_redis_specific import OwnRedis, _keys, _memory, own_redis

redis = pytest.importorskip("redis")

__all__ = ["own_redis"]  # the fixture, shared with the sorted-set adapter's tests

MakeStreams = Callable[..., Broker]


@pytest.fixture
def redis_url() -> str:
    return require_service("redis", REDIS_URL)


@pytest.fixture
def ns() -> str:
    return "rst" + uuid.uuid4().hex[:10]


@pytest.fixture
def sb(redis_url: str, ns: str) -> Iterator[MakeStreams]:
    """sb(**options): a streams broker on this test's namespace; keys deleted afterwards."""
    opened: list[Broker] = []

    def make(**options: Any) -> Broker:
        options.setdefault("namespace", ns)
        broker = stemlab.connect(streams_url(options.pop("url", redis_url)), **options)
        opened.append(broker)
        return broker

    yield make
    for broker in opened:
        broker.close()
    delete_redis_namespace(redis_url, ns)


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    c = redis.Redis.from_url(redis_url, decode_responses=True)
    yield c
    c.close()


# ------------------------------------------------------------------ URL / options
def test_url_schemes_options_and_capabilities(redis_url: str) -> None:
    from stemlab.brokers.redis_streams import RedisStreamsBroker

    plain = stemlab.connect("redis+streams://:s3cret@127.0.0.1:6390/7", namespace="x")
    assert isinstance(plain, RedisStreamsBroker)
    conn = plain._connect()
    assert (conn.host, conn.port, conn.db, conn.password) == ("127.0.0.1", 6390, 7, "s3cret")
    assert plain.settings.url.startswith("redis+streams://")
    tls = stemlab.connect("rediss+streams://127.0.0.1:6391/2")
    assert type(tls._connect()).__name__ == "SSLConnection"
    for bad in ({"namespace": "a:b"}, {"default_visibility_timeout": 0}, {"nope": 1}):
        with pytest.raises(ConfigError):
            stemlab.connect(streams_url(redis_url), **bad)
    with pytest.raises(ConfigError):
        RedisStreamsBroker("redis://127.0.0.1:6379/0")
    caps = plain.capabilities
    assert (caps.broadcast_scope, caps.durable, caps.poll_interval, caps.reclaim_delay) == (
        "cluster",
        True,
        None,
        0.0,
    )


# ------------------------------------------------------------------ the data model
def test_messages_are_stream_entries_read_through_a_consumer_group(
    sb: MakeStreams, client: Any, ns: str
) -> None:
    broker = sb()
    broker.publish_many([env("hi", priority=7), env("lo", priority=2), env("lo2", priority=2)])
    assert client.xlen(f"{ns}:s:q:7") == 1 and client.xlen(f"{ns}:s:q:2") == 2
    with broker.consume("q", consumer="w1") as consumer:
        d = take(consumer, 2.0)
        assert d.envelope.name == "hi"  # the highest non-empty level first
        [group] = client.xinfo_groups(f"{ns}:s:q:7")
        assert (group["name"], group["pending"]) == ("g", 1)
        [pel] = client.xpending_range(f"{ns}:s:q:7", "g", "-", "+", 10)
        assert (pel["consumer"], pel["times_delivered"]) == ("w1", 1)
        broker.ack(d)
    assert not client.exists(f"{ns}:s:q:7")  # an emptied stream is dropped with its group
    assert client.xlen(f"{ns}:s:q:2") == 2


def test_extend_lease_keeps_the_same_pel_entry(sb: MakeStreams, client: Any, ns: str) -> None:
    broker = sb(default_visibility_timeout=0.5)
    broker.publish(env("long-task"))
    with broker.consume("q", consumer="w1") as worker, broker.consume("q") as other:
        d = take(worker, 2.0)
        [first] = client.xpending_range(f"{ns}:s:q:0", "g", "-", "+", 10)
        for _ in range(4):  # renew past several original lease lengths
            time.sleep(0.3)
            broker.extend_lease(d, 0.6)
            assert counts(broker) == (0, 1, 0, 0)
        nothing(other, 0.3)
        [now] = client.xpending_range(f"{ns}:s:q:0", "g", "-", "+", 10)
        assert (now["message_id"], now["consumer"], now["times_delivered"]) == (
            first["message_id"],
            "w1",
            1,
        )
        assert client.xlen(f"{ns}:s:q:0") == 1  # no copy
        broker.ack(d)
    assert counts(broker) == (0, 0, 0, 0)


@pytest.mark.parametrize("lease", [0.5, 2.0])
def test_expired_lease_is_reclaimed_by_any_client_with_xclaim(
    sb: MakeStreams, client: Any, ns: str, lease: float
) -> None:
    holder, rescuer = sb(), sb()
    holder.publish(env("stuck", visibility_timeout=lease))
    with holder.consume("q", consumer="dying") as dying:
        d1 = take(dying, 2.0)
    assert d1.lease_expires_at is not None
    with rescuer.consume("q", consumer="rescuer") as consumer:
        d2 = take(consumer, lease + 5.0)
        late = time.time() - d1.lease_expires_at.timestamp()
        [pel] = client.xpending_range(f"{ns}:s:q:0", "g", "-", "+", 10)
    print(f"lease {lease}s: reclaimed {late * 1000:.1f} ms after expiry")
    assert d2.delivery_count == 2
    assert (pel["consumer"], pel["times_delivered"]) == ("rescuer", 2)  # XCLAIM, same entry
    assert -0.05 <= late <= max(0.1 * lease, 0.2) + 0.2
    with pytest.raises(LeaseLost):
        holder.ack(d1)
    rescuer.ack(d2)
    names = (
        [c["name"] for c in client.xinfo_consumers(f"{ns}:s:q:0", "g")]
        if client.exists(f"{ns}:s:q:0")
        else []
    )
    assert "dying" not in names  # a consumer left with nothing pending leaves the group


def test_each_envelope_keeps_its_own_lease(sb: MakeStreams) -> None:
    broker = sb(default_visibility_timeout=30.0)
    broker.publish_many([env("short", visibility_timeout=0.4), env("long", visibility_timeout=3.0)])
    with broker.consume("q", prefetch=2) as first:
        got = {take(first, 2.0).envelope.name for _ in range(2)}
    assert got == {"short", "long"}
    with broker.consume("q") as second:
        again = take(second, 2.0)
        assert (again.envelope.name, again.delivery_count) == ("short", 2)
        broker.ack(again)
        nothing(second, 1.0)  # "long" still holds, though "short" already came back
    assert counts(broker) == (0, 1, 0, 0)


def test_delayed_messages_are_found_due_by_a_consumer_started_later(
    sb: MakeStreams, client: Any, ns: str
) -> None:
    broker = sb()
    broker.publish_many(
        [env("d1", not_before=in_seconds(0.3)), env("d2", priority=5, not_before=in_seconds(0.3))]
    )
    assert counts(broker) == (0, 0, 2, 0)
    assert not client.exists(f"{ns}:s:q:0")  # not in a stream until due
    time.sleep(0.5)  # due, and no consumer running
    assert counts(broker) == (2, 0, 0, 0)
    later = sb()
    with later.consume("q") as consumer:
        names = []
        for _ in range(2):
            d = take(consumer, 2.0)
            names.append(d.envelope.name)
            later.ack(d)
    assert names == ["d2", "d1"]


def test_a_subscriber_reads_broadcasts_from_the_tail_it_saw(sb: MakeStreams) -> None:
    broker = sb()
    broker.broadcast("ch", env("before"))
    with broker.consume(channels="ch") as first:
        broker.broadcast("ch", env("one"))
        with broker.consume(channels="ch") as second:
            broker.broadcast("ch", env("two"))
            assert [take(first, 2.0).envelope.name for _ in range(2)] == ["one", "two"]
            assert take(second, 2.0).envelope.name == "two"
            nothing(second, 0.2)
            nothing(first, 0.2)


# ----------------------------------------------------------------- leased ahead
def test_leased_ahead_entries_go_back_in_place_on_close(sb: MakeStreams) -> None:
    broker = sb()
    broker.publish_many([env(f"m{i:02d}") for i in range(40)])
    with broker.consume("q", prefetch=8) as consumer:
        first = take(consumer, 2.0)
        # a backlog is leased ahead (server-side counts; this process counts it as pending)...
        assert broker._eval("counts", [broker.prefix, "q"])[1] > 1
    assert counts(broker) == (39, 1, 0, 0)  # ...and given back when the consumer closes
    rest = []
    with broker.consume("q") as consumer:
        for _ in range(39):
            rest.append(take(consumer, 2.0))
            broker.ack(rest[-1])
    assert first.envelope.name == "m00"
    assert [d.envelope.name for d in rest] == [f"m{i:02d}" for i in range(1, 40)]
    assert all(d.delivery_count == 1 for d in rest)  # XCLAIM ... RETRYCOUNT took it back
    broker.ack(first)


def test_leased_ahead_entries_past_half_their_lease_are_released(sb: MakeStreams) -> None:
    broker = sb(default_visibility_timeout=0.6)
    broker.publish_many([env(f"m{i:02d}") for i in range(40)])
    with broker.consume("q", prefetch=8) as consumer:
        d = take(consumer, 2.0)
        time.sleep(0.35)  # the others, leased ahead, are now past half their lease
        broker.ack(d)
        nxt = take(consumer, 2.0)
        assert nxt.lease_expires_at is not None
        left = nxt.lease_expires_at.timestamp() - time.time()
        assert left > 0.3, f"handed out with only {left:.2f}s of lease left"
        assert (nxt.envelope.name, nxt.delivery_count) == ("m01", 1)
        broker.ack(nxt)


# -------------------------------------------------------------------- storage
def test_settled_entries_leave_no_keys(sb: MakeStreams, redis_url: str, ns: str) -> None:
    broker = sb()
    broker.publish_many([env(f"m{i}", priority=i % 10) for i in range(50)])
    broker.publish(env("later", not_before=in_seconds(60)))
    with broker.consume("q", prefetch=4) as consumer:
        for i in range(50):
            d = take(consumer, 2.0)
            if i % 10 == 0:
                broker.dead_letter(d, reason="x")
            elif i % 10 == 1:
                broker.nack(d)
                broker.ack(take(consumer, 2.0))
            else:
                broker.ack(d)
    assert broker.purge("q") == 1
    assert _keys(redis_url, ns) == [f"{ns}:dead:q", f"{ns}:deadent:q", f"{ns}:seq"]
    assert broker.purge_dead_letters("q") == 5
    assert _keys(redis_url, ns) == [f"{ns}:seq"]


@pytest.mark.slow
def test_soak_20000_messages_storage_returns_to_baseline(
    sb: MakeStreams, redis_url: str, ns: str
) -> None:
    broker = sb(default_visibility_timeout=60.0)
    broker.publish(env("warm-up"))
    with broker.consume("q") as consumer:
        broker.ack(take(consumer, 2.0))
    keys0, mem0 = len(_keys(redis_url, ns)), _memory(redis_url, ns)
    total, batch, peak_mem, acked = 20_000, 1_000, 0, 0
    start = time.monotonic()
    with broker.consume("q", prefetch=16) as consumer:
        for b in range(0, total, batch):
            broker.publish_many(
                [
                    env(f"s{i}", priority=i % 10, args={"i": i, "pad": "x" * 64})
                    for i in range(b, b + batch)
                ]
            )
            peak_mem = max(peak_mem, _memory(redis_url, ns))
            for _ in range(batch):
                broker.ack(take(consumer, 5.0))
                acked += 1
    elapsed = time.monotonic() - start
    keys1, mem1 = len(_keys(redis_url, ns)), _memory(redis_url, ns)
    print(
        f"soak: {acked} published+acked in {elapsed:.1f}s ({acked / elapsed:.0f}/s); keys "
        f"{keys0} -> {keys1}; MEMORY USAGE {mem0} -> peak {peak_mem} -> {mem1} bytes"
    )
    assert acked == total
    assert counts(broker) == (0, 0, 0, 0)
    assert peak_mem > batch * 64  # the messages really were stored meanwhile
    assert keys1 == keys0
    assert mem1 <= mem0 + 256


# ------------------------------------------------------------------ resilience
@pytest.mark.slow
def test_sigkill_of_the_server_mid_drain_loses_nothing(own_redis: OwnRedis) -> None:
    total = 500
    url = streams_url(own_redis.url)
    producer = stemlab.connect(url, namespace="crash", retry_timeout=1.0)
    producer.publish_many([Envelope(name="t", id=f"t{i}", queue="q") for i in range(total)])
    worker = stemlab.connect(
        url, namespace="crash", retry_timeout=1.0, default_visibility_timeout=2.0
    )
    acked: list[str] = []
    outages: list[float] = []
    stop = threading.Event()

    def drain() -> None:
        # a worker that carries on: an ack that ended in BrokerUnavailable is retried
        unacked = None
        with worker.consume("q", prefetch=4) as consumer:
            while not stop.is_set() and len(set(acked)) < total:
                try:
                    if unacked is None:
                        unacked = consumer.get(timeout=0.5)
                        if unacked is None:
                            continue
                        time.sleep(0.002)  # a little work, so the kill lands mid-drain
                    worker.ack(unacked)
                    acked.append(unacked.envelope.id)
                    unacked = None
                except LeaseLost:
                    unacked = None  # redelivered meanwhile; that delivery gets acked
                except BrokerUnavailable:
                    outages.append(time.monotonic())

    thread = threading.Thread(target=drain)
    thread.start()
    assert wait_until(lambda: len(acked) >= 150, 20.0)
    own_redis.kill()
    killed_at = len(acked)
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        producer.pending_count("q")
    refused_after = time.monotonic() - start
    time.sleep(1.0)
    own_redis.start()  # same directory: the append-only file is replayed
    finished = wait_until(lambda: len(set(acked)) >= total, 60.0)
    stop.set()
    thread.join(timeout=30)
    dup = sum(n - 1 for n in Counter(acked).values())
    print(
        f"crash: killed after {killed_at} acks; calls refused after {refused_after:.2f}s; "
        f"{len(outages)} BrokerUnavailable in the consumer; {dup} redelivered twice"
    )
    assert refused_after < 5.0
    assert finished, f"only {len(set(acked))}/{total} acked"
    assert set(acked) == {f"t{i}" for i in range(total)}
    assert counts(producer) == (0, 0, 0, 0)
    producer.close()
    worker.close()
