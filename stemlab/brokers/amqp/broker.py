"""`amqp://` and `amqps://`: the RabbitMQ adapter (needs the `amqp` extra: pika).

Layout per namespace `ns` and queue `q` (design and limits in docs/rabbitmq.md):

* `ns.r.q`: the ready queue (`x-max-priority` 10: higher first, FIFO within a level);
* `ns.w.q.<ms>`: wait queues for delays, `x-message-ttl` <ms> and a dead-letter
  route back to `ns.r.q`, so delays fall due on the server with no consumer running;
* `ns.l.q.<token>`: one lease queue per delivery, holding the leased message with a
  per-message expiration of the lease and a dead-letter route back to `ns.r.q`.
  The token is the fencing token: any client settles by taking the message out of
  that queue (basic.get, then a transaction publishing its successor and acking it);
* `ns.i.q`: an index of the lease tokens and wait delays in use, read by counts and purge;
* `ns.d.q`: dead letters, oldest first; `ns.x.<channel>`: fanout exchange per channel.

Scans (counts, purge, dead-letter reads, a settle after expiry) drain a queue and
requeue it under the namespace lock (an exclusive queue, `Link.locked`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import replace
from datetime import datetime
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from stemlab.brokers.amqp.link import (
    AmqpOptions,
    Link,
    lease_lost,
    parse_url,
    raise_lease_lost,
    translate,
)
from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import from_epoch, to_epoch
from stemlab.core.envelope import Delivery, Envelope
from stemlab.core.receipts import TEXT, Receipts, store_id
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.errors import EnvelopeError, LeaseLost, StemlabError

__all__ = ["AmqpBroker", "header", "hold", "message_props", "release_hold", "stamp"]

RECLAIM_DELAY = 0.1  # RabbitMQ expires a lease queue's message within milliseconds
_DELAY_BUCKET_MS = 10  # wait queues are per 10 ms of delay, rounded up (never early)

# Broadcast receipts settled by this process: a second settle is LeaseLost.
_settled_casts: set[str] = set()
_settled_order: deque[str] = deque()
_casts_lock = threading.Lock()
_MAX_SETTLED = 100_000
_HEX = re.compile(r"[0-9a-f]+")

# Leases held by consumers of this process: token -> the holder's {token: queue} map, so
# a settle here frees the prefetch slot at once (settles elsewhere are found by probing).
_holders: dict[str, dict[str, str]] = {}
_holders_lock = threading.Lock()
_last_stamp = 0.0


def hold(token: str, queue: str, held: dict[str, str]) -> None:
    with _holders_lock:
        held[token] = queue
        _holders[token] = held


def release_hold(token: str) -> None:
    with _holders_lock:
        held = _holders.pop(token, None)
        if held is not None:
            held.pop(token, None)


def stamp() -> float:
    """Now, strictly after the previous stamp of this process (FIFO across queues)."""
    global _last_stamp
    with _holders_lock:
        _last_stamp = max(time.time(), _last_stamp + 1e-6)
        return _last_stamp


def header(props: pika.BasicProperties, key: str, default: str = "") -> str:
    """One stemlab header as text (pika may hand strings back as bytes)."""
    value = (props.headers or {}).get(key, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def message_props(
    priority: int, n: int, ready_at: float, *, lease: str = "", expires_ms: int | None = None
) -> pika.BasicProperties:
    """Properties of a queue message: priority, delivery count so far, when it became ready."""
    headers: dict[str, Any] = {"sl-n": n, "sl-ready": repr(ready_at)}
    if lease:
        headers["sl-lease"] = lease
    return pika.BasicProperties(
        delivery_mode=2,
        priority=priority,
        headers=headers,
        expiration=None if expires_ms is None else str(expires_ms),
        content_type="application/json",
    )


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
        self.receipts = Receipts(store, self.namespace, {"q": (TEXT, TEXT), "b": (TEXT,)})
        self._lock = threading.RLock()
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
        with self._lock:
            self.link.close()

    # ------------------------------------------------------------- declaring
    def ensure_ready(self, queue: str) -> str:
        name = self.names.ready(queue)
        if name not in self._known:
            self.link.declare_ready(name)
            self._known.add(name)
        return name

    def _ensure(self, name: str) -> str:
        if name not in self._known:
            self.link.declare(name)
            self._known.add(name)
        return name

    # -------------------------------------------------------------- producing
    def _publish(self, envelope: Envelope) -> None:
        self._publish_many([envelope])

    def _publish_many(self, envelopes: list[Envelope]) -> None:
        with self._lock, translate(self.where):
            for envelope in envelopes:
                self._put(envelope, 0, stamp())

    def _put(self, envelope: Envelope, n: int, now: float) -> None:
        """Publish one envelope (confirmed) to its ready queue, or a wait queue if delayed."""
        queue = envelope.queue
        ready = self.ensure_ready(queue)
        body = envelope.to_json().encode()
        ch = self.link.channel("pub")
        due = None if envelope.not_before is None else to_epoch(envelope.not_before)
        if due is None or due <= now:
            ch.basic_publish("", ready, body, message_props(envelope.priority, n, now))
            return
        ms = math.ceil((due - now) * 1000 / _DELAY_BUCKET_MS) * _DELAY_BUCKET_MS
        wait = self.names.wait(queue, ms)
        self.link.declare_wait(wait, ready, ms)  # every time: it resets the queue's x-expires
        ch.basic_publish("", self._ensure(self.names.index(queue)), f"w:{ms}".encode())
        ch.basic_publish("", wait, body, message_props(envelope.priority, n, due))

    def publish_raw(self, queue: str, raw: bytes) -> None:
        """Store raw bytes as a ready message of `queue` (tests of undecodable payloads)."""
        with self._lock, translate(self.where):
            ready = self.ensure_ready(queue)
            self.link.channel("pub").basic_publish("", ready, raw, message_props(0, 0, time.time()))

    def _broadcast(self, channel: str, envelope: Envelope) -> None:
        with self._lock, translate(self.where):
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
        return self.settle_token(str(fields[0]), str(fields[1]), action, **kw)

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
            with self._lock, translate(self.where):
                ch = self.link.channel("tx")
                self._bury_body(ch, delivery.envelope.queue, body, kw["reason"], kw["meta"])
                ch.tx_commit()

    def settle_token(
        self,
        queue: str,
        token: str,
        action: str,
        *,
        by: float = 0.0,
        reason: str | None = None,
        meta: dict[str, Any] | None = None,
        body: bytes | None = None,
    ) -> float:
        """Settle the lease `token` of `queue`: "ack", "nack", "release", "dead" or "extend".

        The message is taken out of its lease queue (or, after its lease ran out and
        before anyone took it again, found in the ready queue), its successor is
        published and the message acked in one transaction. Returns the new expiry
        for "extend". Raises `LeaseLost` when the lease queue is gone.
        """
        lease = self.names.lease(queue, token)
        with self._lock:
            # An ack publishes nothing: taking the message with auto-ack is the whole settle.
            ch = self.link.channel("admin" if action == "ack" else "tx")
            try:
                with translate(self.where):
                    method, props, raw = ch.basic_get(lease, auto_ack=action == "ack")
            except StemlabError as exc:
                if lease_lost(exc):
                    raise_lease_lost(queue)
                raise
            with translate(self.where):
                if method is not None and action == "ack":
                    result = 0.0
                elif method is not None:
                    result = self._apply(
                        ch, queue, token, action, method, props, raw, by, reason, meta, body
                    )
                    ch.tx_commit()
                else:
                    ch = self.link.channel("tx")
                    with self.link.locked():
                        found = self._find_expired(ch, queue, token)
                        if found is None:
                            ch.tx_commit()
                            raise_lease_lost(queue)
                        method, props, raw = found
                        result = self._apply(
                            ch, queue, token, action, method, props, raw, by, reason, meta, body
                        )
                        ch.tx_commit()
                if action != "extend":
                    release_hold(token)
                    self.link.delete(lease, wait=False)
            return result

    def _find_expired(
        self, ch: BlockingChannel, queue: str, token: str
    ) -> tuple[Any, Any, bytes] | None:
        """The message of an expired lease `token`, if it is still waiting in the ready queue."""
        ready = self.names.ready(queue)
        if self.link.count(ready) is None:
            return None
        found = None
        others = []
        while True:
            method, props, raw = ch.basic_get(ready)
            if method is None:
                break
            if found is None and header(props, "sl-lease") == token:
                found = (method, props, raw)
            else:
                others.append(method.delivery_tag)
        for tag in others:
            ch.basic_reject(tag, requeue=True)  # back in place at commit
        return found

    def _apply(
        self,
        ch: BlockingChannel,
        queue: str,
        token: str,
        action: str,
        method: Any,
        props: pika.BasicProperties,
        raw: bytes,
        by: float,
        reason: str | None,
        meta: dict[str, Any] | None,
        body: bytes | None,
    ) -> float:
        now = stamp()
        n = int(header(props, "sl-n", "1"))
        priority = props.priority or 0
        result = 0.0
        if action in ("nack", "release"):
            n = n if action == "nack" else max(0, n - 1)
            ch.basic_publish("", self.ensure_ready(queue), raw, message_props(priority, n, now))
        elif action == "dead":
            self._bury_body(ch, queue, body if body is not None else raw, reason, meta or {})
        elif action == "extend":
            result = now + by
            lease = self.names.lease(queue, token)
            self.link.declare_lease(lease, self.ensure_ready(queue))
            expires_ms = max(1, math.ceil(by * 1000))
            props = message_props(priority, n, result, lease=token, expires_ms=expires_ms)
            ch.basic_publish("", lease, raw, props)
        ch.basic_ack(method.delivery_tag)
        return result

    def _bury_body(
        self, ch: BlockingChannel, queue: str, body: bytes, reason: str | None, meta: dict[str, Any]
    ) -> None:
        headers: dict[str, Any] = {"sl-meta": json.dumps(meta), "sl-dead": repr(time.time())}
        if reason is not None:
            headers["sl-reason"] = reason
        props = pika.BasicProperties(delivery_mode=2, headers=headers)
        ch.basic_publish("", self._ensure(self.names.dead(queue)), body, props)

    # -------------------------------------------------------------- counting
    def _counts(self, queue: str) -> tuple[int, int, int]:
        with self._lock, translate(self.where), self.link.locked():
            inflight, delayed = self._scan_index(queue, purge=False)
            pending = self.link.count(self.names.ready(queue)) or 0
            return pending, inflight, delayed

    def _purge(self, queue: str) -> int:
        with self._lock, translate(self.where), self.link.locked():
            purged = sum(self._scan_index(queue, purge=True))
            ready = self.names.ready(queue)
            if self.link.count(ready) is not None:
                purged += int(self.link.channel("admin").queue_purge(ready).method.message_count)
            return purged

    def _scan_index(self, queue: str, *, purge: bool) -> tuple[int, int]:
        """(leased, delayed) messages of `queue` through its index; `purge` removes them.

        Records of queues that are gone are dropped and duplicates merged.
        """
        index = self.names.index(queue)
        if self.link.count(index) is None:
            return 0, 0
        ch = self.link.channel("scan")
        leased = delayed = 0
        seen: set[str] = set()
        try:
            records = []
            while True:
                method, _, raw = ch.basic_get(index)
                if method is None:
                    break
                records.append((method.delivery_tag, raw.decode(errors="replace")))
            # waits first, then leases: a delay or lease falling due meanwhile lands in ready
            records.sort(key=lambda r: not r[1].startswith("w:"))
            for tag, record in records:
                kind, _, key = record.partition(":")
                if record in seen or kind not in ("l", "w") or (kind == "w" and not key.isdigit()):
                    ch.basic_ack(tag)
                    continue
                seen.add(record)
                name = (
                    self.names.lease(queue, key)
                    if kind == "l"
                    else self.names.wait(queue, int(key))
                )
                found = self.link.count(name)
                if found is None or purge:
                    ch.basic_ack(tag)
                if found is None:
                    continue
                if purge:
                    found = self._empty(name, delete=kind == "l")
                if kind == "l":
                    leased += found
                else:
                    delayed += found
        finally:
            self.link.drop("scan")  # records not acked go back
        return leased, delayed

    def _empty(self, name: str, *, delete: bool) -> int:
        admin = self.link.channel("admin")
        count = int(admin.queue_purge(name).method.message_count)
        if delete:
            admin.queue_delete(name)
        return count

    # ---------------------------------------------------------- dead letters
    def _read_dead(self, queue: str) -> list[tuple[int, DeadLetterEntry]]:
        """Every dead letter of `queue`, oldest first, taken (unacked) on the scan channel."""
        dead = self.names.dead(queue)
        if self.link.count(dead) is None:
            return []
        ch = self.link.channel("scan")
        out = []
        while True:
            method, props, raw = ch.basic_get(dead)
            if method is None:
                break
            out.append((method.delivery_tag, _entry(queue, props, raw)))
        return out

    def _list_dead_letters(self, queue: str, limit: int, offset: int) -> DeadLetterPage:
        with self._lock, translate(self.where), self.link.locked():
            try:
                entries = [e for _, e in reversed(self._read_dead(queue))]
            finally:
                self.link.drop("scan")
        more = offset + limit < len(entries)
        return DeadLetterPage(entries[offset : offset + limit], offset + limit if more else None)

    def _get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None:
        with self._lock, translate(self.where), self.link.locked():
            try:
                entries = [e for _, e in self._read_dead(queue)]
            finally:
                self.link.drop("scan")
        return next((e for e in reversed(entries) if e.envelope.id == id), None)

    def _pick_dead(
        self, queue: str, since: float | None, limit: int | None
    ) -> list[tuple[int, DeadLetterEntry]]:
        picked = [
            (tag, e)
            for tag, e in self._read_dead(queue)
            if since is None or to_epoch(e.dead_at) >= since
        ]
        return picked if limit is None else picked[:limit]

    def _replay_dead_letters(
        self, queue: str, limit: int, since: float | None, delay: float | None, dry_run: bool
    ) -> ReplayResult:
        with self._lock, translate(self.where), self.link.locked():
            try:
                picked = self._pick_dead(queue, since, limit)
                if not dry_run:
                    now = time.time()
                    not_before = from_epoch(now + delay) if delay else None
                    for _, entry in picked:
                        self._put(replace(entry.envelope, not_before=not_before), 0, stamp())
                    scan = self.link.channel("scan")
                    for tag, _ in picked:
                        scan.basic_ack(tag)
            finally:
                self.link.drop("scan")
        return ReplayResult([e for _, e in picked], dry_run)

    def _purge_dead_letters(self, queue: str, since: float | None, limit: int | None) -> int:
        with self._lock, translate(self.where), self.link.locked():
            try:
                picked = self._pick_dead(queue, since, limit)
                scan = self.link.channel("scan")
                for tag, _ in picked:
                    scan.basic_ack(tag)
            finally:
                self.link.drop("scan")
        return len(picked)


def _entry(queue: str, props: pika.BasicProperties, raw: bytes) -> DeadLetterEntry:
    """A dead letter from its stored message (a body that no longer decodes is kept raw)."""
    try:
        envelope = Envelope.from_json(raw.decode())
    except (EnvelopeError, TypeError, ValueError):
        text = raw.decode("utf-8", errors="replace")
        envelope = Envelope(name="<undecodable>", args={"raw": text}, queue=queue)
    reason = (props.headers or {}).get("sl-reason")
    if isinstance(reason, bytes):
        reason = reason.decode()
    meta = json.loads(header(props, "sl-meta", "{}"))
    dead_at = from_epoch(float(header(props, "sl-dead", "0")))
    return DeadLetterEntry(envelope, reason, meta, dead_at)
