"""`redis://` and `rediss://`: the full contract on a Redis server, every step one Lua script.

Each queue is three sorted sets (ready by priority band + ready instant, leased by
expiry, delayed by due time) plus one hash per message; the key layout is at the top
of `_lib.lua`. Scripts take the time from the server (`TIME`), fence every receipt
with a per-delivery token, move due delayed messages and expired leases to ready
inside the claim script (so any client reclaims, with no sweeper process), and
delete a message's keys as soon as it is acked or dead-lettered. Consumers are woken
by pub/sub, which also carries broadcasts to every subscriber of the cluster, and a
publish leases its message straight to a waiting consumer and pushes it there.
Design notes and benchmarks: docs/redis.md.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime
from typing import Any

from stemlab.brokers.redis.consumer import RedisConsumer
from stemlab.brokers.redis.link import Arg
from stemlab.brokers.redis.settings import (
    MAX_IDLE_MS,
    envelope_json,
    from_ms,
    from_us,
    parse_url,
    publish_fields,
    undecodable_envelope,
)
from stemlab.brokers.redis.store import Store
from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import from_epoch, utcnow
from stemlab.core.codec import dumps, loads
from stemlab.core.consumer import ack_ahead, read_ahead
from stemlab.core.envelope import Delivery, Envelope
from stemlab.core.receipts import INT, TEXT, Receipts, store_id
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.errors import EnvelopeError, LeaseLost

__all__ = ["RedisBroker"]

PUBLISH_CHUNK = 500  # envelopes per script call in publish_many (calls are pipelined)
PURGE_CHUNK = 5000  # messages removed per purge script call


class RedisBroker(Broker):
    """The contract on Redis: durable, cross-process, broadcast to the whole cluster.

    Options: `namespace` (prefixes every key), `default_visibility_timeout`,
    `socket_timeout`, `connect_timeout`, and `retry_timeout` (seconds of retrying a
    lost connection before `BrokerUnavailable`).
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", **options: Any) -> None:
        self.settings = parse_url(url, **options)
        self.namespace = self.settings.namespace
        self.default_visibility_timeout = float(self.settings.default_visibility_timeout)
        self.prefix = self.settings.prefix
        self.store = Store(self.settings)
        self._connect, self.where = self.store.connect, self.store.where
        self.receipts = Receipts(
            store_id("redis", self.where), self.namespace, {"q": (INT, INT), "b": (TEXT,)}
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

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBroker:
        return cls(url, **options)

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def _eval(self, name: str, args: list[Arg]) -> Any:
        return self.store.eval(name, args)

    def _close(self) -> None:
        self.store.close()

    # --------------------------------------------------------------- produce
    def _publish(self, envelope: Envelope) -> None:
        self._eval("publish", [self.prefix, MAX_IDLE_MS, *publish_fields(envelope)])

    def _publish_many(self, envelopes: list[Envelope]) -> None:
        calls: list[list[Arg]] = []
        for i in range(0, len(envelopes), PUBLISH_CHUNK):
            args: list[Arg] = [self.prefix, MAX_IDLE_MS]
            for envelope in envelopes[i : i + PUBLISH_CHUNK]:
                args.extend(publish_fields(envelope))
            calls.append(args)
        if len(calls) == 1:
            self._eval("publish", calls[0])
        else:
            self.store.eval_many("publish", calls)

    def publish_raw(self, queue: str, raw: bytes, priority: int = 0) -> None:
        """Store `raw` bytes as a ready message of `queue` (tests inject garbage with it)."""
        self._eval("publish", [self.prefix, MAX_IDLE_MS, queue, priority, "", "", raw])

    def _broadcast(self, channel: str, envelope: Envelope) -> None:
        self.store.execute("PUBLISH", f"{self.prefix}bcast:{channel}", envelope_json(envelope))

    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer:
        return RedisConsumer(self, queues, channels, prefetch, consumer)

    # ----------------------------------------------------------------- settle
    def _receipt(self, delivery: Delivery) -> tuple[str, str]:
        """(message id, token) of a queue receipt of this broker, else LeaseLost."""
        mid, token = self.receipts.read(delivery)
        return str(mid), str(token)

    def _cast_receipt(self, delivery: Delivery) -> str:
        (rid,) = self.receipts.read(delivery)
        return str(rid)

    def _settle(self, name: str, delivery: Delivery, *extra: Arg) -> Any:
        mid, token = self._receipt(delivery)
        return self.store.fenced(name, delivery.receipt, [delivery.queue, mid, token, *extra])

    def _ack(self, delivery: Delivery) -> None:
        if delivery.channel is not None:
            self._settle_cast(delivery, "release")
        elif ack_ahead(self, delivery):  # acked by its consumer, which claimed ahead
            return
        elif not self._settle("ack", delivery):
            raise LeaseLost("this delivery was already settled or handed to another consumer")

    def _nack(self, delivery: Delivery) -> None:
        if delivery.channel is not None:
            self._settle_cast(delivery, "release")
        elif not self._settle("nack", delivery):
            raise LeaseLost("this delivery was already settled or handed to another consumer")

    def _dead_letter(self, delivery: Delivery, reason: str | None, meta: dict[str, Any]) -> None:
        env = delivery.envelope
        if delivery.channel is not None:
            self._settle_cast(
                delivery, "dead", dumps(reason), dumps(meta), envelope_json(env), env.id
            )
            return
        mid, token = self._receipt(delivery)
        args = (delivery.receipt, delivery.queue, mid, token, reason, meta, env.id)
        if not self.store.dead_letter(*args):
            raise LeaseLost("this delivery was already settled or handed to another consumer")

    def _settle_cast(self, delivery: Delivery, mode: str, *dead: Arg) -> None:
        rid = self._cast_receipt(delivery)
        extra: list[Arg] = [delivery.envelope.queue, *dead] if mode == "dead" else []
        if not self.store.fenced("cast_settle", delivery.receipt, [rid, mode, *extra]):
            raise LeaseLost("this broadcast delivery was already settled")

    def _extend_lease(self, delivery: Delivery, by: float) -> datetime:
        by_ms = max(1, round(by * 1000))
        expires = self._settle("extend", delivery, by_ms, MAX_IDLE_MS)
        if expires < 0:
            raise LeaseLost("this delivery was already settled or handed to another consumer")
        return from_ms(expires)

    # ---------------------------------------------------------------- counts
    def _counts(self, queue: str) -> tuple[int, int, int]:
        pending, inflight, delayed = self._eval("counts", [self.prefix, queue])
        # leases read ahead into this process's consumers are not delivered yet: pending
        ahead = min(read_ahead(self, queue), int(inflight))
        return int(pending) + ahead, int(inflight) - ahead, int(delayed)

    def _purge(self, queue: str) -> int:
        total = 0
        while True:
            removed = int(self._eval("purge", [self.prefix, queue, PURGE_CHUNK]))
            total += removed
            if removed < PURGE_CHUNK:
                return total

    # ----------------------------------------------------------- dead letters
    def _entries(self, flat: list[bytes], queue: str) -> list[tuple[bytes, DeadLetterEntry]]:
        return [(flat[i], _entry(flat[i + 1], queue)) for i in range(0, len(flat), 2)]

    def _list_dead_letters(self, queue: str, limit: int, offset: int) -> DeadLetterPage:
        reply = self._eval("dead_read", [self.prefix, queue, "page", offset, limit])
        total = int(reply[0])
        entries = [e for _, e in self._entries(reply[1:], queue)]
        return DeadLetterPage(entries, offset + limit if offset + limit < total else None)

    def _get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None:
        reply = self._eval("dead_read", [self.prefix, queue, "id", id])
        found = self._entries(reply, queue)
        return found[0][1] if found else None

    def _dead_since(
        self, queue: str, since: float | None, limit: int | None
    ) -> list[tuple[bytes, DeadLetterEntry]]:
        args: list[Arg] = [self.prefix, queue, "since", _since_us(since), _limit(limit)]
        return self._entries(self._eval("dead_read", args), queue)

    def _replay_dead_letters(
        self, queue: str, limit: int, since: float | None, delay: float | None, dry_run: bool
    ) -> ReplayResult:
        picked = self._dead_since(queue, since, limit) if limit > 0 else []
        if dry_run or not picked:
            return ReplayResult([e for _, e in picked], dry_run)
        not_before = from_epoch(utcnow().timestamp() + delay) if delay else None
        args: list[Arg] = [self.prefix, queue, MAX_IDLE_MS]
        for member, entry in picked:
            again = replace(entry.envelope, queue=queue, not_before=not_before)
            args.extend([member, *publish_fields(again)[1:]])
        done = set(self._eval("dead_replay", args))
        return ReplayResult([e for m, e in picked if m in done], False)

    def _purge_dead_letters(self, queue: str, since: float | None, limit: int | None) -> int:
        if limit == 0:
            return 0
        args: list[Arg] = [self.prefix, queue, _since_us(since), _limit(limit)]
        return int(self._eval("dead_purge", args))


def _since_us(since: float | None) -> str:
    return "-inf" if since is None else str(math.ceil(since * 1_000_000))


def _limit(limit: int | None) -> str:
    return "" if limit is None else str(limit)


def _entry(raw: bytes, queue: str) -> DeadLetterEntry:
    """Decode one stored dead letter; a payload that no longer decodes is shown as such."""
    data = loads(raw)
    try:
        envelope = Envelope.from_dict(data["envelope"])
    except (EnvelopeError, KeyError, TypeError) as exc:
        envelope = undecodable_envelope(dumps(data.get("envelope")), queue, error=str(exc))
    return DeadLetterEntry(
        envelope, data.get("reason"), data.get("meta") or {}, from_us(data["dead_at_us"])
    )
