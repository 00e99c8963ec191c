"""Settling a queue delivery from any client: ack, nack, dead_letter, extend_lease.

The lease queue `ns.l.q.<token>` is the fencing token. A settle takes the message
out of it with basic.get and, in one transaction on the `tx` channel, publishes
its successor (nothing for an ack, the ready queue for a nack, the dead queue for a
dead letter, the same lease queue with a new expiration for an extension) and acks
it. A lease that ran out and whose message nobody took yet is found in the ready
queue under the namespace lock; a deleted lease queue is `LeaseLost`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from stemlab.brokers.amqp.holders import Holding, hold, holder_of, release_hold
from stemlab.brokers.amqp.link import lease_lost, raise_lease_lost, translate
from stemlab.brokers.amqp.messages import dead_props, header, message_props, stamp
from stemlab.errors import LeaseLost, StemlabError

if TYPE_CHECKING:
    from stemlab.brokers.amqp.broker import AmqpBroker

__all__ = ["bury_body", "settle_token"]


def settle_token(
    b: AmqpBroker,
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

    Returns the new expiry for "extend". Raises `LeaseLost` when the lease is gone.
    """
    lease = b.names.lease(queue, token)
    with b.lock:
        # An ack publishes nothing: taking the message with auto-ack is the whole settle.
        ch = b.link.channel("admin" if action == "ack" else "tx")
        try:
            with translate(b.where):
                method, props, raw = ch.basic_get(lease, auto_ack=action == "ack")
        except StemlabError as exc:
            if lease_lost(exc):
                raise_lease_lost(queue)
            raise
        args = (by, reason, meta, body)
        with translate(b.where):
            if method is not None and action == "ack":
                result = 0.0
            elif method is not None:
                result = _apply(b, ch, queue, token, action, method, props, raw, *args)
                ch.tx_commit()
            else:
                held = _rehold(b, queue, token) if action == "extend" else None
                ch = b.link.channel("tx")
                with b.link.locked():
                    found = _find_expired(b, ch, queue, token)
                    if found is None:
                        ch.tx_commit()
                        raise_lease_lost(queue)
                    method, props, raw = found
                    result = _apply(b, ch, queue, token, action, method, props, raw, *args)
                    ch.tx_commit()
                if held is not None:
                    hold(token, queue, held)
            if action != "extend":
                release_hold(token)
                b.link.delete(lease, wait=False)
        return result


def _rehold(b: AmqpBroker, queue: str, token: str) -> Holding | None:
    """For a late extend: the consumer (of this process) the lease ran out at, if it has a
    free prefetch slot; `LeaseLost` if it has none. None when it was leased elsewhere."""
    held = holder_of(token)
    if held is None or token in held:
        return None
    if len(held) >= held.cap:
        for other, other_queue in list(held.items()):
            if not b.link.count(b.names.lease(other_queue, other)):
                release_hold(other, expired=True)
    if len(held) >= held.cap:
        raise LeaseLost(
            f"the lease ran out and its consumer's {held.cap} prefetch slot(s) are taken"
        )
    return held


def _find_expired(
    b: AmqpBroker, ch: BlockingChannel, queue: str, token: str
) -> tuple[Any, Any, bytes] | None:
    """The message of an expired lease `token`, if it is still waiting in the ready queue."""
    ready = b.names.ready(queue)
    if b.link.count(ready) is None:
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
    b: AmqpBroker,
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
        ch.basic_publish("", b.ensure_ready(queue), raw, message_props(priority, n, now))
    elif action == "dead":
        bury_body(b, ch, queue, body if body is not None else raw, reason, meta or {})
    elif action == "extend":
        result = now + by
        lease = b.names.lease(queue, token)
        b.link.declare_lease(lease, b.ensure_ready(queue))
        expires_ms = max(1, math.ceil(by * 1000))
        props = message_props(priority, n, result, lease=token, expires_ms=expires_ms)
        ch.basic_publish("", lease, raw, props)
    ch.basic_ack(method.delivery_tag)
    return result


def bury_body(
    b: AmqpBroker,
    ch: BlockingChannel,
    queue: str,
    body: bytes,
    reason: str | None,
    meta: dict[str, Any],
) -> None:
    """Publish `body` into `queue`'s dead letters (on `ch`, committed by the caller)."""
    ch.basic_publish("", b.ensure(b.names.dead(queue)), body, dead_props(reason, meta))
