"""`sqlite:///file.db`: a durable, cross-process broker on one SQLite file (stdlib only).

WAL journal, `synchronous=NORMAL` by default, `BEGIN IMMEDIATE` for every write,
an explicit busy timeout. Expired leases are reclaimed by the claim query itself
and delayed messages become claimable by a due check in it, so nothing needs a
sweeper process. Broadcast reaches every subscriber on the host through a
table polled with per-subscriber cursors.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from stemlab.brokers.sqlite.connection import (
    Settings,
    load_sql,
    parse_url,
    reading,
    schema,
    translate,
    write,
)
from stemlab.brokers.sqlite.consumer import SQLiteConsumer
from stemlab.brokers.sqlite.store import Store, micros
from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import from_epoch
from stemlab.core.codec import loads
from stemlab.core.consumer import ack_ahead
from stemlab.core.envelope import Delivery, Envelope
from stemlab.core.receipts import INT, Receipts, store_id
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult

__all__ = ["SQLiteBroker"]

# SQLite's default busy handler (sqliteDefaultBusyCallback in its main.c): a write that finds
# the lock taken sleeps these many milliseconds before each retry, then 100 ms at a time.
BUSY_HANDLER_SLEEPS = tuple(ms / 1000 for ms in (1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100))
Q = load_sql("queue.sql")
DL = load_sql("dead_letters.sql")


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


class SQLiteBroker(Broker):
    """The contract on one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | Settings, **options: Any) -> None:
        if isinstance(path, Settings):
            self.settings = path
        else:
            self.settings = Settings.build(options, path=str(path))
        self.namespace = self.settings.namespace
        self.path = self.settings.path
        self.default_visibility_timeout = self.settings.default_visibility_timeout
        self.receipts = Receipts(
            store_id("sqlite", os.path.realpath(self.path)),
            self.namespace,
            {"q": (INT, INT, INT), "b": (INT,)},  # q: consumer's prefetch, row, token
        )
        self.store = Store(self.settings)
        self._caps = Capabilities(
            priority_levels=10,
            delayed=True,
            broadcast_scope="host",
            durable=True,
            cross_process=True,
            poll_interval=self.settings.poll_interval,
            reclaim_delay=0.0,
            lock_backoff=BUSY_HANDLER_SLEEPS,
        )
        conn = self._conn()
        try:
            conn.executescript(schema())
        except sqlite3.Error as exc:
            raise translate(exc, f"cannot create the schema in {self.path}") from exc

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteBroker:
        return cls(parse_url(url, **options))

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection to the file."""
        return self.store.conn()

    @staticmethod
    def now() -> float:
        return time.time()

    # -------------------------------------------------------------- producing
    def _publish(self, envelope: Envelope) -> None:
        self._publish_many([envelope])

    def _publish_many(self, envelopes: list[Envelope]) -> None:
        with write(self._conn()) as conn:
            self.store.publish(conn, envelopes, self.now())

    def _broadcast(self, channel: str, envelope: Envelope) -> None:
        self.store.broadcast(channel, envelope.to_json(), self.now())

    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer:
        return SQLiteConsumer(self, queues, channels, prefetch, consumer)

    # --------------------------------------------------------------- settling
    def _settle(self, delivery: Delivery, name: str, **extra: Any) -> None:
        if delivery.channel is not None:
            (token,) = self.receipts.read(delivery)
            with write(self._conn()) as conn:
                self.store.take_cast(conn, int(token))
            return
        _, seq, token = self.receipts.read(delivery)
        self.store.settle(name, int(seq), int(token), **extra)

    def _ack(self, delivery: Delivery) -> None:
        if not ack_ahead(self, delivery):  # else acked by its consumer, which claimed ahead
            self._settle(delivery, "ack")

    def _nack(self, delivery: Delivery) -> None:
        self._settle(delivery, "nack", now=self.now())

    def _extend_lease(self, delivery: Delivery, by: float) -> datetime:
        prefetch = int(self.receipts.read(delivery)[0])
        now = self.now()
        expires = now + by
        self._settle(delivery, "extend", expires=expires, now=now, prefetch=prefetch)
        return from_epoch(expires)

    def _dead_letter(self, delivery: Delivery, reason: str | None, meta: dict[str, Any]) -> None:
        conn = self._conn()
        if delivery.channel is not None:
            (token,) = self.receipts.read(delivery)
            with write(conn):
                self.store.take_cast(conn, int(token))
                self.store.insert_dead(conn, delivery.envelope, reason, meta)
            return
        _, seq, token = self.receipts.read(delivery)
        # the stored envelope is kept (and filed under its id), whatever the delivery carries
        self.store.dead_letter_row(conn, int(seq), int(token), reason, meta)

    # --------------------------------------------------------------- counting
    def _purge(self, queue: str) -> int:
        with write(self._conn()) as conn:
            return int(conn.execute(Q["purge"], {"ns": self.namespace, "queue": queue}).rowcount)

    def _counts(self, queue: str) -> tuple[int, int, int]:
        params = {"ns": self.namespace, "queue": queue, "now": self.now()}
        with reading():
            conn = self._conn()
            return (
                int(conn.execute(Q["pending_count"], params).fetchone()[0]),
                int(conn.execute(Q["inflight_count"], params).fetchone()[0]),
                int(conn.execute(Q["delayed_count"], params).fetchone()[0]),
            )

    # ----------------------------------------------------------- dead letters
    @staticmethod
    def _entry(reason: str | None, meta: str, dead_at: int, payload: str) -> DeadLetterEntry:
        return DeadLetterEntry(
            Envelope.from_json(payload), reason, loads(meta), from_epoch(dead_at / 1e6)
        )

    def _list_dead_letters(self, queue: str, limit: int, offset: int) -> DeadLetterPage:
        params = {"ns": self.namespace, "queue": queue, "limit": limit + 1, "offset": offset}
        with reading():
            rows = self._conn().execute(DL["list"], params).fetchall()
        entries = [self._entry(*row) for row in rows[:limit]]
        return DeadLetterPage(entries, offset + limit if len(rows) > limit else None)

    def _get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None:
        params = {"ns": self.namespace, "queue": queue, "task_id": id}
        with reading():
            row = self._conn().execute(DL["get"], params).fetchone()
        return None if row is None else self._entry(*row)

    def _oldest(
        self, conn: sqlite3.Connection, queue: str, since: float | None, limit: int | None
    ) -> list[Any]:
        """Dead letters of `queue` oldest first, dead at or after `since`, at most `limit`."""
        params = {
            "ns": self.namespace,
            "queue": queue,
            "since": -1 if since is None else micros(since),
            "limit": -1 if limit is None else limit,
        }
        return conn.execute(DL["select_oldest"], params).fetchall()

    def _replay_dead_letters(
        self, queue: str, limit: int, since: float | None, delay: float | None, dry_run: bool
    ) -> ReplayResult:
        conn = self._conn()
        if dry_run:
            with reading():
                rows = self._oldest(conn, queue, since, limit)
            return ReplayResult([self._entry(*row[1:]) for row in rows], True)
        with write(conn):
            rows = self._oldest(conn, queue, since, limit)
            entries = [self._entry(*row[1:]) for row in rows]
            now = self.now()
            not_before = from_epoch(now + delay) if delay else None
            for (dead_id, *_), entry in zip(rows, entries, strict=True):
                conn.execute(DL["delete"], {"id": dead_id, "ns": self.namespace})
                again = replace(entry.envelope, not_before=not_before)
                self.store.publish(conn, [again], now)
        return ReplayResult(entries, False)

    def _purge_dead_letters(self, queue: str, since: float | None, limit: int | None) -> int:
        with write(self._conn()) as conn:
            rows = self._oldest(conn, queue, since, limit)
            for row in rows:
                conn.execute(DL["delete"], {"id": row[0], "ns": self.namespace})
        return len(rows)

    # --------------------------------------------------------------- lifetime
    def _close(self) -> None:
        self.store.close()
