"""Postgres adapter: what the shared contract suite cannot see.

Schema creation racing across processes, retention sweeps, push pickup, read-ahead
release, a killed backend connection (pg_terminate_backend on OUR connections only),
a long transaction holding back xmin, a 20,000-message soak, and cross-process
broadcast. Every test uses its own namespace and deletes its rows afterwards.
Measurements are printed (run with `-s` to see them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import stemlab
from stemlab import LeaseLost
from stemlab.errors import BrokerUnavailable, ConfigError
from tests.conftest import POSTGRES_URL, require_service
from tests.contract.support import counts, env, in_seconds, take, wait_until

psycopg = pytest.importorskip("psycopg")
from stemlab.brokers.postgres import PostgresBroker  # noqa: E402
from stemlab.brokers.postgres.consumer import PostgresConsumer  # noqa: E402
from stemlab.brokers.postgres.maintenance import delete_namespaces, table_stats  # noqa: E402

MakePg = Callable[..., PostgresBroker]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def pg_url() -> str:
    return require_service("postgres", POSTGRES_URL)


@pytest.fixture
def ns() -> str:
    return "pgt" + uuid.uuid4().hex[:10]


@pytest.fixture
def pg(pg_url: str, ns: str) -> Iterator[MakePg]:
    """pg(**options): a broker on this test's namespace; rows deleted afterwards."""
    opened: list[PostgresBroker] = []

    def make(**options: Any) -> PostgresBroker:
        options.setdefault("namespace", ns)
        broker = PostgresBroker(pg_url, **options)
        opened.append(broker)
        return broker

    yield make
    for broker in opened:
        broker.close()
    delete_namespaces(pg_url, [ns])


def _admin(url: str) -> Any:
    return psycopg.connect(url, autocommit=True)


def _our_pids(url: str, role: str, ns: str) -> list[int]:
    """Backend pids of this test's own connections of one role (by application_name)."""
    with _admin(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
            [f"stemlab:{role}:{ns}"[:63]],
        ).fetchall()
    return [int(r[0]) for r in rows]


def _terminate(url: str, pids: list[int]) -> None:
    with _admin(url) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", [pid])


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    envvars = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=envvars,
    )


def _pcts(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values) * 1000.0
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95))}


# ------------------------------------------------------------ schema and config
RACE_CHILD = """
import sys, time, stemlab
from stemlab import Envelope
url, schema, ns, start = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
time.sleep(max(0.0, start - time.time()))
with stemlab.connect(url, schema=schema, namespace=ns) as b:
    b.publish(Envelope(name="hello", queue="q"))
print("ok")
"""


def test_schema_creation_is_safe_when_many_processes_start_at_once(pg_url: str, ns: str) -> None:
    schema = "stemlab_race_" + uuid.uuid4().hex[:8]
    start = time.time() + 3.0  # every child imports first, then all connect together
    children = [_child(RACE_CHILD, pg_url, schema, ns, str(start)) for _ in range(6)]
    try:
        outputs = [c.communicate(timeout=60) for c in children]
        assert all(c.returncode == 0 for c in children), [o[1][-800:] for o in outputs]
        with stemlab.connect(pg_url, schema=schema, namespace=ns) as b:
            assert b.pending_count("q") == 6
    finally:
        with _admin(pg_url) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize(
    "options",
    [
        {"bogus": 1},
        {"schema": "Bad-Name"},
        {"synchronous_commit": "sometimes"},
        {"default_visibility_timeout": 0},
        {"pool_size": 0},
        {"namespace": ""},
    ],
)
def test_bad_options_raise_config_error(pg_url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        stemlab.connect(pg_url, **options)


def test_unreachable_server_raises_broker_unavailable() -> None:
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        stemlab.connect("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1.0, retries=1)
    assert time.monotonic() - start < 15


# ------------------------------------------------------------------- retention
def test_retention_sweeps_old_dead_letters_and_broadcast_copies(pg: MakePg) -> None:
    b = pg(dead_letter_retention=0.5, broadcast_retention=0.5, sweep_interval=3600.0)
    b.publish_many([env("old-1"), env("old-2")])
    listener = b.consume(channels="ch")
    b.broadcast("ch", env("news-1"))
    b.broadcast("ch", env("news-2"))
    with b.consume("q", prefetch=2) as consumer:
        for _ in range(2):
            b.dead_letter(take(consumer, 5.0), reason="old")
    time.sleep(0.8)
    b.publish(env("fresh"))
    with b.consume("q") as consumer:
        b.dead_letter(take(consumer, 5.0), reason="fresh")
    swept = b.sweep()
    assert swept["dead_letters"] == 2 and swept["broadcasts"] == 2, swept
    assert [e.envelope.name for e in b.list_dead_letters("q").entries] == ["fresh"]
    assert listener.get(timeout=0.3) is None
    listener.close()


def test_retention_none_keeps_dead_letters(pg: MakePg) -> None:
    b = pg(dead_letter_retention=None, sweep_interval=3600.0)
    b.publish(env("keep"))
    with b.consume("q") as consumer:
        b.dead_letter(take(consumer, 5.0))
    assert b.sweep()["dead_letters"] == 0
    assert b.get_dead_letter("q", b.list_dead_letters("q").entries[0].envelope.id) is not None


SUBSCRIBER_CHILD = """
import sys, time, stemlab
b = stemlab.connect(sys.argv[1], namespace=sys.argv[2])
c = b.consume(channels="ch")
print("ready", flush=True)
d = c.get(timeout=30)
print("got " + (d.envelope.name if d else "nothing"), flush=True)
if len(sys.argv) > 3:
    time.sleep(60)  # wait to be killed
"""


def test_a_crashed_subscriber_is_swept(pg: MakePg, pg_url: str, ns: str) -> None:
    b = pg(sweep_interval=3600.0)
    child = _child(SUBSCRIBER_CHILD, pg_url, ns, "linger")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        b.broadcast("ch", env("to-the-dead"))  # its subscription row is still there
        removed: dict[str, int] = {"subscriptions": 0, "broadcasts": 0}

        def swept() -> bool:
            for key, n in b.sweep().items():
                removed[key] = removed.get(key, 0) + n
            return removed["subscriptions"] >= 1 and removed["broadcasts"] >= 1

        assert wait_until(swept, 10.0, step=0.2), removed
    finally:
        if child.poll() is None:
            child.kill()


def test_broadcast_reaches_another_process(pg: MakePg, pg_url: str, ns: str) -> None:
    b = pg()
    assert b.capabilities.broadcast_scope == "cluster"
    child = _child(SUBSCRIBER_CHILD, pg_url, ns)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        b.broadcast("ch", env("hello-other-process"))
        out, err = child.communicate(timeout=30)
        assert out.strip() == "got hello-other-process", err[-800:]
    finally:
        if child.poll() is None:
            child.kill()


# ----------------------------------------------------------- pickup, read-ahead
def test_pickup_is_push_driven_not_polled(pg: MakePg) -> None:
    b = pg(poll_interval=5.0)
    latencies: list[float] = []
    sent: dict[str, float] = {}
    consumer = b.consume("q")
    done = threading.Event()

    def work() -> None:
        while not done.is_set():
            d = consumer.get(timeout=0.5)
            if d is not None:
                latencies.append(time.time() - sent[d.envelope.name])
                b.ack(d)

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(0.3)
    for i in range(40):
        sent[f"m{i}"] = time.time()
        b.publish(env(f"m{i}"))
        time.sleep(0.025)
    assert wait_until(lambda: len(latencies) == 40, 10.0)
    done.set()
    thread.join(10)
    consumer.close()
    stats = _pcts(latencies)
    print("\npickup latency with a 5 s fallback poll:", stats)
    assert stats["p50_ms"] < 100.0  # a 5 s poll would give ~2500 ms


def test_delayed_pickup_is_prompt_with_a_long_fallback_poll(pg: MakePg) -> None:
    b = pg(poll_interval=5.0)
    with b.consume("q") as consumer:
        assert consumer.get(timeout=0.2) is None  # idle, waiting
        due = in_seconds(0.5)
        b.publish(env("later", not_before=due))
        d = take(consumer, 4.0)
        late = (time.time() - due.timestamp()) * 1000.0
    print(f"\ndelayed message picked up {late:.1f} ms after its due time")
    assert d.envelope.name == "later" and -20.0 <= late < 1000.0


def test_closing_a_consumer_gives_back_rows_it_never_handed_out(pg: MakePg) -> None:
    b = pg()
    b.publish_many([env(f"m{i}") for i in range(8)])
    first = b.consume("q", prefetch=8)
    d = take(first, 5.0)
    assert counts(b) == (7, 1, 0, 0)
    first.close()
    assert counts(b) == (7, 1, 0, 0)
    with b.consume("q", prefetch=8) as second:
        rest = [take(second, 5.0) for _ in range(7)]
    assert [r.envelope.name for r in rest] == [f"m{i}" for i in range(1, 8)]
    assert all(r.delivery_count == 1 for r in rest)
    for r in [d, *rest]:
        b.ack(r)


# ------------------------------------------------------------------ resilience
@pytest.mark.parametrize("settle", ["ack", "nack", "dead_letter"])
def test_a_settle_retried_after_an_ambiguous_failure(
    pg: MakePg, monkeypatch: pytest.MonkeyPatch, settle: str
) -> None:
    """The first try committed but its reply was lost: the retry reports success."""
    b = pg()
    b.publish(env("once"))
    with b.consume("q") as consumer:
        d = take(consumer, 5.0)
    real_run = b._runner.run

    def run_twice(fn: Any, what: str, *, publish: bool = False) -> Any:
        real_run(fn, what, publish=publish)  # commits
        return real_run(lambda conn, attempt: fn(conn, 1), what, publish=publish)

    monkeypatch.setattr(b._runner, "run", run_twice)
    getattr(b, settle)(d)
    monkeypatch.undo()
    assert counts(b)[:2] == ((1, 0) if settle == "nack" else (0, 0))
    if settle != "nack":
        return
    # a retry that finds the message handed to another delivery is still stale
    with b.consume("q") as consumer:
        again = take(consumer, 5.0)

    def as_retry(fn: Any, what: str, *, publish: bool = False) -> Any:
        return real_run(lambda conn, attempt: fn(conn, 1), what, publish=publish)

    monkeypatch.setattr(b._runner, "run", as_retry)
    with pytest.raises(LeaseLost):
        b.ack(d)
    monkeypatch.undo()
    b.ack(again)
    assert counts(b) == (0, 0, 0, 0)


def test_killed_backend_mid_drain_reconnects_and_loses_nothing(
    pg: MakePg, pg_url: str, ns: str
) -> None:
    b = pg(default_visibility_timeout=2.0)
    total = 1500
    sent = [env(f"m{i}") for i in range(total)]
    ids = [e.id for e in sent]
    b.publish_many(sent)
    acked: Counter[str] = Counter()
    stale = 0
    consumer = b.consume("q", prefetch=8)
    assert isinstance(consumer, PostgresConsumer)
    first_pid = consumer.backend_pid
    kills = {300: "consumer", 700: "ops", 1100: "both"}
    deadline = time.monotonic() + 120
    while len(acked) < total and time.monotonic() < deadline:
        d = consumer.get(timeout=5.0)
        if d is None:
            continue
        what = kills.pop(len(acked), None)
        if what in ("consumer", "both"):
            _terminate(pg_url, [consumer.backend_pid or 0])
        if what in ("ops", "both"):
            _terminate(pg_url, _our_pids(pg_url, "ops", ns))
        try:
            b.ack(d)
            acked[d.envelope.id] += 1
        except LeaseLost:
            stale += 1
    print(f"\nacked {len(acked)} of {total}, stale receipts {stale}")
    assert sorted(acked) == sorted(ids), "a message was lost"
    assert set(acked.values()) == {1}, "a message was acked twice"
    assert consumer.backend_pid != first_pid
    assert counts(b) == (0, 0, 0, 0)

    # killed while blocked waiting for a notification: it reconnects and still gets work
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(take(consumer, 20.0).envelope.name))
    waiter.start()
    time.sleep(0.5)
    _terminate(pg_url, [consumer.backend_pid or 0])
    time.sleep(0.5)
    b.publish(env("after-kill"))
    waiter.join(30)
    consumer.close()
    assert got == ["after-kill"]


@pytest.mark.slow
def test_held_xmin_keeps_the_queue_working(pg: MakePg, pg_url: str) -> None:
    """A long transaction elsewhere pins dead rows; measure how claim latency grows."""
    b = pg()
    rounds: list[dict[str, Any]] = []

    def run_round(label: str, n: int = 500) -> None:
        b.publish_many([env(f"{label}-{i}") for i in range(n)])
        waits: list[float] = []
        with b.consume("q", prefetch=1) as consumer:
            for _ in range(n):
                t0 = time.perf_counter()
                d = take(consumer, 10.0)
                waits.append(time.perf_counter() - t0)
                b.ack(d)
        dead = table_stats(pg_url)["queue_messages"]["dead_tuples"]
        rounds.append({"round": label, **_pcts(waits), "dead_tuples": dead})

    run_round("baseline")
    holder = _admin(pg_url)
    try:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM stemlab.queue_messages").fetchone()
        for i in range(6):
            run_round(f"held-{i + 1}")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    run_round("released")
    print("\nclaim (get) latency while a transaction holds xmin:")
    for r in rounds:
        print("  ", json.dumps(r))
    assert counts(b) == (0, 0, 0, 0)


@pytest.mark.slow
def test_soak_20000_messages_leaves_the_table_empty(pg: MakePg, pg_url: str, ns: str) -> None:
    rng = np.random.default_rng(7)
    total = 20_000
    with _admin(pg_url) as conn:  # a clean baseline: earlier runs leave dead tuples behind
        conn.execute("VACUUM stemlab.queue_messages")
    time.sleep(1.5)
    before = table_stats(pg_url)["queue_messages"]
    b = pg(default_visibility_timeout=30.0)
    for start in range(0, total, 1000):
        prios = rng.integers(0, 10, size=1000)
        b.publish_many([env(f"m{start + i}", priority=int(p)) for i, p in enumerate(prios)])
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        own = pg(default_visibility_timeout=30.0)
        local = np.random.default_rng(seed)
        try:
            with own.consume("q", prefetch=16) as consumer:
                while True:
                    d = consumer.get(timeout=2.0)
                    if d is None:
                        return
                    roll = local.random()
                    if roll < 0.03 and d.delivery_count == 1:
                        own.nack(d)
                        continue
                    if roll < 0.04:
                        own.dead_letter(d, reason="soak")
                    else:
                        own.ack(d)
                    with lock:
                        seen[d.envelope.name] += 1
        except BaseException as exc:
            errors.append(exc)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    elapsed = time.perf_counter() - t0
    assert not errors, errors
    assert len(seen) == total and set(seen.values()) == {1}
    dead = len(b.list_dead_letters("q", limit=total).entries)
    assert counts(b)[:3] == (0, 0, 0)
    with _admin(pg_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM stemlab.queue_messages WHERE ns = %s", [ns]
        ).fetchone()[0]
        assert left == 0
        time.sleep(1.5)  # backends flush their table statistics about once a second
        after = table_stats(pg_url)["queue_messages"]
        conn.execute("VACUUM stemlab.queue_messages")
        time.sleep(1.5)
        vacuumed = table_stats(pg_url)["queue_messages"]
    report = {
        "messages": total,
        "dead_lettered": dead,
        "drain_s": round(elapsed, 2),
        "rows_left_in_namespace": left,
        **{
            f"{k}_{w}": s[w]
            for k, s in (("before", before), ("after", after), ("vacuumed", vacuumed))
            for w in ("total_bytes", "dead_tuples")
        },
    }
    print("\nsoak:", json.dumps(report))
