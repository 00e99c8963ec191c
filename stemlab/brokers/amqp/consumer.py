"""The RabbitMQ consumer: polls its ready queues with basic.get on its own connection.

A claim moves messages from the ready queue into free lease slots of the consumer's
name (`ns.l.q.<hid>.<i>`: reused queues, see holders.py) with the lease as their
per-message expiration and a fresh token in `sl-lease`, acking the originals, all in
one AMQP transaction: a connection that dies mid-claim leaves them in the ready
queue. A consumer of one queue claims up to its free slots per transaction; one of
several queues claims the best head (higher priority, then earlier `sl-ready`). The
prefetch cap is the slots: at the cap a held slot that is empty (settled elsewhere,
or expired) is free again. Broadcast copies arrive in one exclusive queue bound to
each channel's fanout exchange; it disappears with the connection.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections import deque
from typing import Any

from stemlab.brokers.amqp.broker import AmqpBroker
from stemlab.brokers.amqp.holders import held_by, release_hold
from stemlab.brokers.amqp.link import Link, translate
from stemlab.brokers.amqp.messages import delay_into, early, header, message_props
from stemlab.brokers.amqp.settle import lease_token
from stemlab.core.consumer import IDLE, Cast, Claim, StoreConsumer
from stemlab.core.envelope import Envelope
from stemlab.errors import BrokerUnavailable, EnvelopeError, LeaseLost, StemlabError

__all__ = ["AmqpConsumer"]

# Claims per transaction. More would lease ahead into the buffer, which the contract
# counts as pending and must drop on a purge by any process: not done (yet) here.
BATCH = 1
_REDECLARE = 3600.0  # seconds: a slot is declared again this often (keeps it from x-expires)
Head = tuple[str, Any, Any, bytes]  # queue, method, properties, body


class AmqpConsumer(StoreConsumer):
    """The consumer core over basic.get polling; see the module docstring."""

    def __init__(
        self,
        broker: AmqpBroker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
        self.link = Link(broker.options, f"consumer.{safe}")
        self.amqp = broker
        self.names = broker.names
        self._poll = broker.options.poll_interval
        self._vt = broker.default_visibility_timeout
        self._wake = threading.Event()
        self._held = held_by(broker.receipts.store, broker.namespace, name)
        self._sub: str | None = None
        self._slots: dict[str, float] = {}  # slot queue -> when this consumer declared it
        self._index_known: set[str] = set()
        # push while idle (one queue, no broadcast channels): see `_wait`
        self._pushable = len(queues) == 1 and not channels
        self._want = 0  # free slots the last fill found nothing for
        self._ctag: str | None = None
        self._cch: Any = None  # the channel the basic.consume is on
        self._pushed: deque[Head] = deque()
        try:
            with translate(self.link.where):
                for queue in queues:
                    self.link.declare_ready(self.names.ready(queue))
            super().__init__(broker, queues, channels, prefetch, name)
            self._held.cap = self.prefetch
            self._held.live += 1
            self._subscribe()
        except BaseException:
            self.link.close()
            raise

    @property
    def connection_name(self) -> str:
        """The client-provided name of this consumer's connection (server tools show it)."""
        return self.link.connection_name

    def _subscribe(self) -> None:
        if not self.channels:
            return
        with translate(self.link.where):
            sub = self.names.subscriber()
            ch = self.link.channel("sub")
            ch.queue_declare(sub, exclusive=True)
            for channel in self.channels:
                exchange = self.names.exchange(channel)
                self.link.declare_exchange(exchange)
                ch.queue_bind(sub, exchange)
            self._sub = sub

    # ------------------------------------------------------------------ fill
    def _fill(self) -> float:
        self._want = 0
        try:
            with translate(self.link.where):
                self._take_casts()
                free = self._free() if self.queues else 0
                if self._ctag is not None:
                    claims = self._claim_pushed(min(free, BATCH))  # and stop consuming
                elif free > 0:
                    claims = self._claim(min(free, BATCH))
                else:
                    claims = []
                if claims:
                    self.add_claims(claims)
                    return 0.0
                self._want = min(free, BATCH) if self._pushable else 0
        except BrokerUnavailable:
            self._recover()
            return 0.0
        return IDLE if self._want else self._poll

    def _recover(self) -> None:
        """Our connection was lost (e.g. closed by the server): open a new one, resubscribe."""
        self.link.reconnect()
        self._ctag, self._cch = None, None
        self._pushed.clear()  # unacked on the old connection: back in their queue
        self._sub = None
        self._index_known.clear()
        self._subscribe()

    def _take_casts(self) -> None:
        if self._sub is None:
            return
        ch = self.link.channel("sub")
        while True:
            method, props, raw = ch.basic_get(self._sub, auto_ack=True)
            if method is None:
                return
            token = self.amqp.cast_token()
            self.add_casts([Cast((token,), header(props, "sl-channel"), raw)])

    def _free(self) -> int:
        """Free prefetch slots; at the cap, held slots found empty (settled elsewhere or
        expired) are free again."""
        if len(self._held) >= self.prefetch:
            for token, queue, slot in self._held.held():
                if not self.link.count(self.names.lease(queue, slot)):
                    release_hold(token, expired=True)
        return self.prefetch - len(self._held)

    def _claim(self, free: int) -> list[Claim]:
        """Lease up to `free` messages into free slots, in one transaction."""
        ch = self.link.channel("tx")
        now = time.time()
        if len(self.queues) == 1:
            heads, redelayed = self._heads(self.queues[0], free, now)
        else:
            heads, redelayed = self._best_head(now)
        if not heads:
            if redelayed:
                ch.tx_commit()
            return []
        claims: list[Claim] = []
        try:
            for head in heads:
                claim = self._lease(head)
                if claim is not None:
                    claims.append(claim)
            ch.tx_commit()
        except BaseException:
            for claim in claims:
                release_hold(str(claim.fields[2]))
            raise
        return claims

    def _heads(self, queue: str, most: int, now: float) -> tuple[list[Head], bool]:
        """Up to `most` messages from the head of `queue` (taken, unacked)."""
        ch = self.link.channel("tx")
        ready = self.names.ready(queue)
        heads: list[Head] = []
        redelayed = False
        while len(heads) < most:
            method, props, raw = ch.basic_get(ready)
            if method is None:
                break
            if self._redelay(queue, method, props, raw, now):
                redelayed = True
            else:
                heads.append((queue, method, props, raw))
            if not method.message_count:
                break
        return heads, redelayed

    def _best_head(self, now: float) -> tuple[list[Head], bool]:
        """The best head over the consumer's queues; the others go back in place."""
        ch = self.link.channel("tx")
        heads: list[Head] = []
        redelayed = False
        for queue in self.queues:
            method, props, raw = ch.basic_get(self.names.ready(queue))
            if method is None:
                continue
            if self._redelay(queue, method, props, raw, now):
                redelayed = True
            else:
                heads.append((queue, method, props, raw))
        heads.sort(key=lambda h: (-(h[2].priority or 0), float(header(h[2], "sl-ready", "0"))))
        for other in heads[1:]:
            ch.basic_reject(other[1].delivery_tag, requeue=True)
        return heads[:1], redelayed

    def _redelay(self, queue: str, method: Any, props: Any, raw: bytes, now: float) -> bool:
        """A long delay's hop brought it back before its not_before: delay it again."""
        due = early(props, now)
        if due is None:
            return False
        ch = self.link.channel("tx")
        n = int(header(props, "sl-n", "0"))
        index = self._index(queue)
        delay_into(self.link, ch, queue, index, raw, props.priority or 0, n, due, now)
        ch.basic_ack(method.delivery_tag)
        return True

    def _lease(self, head: Head) -> Claim | None:
        """Move one taken message into a free slot (uncommitted); None if none is free."""
        queue, method, props, raw = head
        ch = self.link.channel("tx")
        vt = self._vt
        payload: Envelope | bytes = raw
        try:
            payload = Envelope.from_json(raw.decode())
            vt = payload.visibility_timeout or vt
        except (EnvelopeError, TypeError, ValueError):
            pass
        expires = time.time() + vt
        token = lease_token(expires)
        slot = self._held.assign(queue, token)
        if slot is None:  # another consumer of this name took the last slot meanwhile
            ch.basic_reject(method.delivery_tag, requeue=True)
            return None
        name = self._slot(queue, slot)
        n = int(header(props, "sl-n", "0")) + 1
        ms = max(1, math.ceil(vt * 1000))
        leased = message_props(props.priority or 0, n, expires, lease=token, expires_ms=ms)
        # queued without flushing: the commit sends the whole claim at once
        ch._impl.basic_publish("", name, raw, leased)
        ch._impl.basic_ack(method.delivery_tag)
        return Claim((queue, slot, token), queue, payload, n, expires)

    def _slot(self, queue: str, slot: str) -> str:
        """The slot's queue, declared (and listed in the index) on first use."""
        name = self.names.lease(queue, slot)
        last = self._slots.get(name)
        if last is None or time.monotonic() - last > _REDECLARE:
            self.link.declare_lease(name, self.names.ready(queue))
            if last is None:  # listed in the same transaction as the claim
                self.link.channel("tx").basic_publish("", self._index(queue), f"s:{slot}".encode())
            self._slots[name] = time.monotonic()
        return name

    def _index(self, queue: str) -> str:
        index = self.names.index(queue)
        if index not in self._index_known:
            self.link.declare(index)
            self._index_known.add(index)
        return index

    # -------------------------------------------------------------- pushing
    def _wait(self, seconds: float) -> bool:
        """Idle: with free slots on one queue, consume it (basic.qos = the free slots) and
        wait for the server to push; otherwise sleep until woken. Consuming happens only
        inside a waiting `get`: nothing is pushed to a consumer that is not asking."""
        if not self._want:
            woken = self._wake.wait(seconds)
            self._wake.clear()
            return woken
        try:
            with translate(self.link.where):
                ch = self.link.channel("tx")
                if self._ctag is None:
                    ch.basic_qos(prefetch_count=self._want)
                    ready = self.names.ready(self.queues[0])
                    self._ctag = ch.basic_consume(ready, self._on_push)
                    self._cch = ch
                self.link.conn.process_data_events(time_limit=seconds)
                if not self._pushed:
                    self._stop_consuming(ch)
                    ch.tx_commit()
        except BrokerUnavailable:
            self._recover()
        return bool(self._pushed)

    def _on_push(self, ch: Any, method: Any, props: Any, body: bytes) -> None:
        self._pushed.append((self.queues[0], method, props, body))

    def _claim_pushed(self, free: int) -> list[Claim]:
        """Lease what the server pushed (at most `free`), stop consuming, commit."""
        ch = self.link.channel("tx")
        if ch is not self._cch:  # the channel was reopened: its consumer is gone
            self._ctag, self._cch = None, None
            self._pushed.clear()
            return []
        self.link.conn.process_data_events(time_limit=0)
        now = time.time()
        heads: list[Head] = []
        while self._pushed and len(heads) < free:
            head = self._pushed.popleft()
            if not self._redelay(*head, now):
                heads.append(head)
        claims: list[Claim] = []
        try:
            for head in heads:
                claim = self._lease(head)
                if claim is not None:
                    claims.append(claim)
            self._stop_consuming(ch)
            ch.tx_commit()
        except BaseException:
            for claim in claims:
                release_hold(str(claim.fields[2]))
            raise
        return claims

    def _stop_consuming(self, ch: Any) -> None:
        """Cancel the consumer; what it was pushed and we did not lease goes back (at the
        caller's commit: the channel is transactional)."""
        if self._ctag is not None:
            ch.basic_cancel(self._ctag)  # pika rejects what arrived but was not dispatched
        for _, method, _, _ in self._pushed:
            ch._impl.basic_reject(method.delivery_tag, requeue=True)
        self._pushed.clear()
        self._ctag, self._cch = None, None

    def _interrupt(self) -> None:
        self._wake.set()
        conn = self.link.conn
        with contextlib.suppress(Exception):  # wakes a process_data_events in `_wait`
            conn.add_callback_threadsafe(lambda: None)

    # ------------------------------------------------------------- the rest

    def _settle(self, claim: Claim, action: str, **kw: Any) -> None:
        queue, slot, token = (str(f) for f in claim.fields)
        self.amqp.settle_token(queue, slot, token, action, **kw)

    def _bury(self, claim: Claim, error: Exception) -> None:
        raw = claim.payload
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        envelope = Envelope(name="<undecodable>", args={"raw": text}, queue=claim.queue)
        meta = {"error": str(error)}
        self._settle(
            claim, "dead", reason="undecodable", meta=meta, body=envelope.to_json().encode()
        )

    def _release(self, claims: list[Claim]) -> None:
        for claim in claims:
            with contextlib.suppress(LeaseLost):
                self._settle(claim, "release")

    def _closed_store(self) -> None:
        """Close the connection; the last consumer of its name here deletes its empty slots
        (under the namespace lock, as a late extend re-creates a slot under it)."""
        self._held.live -= 1
        with contextlib.suppress(StemlabError):
            if self._held.live == 0 and self._slots:
                self._drop_empty_slots()
        with contextlib.suppress(StemlabError):
            self.link.close()

    def _drop_empty_slots(self) -> None:
        busy = {self.names.lease(q, s) for _, q, s in self._held.held()}
        with translate(self.link.where), self.link.locked():
            for name in self._slots:
                if name not in busy:
                    with contextlib.suppress(StemlabError), translate(self.link.where):
                        self.link.channel("admin").queue_delete(name, if_empty=True)
