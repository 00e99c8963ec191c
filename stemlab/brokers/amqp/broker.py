"""`amqp://` and `amqps://`: the RabbitMQ adapter (needs the `amqp` extra: pika).

Layout per namespace `ns` and queue `q` (design and limits in docs/rabbitmq.md):

* `ns.r.q`: the ready queue (`x-max-priority` 10: higher first, FIFO within a level);
* `ns.w.q.<ms>`: wait queues for delays, `x-message-ttl` <ms> and a dead-letter
  route back to `ns.r.q`, so delays fall due on the server with no consumer running
  (at most 30 days a hop: longer delays come back early and are delayed again);
* `ns.l.q.<token>`: one lease queue per delivery, holding the leased message with a
  per-message expiration of the lease and a dead-letter route back to `ns.r.q`.
  The token is the fencing token: any client settles by taking the message out of
  that queue (basic.get, then a transaction publishing its successor and acking it);
* `ns.i.q`: an index of the lease tokens, wait delays and hops in use, read by counts
  and purge;
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

__all__ = [
    "AmqpBroker",
    "Holding",
    "delay_into",
    "early",
    "header",
    "hold",
    "message_props",
    "release_hold",
    "stamp",
]

RECLAIM_DELAY = 0.1  # RabbitMQ expires a lease queue's message within milliseconds
_DELAY_BUCKET_MS = 10  # wait queues are per 10 ms of delay, rounded up (never early)
# RabbitMQ refuses a TTL or x-expires above 2^32 - 1 ms (~49.7 days): longer delays hop
# through 30-day wait queues, back to the ready queue and on (see `delay_into`).
MAX_HOP_MS = 30 * 24 * 3600 * 1000

# Broadcast receipts settled by this process: a second settle is LeaseLost.
_settled_casts: set[str] = set()
_settled_order: deque[str] = deque()
_casts_lock = threading.Lock()
_MAX_SETTLED = 100_000
_HEX = re.compile(r"[0-9a-f]+")

# Leases held by consumers of this process: token -> the holder's {token: queue} map, so
# a settle here frees the prefetch slot at once (settles elsewhere are found by probing).
_holders: dict[str, Holding] = {}
# Leases that ran out while held here: token -> the holder, so a late extend_lease re-leases
# only into a free slot of the consumer it was leased to (bounded, oldest dropped first).
_lapsed: dict[str, Holding] = {}
_MAX_LAPSED = 100_000
_holders_lock = threading.Lock()
_last_stamp = 0.0


class Holding(dict[str, str]):
    """token -> queue of the leases held by consumers of one name; `cap` is their prefetch."""

    cap: int = 1


def hold(token: str, queue: str, held: Holding) -> None:
    with _holders_lock:
        held[token] = queue
        _holders[token] = held
        _lapsed.pop(token, None)


def release_hold(token: str, *, expired: bool = False) -> None:
    """The lease `token` no longer takes a slot; `expired`: it ran out (a late extend may
    take a free slot of the same holder again)."""
    with _holders_lock:
        held = _holders.pop(token, None)
        if held is not None:
            held.pop(token, None)
            if expired:
                _lapsed[token] = held
                if len(_lapsed) > _MAX_LAPSED:
                    _lapsed.pop(next(iter(_lapsed)))
        else:
            _lapsed.pop(token, None)


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
    priority: int,
    n: int,
    ready_at: float,
    *,
    lease: str = "",
    expires_ms: int | None = None,
    due: float | None = None,
) -> pika.BasicProperties:
    """Properties of a queue message: priority, delivery count so far, when it became ready
    (`due`: a long delay's `not_before`, when a hop brings it back before then)."""
    headers: dict[str, Any] = {"sl-n": n, "sl-ready": repr(ready_at)}
    if lease:
        headers["sl-lease"] = lease
    if due is not None:
        headers["sl-due"] = repr(due)
    return pika.BasicProperties(
        delivery_mode=2,
        priority=priority,
        headers=headers,
        expiration=None if expires_ms is None else str(expires_ms),
        content_type="application/json",
    )


def early(props: pika.BasicProperties, now: float) -> float | None:
    """The `not_before` of a message back in its ready queue from a hop before it is due."""
    due = header(props, "sl-due")
    return float(due) if due and float(due) > now else None


def delay_into(
    link: Link,
    ch: BlockingChannel,
    queue: str,
    index: str,
    body: bytes,
    priority: int,
    n: int,
    due: float,
    now: float,
) -> None:
    """Publish a message due at `due` into its wait queue (declared; `index` must exist).

    A delay beyond `MAX_HOP_MS` waits `MAX_HOP_MS` and carries `sl-due`: back in the
    ready queue early, it is delayed again for the rest (by a claim or a count), and an
    index record `h:<when back>` tells counts to look for it.
    """
    ms = math.ceil((due - now) * 1000 / _DELAY_BUCKET_MS) * _DELAY_BUCKET_MS
    hop = min(ms, MAX_HOP_MS)
    wait = link.names.wait(queue, hop)
    link.declare_wait(wait, link.names.ready(queue), hop)  # every time: resets x-expires
    ch.basic_publish("", index, f"w:{hop}".encode())
    if hop < ms:
        ch.basic_publish("", index, f"h:{now + hop / 1000!r}".encode())
    props = message_props(priority, n, due, due=due if hop < ms else None)
    ch.basic_publish("", wait, body, props)


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
        index = self._ensure(self.names.index(queue))
        delay_into(self.link, ch, queue, index, body, envelope.priority, n, due, now)

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
                    held = self._rehold(queue, token) if action == "extend" else None
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
                    if held is not None:
                        hold(token, queue, held)
                if action != "extend":
                    release_hold(token)
                    self.link.delete(lease, wait=False)
            return result

    def _rehold(self, queue: str, token: str) -> Holding | None:
        """For a late extend: the consumer (of this process) the lease ran out at, if it has a
        free prefetch slot; `LeaseLost` if it has none. None when it was leased elsewhere."""
        with _holders_lock:
            held = _holders.get(token) or _lapsed.get(token)
        if held is None or token in held:
            return None
        if len(held) >= held.cap:
            for other, other_queue in list(held.items()):
                if not self.link.count(self.names.lease(other_queue, other)):
                    release_hold(other, expired=True)
        if len(held) >= held.cap:
            raise LeaseLost(
                f"the lease ran out and its consumer's {held.cap} prefetch slot(s) are taken"
            )
        return held

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
            inflight, delayed, back = self._scan_index(queue, purge=False)
            if back:
                delayed += self._redelay_early(queue)
            pending = self.link.count(self.names.ready(queue)) or 0
            return pending, inflight, delayed

    def _purge(self, queue: str) -> int:
        with self._lock, translate(self.where), self.link.locked():
            purged = sum(self._scan_index(queue, purge=True)[:2])
            ready = self.names.ready(queue)
            if self.link.count(ready) is not None:
                purged += int(self.link.channel("admin").queue_purge(ready).method.message_count)
            return purged

    def _scan_index(self, queue: str, *, purge: bool) -> tuple[int, int, bool]:
        """(leased, delayed, back) of `queue` through its index; `purge` removes them.

        `back`: a long delay's hop may have brought a message back to the ready queue
        before it is due. Records of queues that are gone are dropped, duplicates merged.
        """
        index = self.names.index(queue)
        if self.link.count(index) is None:
            return 0, 0, False
        ch = self.link.channel("scan")
        leased = delayed = 0
        back = False
        now = time.time()
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
                if kind == "h":
                    when = _float(key)
                    if purge or when is None or when + 1.0 < now:
                        ch.basic_ack(tag)  # that hop is back and was (or is now) seen to
                    back = back or (not purge and when is not None and when <= now)
                    continue
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
        return leased, delayed, back

    def _redelay_early(self, queue: str) -> int:
        """Delay again the messages a hop brought back to the ready queue before they are due
        (consumers do the same as they claim); how many."""
        ready = self.names.ready(queue)
        if self.link.count(ready) is None:
            return 0
        index = self._ensure(self.names.index(queue))
        ch = self.link.channel("tx")
        moved = 0
        others = []
        now = stamp()
        while True:
            method, props, raw = ch.basic_get(ready)
            if method is None:
                break
            due = early(props, now)
            if due is None:
                others.append(method.delivery_tag)
                continue
            n = int(header(props, "sl-n", "0"))
            delay_into(self.link, ch, queue, index, raw, props.priority or 0, n, due, now)
            ch.basic_ack(method.delivery_tag)
            moved += 1
        for tag in others:
            ch.basic_reject(tag, requeue=True)  # back in place at commit
        ch.tx_commit()
        return moved

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


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


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
