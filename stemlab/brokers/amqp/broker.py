"""`amqp://` and `amqps://`: the RabbitMQ adapter (needs the `amqp` extra: pika).

Layout per namespace `ns` and queue `q` (design and limits in docs/rabbitmq.md):

* `ns.r.q`: the ready queue (`x-max-priority` 10: higher first, FIFO within a level);
* `ns.w.q.<ms>`: wait queues for delays, `x-message-ttl` <ms> and a dead-letter
  route back to `ns.r.q`, so delays fall due on the server with no consumer running
  (at most 30 days a hop: longer delays come back early and are delayed again);
* `ns.l.q.<hid>.<i>`: lease slots, `prefetch` reused queues per consumer name (and
  process), each holding its leased message with a per-message expiration of the
  lease, its token in `sl-lease`, and a dead-letter route back to `ns.r.q`, so an
  expired lease comes back with no consumer running. Any client settles by taking
  the message with its token out of the slot (see settle.py);
* `ns.i.q`: an index of the slots, wait delays and hops in use, read by counts and
  purge;
* `ns.d.q`: dead letters, oldest first; `ns.x.<channel>`: fanout exchange per channel.

Scans (counts, purge, dead-letter reads, a settle after expiry) drain a queue and
requeue it under the namespace lock (an exclusive queue, `Link.locked`).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections import deque
from datetime import datetime
from typing import Any

import pika

from stemlab.brokers.amqp import scans, settle
from stemlab.brokers.amqp.link import AmqpOptions, Link, parse_url, translate
from stemlab.brokers.amqp.messages import delay_into, message_props, stamp
from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import from_epoch, to_epoch
from stemlab.core.envelope import Delivery, Envelope
from stemlab.core.receipts import TEXT, Receipts, store_id
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.errors import LeaseLost

__all__ = ["AmqpBroker"]

RECLAIM_DELAY = 0.1  # RabbitMQ expires a lease queue's message within milliseconds

# Broadcast receipts settled by this process: a second settle is LeaseLost.
_settled_casts: set[str] = set()
_settled_order: deque[str] = deque()
_casts_lock = threading.Lock()
_MAX_SETTLED = 100_000
_HEX = re.compile(r"[0-9a-f]+")


class AmqpBroker(Broker):
    """RabbitMQ through pika; the full contract on the server alone (see the module doc)."""

    def __init__(self, opts: AmqpOptions) -> None:
        self.options = opts
        self.namespace = opts.namespace
        self.default_visibility_timeout = opts.default_visibility_timeout
        self.link = Link(opts, "broker")
        self.names = self.link.names
        self.where = self.link.where
        store = store_id("amqp", opts.host, str(opts.port), opts.vhost)
        self.receipts = Receipts(store, self.namespace, {"q": (TEXT, TEXT, TEXT), "b": (TEXT,)})
        self.lock = threading.RLock()
        self._known: set[str] = set()
        self._caps = Capabilities(
            broadcast_scope="cluster",
            durable=True,
            cross_process=True,
            poll_interval=opts.poll_interval,
            reclaim_delay=RECLAIM_DELAY,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AmqpBroker:
        """`amqp://user:pass@host:5672/vhost` (`amqps://`: TLS); options may be in the query."""
        return cls(parse_url(url, options))

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def _close(self) -> None:
        with self.lock:
            self.link.close()

    # ------------------------------------------------------------- declaring
    def ensure_ready(self, queue: str) -> str:
        name = self.names.ready(queue)
        if name not in self._known:
            self.link.declare_ready(name)
            self._known.add(name)
        return name

    def ensure(self, name: str) -> str:
        if name not in self._known:
            self.link.declare(name)
            self._known.add(name)
        return name

    # -------------------------------------------------------------- producing
    def _publish(self, envelope: Envelope) -> None:
        self._publish_many([envelope])

    def _publish_many(self, envelopes: list[Envelope]) -> None:
        with self.lock, translate(self.where):
            for envelope in envelopes:
                self.put(envelope, 0, stamp())

    def put(self, envelope: Envelope, n: int, now: float) -> None:
        """Publish one envelope (confirmed) to its ready queue, or a wait queue if delayed."""
        queue = envelope.queue
        ready = self.ensure_ready(queue)
        body = envelope.to_json().encode()
        ch = self.link.channel("pub")
        due = None if envelope.not_before is None else to_epoch(envelope.not_before)
        if due is None or due <= now:
            ch.basic_publish("", ready, body, message_props(envelope.priority, n, now))
            return
        index = self.ensure(self.names.index(queue))
        delay_into(self.link, ch, queue, index, body, envelope.priority, n, due, now)

    def publish_raw(self, queue: str, raw: bytes) -> None:
        """Store raw bytes as a ready message of `queue` (tests of undecodable payloads)."""
        with self.lock, translate(self.where):
            ready = self.ensure_ready(queue)
            self.link.channel("pub").basic_publish("", ready, raw, message_props(0, 0, time.time()))

    def _broadcast(self, channel: str, envelope: Envelope) -> None:
        with self.lock, translate(self.where):
            exchange = self.names.exchange(channel)
            self.link.declare_exchange(exchange)
            props = pika.BasicProperties(headers={"sl-channel": channel})
            self.link.channel("pub").basic_publish(exchange, "", envelope.to_json().encode(), props)

    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer:
        from stemlab.brokers.amqp.consumer import AmqpConsumer

        return AmqpConsumer(self, queues, channels, prefetch, consumer)

    # -------------------------------------------------------------- settling
    def _ack(self, delivery: Delivery) -> None:
        self._settle(delivery, "ack")

    def _nack(self, delivery: Delivery) -> None:
        self._settle(delivery, "nack")

    def _dead_letter(self, delivery: Delivery, reason: str | None, meta: dict[str, Any]) -> None:
        self._settle(delivery, "dead", reason=reason, meta=meta)

    def _extend_lease(self, delivery: Delivery, by: float) -> datetime:
        return from_epoch(self._settle(delivery, "extend", by=by))

    def _settle(self, delivery: Delivery, action: str, **kw: Any) -> float:
        fields = self.receipts.read(delivery)
        if delivery.channel is not None:
            self._settle_cast(str(fields[0]), delivery, action, **kw)
            return 0.0
        queue, slot, token = (str(f) for f in fields)
        return self.settle_token(queue, slot, token, action, **kw)

    def cast_token(self) -> str:
        """A new broadcast token: a random id and a check of it, store and namespace."""
        base = uuid.uuid4().hex
        return base + self._cast_check(base)

    def _cast_check(self, base: str) -> str:
        seed = f"{base}|{self.receipts.store}|{self.namespace}".encode()
        return hashlib.blake2b(seed, digest_size=4).hexdigest()

    def _settle_cast(self, token: str, delivery: Delivery, action: str, **kw: Any) -> None:
        base, check = token[:32], token[32:]
        if len(token) != 40 or not _HEX.fullmatch(token) or check != self._cast_check(base):
            raise LeaseLost(f"not a broadcast receipt of this broker: {delivery.receipt!r}")
        with _casts_lock:
            if token in _settled_casts:
                raise LeaseLost("this broadcast delivery was settled already")
            _settled_casts.add(token)
            _settled_order.append(token)
            if len(_settled_order) > _MAX_SETTLED:
                _settled_casts.discard(_settled_order.popleft())
        if action == "dead":
            body = delivery.envelope.to_json().encode()
            with self.lock, translate(self.where):
                ch = self.link.channel("tx")
                settle.bury_body(self, ch, delivery.envelope.queue, body, kw["reason"], kw["meta"])
                ch.tx_commit()

    def settle_token(self, queue: str, slot: str, token: str, action: str, **kw: Any) -> float:
        """Settle the lease `token` in `slot` of `queue` (see `settle.settle_token`)."""
        return settle.settle_token(self, queue, slot, token, action, **kw)

    # ------------------------------------------------------- counts and scans
    def _counts(self, queue: str) -> tuple[int, int, int]:
        return scans.counts(self, queue)

    def _purge(self, queue: str) -> int:
        return scans.purge(self, queue)

    def _list_dead_letters(self, queue: str, limit: int, offset: int) -> DeadLetterPage:
        return scans.list_dead_letters(self, queue, limit, offset)

    def _get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None:
        return scans.get_dead_letter(self, queue, id)

    def _replay_dead_letters(
        self, queue: str, limit: int, since: float | None, delay: float | None, dry_run: bool
    ) -> ReplayResult:
        return scans.replay_dead_letters(self, queue, limit, since, delay, dry_run)

    def _purge_dead_letters(self, queue: str, since: float | None, limit: int | None) -> int:
        return scans.purge_dead_letters(self, queue, since, limit)
