"""The Postgres consumer: LISTEN/NOTIFY pickup, batched SKIP LOCKED claims, a local buffer.

Each consumer owns one connection. It LISTENs on its namespace's channel and
claims up to `prefetch - held` rows in one statement whenever a notification
names one of its queues; the rows wait in a local buffer and are handed out one
by one. When nothing is claimable it asks the server when the next delayed
message or lease becomes due and sleeps until then, a notification, an ack of
one of its leases in this process, or the fallback poll, whichever comes first.
A broken connection is reopened with bounded retries (then `BrokerUnavailable`).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from stemlab.brokers.postgres import _sql
from stemlab.brokers.postgres._connection import RETRYABLE, connect, translated
from stemlab.core.broker import Consumer
from stemlab.core.envelope import Delivery, Envelope
from stemlab.errors import BrokerUnavailable, EnvelopeError, StemlabError

if TYPE_CHECKING:
    from stemlab.brokers.postgres.broker import PostgresBroker

__all__ = ["PostgresConsumer", "purged", "read_ahead", "wake_local"]

FULL_POLL = 0.25  # while at its prefetch limit: re-check for acks made by other processes
RETRY_SOON = 0.002  # rows were claimable but a concurrent claimer held them
BROADCAST_BATCH = 32

# Consumers of this process by (store key, namespace): acks wake the ones blocked on a
# full prefetch, counts see their read-ahead rows, purges invalidate those rows.
_registry: dict[tuple[str, str], weakref.WeakSet[PostgresConsumer]] = {}
_registry_lock = threading.Lock()
_purge_gen: dict[tuple[str, str, str], int] = {}


def _consumers(store_key: str, namespace: str) -> list[PostgresConsumer]:
    with _registry_lock:
        group = _registry.get((store_key, namespace))
        return list(group) if group else []


def wake_local(store_key: str, namespace: str, name: str) -> None:
    """A lease of consumer `name` was settled: if it was full, it may claim again now."""
    for consumer in _consumers(store_key, namespace):
        if consumer.name == name:
            consumer.slot_freed()


def read_ahead(store_key: str, namespace: str, queue: str) -> int:
    """Rows of `queue` that consumers of this process claimed but have not handed out yet.

    They are leased in the table (nobody else can take them) but not delivered, so
    brokers of this process count them as pending rather than in flight.
    """
    total = 0
    for consumer in _consumers(store_key, namespace):
        total += consumer.read_ahead(queue)
    return total


def purged(store_key: str, namespace: str, queue: str) -> None:
    """`queue` was purged: read-ahead rows claimed before now must not be handed out."""
    key = (store_key, namespace, queue)
    _purge_gen[key] = _purge_gen.get(key, 0) + 1


@dataclass(slots=True)
class _Claim:
    id: int
    token: int
    queue: str
    deliveries: int
    expires: datetime
    body: bytes
    ready_at: datetime
    gen: int  # purge generation of its queue when claimed


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class PostgresConsumer(Consumer):
    """Consumer of queues and broadcast channels on one dedicated connection."""

    def __init__(
        self,
        broker: PostgresBroker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        super().__init__(name)
        self._broker = broker
        self._settings = broker.settings
        self._queues = list(queues)
        self._channels = list(channels)
        self._queue_set = frozenset(queues)
        self._channel_set = frozenset(channels)
        self._prefetch = prefetch
        self._group = (broker.store_key, broker.namespace)
        self._lock = threading.Lock()
        self._buffer: deque[_Claim] = deque()
        self._bbuffer: deque[Delivery] = deque()
        self._claim_due = bool(queues)
        self._take_due = bool(channels)
        self._full = False  # the last claim filled every free slot (or found none)
        self._more = True  # a full batch left more claimable rows behind
        self._retry_soon = False  # the last claim skipped rows a concurrent claimer held
        self._wake_at: float | None = None  # monotonic time the next row becomes claimable
        self.waiting_full = False
        self._freed = 0  # leases of ours settled in this process (counts slot_freed calls)
        self._offset = 0.0  # server clock minus local clock, from the last claim
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._conn: Any = None
        try:
            self._open()
        except BaseException:
            self._close_pipe()
            raise
        with _registry_lock:
            _registry.setdefault(self._group, weakref.WeakSet()).add(self)

    # ------------------------------------------------------------ connection
    @property
    def backend_pid(self) -> int | None:
        """The server pid of this consumer's connection (for tests that kill it)."""
        conn = self._conn
        return None if conn is None or conn.closed else int(conn.info.backend_pid)

    def _open(self) -> None:
        """Connect, LISTEN and (re)subscribe, retrying a bounded number of times."""
        s = self._settings
        for attempt in range(s.retries + 1):
            try:
                with translated("consumer connect"):
                    self._conn = self._connect_once()
                self._claim_due = bool(self._queues)
                self._take_due = bool(self._channels)
                return
            except BrokerUnavailable:
                if attempt >= s.retries:
                    raise
                time.sleep(s.backoff(attempt))

    def _connect_once(self) -> Any:
        conn = connect(self._settings, "consumer", generic_plans=True)
        try:
            conn.add_notify_handler(self._on_notify)
            listen = sql.SQL("LISTEN {}").format(sql.Identifier(self._broker.channel))
            conn.execute(listen)
            if self._channels:
                conn.execute(
                    _sql.query("subscribe"),
                    {
                        "ns": self._broker.namespace,
                        "consumer": self.name,
                        "channels": self._channels,
                    },
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def _reconnect(self) -> None:
        """Drop the broken connection and open a new one (buffered claims stay valid)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self._open()

    # ------------------------------------------------------------- signals
    def _on_notify(self, notify: Any) -> None:
        self._payload(notify.payload)

    def _payload(self, payload: str) -> None:
        for name in payload.split(","):
            if name.startswith("#"):
                if name[1:] in self._channel_set:
                    self._take_due = True
            elif name == "*" or name in self._queue_set:
                self._claim_due = True

    def slot_freed(self) -> None:
        """One of this consumer's leases was settled (any thread of this process)."""
        self._freed += 1
        if self._full:
            self._full = False
            if self._more:
                self._claim_due = True
                if self.waiting_full:
                    self.poke()

    def poke(self) -> None:
        """Wake a `get` that is waiting (thread-safe, never blocks)."""
        fd = self._wake_w
        if fd < 0:
            return
        with contextlib.suppress(OSError):
            os.write(fd, b"!")

    # ----------------------------------------------------------------- get
    def get(self, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._lock:
            while not self._stopped():
                try:
                    if self._conn is None:  # an earlier reconnect gave up: try again
                        self._open()
                    delivery = self._next()
                    if delivery is not None:
                        return delivery
                    wait = self._idle_wait()
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return None
                        wait = min(wait, left)
                    self._sleep(wait)
                except RETRYABLE:
                    if self._stopped():
                        break
                    self._reconnect()
                except psycopg.Error as exc:
                    raise StemlabError(f"postgres: consume failed: {exc}") from exc
        return None

    def _stopped(self) -> bool:
        return self.closed or self._broker.closed

    def _next(self) -> Delivery | None:
        if self._take_due:
            self._take_broadcasts()
        if self._bbuffer:
            return self._bbuffer.popleft()
        delivery = self._from_buffer()
        if delivery is None and self._claim_due:
            self._claim()
            delivery = self._from_buffer()
        return delivery

    def _from_buffer(self) -> Delivery | None:
        stale: list[_Claim] = []
        try:
            while self._buffer:
                item = self._buffer.popleft()
                if item.gen != self._gen(item.queue):
                    stale.append(item)  # its queue was purged since: give it back
                    continue
                if item.expires.timestamp() <= time.time() + self._offset:
                    continue  # lease ran out in the buffer: whoever claims it next gets it
                try:
                    envelope = Envelope.from_json(item.body)
                except EnvelopeError as exc:
                    self._broker._bury_undecodable(item.id, item.token, item.queue, item.body, exc)
                    continue
                receipt = self._broker.receipts.issue("q", self.name, item.id, item.token)
                return Delivery(envelope, receipt, item.queue, item.expires, item.deliveries)
            return None
        finally:
            if stale:
                self._broker._release(stale, self.name, [])

    def _gen(self, queue: str) -> int:
        return _purge_gen.get((self._group[0], self._group[1], queue), 0)

    def read_ahead(self, queue: str) -> int:
        """Claimed-but-unhanded rows of `queue` whose lease still runs (any thread)."""
        now = time.time() + self._offset
        return sum(
            1 for c in tuple(self._buffer) if c.queue == queue and c.expires.timestamp() > now
        )

    # ---------------------------------------------------------- statements
    def _claim(self) -> None:
        """Claim a batch into the buffer; the trailer row says how long to idle if short."""
        params = {
            "ns": self._broker.namespace,
            "consumer": self.name,
            "prefetch": self._prefetch,
            "queue": self._queues[0],
            "queues": self._queues,
            "visibility": self._broker.default_visibility_timeout,
        }
        statement = _sql.query("claim" if len(self._queues) == 1 else "claim_many")
        gens = {q: self._gen(q) for q in self._queues}
        freed = self._freed
        rows = self._conn.execute(statement, params, binary=True).fetchall()
        trailer = rows.pop()
        local = time.time()
        self._offset = trailer[4].timestamp() - local
        slots, more, wake_in = trailer[9], trailer[10], trailer[11]
        rows.sort(key=lambda r: (-r[6], r[7], r[8]))
        for r in rows:
            self._buffer.append(_Claim(r[0], r[1], r[2], r[3], _utc(r[4]), r[5], r[7], gens[r[2]]))
        now = time.monotonic()
        self._wake_at = None if wake_in is None else now + max(0.0, wake_in)
        if rows:  # our own new leases come back (and free a slot) when they expire
            first = min(r[4].timestamp() for r in rows) - local - self._offset
            mine = now + max(0.0, first)
            self._wake_at = mine if self._wake_at is None else min(self._wake_at, mine)
        if len(rows) >= slots:
            # every free slot filled (or none was free): claim again when a lease of ours
            # is settled in this process (slot_freed) if more rows wait, else on a notify
            self._full = True
            self._more = True if more is None else bool(more)
            self._claim_due = self._more and self._freed != freed
            self._retry_soon = False
        else:
            self._full = False
            self._more = False
            self._claim_due = False
            self._retry_soon = bool(more)  # claim_many: rows skipped under contention

    def _take_broadcasts(self) -> None:
        self._take_due = False
        params = {"ns": self._broker.namespace, "consumer": self.name, "limit": BROADCAST_BATCH}
        rows = self._conn.execute(_sql.query("broadcast_take"), params, binary=True).fetchall()
        rows.sort(key=lambda r: r[0])
        for bid, channel, body in rows:
            try:
                envelope = Envelope.from_json(bytes(body))
            except EnvelopeError:
                continue  # broadcast bodies are written by `broadcast`, always valid
            receipt = self._broker.receipts.issue("b", bid)
            delivery = Delivery(envelope, receipt, envelope.queue, None, 1, channel)
            self._bbuffer.append(delivery)
        if len(rows) >= BROADCAST_BATCH:
            self._take_due = True

    def _idle_wait(self) -> float:
        """Seconds to sleep before looking again, from what the last claim reported."""
        self._broker._maybe_sweep()
        wait = self._settings.poll_interval
        if not self._queues:
            return wait
        if self._retry_soon:
            self._retry_soon = False
            self._claim_due = True
            return RETRY_SOON
        if self._wake_at is not None:
            wait = min(wait, max(0.0, self._wake_at - time.monotonic()) + 0.001)
        if self._full:
            wait = min(wait, FULL_POLL)
        self.waiting_full = self._full
        return wait

    def _sleep(self, seconds: float) -> None:
        """Wait for a notification, a local poke or the timeout (then look again anyway)."""
        conn = self._conn
        pgconn = conn.pgconn
        self._drain(pgconn)
        if self._claim_due or self._take_due or seconds <= 0:
            return
        fd = conn.fileno()
        poller = select.poll()  # not select(): it fails for descriptors above 1023
        poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        ready = {f for f, _ in poller.poll(seconds * 1000.0)}
        self.waiting_full = False
        if not ready:
            self._claim_due = bool(self._queues)
            self._take_due = bool(self._channels)
            return
        if self._wake_r in ready:
            self._drain_pipe()
            self._claim_due = bool(self._queues)
        if fd in ready:
            pgconn.consume_input()
            self._drain(pgconn)
            if pgconn.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("the consumer's connection was closed")

    def _drain(self, pgconn: Any) -> None:
        while (notify := pgconn.notifies()) is not None:
            self._payload(notify.extra.decode("utf-8", "replace"))

    def _drain_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass

    # --------------------------------------------------------------- close
    def close(self) -> None:
        """Stop delivering; give back claimed-but-unhanded rows; leases handed out stay."""
        if self.closed:
            return
        super().close()
        self.poke()
        with self._lock:
            pending = list(self._buffer)
            self._buffer.clear()
            self._bbuffer.clear()
            self._broker._release(pending, self.name, self._channels)
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            with _registry_lock:
                group = _registry.get(self._group)
                if group is not None:
                    group.discard(self)
            self._close_pipe()

    def _close_pipe(self) -> None:
        fds = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1  # a late poke must not write into a reused fd
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
