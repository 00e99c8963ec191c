"""The SQLite consumer: cheap change checks, batch claims into a prefetch buffer.

Each consumer owns a connection and reads `PRAGMA data_version` every poll
interval: it changes only when another connection (any thread or process)
commits, so an idle consumer costs one pragma per poll. When something changed,
or when the next delayed message / lease expiry is due, it claims up to
`prefetch - held` rows in one `BEGIN IMMEDIATE` transaction into a local buffer.
Handing a buffered row to the application is one short write (the row becomes
"in flight" and its delivery count goes up), so counts stay exact and rows the
application never saw go back untouched when the consumer closes.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stemlab.brokers.sqlite import broadcast as bc
from stemlab.brokers.sqlite.connection import load_sql, reading, write
from stemlab.core.broker import Consumer
from stemlab.core.clock import from_epoch
from stemlab.core.codec import dumps, new_id
from stemlab.core.envelope import Delivery, Envelope
from stemlab.errors import EnvelopeError, LeaseLost, StemlabError

if TYPE_CHECKING:
    from stemlab.brokers.sqlite.broker import SQLiteBroker

__all__ = ["SQLiteConsumer"]

Q = load_sql("queue.sql")
RESTAMP = 0.02  # a buffered row that lost more than this much of its lease is re-leased on hand-out
CURSOR_REFRESH = 1.0  # seconds between cursor writes when only other channels broadcast


@dataclass(slots=True)
class _Reserved:
    seq: int
    token: int
    deliveries: int
    expires: float
    vt: float
    queue: str
    payload: Any
    ready_at: float  # its avail_at before the claim, restored if it is given back
    handed: bool = False  # already marked delivered (by the claim transaction itself)


class SQLiteConsumer(Consumer):
    """Polls one SQLite file for its queues and broadcast channels."""

    def __init__(
        self,
        broker: SQLiteBroker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        super().__init__(name)
        self._broker = broker
        self._ns = broker.namespace
        self._settings = broker.settings
        self._queues = queues
        self._channels = frozenset(channels)
        self._prefetch = prefetch
        self._conn = broker.open_connection()
        self._lock = threading.Lock()
        self._buffer: deque[_Reserved] = deque()
        self._bcast: deque[Delivery] = deque()
        self._dv: int | None = None
        self._more = True
        self._next_due = 0.0
        self._sub_id: str | None = None
        self._cursor = 0
        self._cursor_written = 0.0
        if channels:
            self._subscribe(channels)

    def _subscribe(self, channels: tuple[str, ...]) -> None:
        self._sub_id = new_id()
        now = time.time()
        self._cursor = bc.subscribe(self._conn, self._ns, self._sub_id, self.name, channels, now)
        self._cursor_written = now
        self._finalizer = weakref.finalize(self, bc.unsubscribe_later, self._settings, self._sub_id)

    # ------------------------------------------------------------------ get
    def get(self, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        poll = self._settings.poll_interval
        with self._lock:
            while not self.closed and not self._broker.closed:
                delivery = self._next()
                if delivery is not None:
                    return delivery
                now = time.time()
                if self._should_fill(now):
                    self._fill(now)
                    if self._buffer or self._bcast:
                        continue
                wait = min(poll, max(0.0, self._next_due - time.time()))
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = min(wait, left)
                time.sleep(wait)
        return None

    def _should_fill(self, now: float) -> bool:
        """Did another connection commit since we last looked, or is something due?"""
        with reading():
            dv = self._conn.execute("PRAGMA data_version").fetchone()[0]
        changed, self._dv = dv != self._dv, dv
        if changed and self._sub_id is not None:
            self._collect_broadcasts(now)
        return changed or self._more or now >= self._next_due

    def _fill(self, now: float) -> None:
        if not self._queues:
            self._more, self._next_due = False, float("inf")
            return
        rows = self._claim(now)
        self._buffer.extend(rows)
        if not self._more:
            self._next_due = self._due(now)

    # ---------------------------------------------------------------- claim
    def _claim(self, now: float) -> list[_Reserved]:
        """Reserve up to `prefetch - held` rows, best first, in one transaction."""
        if not self._more and not self._claimable(now):
            return []
        with write(self._conn) as conn:
            now = time.time()  # after the lock wait: leases start now
            want = self._prefetch - self._held(now)
            if want <= 0:
                self._more = False
                return []
            chosen = self._candidates(now, want)
            if not chosen:
                self._more = False
                return []
            params = {
                "ns": self._ns,
                "consumer": self.name,
                "now": now,
                "default_vt": self._broker.default_visibility_timeout,
                "seqs": dumps([c[0] for c in chosen]),
            }
            rows = conn.execute(Q["reserve"], params).fetchall()
            ready = {c[0]: (rank, c[2]) for rank, c in enumerate(chosen)}
            rows.sort(key=lambda r: ready[r[0]][0])
            reserved = [
                _Reserved(seq, token, count, expires, vt, queue, payload, ready[seq][1])
                for seq, token, count, expires, vt, queue, payload in rows
            ]
            if reserved and not self._bcast:  # get() returns this one next: save a write
                first = reserved[0]
                conn.execute(
                    Q["hand_out"], {"ns": self._ns, "seq": first.seq, "token": first.token}
                )
                first.handed = True
        self._more = len(rows) == want
        return reserved

    def _held(self, now: float) -> int:
        params = {"ns": self._ns, "consumer": self.name, "now": now}
        return int(self._conn.execute(Q["held"], params).fetchone()[0])

    def _candidates(self, now: float, want: int) -> list[tuple[int, int, float]]:
        found: list[tuple[int, int, float]] = []
        for queue in self._queues:
            params = {"ns": self._ns, "queue": queue, "now": now, "limit": want}
            found.extend(self._conn.execute(Q["candidates"], params).fetchall())
        if len(self._queues) > 1:
            found.sort(key=lambda c: (-c[1], c[2], c[0]))
        return found[:want]

    def _claimable(self, now: float) -> bool:
        """Read-only pre-check, so idle consumers never take the write lock for nothing."""
        with reading():
            return self._held(now) < self._prefetch and bool(self._candidates(now, 1))

    def _due(self, now: float) -> float:
        """When a delayed row or a lease of our queues next becomes claimable."""
        due = float("inf")
        with reading():
            for queue in self._queues:
                params = {"ns": self._ns, "queue": queue, "now": now}
                value = self._conn.execute(Q["next_due"], params).fetchone()[0]
                if value is not None:
                    due = min(due, float(value))
        return due

    # ------------------------------------------------------------- hand out
    def _next(self) -> Delivery | None:
        if self._bcast:
            return self._bcast.popleft()
        while self._buffer:
            delivery = self._hand_out(self._buffer.popleft())
            if delivery is not None:
                return delivery
        return None

    def _hand_out(self, row: _Reserved) -> Delivery | None:
        """Turn a buffered row into a delivery (one short write), or dead-letter garbage."""
        try:
            envelope = Envelope.from_json(row.payload)
        except (EnvelopeError, TypeError, ValueError) as exc:
            self._undecodable(row, exc)
            return None
        expires = row.expires if row.handed else self._mark_handed(row)
        if expires is None:  # our reservation expired and someone else took the row
            self._more = True
            return None
        receipt = self._broker.receipts.issue("q", row.seq, row.token)
        return Delivery(envelope, receipt, row.queue, from_epoch(expires), row.deliveries + 1)

    def _mark_handed(self, row: _Reserved) -> float | None:
        """Mark a buffered row delivered; re-lease it if it waited. None: it is gone."""
        now = time.time()
        params = {"ns": self._ns, "seq": row.seq, "token": row.token}
        with write(self._conn) as conn:
            if now + row.vt - row.expires > RESTAMP:
                params.update(now=now, default_vt=self._broker.default_visibility_timeout)
                found = conn.execute(Q["hand_out_restamp"], params).fetchone()
                return None if found is None else float(found[0])
            done = conn.execute(Q["hand_out"], params).rowcount == 1
            return row.expires if done else None

    def _undecodable(self, row: _Reserved, exc: Exception) -> None:
        """Bad bytes in the queue: dead-letter them as "undecodable" and carry on."""
        self._more = True
        try:
            meta = {"error": str(exc)[:500]}
            self._broker.dead_letter_row(self._conn, row.seq, row.token, "undecodable", meta)
        except LeaseLost:
            pass

    # ------------------------------------------------------------ broadcast
    def _collect_broadcasts(self, now: float) -> None:
        sub_id = self._sub_id
        assert sub_id is not None
        with reading():
            pending = bc.after(self._conn, self._ns, self._cursor)
        if not pending:
            return
        mine = any(channel in self._channels for _, channel, _ in pending)
        if not mine and now - self._cursor_written < CURSOR_REFRESH:
            return
        more = True
        while more:
            self._cursor, items, more = bc.collect(
                self._conn, self._ns, sub_id, self._channels, self._cursor, now
            )
            self._cursor_written = now
            for token, channel, payload in items:
                self._bcast.append(self._broadcast_delivery(token, channel, payload))

    def _broadcast_delivery(self, token: int, channel: str, payload: str) -> Delivery:
        envelope = Envelope.from_json(payload)
        receipt = self._broker.receipts.issue("b", token)
        return Delivery(envelope, receipt, envelope.queue, None, 1, channel)

    # ---------------------------------------------------------------- close
    def close(self) -> None:
        """Stop delivering; give back buffered rows the application never received."""
        if self.closed:
            return
        super().close()
        with self._lock:
            try:
                self._give_back()
            except StemlabError:
                pass
            finally:
                self._conn.close()
        self._broker.forget_consumer(self)

    def _give_back(self) -> None:
        rows, self._buffer = list(self._buffer), deque()
        if rows:
            with write(self._conn) as conn:
                for row in rows:
                    params = {"ns": self._ns, "seq": row.seq, "token": row.token}
                    conn.execute(Q["release"], {**params, "avail_at": row.ready_at})
        if self._sub_id is not None:
            undelivered = [int(self._broker.receipts.read(d)[0]) for d in self._bcast]
            self._bcast.clear()
            bc.unsubscribe(self._conn, self._ns, self._sub_id, undelivered)
            self._finalizer.detach()

    def __del__(self) -> None:  # pragma: no cover - best effort when never closed
        try:
            if not self.closed:
                self._conn.close()
        except (AttributeError, sqlite3.Error):
            pass
