"""SQLite adapter specifics: URLs, pragmas, lock contention, prefetch buffer, broadcast pruning.

These look inside the SQLite file on purpose (table names from
stemlab/brokers/sqlite/schema.sql); the behaviour every adapter shares is in
the contract suite.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import stemlab
from stemlab import BrokerUnavailable, ConfigError, Envelope
from stemlab.brokers.sqlite import SQLiteBroker
from stemlab.brokers.sqlite.store import HOST
from tests.contract.support import MARGIN, counts, env, take


def _open(tmp_path: Path, name: str = "s.db", **options: object) -> SQLiteBroker:
    options.setdefault("namespace", "n" + os.urandom(4).hex())
    broker = stemlab.connect(f"sqlite:///{tmp_path / name}", **options)
    assert isinstance(broker, SQLiteBroker)
    return broker


def _pragma(conn: sqlite3.Connection, name: str) -> object:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def _rows(broker: SQLiteBroker, table: str) -> int:
    conn = sqlite3.connect(broker.path)
    try:
        sql = f"SELECT COUNT(*) FROM {table} WHERE ns = ?"
        return int(conn.execute(sql, (broker.namespace,)).fetchone()[0])
    finally:
        conn.close()


# ------------------------------------------------------------------------- URLs
def test_relative_url_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with stemlab.connect("sqlite:///sub/jobs.db") as broker:
        assert isinstance(broker, SQLiteBroker)
        assert broker.path == "sub/jobs.db"
        broker.publish(env())
    assert (tmp_path / "sub" / "jobs.db").is_file()


def test_absolute_url_has_four_slashes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/abs.db"
    assert url.startswith("sqlite:////")
    with stemlab.connect(url) as broker:
        assert isinstance(broker, SQLiteBroker)
        assert broker.path == f"{tmp_path}/abs.db"
    assert (tmp_path / "abs.db").is_file()


def test_percent_escapes_and_query_options(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/with%20space.db?synchronous=full&poll_interval=0.02"
    with stemlab.connect(url, namespace="x") as broker:
        assert isinstance(broker, SQLiteBroker)
        assert broker.path.endswith("/with space.db")
        assert broker.settings.synchronous == "FULL"
        assert broker.capabilities.poll_interval == 0.02
        assert broker.namespace == "x"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///",
        "sqlite:/jobs.db",
        "sqlite://host/jobs.db",
        "sqlite:///:memory:",
        "sqlite:///some/dir/",
        "sqlite:///jobs.db#frag",
        "sqlite:///jobs.db?bogus=1",
        "sqlite:///jobs.db?poll_interval=soon",
        "sqlite:///jobs.db?synchronous=SOMETIMES",
        "sqlite:////no-such-directory-for-stemlab/jobs.db",
    ],
)
def test_malformed_urls_raise_config_error(url: str) -> None:
    with pytest.raises(ConfigError):
        stemlab.connect(url)


@pytest.mark.parametrize(
    "options",
    [{"bogus": 1}, {"poll_interval": 0}, {"busy_timeout": -1}, {"namespace": ""}],
)
def test_bad_options_raise_config_error(tmp_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        stemlab.connect(f"sqlite:///{tmp_path}/x.db", **options)


# ---------------------------------------------------------------------- pragmas
def test_pragmas_in_force_on_every_connection(tmp_path: Path) -> None:
    with _open(tmp_path, busy_timeout=2.5) as broker:
        consumer = broker.consume("q")
        for conn in (broker._conn(), consumer._conn):  # the thread's and the consumer's
            assert _pragma(conn, "journal_mode") == "wal"
            assert _pragma(conn, "synchronous") == 1  # NORMAL
            assert _pragma(conn, "busy_timeout") == 2500
        consumer.close()
    with _open(tmp_path, synchronous="full") as durable:
        assert _pragma(durable._conn(), "synchronous") == 2  # FULL


def test_capabilities_state_the_adapter(tmp_path: Path) -> None:
    with _open(tmp_path, poll_interval=0.05) as broker:
        caps = broker.capabilities
    assert (caps.durable, caps.cross_process, caps.broadcast_scope) == (True, True, "host")
    assert (caps.poll_interval, caps.reclaim_delay, caps.priority_levels) == (0.05, 0.0, 10)


def test_each_thread_gets_its_own_connection(tmp_path: Path) -> None:
    with _open(tmp_path) as broker:
        seen: list[sqlite3.Connection] = []
        thread = threading.Thread(target=lambda: seen.append(broker._conn()))
        thread.start()
        thread.join()
        assert seen[0] is not broker._conn()
        assert broker._conn() is broker._conn()


# ---------------------------------------------------------------- busy contention
def _hold_write_lock(path: str, seconds: float, started: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    started.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_threads_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    """The switch to WAL collides when several connections open a fresh file together;
    SQLite reports that as "locked" without waiting, so the adapter must retry it."""
    for attempt in range(40):
        url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        errors: list[BaseException] = []

        def open_and_count(url: str = url, errors: list[BaseException] = errors) -> None:
            try:
                with stemlab.connect(url, namespace="race") as broker:
                    broker.pending_count("q")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_and_count) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors, f"attempt {attempt}: {errors[0]!r}"


def test_a_writer_waits_for_the_lock_within_the_busy_timeout(tmp_path: Path) -> None:
    with _open(tmp_path, busy_timeout=10.0) as broker:
        started = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(broker.path, 0.4, started))
        holder.start()
        started.wait(5)
        t0 = time.monotonic()
        broker.publish(env("waited"))
        waited = time.monotonic() - t0
        holder.join()
        assert waited >= 0.2
        assert counts(broker) == (1, 0, 0, 0)


def test_a_lock_held_past_the_busy_timeout_is_broker_unavailable(tmp_path: Path) -> None:
    with _open(tmp_path, busy_timeout=0.2) as broker:
        broker.publish(env("before"))
        started = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(broker.path, 1.5, started))
        holder.start()
        started.wait(5)
        with pytest.raises(BrokerUnavailable):
            broker.publish(env("refused"))
        holder.join()
        assert counts(broker) == (1, 0, 0, 0)


def test_two_consumers_on_two_connections_never_share_a_message(tmp_path: Path) -> None:
    with _open(tmp_path) as broker:
        broker.publish_many([env(f"m{i}") for i in range(200)])
        got: list[list[str]] = [[], []]

        def drain(slot: int) -> None:
            with broker.consume("q", prefetch=8) as consumer:
                while (d := consumer.get(timeout=0.5)) is not None:
                    got[slot].append(d.envelope.id)
                    broker.ack(d)

        threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(got[0]) + len(got[1]) == 200
        assert len(set(got[0]) | set(got[1])) == 200


# ------------------------------------------------------------ consumer mechanics
def test_idle_consumer_only_reads_data_version(tmp_path: Path) -> None:
    with _open(tmp_path) as broker, broker.consume("q") as consumer:
        assert consumer.get(timeout=0.1) is None
        statements: list[str] = []
        consumer._conn.set_trace_callback(statements.append)
        assert consumer.get(timeout=0.3) is None
        consumer._conn.set_trace_callback(None)
    assert statements, "the consumer should poll"
    assert all(s.strip().upper() == "PRAGMA DATA_VERSION" for s in statements), set(statements)


def test_closing_a_consumer_gives_back_rows_it_never_handed_out(tmp_path: Path) -> None:
    with _open(tmp_path) as broker:
        broker.publish_many([env(f"m{i}") for i in range(5)])
        first = broker.consume("q", prefetch=5)
        d0 = take(first, MARGIN)
        assert d0.envelope.name == "m0"
        assert counts(broker) == (4, 1, 0, 0)  # four rows sit in its buffer, counted pending
        first.close()
        assert counts(broker) == (4, 1, 0, 0)
        with broker.consume("q", prefetch=1) as second:
            d1 = take(second, MARGIN)
        assert (d1.envelope.name, d1.delivery_count) == ("m1", 1)
        broker.ack(d0)
        broker.ack(d1)


def test_a_buffered_row_gets_a_fresh_lease_when_handed_out(tmp_path: Path) -> None:
    with _open(tmp_path, default_visibility_timeout=1.0) as broker:
        broker.publish_many([env("a"), env("b")])
        with broker.consume("q", prefetch=2) as consumer:
            broker.ack(take(consumer, MARGIN))
            time.sleep(0.3)  # "b" waits in the buffer
            before = time.time()
            d = take(consumer, MARGIN)
        assert d.envelope.name == "b"
        assert d.lease_expires_at is not None
        assert d.lease_expires_at.timestamp() >= before + 1.0 - 0.01
        broker.ack(d)


def test_garbage_in_a_row_is_dead_lettered_as_undecodable(tmp_path: Path) -> None:
    with _open(tmp_path) as broker:
        conn = sqlite3.connect(broker.path)
        with conn:
            conn.execute(
                "INSERT INTO stem_messages (ns, queue, priority, avail_at, payload)"
                " VALUES (?, 'q', 4, ?, ?)",
                (broker.namespace, time.time(), b"\x00garbage"),
            )
        conn.close()
        broker.publish(env("good"))
        with broker.consume("q") as consumer:
            assert take(consumer, MARGIN).envelope.name == "good"
        (entry,) = broker.list_dead_letters("q").entries
        assert entry.reason == "undecodable"
        assert entry.envelope.name == "<undecodable>" and entry.envelope.priority == 4
        assert "garbage" in entry.envelope.args["raw"]


# --------------------------------------------------------------------- broadcast
def test_broadcast_rows_are_pruned_once_every_subscriber_passed_them(tmp_path: Path) -> None:
    with _open(tmp_path) as broker:
        broker.broadcast("c", env("unheard"))  # nobody subscribed: nothing stored
        assert _rows(broker, "stem_broadcasts") == 0
        fast, slow = broker.consume(channels="c"), broker.consume(channels="c")
        for i in range(3):
            broker.broadcast("c", env(f"b{i}"))
        assert _rows(broker, "stem_broadcasts") == 3
        for _ in range(3):
            broker.ack(take(fast, MARGIN))
        assert _rows(broker, "stem_broadcasts") == 3  # `slow` has not passed them
        for _ in range(3):
            broker.ack(take(slow, MARGIN))
        assert _rows(broker, "stem_broadcasts") == 0
        assert _rows(broker, "stem_broadcast_deliveries") == 0
        fast.close()
        slow.close()
        assert _rows(broker, "stem_subscribers") == 0


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_subscribers_of_vanished_processes_are_dropped(tmp_path: Path) -> None:
    with _open(tmp_path, subscriber_timeout=1.0) as broker:
        live = broker.consume(channels="c")
        old = time.time() - 60
        conn = sqlite3.connect(broker.path)
        with conn:
            for sub_id, pid in (("ghost", _dead_pid()), ("sleeper", os.getpid())):
                conn.execute(
                    "INSERT INTO stem_subscribers"
                    " (id, ns, consumer, channels, cursor, host, pid, seen_at)"
                    " VALUES (?, ?, 'x', '[\"c\"]', 0, ?, ?, ?)",
                    (sub_id, broker.namespace, HOST, pid, old),
                )
        conn.close()
        broker.broadcast("c", env("hello"))
        assert _rows(broker, "stem_subscribers") == 2  # the ghost is gone, the sleeper stays
        assert take(live, MARGIN).envelope.name == "hello"
        live.close()


def test_broadcast_crosses_processes(tmp_path: Path) -> None:
    with _open(tmp_path) as broker, broker.consume(channels="c") as consumer:
        code = (
            "import stemlab, sys; from stemlab import Envelope;"
            "b = stemlab.connect(sys.argv[1], namespace=sys.argv[2]);"
            "b.broadcast('c', Envelope(name='from-child')); b.close()"
        )
        subprocess.run(
            [sys.executable, "-c", code, f"sqlite:///{broker.path}", broker.namespace],
            check=True,
            timeout=60,
        )
        d = take(consumer, MARGIN)
        assert (d.envelope.name, d.channel, d.lease_expires_at) == ("from-child", "c", None)
        broker.ack(d)


def test_namespaces_share_a_file_without_seeing_each_other(tmp_path: Path) -> None:
    with _open(tmp_path, namespace="a") as a, _open(tmp_path, namespace="b") as b:
        a.publish(Envelope(name="for-a", queue="q"))
        assert counts(b) == (0, 0, 0, 0)
        with b.consume("q") as consumer:
            assert consumer.get(timeout=0.2) is None
        assert counts(a) == (1, 0, 0, 0)
