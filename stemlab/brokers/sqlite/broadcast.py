"""Host-wide broadcast over SQLite: a table of broadcasts, subscribers with cursors.

A subscriber (one per Consumer object) is registered at `consume()` time with
its cursor at the newest existing broadcast, so it never sees earlier ones.
Rows that every subscriber has passed are pruned; subscribers whose process is
gone are dropped once they have not been seen for `subscriber_timeout`.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterable

from stemlab.brokers.sqlite.connection import Settings, load_sql, open_connection, write
from stemlab.core.codec import dumps
from stemlab.errors import LeaseLost, StemlabError

__all__ = ["BATCH", "after", "collect", "publish", "subscribe", "take", "unsubscribe"]

B = load_sql("broadcast.sql")
BATCH = 500
HOST = socket.gethostname()


def process_gone(host: str, pid: int) -> bool:
    """True when the subscriber's process no longer exists (other hosts: assume gone)."""
    if host != HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _drop(conn: sqlite3.Connection, ns: str, sub_id: str) -> None:
    conn.execute(B["unsubscribe"], {"id": sub_id, "ns": ns})
    conn.execute(B["forget_subscriber"], {"id": sub_id, "ns": ns})


def publish(
    conn: sqlite3.Connection, settings: Settings, channel: str, payload: str, now: float
) -> None:
    """Store one broadcast for the current subscribers; prune what nobody needs."""
    ns = settings.namespace
    with write(conn):
        stale = conn.execute(
            B["subscribers_stale"], {"ns": ns, "before": now - settings.subscriber_timeout}
        )
        for sub_id, host, pid in stale.fetchall():
            if process_gone(host, pid):
                _drop(conn, ns, sub_id)
        if conn.execute(B["has_subscribers"], {"ns": ns}).fetchone()[0]:
            conn.execute(
                B["insert"], {"ns": ns, "channel": channel, "payload": payload, "now": now}
            )
        conn.execute(B["prune"], {"ns": ns})


def subscribe(
    conn: sqlite3.Connection,
    ns: str,
    sub_id: str,
    consumer: str,
    channels: Iterable[str],
    now: float,
) -> int:
    """Register a subscriber; returns its starting cursor."""
    params = {
        "id": sub_id,
        "ns": ns,
        "consumer": consumer,
        "channels": dumps(list(channels)),
        "host": HOST,
        "pid": os.getpid(),
        "now": now,
    }
    with write(conn):
        return int(conn.execute(B["subscribe"], params).fetchone()[0])


def unsubscribe(conn: sqlite3.Connection, ns: str, sub_id: str, undelivered: Iterable[int]) -> None:
    """Remove a subscriber and the copies it took but never handed out."""
    with write(conn):
        conn.execute(B["unsubscribe"], {"id": sub_id, "ns": ns})
        for token in undelivered:
            conn.execute(B["settle"], {"token": token, "ns": ns}).fetchall()
        conn.execute(B["prune"], {"ns": ns})


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


def after(conn: sqlite3.Connection, ns: str, cursor: int) -> list[tuple[int, str, str]]:
    """Broadcast rows past `cursor` (every channel), read-only."""
    params = {"ns": ns, "cursor": cursor, "limit": BATCH}
    return [tuple(row) for row in conn.execute(B["after"], params).fetchall()]


def collect(
    conn: sqlite3.Connection,
    ns: str,
    sub_id: str,
    channels: frozenset[str],
    cursor: int,
    now: float,
) -> tuple[int, list[tuple[int, str, str]], bool]:
    """Copy this subscriber's broadcasts past `cursor` into deliveries; advance the cursor.

    Returns (new cursor, [(token, channel, payload)], whether more rows remain).
    """
    out: list[tuple[int, str, str]] = []
    with write(conn):
        rows = after(conn, ns, cursor)
        for seq, channel, payload in rows:
            cursor = seq
            if channel in channels:
                params = {"ns": ns, "subscriber": sub_id, "channel": channel, "payload": payload}
                token = conn.execute(B["deliver"], params).fetchone()[0]
                out.append((int(token), channel, payload))
        conn.execute(B["advance"], {"cursor": cursor, "now": now, "id": sub_id, "ns": ns})
        conn.execute(B["prune"], {"ns": ns})
    return cursor, out, len(rows) >= BATCH


def take(conn: sqlite3.Connection, ns: str, token: int) -> tuple[str, str]:
    """Settle a broadcast delivery inside the caller's transaction; LeaseLost if settled."""
    row = conn.execute(B["settle"], {"token": token, "ns": ns}).fetchone()
    if row is None:
        raise LeaseLost("this broadcast delivery was already settled")
    return str(row[0]), str(row[1])
