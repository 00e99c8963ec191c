"""The SQLite consumer: the consumer core plus cheap change checks and batch claims.

Each consumer owns a connection and reads `PRAGMA data_version` every poll
interval: it changes only when another connection (any thread or process)
commits, so an idle consumer costs one pragma per poll. When something changed,
or when the next delayed message / lease expiry is due, it claims up to
`prefetch - held` rows in one `BEGIN IMMEDIATE` transaction into the core's
read-ahead buffer, marking the first one delivered in that same transaction
(`get` hands it out next, so that saves a write). Handing out any other
buffered row is one short write (the row becomes "in flight" and its delivery
count goes up), so counts stay exact and rows the application never saw go
back untouched when the consumer closes. An ack of a delivery this consumer handed
out, made while its buffer is empty, also reserves the next rows in the ack's own
transaction (see `ack_ahead` in core/consumer.py); they stay pending until handed out.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stemlab.brokers.sqlite.connection import reading, write
from stemlab.brokers.sqlite.store import unsubscribe_later
from stemlab.core.codec import new_id
from stemlab.core.consumer import Cast, Claim, StoreConsumer
from stemlab.core.envelope import Delivery

if TYPE_CHECKING:
    from stemlab.brokers.sqlite.broker import SQLiteBroker

__all__ = ["SQLiteConsumer"]

RESTAMP = 0.02  # a buffered row that lost more than this much of its lease is re-leased on hand-out
CURSOR_REFRESH = 1.0  # seconds between cursor writes when only other channels broadcast


@dataclass(slots=True)
class _Row:
    """What the SQLite consumer keeps about a claim besides the core's fields."""

    vt: float
    ready_at: float  # its avail_at before the claim, restored if it is given back
    handed: bool = False  # already marked delivered (by the claim transaction itself)


class SQLiteConsumer(StoreConsumer):
    """Polls one SQLite file for its queues and broadcast channels."""

    def __init__(
        self,
        broker: SQLiteBroker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        super().__init__(broker, queues, channels, prefetch, name)
        self._store = broker.store
        self._poll = broker.settings.poll_interval
        self._channel_set = frozenset(channels)
        self._conn = self._store.open_connection()
        self._dv: int | None = None
        self._more = True
        self._next_due = 0.0
        self._sub_id: str | None = None
        self._cursor = 0
        self._cursor_written = 0.0
        if channels:
            self._sub_id = new_id()
            now = time.time()
            self._cursor = self._store.subscribe(self._conn, self._sub_id, name, channels, now)
            self._cursor_written = now
            self._finalizer = weakref.finalize(
                self, unsubscribe_later, broker.settings, self._sub_id
            )

    # ----------------------------------------------------------- core hooks
    def _fill(self) -> float:
        now = time.time()
        if self._should_fill(now) and self.queues:
            self.add_claims(self._claim(now))
            if not self._more:
                self._next_due = self._store.next_due(self._conn, self.queues, now)
        elif not self.queues:
            self._more, self._next_due = False, float("inf")
        return min(self._poll, max(0.0, self._next_due - time.time()))

    def _wait(self, seconds: float) -> bool:
        time.sleep(seconds)
        return False

    def _hand_out(self, claim: Claim) -> float | None:
        row: _Row = claim.extra
        expires = claim.expires if row.handed else self._mark_handed(claim, row)
        if expires is None:  # our reservation expired and someone else took the row
            self._more = True
        else:  # the receipt carries our prefetch: extending an expired lease keeps the cap
            claim.fields = (self.prefetch, *claim.fields)
        return expires

    def _bury(self, claim: Claim, error: Exception) -> None:
        self._more = True
        seq, token = (int(f) for f in claim.fields)
        meta = {"error": str(error)[:500]}
        self._store.dead_letter_row(self._conn, seq, token, "undecodable", meta)

    def _release(self, claims: list[Claim]) -> None:
        rows = [(int(c.fields[0]), int(c.fields[1]), c.extra.ready_at) for c in claims]
        if rows:
            self._store.release(self._conn, rows)

    def _unsubscribe(self, casts: list[Cast]) -> None:
        if self._sub_id is not None:
            self._finalizer.detach()
            self._store.unsubscribe(self._conn, self._sub_id, [int(c.fields[0]) for c in casts])

    def _closed_store(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    # ---------------------------------------------------------------- claim
    def _should_fill(self, now: float) -> bool:
        """Did another connection commit since we last looked, or is something due?"""
        with reading():
            dv = self._conn.execute("PRAGMA data_version").fetchone()[0]
        changed, self._dv = dv != self._dv, dv
        if changed and self._sub_id is not None:
            self._collect_broadcasts(now)
        return changed or self._more or now >= self._next_due

    def _claim(self, now: float) -> list[Claim]:
        """Reserve up to `prefetch - held` rows, best first, in one transaction."""
        if not self._more and not self._claimable(now):
            return []
        with write(self._conn) as conn:
            return self._reserve(conn)

    def _ack_and_claim(self, delivery: Delivery) -> bool:
        """Ack and claim ahead in one `BEGIN IMMEDIATE` transaction on this consumer's connection.

        A stale receipt raises `LeaseLost` and rolls the transaction back (nothing claimed).
        """
        _, seq, token = self.broker.receipts.read(delivery)
        with write(self._conn) as conn:
            self._store.ack_row(conn, int(seq), int(token))
            claims = self._reserve(conn, mark_first=False) if self._more else []
        self.add_claims(claims)
        if not claims:  # the next `get` looks again, and learns when something is due
            self._next_due = 0.0
        return True

    def _reserve(self, conn: sqlite3.Connection, mark_first: bool = True) -> list[Claim]:
        """Lease up to `prefetch - held` rows, inside the caller's write transaction.

        `mark_first`: the calling `get` hands the first one out next, so mark it
        delivered in this transaction (not for an ack's read-ahead: it stays pending).
        """
        store = self._store
        now = time.time()  # after the lock wait: leases start now
        want = self.prefetch - store.held(conn, self.name, now)
        chosen = store.candidates(conn, self.queues, now, want) if want > 0 else []
        if not chosen:
            self._more = False
            return []
        rows = store.reserve(conn, self.name, now, [c[0] for c in chosen])
        ready = {c[0]: (rank, c[2]) for rank, c in enumerate(chosen)}
        rows.sort(key=lambda r: ready[r[0]][0])
        claims = [
            Claim((seq, token), queue, payload, count + 1, expires, _Row(vt, ready[seq][1]))
            for seq, token, count, expires, vt, queue, payload in rows
        ]
        if claims and mark_first and not self._casts:  # get() hands it out next: save a write
            first = claims[0]
            store.hand_out(conn, int(first.fields[0]), int(first.fields[1]))
            first.extra.handed = True
        self._more = len(rows) == want
        return claims

    def _claimable(self, now: float) -> bool:
        """Read-only pre-check, so idle consumers never take the write lock for nothing."""
        store = self._store
        with reading():
            if store.held(self._conn, self.name, now) >= self.prefetch:
                return False
            return bool(store.candidates(self._conn, self.queues, now, 1))

    def _mark_handed(self, claim: Claim, row: _Row) -> float | None:
        """Mark a buffered row delivered; re-lease it if it waited. None: it is gone."""
        with write(self._conn) as conn:
            now = time.time()
            seq, token = int(claim.fields[0]), int(claim.fields[1])
            if now + row.vt - claim.expires > RESTAMP:
                return self._store.hand_out_restamp(conn, seq, token, now)
            return claim.expires if self._store.hand_out(conn, seq, token) else None

    # ------------------------------------------------------------ broadcast
    def _collect_broadcasts(self, now: float) -> None:
        sub_id = self._sub_id
        assert sub_id is not None
        with reading():
            pending = self._store.after(self._conn, self._cursor)
        if not pending:
            return
        mine = any(channel in self._channel_set for _, channel, _ in pending)
        if not mine and now - self._cursor_written < CURSOR_REFRESH:
            return
        more = True
        while more:
            self._cursor, items, more = self._store.collect(
                self._conn, sub_id, self._channel_set, self._cursor, now
            )
            self._cursor_written = now
            self.add_casts([Cast((token,), channel, payload) for token, channel, payload in items])

    def __del__(self) -> None:  # pragma: no cover - best effort when never closed
        try:
            if not self.closed:
                self._conn.close()
        except (AttributeError, sqlite3.Error):
            pass
