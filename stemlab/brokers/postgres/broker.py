"""`postgresql://` and `postgres://`: the Broker contract on PostgreSQL with psycopg 3.

One table holds every namespace's messages; a row is claimable when its
`available_at` (due time, or lease expiry while leased) has passed, so delays
and lease reclaim need no sweeper. Claims are one `UPDATE ... FOR UPDATE SKIP
LOCKED` statement; every delivery gets a fencing token that ack, nack,
dead_letter and extend_lease check in the same statement that changes the row.
Publishes commit durably (`synchronous_commit=on`); claims and settles commit
with the `synchronous_commit` option (default "off": a server crash can only
undo a claim or settle, which at-least-once delivery turns into a redelivery).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql

from stemlab.brokers.postgres import _sql
from stemlab.brokers.postgres._connection import Runner, Settings, ensure_schema
from stemlab.brokers.postgres.consumer import (
    PostgresConsumer,
    _Claim,
    _utc,
    purged,
    read_ahead,
    wake_local,
)
from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import from_epoch, utcnow
from stemlab.core.codec import dumps, loads
from stemlab.core.envelope import Delivery, Envelope, undecodable_envelope
from stemlab.core.receipts import INT, TEXT, Receipts, store_id
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.errors import EnvelopeError, LeaseLost, StemlabError

__all__ = ["PostgresBroker"]

_VACUUMABLE = ("queue_messages", "queue_broadcasts", "queue_dead_letters", "queue_subscriptions")
_STALE = "this delivery was already settled or handed to another consumer"


def _entry(body: bytes, reason: str | None, meta: str, dead_at: datetime) -> DeadLetterEntry:
    try:
        envelope = Envelope.from_json(body)
    except EnvelopeError:
        envelope = undecodable_envelope(bytes(body), "default")
    return DeadLetterEntry(envelope, reason, loads(meta), _utc(dead_at))


class PostgresBroker(Broker):
    """The contract on PostgreSQL: cluster-wide broadcast, durable, push pickup."""

    def __init__(self, url: str, **options: Any) -> None:
        self.settings = Settings.from_url(url, **options)
        s = self.settings
        self.namespace = s.namespace
        self.default_visibility_timeout = s.default_visibility_timeout
        self.store_key = f"{s.url}#{s.schema}"
        self.receipts = Receipts(
            store_id("postgres", *s.server(), s.schema),
            s.namespace,
            {"q": (TEXT, INT, INT), "b": (INT,)},  # q: consumer, row id, fencing token
        )
        digest = hashlib.md5(f"{s.schema}\0{s.namespace}".encode(), usedforsecurity=False)
        self.channel = "stemlab_" + digest.hexdigest()
        self._caps = Capabilities(
            priority_levels=10,
            delayed=True,
            broadcast_scope="cluster",
            durable=True,
            cross_process=True,
            poll_interval=None,
            reclaim_delay=0.0,
        )
        ensure_schema(s)
        self._runner = Runner(s)
        self._consumers: weakref.WeakSet[PostgresConsumer] = weakref.WeakSet()
        self._next_sweep = time.monotonic() + s.sweep_interval
        self._sweep_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresBroker:
        return cls(url, **options)

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def __repr__(self) -> str:
        return f"PostgresBroker(namespace={self.namespace!r}, schema={self.settings.schema!r})"

    def _run(
        self, name: str, params: dict[str, Any], *, fetch: str = "none", publish: bool = False
    ) -> Any:
        """Execute one named statement on a pooled connection and read its result there.

        `fetch`: "one" (first row or None), "all" (rows), "count" (rowcount) or "none".
        """
        params["ns"] = self.namespace

        def fn(conn: Any, attempt: int) -> Any:
            cur = conn.execute(_sql.query(name), params)
            if fetch == "one":
                return cur.fetchone()
            if fetch == "all":
                return cur.fetchall()
            return cur.rowcount if fetch == "count" else None

        return self._runner.run(fn, name, publish=publish)

    # ------------------------------------------------------------- producing
    def _publish(self, envelope: Envelope) -> None:
        self._run(
            "publish",
            {
                "queue": envelope.queue,
                "priority": envelope.priority,
                "not_before": envelope.not_before,
                "visibility": envelope.visibility_timeout,
                "body": envelope.to_json().encode(),
                "channel": self.channel,
            },
            publish=True,
        )

    def _publish_params(self, envelopes: Sequence[Envelope]) -> dict[str, Any]:
        return {
            "ns": self.namespace,
            "queues": [e.queue for e in envelopes],
            "priorities": [e.priority for e in envelopes],
            "not_befores": [e.not_before for e in envelopes],
            "visibilities": [e.visibility_timeout for e in envelopes],
            "bodies": [e.to_json().encode() for e in envelopes],
            "channel": self.channel,
        }

    def _publish_many(self, envelopes: list[Envelope]) -> None:
        self._run("publish_many", self._publish_params(envelopes), publish=True)

    def _broadcast(self, channel: str, envelope: Envelope) -> None:
        params = {"bchannel": channel, "body": envelope.to_json().encode(), "channel": self.channel}
        self._run("broadcast", params, publish=True)
        self._maybe_sweep()

    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer:
        created = PostgresConsumer(self, queues, channels, prefetch, consumer)
        self._consumers.add(created)
        return created

    # -------------------------------------------------------------- settling
    def _settle(self, name: str, delivery: Delivery, extra: dict[str, Any]) -> None:
        """Run a fenced statement; no row changed means the receipt is stale.

        After a retried connection failure the first try may have committed, so the
        receipt then counts as stale only if the row was handed to another delivery.
        """
        consumer, row_id, token = self.receipts.read(delivery)
        params = {"id": row_id, "token": token, "ns": self.namespace, **extra}

        def fn(conn: Any, attempt: int) -> None:
            cur = conn.execute(_sql.query(name), params)
            if cur.rowcount > 0:
                return
            if attempt and not conn.execute(_sql.query("taken_by_other"), params).fetchone()[0]:
                return
            raise LeaseLost(_STALE)

        self._runner.run(fn, name)
        wake_local(self.store_key, self.namespace, str(consumer))
        self._maybe_sweep()

    def _broadcast_settle(self, name: str, delivery: Delivery, extra: dict[str, Any]) -> None:
        (bid,) = self.receipts.read(delivery)
        params = {"id": bid, "ns": self.namespace, **extra}

        def fn(conn: Any, attempt: int) -> None:
            if conn.execute(_sql.query(name), params).rowcount <= 0 and not attempt:
                raise LeaseLost("this broadcast delivery was already settled")

        self._runner.run(fn, name)

    def _ack(self, delivery: Delivery) -> None:
        if delivery.channel is not None:
            self._broadcast_settle("broadcast_settle", delivery, {})
        else:
            self._settle("ack", delivery, {})

    def _nack(self, delivery: Delivery) -> None:
        if delivery.channel is not None:
            self._broadcast_settle("broadcast_settle", delivery, {})
        else:
            self._settle("nack", delivery, {"channel": self.channel})

    def _dead_letter(self, delivery: Delivery, reason: str | None, meta: dict[str, Any]) -> None:
        extra = {"task_id": delivery.envelope.id, "reason": reason, "meta": dumps(meta)}
        if delivery.channel is not None:
            extra["queue"] = delivery.envelope.queue
            self._broadcast_settle("broadcast_dead_letter", delivery, extra)
        else:
            self._settle("dead_letter", delivery, {**extra, "body": None})
        self._maybe_sweep()

    def _bury_undecodable(
        self, row_id: int, token: int, queue: str, body: bytes, exc: Exception
    ) -> None:
        """Dead-letter a claimed row whose body is not an envelope, keeping its bytes."""
        envelope = undecodable_envelope(bytes(body), queue, error=str(exc))
        params = {
            "id": row_id,
            "token": token,
            "task_id": envelope.id,
            "body": envelope.to_json().encode(),
            "reason": "undecodable",
            "meta": dumps({"error": str(exc)[:500]}),
        }
        self._run("dead_letter", params)

    def _extend_lease(self, delivery: Delivery, by: float) -> datetime:
        _, row_id, token = self.receipts.read(delivery)
        row = self._run("extend", {"id": row_id, "token": token, "by": by}, fetch="one")
        if row is None:
            raise LeaseLost(_STALE)
        expires: datetime = _utc(row[0])
        return expires

    def _release(self, claims: list[_Claim], consumer: str, channels: list[str]) -> None:
        """A consumer closes: un-claim rows it never handed out, drop its subscriptions."""
        try:
            if claims:
                params = {
                    "ids": [c.id for c in claims],
                    "tokens": [c.token for c in claims],
                    "ready_ats": [c.ready_at for c in claims],
                }
                self._run("release", params)
            if channels:
                self._run("unsubscribe", {"consumer": consumer})
        except StemlabError:
            pass  # unreachable server: the leases expire and the sweep drops the subscription

    # -------------------------------------------------------------- counting
    def _counts(self, queue: str) -> tuple[int, int, int]:
        """(pending, inflight, delayed); read-ahead rows of this process count as pending."""
        row = self._run("counts", {"queue": queue}, fetch="one")
        unhanded = min(read_ahead(self.store_key, self.namespace, queue), int(row[1]))
        return int(row[0]) + unhanded, int(row[1]) - unhanded, int(row[2])

    def _purge(self, queue: str) -> int:
        removed = int(self._run("purge", {"queue": queue}, fetch="count"))
        purged(self.store_key, self.namespace, queue)
        return removed

    # ---------------------------------------------------------- dead letters
    def _list_dead_letters(self, queue: str, limit: int, offset: int) -> DeadLetterPage:
        rows = self._run(
            "dead_list", {"queue": queue, "limit": limit, "offset": offset}, fetch="all"
        )
        entries = [_entry(*r) for r in rows[:limit]]
        return DeadLetterPage(entries, offset + limit if len(rows) > limit else None)

    def _get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None:
        row = self._run("dead_get", {"queue": queue, "task_id": id}, fetch="one")
        return None if row is None else _entry(*row)

    def _replay_dead_letters(
        self, queue: str, limit: int, since: float | None, delay: float | None, dry_run: bool
    ) -> ReplayResult:
        pick = _sql.text("dead_pick") + ("" if dry_run else " FOR UPDATE SKIP LOCKED")
        params = {
            "ns": self.namespace,
            "queue": queue,
            "limit": limit,
            "since": None if since is None else from_epoch(since),
        }

        def fn(conn: Any, attempt: int) -> list[DeadLetterEntry]:
            with conn.transaction():
                rows = conn.execute(pick.encode(), params).fetchall()
                entries = [_entry(*r[1:]) for r in rows]
                if dry_run or not rows:
                    return entries
                not_before = utcnow() + timedelta(seconds=delay) if delay else None
                envelopes = [replace(e.envelope, not_before=not_before) for e in entries]
                conn.execute(
                    _sql.query("dead_delete"), {"ns": self.namespace, "ids": [r[0] for r in rows]}
                )
                conn.execute(_sql.query("publish_many"), self._publish_params(envelopes))
            return entries

        entries = self._runner.run(fn, "replay_dead_letters", publish=True)
        return ReplayResult(entries, dry_run)

    def _purge_dead_letters(self, queue: str, since: float | None, limit: int | None) -> int:
        params = {
            "queue": queue,
            "limit": limit,
            "since": None if since is None else from_epoch(since),
        }
        return int(self._run("dead_purge", params, fetch="count"))

    # ------------------------------------------------------------ retention
    def sweep(self) -> dict[str, int]:
        """Apply the retention now and vacuum tables that carry many dead tuples.

        Deletes this namespace's dead letters and broadcast copies older than their
        retention and the subscriptions of crashed consumers; then runs
        `VACUUM (SKIP_LOCKED)` on broker tables with more than `vacuum_threshold`
        dead tuples (so the tables stay bounded even where autovacuum is off).
        Returns how many rows of each kind were removed and how many tables vacuumed.
        """
        self._check_open()
        s = self.settings
        params = {
            "dead_retention": s.dead_letter_retention,
            "broadcast_retention": s.broadcast_retention,
        }
        row = self._run("sweep", params, fetch="one")
        result = {"dead_letters": row[0], "broadcasts": row[1], "subscriptions": row[2]}
        result["vacuumed"] = self._vacuum() if s.vacuum_threshold is not None else 0
        return result

    def _vacuum(self) -> int:
        threshold = self.settings.vacuum_threshold

        def fn(conn: Any, attempt: int) -> int:
            tables = conn.execute(_sql.query("vacuum_candidates"), {"threshold": threshold})
            names = [r[0] for r in tables.fetchall() if r[0] in _VACUUMABLE]
            for name in names:
                conn.execute(sql.SQL("VACUUM (SKIP_LOCKED) {}").format(sql.Identifier(name)))
            return len(names)

        try:
            return self._runner.run(fn, "vacuum")
        except StemlabError:
            return 0  # e.g. not the table owner: autovacuum has to do it

    def _maybe_sweep(self) -> None:
        """Start a background sweep when one is due (never blocks the caller)."""
        now = time.monotonic()
        if now < self._next_sweep or self.closed:
            return
        with self._sweep_lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + self.settings.sweep_interval
        threading.Thread(
            target=self._background_sweep, name="stemlab-pg-sweep", daemon=True
        ).start()

    def _background_sweep(self) -> None:
        with contextlib.suppress(StemlabError):  # best effort: the next sweep catches up
            if not self.closed:
                self.sweep()

    # -------------------------------------------------------------- lifetime
    def _close(self) -> None:
        for consumer in list(self._consumers):
            consumer.close()
        self._runner.close()
