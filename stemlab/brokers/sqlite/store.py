"""The SQLite store: one file's connections and every named statement on it.

Both the broker and its consumers call this module; neither calls the other's
private methods. A `Store` belongs to one broker (one file, one namespace). It
owns the per-thread connections the broker uses; consumers own a connection
each (for `PRAGMA data_version`) and pass it in. Host-wide broadcast is a
table of broadcasts plus subscribers with cursors: a subscriber (one per
Consumer) starts at the newest broadcast, rows every subscriber has passed are
pruned, and subscribers whose process is gone are dropped once they have not
been seen for `subscriber_timeout`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from stemlab.brokers.sqlite.connection import Settings, load_sql, open_connection, reading, write
from stemlab.core.codec import dumps
from stemlab.core.envelope import Envelope, undecodable_envelope
from stemlab.errors import EnvelopeError, LeaseLost, StemlabError

__all__ = ["BATCH", "STALE", "Store", "micros"]

Q = load_sql("queue.sql")
DL = load_sql("dead_letters.sql")
B = load_sql("broadcast.sql")
BATCH = 500  # broadcast rows read per transaction
HOST = socket.gethostname()
STALE = "this delivery was already settled or handed to another consumer"

Row = tuple[Any, ...]


def micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _process_gone(host: str, pid: int) -> bool:
    """True when a subscriber's process no longer exists (other hosts: assume gone)."""
    if host != HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Store:
    """Connections and statements of one namespace in one SQLite file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ns = settings.namespace
        self.closed = False
        self._local = threading.local()
        self._conns: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ connections
    def conn(self) -> sqlite3.Connection:
        """This thread's connection (one per thread and process, opened on first use)."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is not None and local.pid == os.getpid():
            return conn
        if self.closed:
            raise StemlabError("this broker is closed")
        conn = open_connection(self.settings)
        local.conn, local.pid = conn, os.getpid()
        me = threading.current_thread()
        with self._lock:
            for ident, (thread, old) in list(self._conns.items()):
                if not thread.is_alive():
                    del self._conns[ident]
                    old.close()
            self._conns[id(conn)] = (me, conn)
        return conn

    def open_connection(self) -> sqlite3.Connection:
        """A dedicated connection (consumers own one, to read `PRAGMA data_version`)."""
        return open_connection(self.settings)

    def close(self) -> None:
        self.closed = True
        with self._lock:
            conns = [conn for _, conn in self._conns.values()]
            self._conns.clear()
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -------------------------------------------------------------- producing
    def row(self, envelope: Envelope, now: float) -> dict[str, Any]:
        due = envelope.not_before.timestamp() if envelope.not_before is not None else now
        return {
            "ns": self.ns,
            "queue": envelope.queue,
            "priority": envelope.priority,
            "avail_at": due if due > now else now,
            "vt": envelope.visibility_timeout,
            "payload": envelope.to_json(),
        }

    def publish(self, conn: sqlite3.Connection, envelopes: Sequence[Envelope], now: float) -> None:
        """Insert messages (inside the caller's transaction)."""
        conn.executemany(Q["publish"], [self.row(e, now) for e in envelopes])

    # --------------------------------------------------------------- settling
    def settle(self, name: str, seq: int, token: int, **extra: Any) -> None:
        """Run one fenced statement of queue.sql; no row changed: `LeaseLost`."""
        params = {"ns": self.ns, "seq": seq, "token": token, **extra}
        with write(self.conn()) as conn:
            if conn.execute(Q[name], params).rowcount != 1:
                raise LeaseLost(STALE)

    def ack_row(self, conn: sqlite3.Connection, seq: int, token: int) -> None:
        """Fenced ack inside the caller's transaction; no row changed: `LeaseLost`."""
        params = {"ns": self.ns, "seq": seq, "token": token}
        if conn.execute(Q["ack"], params).rowcount != 1:
            raise LeaseLost(STALE)

    def dead_letter_row(
        self,
        conn: sqlite3.Connection,
        seq: int,
        token: int,
        reason: str | None,
        meta: dict[str, Any],
        envelope: Envelope | None = None,
    ) -> None:
        """Move one leased row to its queue's dead letters (fenced by its token)."""
        params = {"ns": self.ns, "seq": seq, "token": token}
        with write(conn):
            row = conn.execute(Q["take"], params).fetchone()
            if row is None:
                raise LeaseLost(STALE)
            queue, priority, payload = row
            if envelope is None:
                try:
                    envelope = Envelope.from_json(payload)
                except EnvelopeError:
                    envelope = undecodable_envelope(payload, queue, priority=priority)
            self.insert_dead(conn, envelope, reason, meta)

    def insert_dead(
        self, conn: sqlite3.Connection, envelope: Envelope, reason: str | None, meta: dict[str, Any]
    ) -> None:
        """Write a dead letter (inside the caller's transaction)."""
        conn.execute(
            DL["insert"],
            {
                "ns": self.ns,
                "queue": envelope.queue,
                "task_id": envelope.id,
                "reason": reason,
                "meta": dumps(meta),
                "dead_at": micros(time.time()),
                "payload": envelope.to_json(),
            },
        )

    # -------------------------------------------------------------- claiming
    def held(self, conn: sqlite3.Connection, consumer: str, now: float) -> int:
        params = {"ns": self.ns, "consumer": consumer, "now": now}
        return int(conn.execute(Q["held"], params).fetchone()[0])

    def candidates(
        self, conn: sqlite3.Connection, queues: Sequence[str], now: float, want: int
    ) -> list[tuple[int, int, float]]:
        """(seq, priority, avail_at) of the best `want` claimable rows of `queues`."""
        found: list[tuple[int, int, float]] = []
        for queue in queues:
            params = {"ns": self.ns, "queue": queue, "now": now, "limit": want}
            found.extend(conn.execute(Q["candidates"], params).fetchall())
        if len(queues) > 1:
            found.sort(key=lambda c: (-c[1], c[2], c[0]))
        return found[:want]

    def reserve(
        self, conn: sqlite3.Connection, consumer: str, now: float, seqs: list[int]
    ) -> list[Row]:
        """Lease rows to `consumer` (inside the caller's transaction)."""
        params = {
            "ns": self.ns,
            "consumer": consumer,
            "now": now,
            "default_vt": self.settings.default_visibility_timeout,
            "seqs": dumps(seqs),
        }
        return list(conn.execute(Q["reserve"], params).fetchall())

    def hand_out(self, conn: sqlite3.Connection, seq: int, token: int) -> bool:
        """Mark a reserved row delivered (its count goes up); False if it is gone."""
        params = {"ns": self.ns, "seq": seq, "token": token}
        return bool(conn.execute(Q["hand_out"], params).rowcount == 1)

    def hand_out_restamp(
        self, conn: sqlite3.Connection, seq: int, token: int, now: float
    ) -> float | None:
        """Mark delivered and restart its lease at `now`; its new expiry, or None if gone."""
        params = {
            "ns": self.ns,
            "seq": seq,
            "token": token,
            "now": now,
            "default_vt": self.settings.default_visibility_timeout,
        }
        found = conn.execute(Q["hand_out_restamp"], params).fetchone()
        return None if found is None else float(found[0])

    def release(self, conn: sqlite3.Connection, rows: Iterable[tuple[int, int, float]]) -> None:
        """Give (seq, token, ready_at) rows back, untouched, in one transaction."""
        with write(conn):
            for seq, token, ready_at in rows:
                params = {"ns": self.ns, "seq": seq, "token": token, "avail_at": ready_at}
                conn.execute(Q["release"], params)

    def next_due(self, conn: sqlite3.Connection, queues: Sequence[str], now: float) -> float:
        """When a delayed row or a lease of `queues` next becomes claimable."""
        due = float("inf")
        with reading():
            for queue in queues:
                params = {"ns": self.ns, "queue": queue, "now": now}
                value = conn.execute(Q["next_due"], params).fetchone()[0]
                if value is not None:
                    due = min(due, float(value))
        return due

    # -------------------------------------------------------------- broadcast
    def broadcast(self, channel: str, payload: str, now: float) -> None:
        """Store one broadcast for the current subscribers; prune what nobody needs."""
        ns = self.ns
        with write(self.conn()) as conn:
            before = now - self.settings.subscriber_timeout
            stale = conn.execute(B["subscribers_stale"], {"ns": ns, "before": before})
            for sub_id, host, pid in stale.fetchall():
                if _process_gone(host, pid):
                    conn.execute(B["unsubscribe"], {"id": sub_id, "ns": ns})
                    conn.execute(B["forget_subscriber"], {"id": sub_id, "ns": ns})
            if conn.execute(B["has_subscribers"], {"ns": ns}).fetchone()[0]:
                params = {"ns": ns, "channel": channel, "payload": payload, "now": now}
                conn.execute(B["insert"], params)
            conn.execute(B["prune"], {"ns": ns})

    def subscribe(
        self,
        conn: sqlite3.Connection,
        sub_id: str,
        consumer: str,
        channels: Iterable[str],
        now: float,
    ) -> int:
        """Register a subscriber; returns its starting cursor."""
        params = {
            "id": sub_id,
            "ns": self.ns,
            "consumer": consumer,
            "channels": dumps(list(channels)),
            "host": HOST,
            "pid": os.getpid(),
            "now": now,
        }
        with write(conn):
            return int(conn.execute(B["subscribe"], params).fetchone()[0])

    def unsubscribe(
        self, conn: sqlite3.Connection, sub_id: str, undelivered: Iterable[int]
    ) -> None:
        """Remove a subscriber and the copies it took but never handed out."""
        with write(conn):
            conn.execute(B["unsubscribe"], {"id": sub_id, "ns": self.ns})
            for token in undelivered:
                conn.execute(B["settle"], {"token": token, "ns": self.ns}).fetchall()
            conn.execute(B["prune"], {"ns": self.ns})

    def after(self, conn: sqlite3.Connection, cursor: int) -> list[tuple[int, str, str]]:
        """Broadcast rows past `cursor` (every channel), read-only."""
        params = {"ns": self.ns, "cursor": cursor, "limit": BATCH}
        return [tuple(row) for row in conn.execute(B["after"], params).fetchall()]

    def collect(
        self,
        conn: sqlite3.Connection,
        sub_id: str,
        channels: frozenset[str],
        cursor: int,
        now: float,
    ) -> tuple[int, list[tuple[int, str, str]], bool]:
        """Copy this subscriber's broadcasts past `cursor` into deliveries; advance the cursor.

        Returns (new cursor, [(token, channel, payload)], whether more rows remain).
        """
        out: list[tuple[int, str, str]] = []
        ns = self.ns
        with write(conn):
            rows = self.after(conn, cursor)
            for seq, channel, payload in rows:
                cursor = seq
                if channel in channels:
                    params = {
                        "ns": ns,
                        "subscriber": sub_id,
                        "channel": channel,
                        "payload": payload,
                    }
                    token = conn.execute(B["deliver"], params).fetchone()[0]
                    out.append((int(token), channel, payload))
            conn.execute(B["advance"], {"cursor": cursor, "now": now, "id": sub_id, "ns": ns})
            conn.execute(B["prune"], {"ns": ns})
        return cursor, out, len(rows) >= BATCH

    def take_cast(self, conn: sqlite3.Connection, token: int) -> tuple[str, str]:
        """Settle a broadcast delivery inside the caller's transaction; LeaseLost if settled."""
        row = conn.execute(B["settle"], {"token": token, "ns": self.ns}).fetchone()
        if row is None:
            raise LeaseLost("this broadcast delivery was already settled")
        return str(row[0]), str(row[1])


def unsubscribe_later(settings: Settings, sub_id: str) -> None:
    """Finalizer for a consumer dropped without `close()`: best effort, own connection."""
    try:
        conn = open_connection(settings)
        try:
            with write(conn):
                conn.execute(B["unsubscribe"], {"id": sub_id, "ns": settings.namespace})
        finally:
            conn.close()
    except (StemlabError, sqlite3.Error):
        pass
