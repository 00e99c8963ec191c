"""The RabbitMQ consumer: polls its ready queues with basic.get on its own connection.

A claim takes the best head among the consumer's ready queues (higher priority,
then earlier `sl-ready`), moves it into a fresh lease queue `ns.l.<queue>.<token>`
with the lease as its per-message expiration, records the token in the queue's
index and acks the original, all in one AMQP transaction: a connection that dies
mid-claim leaves the message in its ready queue. The prefetch cap is counted per
consumer name in this process: a held token stops counting once its lease queue is
gone (settled) or empty (expired). Broadcast copies arrive in one exclusive queue
bound to each channel's fanout exchange; it disappears with the connection.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
import uuid

from stemlab.brokers.amqp.broker import AmqpBroker
from stemlab.brokers.amqp.holders import held_by, hold, release_hold
from stemlab.brokers.amqp.link import Link, translate
from stemlab.brokers.amqp.messages import delay_into, early, header, message_props
from stemlab.core.consumer import Cast, Claim, StoreConsumer
from stemlab.core.envelope import Envelope
from stemlab.errors import BrokerUnavailable, EnvelopeError, LeaseLost, StemlabError

__all__ = ["AmqpConsumer"]


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
        self._spares: dict[str, str] = {}  # queue -> token of a lease queue made ahead
        try:
            with translate(self.link.where):
                for queue in queues:
                    self.link.declare_ready(self.names.ready(queue))
                self._index_known: set[str] = set()
            super().__init__(broker, queues, channels, prefetch, name)
            self._held.cap = self.prefetch
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
        try:
            with translate(self.link.where):
                self._take_casts()
                if self.queues and self._free() > 0:
                    claim = self._claim()
                    if claim is not None:
                        self.add_claims([claim])
                        return 0.0
        except BrokerUnavailable:
            self._recover()
            return 0.0
        return self._poll

    def _recover(self) -> None:
        """Our connection was lost (e.g. closed by the server): open a new one, resubscribe."""
        self.link.reconnect()
        self._sub = None
        self._spares.clear()  # possibly never created; an unused one expires with x-expires
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
        """Free prefetch slots; at the cap, drop held tokens that are settled or expired."""
        if len(self._held) >= self.prefetch:
            for token, queue in list(self._held.items()):
                if not self.link.count(self.names.lease(queue, token)):
                    release_hold(token, expired=True)
        return self.prefetch - len(self._held)

    def _claim(self) -> Claim | None:
        ch = self.link.channel("tx")
        heads = []
        redelayed = False
        now = time.time()
        for queue in self.queues:
            method, props, raw = ch.basic_get(self.names.ready(queue))
            if method is None:
                continue
            due = early(props, now)
            if due is None:
                heads.append((queue, method, props, raw))
                continue
            # a long delay's hop brought it back before its not_before: delay it again
            n = int(header(props, "sl-n", "0"))
            index = self._index(queue)
            delay_into(self.link, ch, queue, index, raw, props.priority or 0, n, due, now)
            ch.basic_ack(method.delivery_tag)
            redelayed = True
        if not heads:
            if redelayed:
                ch.tx_commit()
            return None
        heads.sort(key=lambda h: (-(h[2].priority or 0), float(header(h[2], "sl-ready", "0"))))
        queue, method, props, raw = heads[0]
        for other in heads[1:]:
            ch.basic_reject(other[1].delivery_tag, requeue=True)
        payload: Envelope | bytes = raw
        vt = self._vt
        try:
            payload = Envelope.from_json(raw.decode())
            vt = payload.visibility_timeout or vt
        except (EnvelopeError, TypeError, ValueError):
            pass
        # The lease queue was usually declared (without waiting) after the previous claim
        # from this queue, so the server created it meanwhile; declaring it again here is
        # one quick round trip that guarantees it exists before we publish into it.
        token = self._spares.pop(queue, None) or uuid.uuid4().hex
        n = int(header(props, "sl-n", "0")) + 1
        expires = time.time() + vt
        lease = self.names.lease(queue, token)
        ready = self.names.ready(queue)
        self.link.declare_lease(lease, ready)
        index = self._index(queue)
        leased = message_props(
            props.priority or 0, n, expires, lease=token, expires_ms=max(1, math.ceil(vt * 1000))
        )
        ch.basic_publish("", lease, raw, leased)
        ch.basic_publish("", index, f"l:{token}".encode())
        ch.basic_ack(method.delivery_tag)
        ch.tx_commit()
        old = header(props, "sl-lease")
        if old:
            self.link.delete(self.names.lease(queue, old), wait=False)  # stale now
        hold(token, queue, self._held)
        spare = self._spares[queue] = uuid.uuid4().hex
        self.link.declare_lease(
            self.names.lease(queue, spare), ready, on=self.link.channel("admin")
        )
        self.link.conn.process_data_events(time_limit=0)  # send it now: created while we work
        return Claim((queue, token), queue, payload, n, expires)

    def _index(self, queue: str) -> str:
        index = self.names.index(queue)
        if index not in self._index_known:
            self.link.declare(index)
            self._index_known.add(index)
        return index

    # ------------------------------------------------------------- the rest
    def _wait(self, seconds: float) -> bool:
        woken = self._wake.wait(seconds)
        self._wake.clear()
        return woken

    def _interrupt(self) -> None:
        self._wake.set()

    def _bury(self, claim: Claim, error: Exception) -> None:
        queue, token = str(claim.fields[0]), str(claim.fields[1])
        raw = claim.payload
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        body = Envelope(name="<undecodable>", args={"raw": text}, queue=queue).to_json().encode()
        self.amqp.settle_token(
            queue, token, "dead", reason="undecodable", meta={"error": str(error)}, body=body
        )

    def _release(self, claims: list[Claim]) -> None:
        for claim in claims:
            token = str(claim.fields[1])
            release_hold(token)
            with contextlib.suppress(LeaseLost):
                self.amqp.settle_token(str(claim.fields[0]), token, "release")

    def _closed_store(self) -> None:
        with contextlib.suppress(StemlabError):
            for queue, spare in self._spares.items():
                self.link.delete(self.names.lease(queue, spare))
        self._spares.clear()
        with contextlib.suppress(StemlabError):
            self.link.close()
