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

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from stemlab.brokers.postgres import _sql
from stemlab.brokers.postgres._connection import Settings
from stemlab.brokers.postgres.consumer import PostgresConsumer, _utc
from stemlab.brokers.postgres.store import STALE, Store
from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import from_epoch, utcnow
from stemlab.core.codec import dumps, loads
from stemlab.core.consumer import ack_ahead
from stemlab.core.envelope import Delivery, Envelope, undecodable_envelope
from stemlab.core.receipts import INT, TEXT, Receipts, store_id
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.errors import EnvelopeError, LeaseLost

__all__ = ["PostgresBroker"]


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
        self.receipts = Receipts(
            store_id("postgres", *s.server(), s.schema),
            s.namespace,
            # q: consumer, the stored envelope's id (dead letters are filed under it,
            # whatever envelope the caller's delivery carries), the consumer's prefetch
            # (extend_lease keeps the cap), row id, fencing token
            {"q": (TEXT, TEXT, INT, INT, INT), "b": (INT,)},
        )
        self._caps = Capabilities(
            priority_levels=10,
            delayed=True,
            broadcast_scope="cluster",
            durable=True,
            cross_process=True,
            poll_interval=None,
            reclaim_delay=0.0,
        )
        self.store = Store(s)
        self.channel = self.store.channel
        self._runner = self.store.runner  # tests patch its `run`

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
        return self.store.run(name, params, fetch=fetch, publish=publish)

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
        self.store.maybe_sweep()

    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer:
        return PostgresConsumer(self, queues, channels, prefetch, consumer)

    # -------------------------------------------------------------- settling
    def _settle(self, name: str, delivery: Delivery, extra: dict[str, Any]) -> None:
        consumer, task_id, _, row_id, token = self.receipts.read(delivery)
        if name == "dead_letter":
            extra["task_id"] = task_id
        self.store.settle(name, int(row_id), int(token), str(consumer), **extra)

    def _broadcast_settle(self, name: str, delivery: Delivery, extra: dict[str, Any]) -> None:
        (bid,) = self.receipts.read(delivery)
        self.store.settle_cast(name, int(bid), **extra)

    def _ack(self, delivery: Delivery) -> None:
        if delivery.channel is not None:
            self._broadcast_settle("broadcast_settle", delivery, {})
        elif not ack_ahead(self, delivery):  # else acked by its consumer, which claimed ahead
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
        self.store.maybe_sweep()

    def _extend_lease(self, delivery: Delivery, by: float) -> datetime:
        _, _, prefetch, row_id, token = self.receipts.read(delivery)
        params = {"id": row_id, "token": token, "by": by, "prefetch": prefetch}
        row = self._run("extend", params, fetch="one")
        if row is None:
            raise LeaseLost(STALE)
        expires: datetime = _utc(row[0])
        return expires

    # -------------------------------------------------------------- counting
    def _counts(self, queue: str) -> tuple[int, int, int]:
        """(pending, inflight, delayed); read-ahead rows of this process count as pending."""
        row = self._run("counts", {"queue": queue}, fetch="one")
        unhanded = min(self.store.read_ahead(queue), int(row[1]))
        return int(row[0]) + unhanded, int(row[1]) - unhanded, int(row[2])

    def _purge(self, queue: str) -> int:
        row = self._run("purge", {"queue": queue, "channel": self.channel}, fetch="one")
        return int(row[0])

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
        return self.store.sweep()

    # -------------------------------------------------------------- lifetime
    def _close(self) -> None:
        self.store.close()
