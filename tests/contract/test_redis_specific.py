"""Redis adapter: what the shared contract suite cannot see.

extend_lease keeps the same delivery (no copy), prompt reclaim of expired leases by any
client, storage that shrinks back after acks (and a 20,000-message soak), leased-ahead
messages put back in place, broadcast across processes, and a crash of our OWN
redis-server (appendonly, fsync always, on a free port; the shared server is never
touched). Every test uses its own namespace and deletes its keys afterwards.
Measurements are printed (run with `-s` to see them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import stemlab
from stemlab import Broker, Envelope, LeaseLost
from stemlab.errors import BrokerUnavailable, ConfigError
from tests.conftest import REDIS_URL, REQUIRE_SERVICES, require_service
from tests.contract.conftest import delete_redis_namespace
from tests.contract.support import counts, env, in_seconds, nothing, take, wait_until

redis = pytest.importorskip("redis")

MakeRedis = Callable[..., Broker]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_url() -> str:
    return require_service("redis", REDIS_URL)


@pytest.fixture
def ns() -> str:
    return "rdt" + uuid.uuid4().hex[:10]


@pytest.fixture
def rb(redis_url: str, ns: str) -> Iterator[MakeRedis]:
    """rb(**options): a broker on this test's namespace; its keys are deleted afterwards."""
    opened: list[Broker] = []

    def make(**options: Any) -> Broker:
        options.setdefault("namespace", ns)
        broker = stemlab.connect(options.pop("url", redis_url), **options)
        opened.append(broker)
        return broker

    yield make
    for broker in opened:
        broker.close()
    delete_redis_namespace(redis_url, ns)


def _keys(url: str, ns: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return sorted(client.scan_iter(match=f"{ns}:*", count=1000))
    finally:
        client.close()


def _memory(url: str, ns: str) -> int:
    """Bytes Redis reports (MEMORY USAGE) for every key of the namespace."""
    client = redis.Redis.from_url(url)
    try:
        return sum(client.memory_usage(k, samples=0) or 0 for k in _keys(url, ns))
    finally:
        client.close()


# ------------------------------------------------------------------ URL / options
def test_url_gives_password_db_and_tls(redis_url: str) -> None:
    from stemlab.brokers.redis import RedisBroker

    plain = RedisBroker("redis://:s3cret@127.0.0.1:6390/7", namespace="x")
    conn = plain._connect()
    assert (conn.host, conn.port, conn.db, conn.password) == ("127.0.0.1", 6390, 7, "s3cret")
    tls = RedisBroker("rediss://127.0.0.1:6391/2")
    assert type(tls._connect()).__name__ == "SSLConnection"
    for bad in (
        {"namespace": "a:b"},
        {"namespace": "*"},
        {"default_visibility_timeout": 0},
        {"retry_timeout": -1},
        {"no_such_option": 1},
    ):
        with pytest.raises(ConfigError):
            RedisBroker(redis_url, **bad)
    with pytest.raises(ConfigError):
        stemlab.connect("redis://127.0.0.1:notaport/0")
    caps = plain.capabilities
    assert (caps.broadcast_scope, caps.cross_process, caps.poll_interval, caps.reclaim_delay) == (
        "cluster",
        True,
        None,
        0.0,
    )


def test_unreachable_server_raises_broker_unavailable_after_bounded_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    broker = stemlab.connect(f"redis://127.0.0.1:{port}/0", namespace="nobody", retry_timeout=0.5)
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        broker.pending_count("q")
    with pytest.raises(BrokerUnavailable):
        broker.publish(env())
    assert time.monotonic() - start < 5.0
    broker.close()


# -------------------------------------------------------------------- extend_lease
def test_extend_lease_keeps_the_same_delivery_without_a_copy(
    rb: MakeRedis, redis_url: str, ns: str
) -> None:
    broker = rb(default_visibility_timeout=0.5)
    broker.publish(env("long-task"))
    with broker.consume("q") as worker, broker.consume("q") as other:
        d = take(worker, 2.0)
        for _ in range(4):  # keep renewing past several original lease lengths
            time.sleep(0.3)
            broker.extend_lease(d, 0.6)
            assert counts(broker) == (0, 1, 0, 0)
            assert len([k for k in _keys(redis_url, ns) if ":msg:" in k]) == 1
        nothing(other, 0.3)
        broker.ack(d)  # the original receipt is still the live one
    assert counts(broker) == (0, 0, 0, 0)
    assert [k for k in _keys(redis_url, ns) if ":msg:" in k] == []


# ------------------------------------------------------------------------ reclaim
@pytest.mark.parametrize("lease", [0.5, 2.0])
def test_expired_lease_is_reclaimed_promptly_by_any_client(rb: MakeRedis, lease: float) -> None:
    holder, rescuer = rb(), rb()
    holder.publish(env("stuck", visibility_timeout=lease))
    with holder.consume("q") as dying:
        d1 = take(dying, 2.0)
    assert d1.lease_expires_at is not None
    with rescuer.consume("q") as consumer:
        d2 = take(consumer, lease + 5.0)
        late = time.time() - d1.lease_expires_at.timestamp()
    bound = max(0.1 * lease, 0.2)
    print(f"lease {lease}s: redelivered {late * 1000:.1f} ms after expiry (bound {bound}s)")
    assert d2.delivery_count == 2
    assert -0.05 <= late <= bound + 0.2  # + slack for a loaded 2-core machine
    rescuer.ack(d2)


def test_counts_see_expiry_without_any_consumer(rb: MakeRedis) -> None:
    broker = rb()
    broker.publish(env("x", visibility_timeout=0.3))
    with broker.consume("q") as consumer:
        take(consumer, 2.0)
    assert counts(broker) == (0, 1, 0, 0)
    time.sleep(0.4)
    assert counts(broker) == (1, 0, 0, 0)


# -------------------------------------------------------------------- storage
def test_acked_and_dead_lettered_messages_leave_no_keys(
    rb: MakeRedis, redis_url: str, ns: str
) -> None:
    broker = rb()
    broker.publish_many([env(f"m{i}", priority=i % 10) for i in range(50)])
    broker.publish(env("later", not_before=in_seconds(60)))
    with broker.consume("q", prefetch=4) as consumer:
        for i in range(50):
            d = take(consumer, 2.0)
            if i % 10 == 0:
                broker.dead_letter(d, reason="x")
            else:
                broker.ack(d)
    assert broker.purge("q") == 1
    assert _keys(redis_url, ns) == [f"{ns}:dead:q", f"{ns}:deadent:q", f"{ns}:seq"]
    assert broker.purge_dead_letters("q") == 5
    assert _keys(redis_url, ns) == [f"{ns}:seq"]


@pytest.mark.slow
def test_soak_20000_messages_storage_returns_to_baseline(
    rb: MakeRedis, redis_url: str, ns: str
) -> None:
    broker = rb(default_visibility_timeout=60.0)
    broker.publish(env("warm-up"))
    with broker.consume("q") as consumer:
        broker.ack(take(consumer, 2.0))
    keys0, mem0 = len(_keys(redis_url, ns)), _memory(redis_url, ns)
    total, batch, peak_keys, acked = 20_000, 1_000, 0, 0
    start = time.monotonic()
    with broker.consume("q", prefetch=16) as consumer:
        for b in range(0, total, batch):
            broker.publish_many(
                [
                    env(f"s{i}", priority=i % 10, args={"i": i, "pad": "x" * 64})
                    for i in range(b, b + batch)
                ]
            )
            peak_keys = max(peak_keys, len(_keys(redis_url, ns)))
            for _ in range(batch):
                broker.ack(take(consumer, 5.0))
                acked += 1
    elapsed = time.monotonic() - start
    keys1, mem1 = len(_keys(redis_url, ns)), _memory(redis_url, ns)
    print(
        f"soak: {acked} published+acked in {elapsed:.1f}s ({acked / elapsed:.0f}/s); keys "
        f"{keys0} -> peak {peak_keys} -> {keys1}; MEMORY USAGE {mem0} -> {mem1} bytes"
    )
    assert acked == total
    assert counts(broker) == (0, 0, 0, 0)
    assert peak_keys > batch  # the messages really were stored as keys meanwhile
    assert keys1 == keys0
    assert mem1 <= mem0 + 256


# ----------------------------------------------------------------- leased ahead
def test_leased_ahead_messages_go_back_in_place_on_close(rb: MakeRedis) -> None:
    broker = rb()
    broker.publish_many([env(f"m{i:02d}") for i in range(40)])
    with broker.consume("q", prefetch=8) as consumer:
        first = take(consumer, 2.0)
        # a backlog is leased ahead (on the server: this process counts it as pending)...
        assert broker.store.execute("ZCARD", broker.prefix + "lease:q") > 1
    assert counts(broker) == (39, 1, 0, 0)  # ...and given back when the consumer closes
    rest = []
    with broker.consume("q") as consumer:
        for _ in range(39):
            rest.append(take(consumer, 2.0))
            broker.ack(rest[-1])
    assert first.envelope.name == "m00"
    assert [d.envelope.name for d in rest] == [f"m{i:02d}" for i in range(1, 40)]
    assert all(d.delivery_count == 1 for d in rest)
    broker.ack(first)


def test_leased_ahead_messages_past_half_their_lease_are_released(rb: MakeRedis) -> None:
    broker = rb(default_visibility_timeout=0.6)
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


# ------------------------------------------------------------------- broadcast
_CHILD = """
import sys, stemlab
b = stemlab.connect(sys.argv[1], namespace=sys.argv[2])
with b.consume(channels="ch") as c:
    print("ready", flush=True)
    d = c.get(timeout=20)
    print(d.envelope.name if d else "none", d.channel if d else "", flush=True)
    if d: b.ack(d)
b.close()
"""


def test_broadcast_reaches_subscribers_in_other_processes(
    rb: MakeRedis, redis_url: str, ns: str
) -> None:
    broker = rb()
    env_vars = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, redis_url, ns],
            stdout=subprocess.PIPE,
            text=True,
            env=env_vars,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with broker.consume(channels="ch") as mine:
            broker.broadcast("ch", env("hello-all"))
            assert take(mine, 5.0).envelope.name == "hello-all"
        outs = [child.communicate(timeout=30)[0].split() for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert outs == [["hello-all", "ch"], ["hello-all", "ch"]]


# ------------------------------------------------------------------ resilience
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A redis-server of our own (appendonly, fsync always) that we may SIGKILL."""

    def __init__(self, directory: Path) -> None:
        self.dir, self.port = directory, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        assert wait_until(lambda: _pings(client), 10.0), "own redis-server did not start"
        client.close()

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)  # only the server this test started
        self.proc.wait(timeout=10)


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (needed to start a server we may kill)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.proc.terminate()
        server.proc.wait(timeout=10)


@pytest.mark.slow
def test_sigkill_of_the_server_mid_drain_loses_nothing(own_redis: OwnRedis) -> None:
    total = 500
    producer = stemlab.connect(own_redis.url, namespace="crash", retry_timeout=1.0)
    producer.publish_many([Envelope(name="t", id=f"t{i}", queue="q") for i in range(total)])
    worker = stemlab.connect(
        own_redis.url, namespace="crash", retry_timeout=1.0, default_visibility_timeout=2.0
    )
    acked: list[str] = []
    outages: list[float] = []
    stop = threading.Event()

    def drain() -> None:
        # a worker that carries on: an ack that ended in BrokerUnavailable is retried
        # (the broker then accepts it even if the lost attempt had been applied)
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


def test_an_ack_claims_the_next_message_in_the_same_script(rb: MakeRedis) -> None:
    """Issue #14: at prefetch 1 a steady drain costs one script call per task (ack_claim.lua)."""
    broker = rb()
    broker.publish_many([env(f"m{i}") for i in range(3)])
    with broker.consume("q", prefetch=1) as consumer:
        first = take(consumer, 2.0)
        calls: list[str] = []
        link_eval, store_eval = consumer._cmd.eval, broker.store.eval  # type: ignore[attr-defined]

        def on_link(s: Any, *args: Any, **kw: Any) -> Any:
            calls.append(s.name)
            return link_eval(s, *args, **kw)

        def on_pool(name: str, *args: Any, **kw: Any) -> Any:
            calls.append(name)
            return store_eval(name, *args, **kw)

        consumer._cmd.eval = on_link  # type: ignore[attr-defined]
        broker.store.eval = on_pool  # type: ignore[method-assign]
        broker.ack(first)
        assert calls == ["ack_claim"]
        assert counts(broker)[:2] == (2, 0)  # the one read ahead is still pending here
        calls.clear()
        second = take(consumer, 2.0)
        assert calls == []  # handed out from the buffer: no claim
        assert (second.envelope.name, second.delivery_count) == ("m1", 1)
        assert counts(broker)[:2] == (1, 1)
        broker.ack(second)
    assert counts(broker)[:2] == (1, 0)  # closing gave the read-ahead one back
