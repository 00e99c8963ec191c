"""The Postgres consumer: LISTEN/NOTIFY pickup, batched SKIP LOCKED claims, a local buffer.

Each consumer owns one connection. It LISTENs on its namespace's channel and
claims up to `prefetch - held` rows in one statement whenever a notification
names one of its queues; the rows wait in the consumer core's read-ahead buffer
and are handed out one by one. When nothing is claimable it asks the server when the next delayed
message or lease becomes due and sleeps until then, a notification, an ack of
one of its leases in this process, or the fallback poll, whichever comes first.
A broken connection is reopened with bounded retries (then `BrokerUnavailable`).
An ack of a delivery this (single-queue) consumer handed out, made while its buffer is
empty, runs ack_claim.sql on the consumer's connection: the ack and the next claim in one
statement and one commit (see `ack_ahead` in core/consumer.py).
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql

from stemlab.brokers.postgres import _sql
from stemlab.brokers.postgres._connection import RETRYABLE, connect, translated
from stemlab.core.consumer import Cast, Claim, StoreConsumer
from stemlab.core.envelope import Delivery, Envelope
from stemlab.errors import BrokerUnavailable, LeaseLost, StemlabError

if TYPE_CHECKING:
    from stemlab.brokers.postgres.broker import PostgresBroker

__all__ = ["PostgresConsumer"]

FULL_POLL = 0.25  # while at its prefetch limit: re-check for acks made by other processes
RETRY_SOON = 0.002  # rows were claimable but a concurrent claimer held them
BROADCAST_BATCH = 32
T = TypeVar("T")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


class PostgresConsumer(StoreConsumer):
    """Consumer of queues and broadcast channels on one dedicated connection.

    Claims carry `extra = ready_at`. A purge notifies "!<queue>" on the channel; the
    notifications that arrived are read (no round trip) before a buffered claim is
    handed out, so the core gives back what a purge removed (see core/purges.py).
    """

    max_wait = math.inf  # `_interrupt` wakes a waiting `get` through the pipe

    def __init__(
        self,
        broker: PostgresBroker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        super().__init__(broker, queues, channels, prefetch, name)
        self._store = broker.store
        self._settings = broker.settings
        self._queue_set = frozenset(queues)
        self._channel_set = frozenset(channels)
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
            self.broker.untrack(self)
            raise
        self._store.register(self)

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
                self._claim_due = bool(self.queues)
                self._take_due = bool(self.channels)
                return
            except BrokerUnavailable:
                if attempt >= s.retries:
                    raise
                time.sleep(s.backoff(attempt))

    def _connect_once(self) -> Any:
        conn = connect(self._settings, "consumer", generic_plans=True)
        try:
            conn.add_notify_handler(self._on_notify)
            listen = sql.SQL("LISTEN {}").format(sql.Identifier(self._store.channel))
            conn.execute(listen)
            if self.channels:
                conn.execute(
                    _sql.query("subscribe"),
                    {
                        "ns": self._store.ns,
                        "consumer": self.name,
                        "channels": list(self.channels),
                    },
                )
        except BaseException:
            conn.close()
            raise
        return conn

    def _reconnect(self) -> None:
        """Drop the broken connection and open a new one.

        Buffered claims are given back rather than handed out (a purge notice sent
        while the connection was down is lost).
        """
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        for queue in self.queues:  # a purge notice may have been lost with the connection
            self.purged(queue)
        self._open()

    # ------------------------------------------------------------- signals
    def _on_notify(self, notify: Any) -> None:
        self._payload(notify.payload)

    def _payload(self, payload: str) -> None:
        for name in payload.split(","):
            if name.startswith("!"):
                if name[1:] in self._queue_set:
                    self.purged(name[1:])
            elif name.startswith("#"):
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

    # ----------------------------------------------------------- core hooks
    def _fill(self) -> float:
        def fill() -> float:
            if self._take_due:
                self._take_broadcasts()
            if self._casts:
                return 0.0
            if self._claim_due:
                self._claim()
                if self._ahead:
                    return 0.0
            return self._idle_wait()

        return self._guarded(fill, 0.0)

    def _wait(self, seconds: float) -> bool:
        return self._guarded(lambda: self._sleep(seconds), True)

    def _guarded(self, fn: Callable[[], T], after_reconnect: T) -> T:
        """Run `fn` on the connection, reopening it (bounded retries) when it broke."""
        try:
            if self._conn is None:  # an earlier reconnect gave up: try again
                self._open()
            return fn()
        except RETRYABLE:
            if not self._stopped():
                self._reconnect()
            return after_reconnect
        except psycopg.Error as exc:
            raise StemlabError(f"postgres: consume failed: {exc}") from exc

    def _poll_signals(self) -> None:
        def poll() -> None:
            pgconn = self._conn.pgconn
            pgconn.consume_input()
            self._drain(pgconn)

        self._guarded(poll, None)

    def _hand_out(self, claim: Claim) -> float | None:
        if claim.expires <= time.time() + self._offset:
            return None  # lease ran out in the buffer: whoever claims it next gets it
        envelope = claim.payload
        assert isinstance(envelope, Envelope)
        # the receipt also names the stored envelope's id and this consumer's prefetch
        name, row_id, token = claim.fields
        claim.fields = (name, envelope.id, self.prefetch, row_id, token)
        return claim.expires

    def _bury(self, claim: Claim, error: Exception) -> None:
        _, row_id, token = claim.fields
        body = claim.payload
        assert isinstance(body, bytes | bytearray | memoryview)
        self._store.bury(int(row_id), int(token), claim.queue, bytes(body), error)

    def _release(self, claims: list[Claim]) -> None:
        self._store.release([(int(c.fields[1]), int(c.fields[2]), c.extra) for c in claims])

    def _unsubscribe(self, casts: list[Cast]) -> None:
        if self.channels:
            self._store.run("unsubscribe", {"consumer": self.name})

    def _interrupt(self) -> None:
        self.poke()

    def _closed_store(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()
        self._store.unregister(self)
        self._close_pipe()

    def read_ahead(self, queue: str) -> int:
        """Claimed-but-unhanded rows of `queue` whose lease still runs (any thread)."""
        now = time.time() + self._offset
        return sum(1 for c in tuple(self._ahead) if c.queue == queue and c.expires > now)

    # ---------------------------------------------------------- statements
    def _claim(self) -> None:
        """Claim a batch into the buffer; the trailer row says how long to idle if short."""
        params = {
            "ns": self._store.ns,
            "consumer": self.name,
            "prefetch": self.prefetch,
            "queue": self.queues[0],
            "queues": list(self.queues),
            "visibility": self._store.settings.default_visibility_timeout,
        }
        statement = _sql.query("claim" if len(self.queues) == 1 else "claim_many")
        freed = self._freed
        rows = self._conn.execute(statement, params, binary=True).fetchall()
        self._took(rows, freed)

    def _ack_and_claim(self, delivery: Delivery) -> bool:
        """Ack and claim ahead in one statement (ack_claim.sql) on this consumer's connection.

        Single-queue consumers only (else False: the broker acks alone). A broken
        connection is reopened and the ack retried alone, as a possibly applied one.
        """
        if len(self.queues) != 1 or self._conn is None:
            return False
        consumer, _, _, row_id, token = self.broker.receipts.read(delivery)
        params = {
            "ns": self._store.ns,
            "consumer": self.name,
            "prefetch": self.prefetch,
            "queue": self.queues[0],
            "id": int(row_id),
            "token": int(token),
            "visibility": self._store.settings.default_visibility_timeout,
        }
        freed = self._freed
        try:
            rows = self._conn.execute(_sql.query("ack_claim"), params, binary=True).fetchall()
        except RETRYABLE:
            with contextlib.suppress(StemlabError):
                self._reconnect()
            self._store.settle("ack", int(row_id), int(token), str(consumer), maybe_applied=True)
            return True
        except psycopg.Error as exc:
            raise StemlabError(f"postgres: ack failed: {exc}") from exc
        if not rows[-1][12]:
            raise LeaseLost("this delivery was already settled or handed to another consumer")
        self._took(rows, freed)
        self._store.maybe_sweep()
        return True

    def _took(self, rows: list[Any], freed: int) -> None:
        """Buffer the rows a claim leased; its trailer row sets when to claim or wake next."""
        trailer = rows.pop()
        local = time.time()
        self._offset = trailer[4].timestamp() - local
        slots, more, wake_in = trailer[9], trailer[10], trailer[11]
        rows.sort(key=lambda r: (-r[6], r[7], r[8]))
        self.add_claims(
            [Claim((self.name, r[0], r[1]), r[2], r[5], r[3], r[4].timestamp(), r[7]) for r in rows]
        )
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
        params = {"ns": self._store.ns, "consumer": self.name, "limit": BROADCAST_BATCH}
        rows = self._conn.execute(_sql.query("broadcast_take"), params, binary=True).fetchall()
        rows.sort(key=lambda r: r[0])
        self.add_casts([Cast((bid,), channel, bytes(body)) for bid, channel, body in rows])
        if len(rows) >= BROADCAST_BATCH:
            self._take_due = True

    def _idle_wait(self) -> float:
        """Seconds to sleep before looking again, from what the last claim reported."""
        self._store.maybe_sweep()
        wait = self._settings.poll_interval
        if not self.queues:
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

    def _sleep(self, seconds: float) -> bool:
        """Wait for a notification, a local poke or the timeout (then look again anyway)."""
        conn = self._conn
        pgconn = conn.pgconn
        self._drain(pgconn)
        if self._claim_due or self._take_due or seconds <= 0:
            return True
        fd = conn.fileno()
        poller = select.poll()  # not select(): it fails for descriptors above 1023
        poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        ready = {f for f, _ in poller.poll(seconds * 1000.0)}
        self.waiting_full = False
        if not ready:
            self._claim_due = bool(self.queues)
            self._take_due = bool(self.channels)
            return False
        if self._wake_r in ready:
            self._drain_pipe()
            self._claim_due = bool(self.queues)
        if fd in ready:
            pgconn.consume_input()
            self._drain(pgconn)
            if pgconn.status != psycopg.pq.ConnStatus.OK:
                raise psycopg.OperationalError("the consumer's connection was closed")
        return True

    def _drain(self, pgconn: Any) -> None:
        while (notify := pgconn.notifies()) is not None:
            self._payload(notify.extra.decode("utf-8", "replace"))

    def _drain_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass

    def _close_pipe(self) -> None:
        fds = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1  # a late poke must not write into a reused fd
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
