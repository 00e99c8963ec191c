"""Settling a queue delivery from any client: ack, nack, dead_letter, extend_lease.

A leased message sits in its consumer's lease slot (a reused queue) with its lease
as per-message expiration and its token in `sl-lease`. A settle takes the slot's
messages with basic.get and keeps the one with its token (others go back in place):
an ack acks it; the rest publish its successor (the ready queue for a nack, the dead
queue for a dead letter, the slot again with a new expiration for an extension) and
ack it in one transaction. Not found: under the namespace lock the slot is read
again, then a receipt still inside its lease is `LeaseLost` (settled, purged), and
one past it is looked for in the ready queue (its lease ran out and nobody took it).
"""

from __future__ import annotations

import math
import time
import uuid
from typing import TYPE_CHECKING, Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from stemlab.brokers.amqp.holders import hold, holder_of, release_hold
from stemlab.brokers.amqp.link import lease_lost, raise_lease_lost, translate
from stemlab.brokers.amqp.messages import dead_props, header, message_props, stamp
from stemlab.errors import LeaseLost, StemlabError

if TYPE_CHECKING:
    from stemlab.brokers.amqp.broker import AmqpBroker

__all__ = ["bury_body", "lease_expiry", "lease_token", "settle_token"]

# A lease this far before its expiry cannot have run out on the server (its TTL starts
# after the claim computed the expiry), so a settle that misses it there is stale.
_SKEW = 0.5
Got = tuple[Any, pika.BasicProperties, bytes]


def settle_token(
    b: AmqpBroker,
    queue: str,
    slot: str,
    token: str,
    action: str,
    *,
    by: float = 0.0,
    reason: str | None = None,
    meta: dict[str, Any] | None = None,
    body: bytes | None = None,
) -> float:
    """Settle the lease `token` in `slot` of `queue`: "ack", "nack", "release", "dead" or
    "extend". Returns the new expiry for "extend"; `LeaseLost` when the lease is gone."""
    name = b.names.lease(queue, slot)
    expires = lease_expiry(token)
    args = (by, reason, meta, body)
    with b.lock, translate(b.where):
        # an ack publishes nothing: no transaction, the basic.ack is the whole write
        ch = b.link.channel("ack" if action == "ack" else "tx")
        found = _take(b, ch, name, token, tx=action != "ack")
        if found is not None:
            if action == "ack":
                ch.basic_ack(found[0].delivery_tag)
                result = 0.0
            else:
                result = _apply(b, ch, queue, slot, token, action, found, *args)
                ch.tx_commit()
        else:
            ch = b.link.channel("tx")
            with b.link.locked():
                found = _take(b, ch, name, token)
                ch = b.link.channel("tx")  # reopened if the slot was gone (404)
                if found is None and time.time() < expires - _SKEW:
                    raise_lease_lost(queue)
                if found is None and action == "extend":
                    _check_slot_free(b, queue, slot, token)
                if found is None:
                    found = _find_expired(b, ch, queue, token)
                if found is None:
                    ch.tx_commit()
                    raise_lease_lost(queue)
                result = _apply(b, ch, queue, slot, token, action, found, *args)
                ch.tx_commit()
        if action != "extend":
            release_hold(token)
        return result


def lease_token(expires: float) -> str:
    """A new lease token: random, and the lease's first expiry (epoch ms) after a dot."""
    return f"{uuid.uuid4().hex}.{math.floor(expires * 1000)}"


def lease_expiry(token: str) -> float:
    """The first expiry a lease token carries (0 for a token that carries none)."""
    _, _, ms = token.rpartition(".")
    return int(ms) / 1000 if ms.isdigit() and len(ms) < 16 else 0.0


def _take(
    b: AmqpBroker, ch: BlockingChannel, name: str, token: str, *, tx: bool = True
) -> Got | None:
    """The message with lease `token` from slot `name` (taken, unacked); the slot's
    other messages are rejected back in place. None if absent (or the slot is gone)."""
    found = None
    others = []
    try:
        with translate(b.where):
            while True:
                method, props, raw = ch.basic_get(name)
                if method is None:
                    break
                if found is None and header(props, "sl-lease") == token:
                    found = (method, props, raw)
                else:
                    others.append(method.delivery_tag)
                if not method.message_count:
                    break
    except StemlabError as exc:
        if not lease_lost(exc):  # 404: the slot is gone (its consumer closed it empty)
            raise
        return None
    for tag in others:
        ch.basic_reject(tag, requeue=True)
    if others and found is None and tx:
        ch.tx_commit()  # the rejects of a transactional channel apply at its commit
    return found


def _check_slot_free(b: AmqpBroker, queue: str, slot: str, token: str) -> None:
    """A late extend re-leases into the lease's own slot only if nothing holds it now."""
    held = holder_of(token)
    taken = held is not None and slot in held.busy(queue, but=token)
    if taken or b.link.count(b.names.lease(queue, slot)):
        raise LeaseLost("the lease ran out and its consumer's prefetch slot is taken")


def _find_expired(b: AmqpBroker, ch: BlockingChannel, queue: str, token: str) -> Got | None:
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
    slot: str,
    token: str,
    action: str,
    found: Got,
    by: float,
    reason: str | None,
    meta: dict[str, Any] | None,
    body: bytes | None,
) -> float:
    method, props, raw = found
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
        name = b.names.lease(queue, slot)
        b.link.declare_lease(name, b.ensure_ready(queue))  # a slot closed empty comes back
        # ... and is listed again (a count may have dropped the record of the deleted slot)
        ch.basic_publish("", b.ensure(b.names.index(queue)), f"s:{slot}".encode())
        expires_ms = max(1, math.ceil(by * 1000))
        props = message_props(priority, n, result, lease=token, expires_ms=expires_ms)
        ch.basic_publish("", name, raw, props)
        held = holder_of(token)
        if held is not None:
            hold(token, queue, slot, held)
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
