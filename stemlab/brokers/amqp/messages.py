"""How a queue message looks on RabbitMQ: its properties, stemlab headers and delays.

Every message is persistent, carries the envelope as JSON in its body, its priority
as the AMQP priority and the headers `sl-n` (deliveries so far), `sl-ready` (when it
became ready) and, once leased, `sl-lease` (its latest lease token); a long delay's
hop also carries `sl-due`. Dead letters carry `sl-reason`, `sl-meta` and `sl-dead`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

from stemlab.brokers.amqp.link import Link
from stemlab.core.clock import from_epoch
from stemlab.core.envelope import Envelope
from stemlab.core.records import DeadLetterEntry
from stemlab.errors import EnvelopeError

__all__ = [
    "MAX_HOP_MS",
    "dead_entry",
    "dead_props",
    "delay_into",
    "early",
    "header",
    "message_props",
    "stamp",
]

_DELAY_BUCKET_MS = 10  # wait queues are per 10 ms of delay, rounded up (never early)
# RabbitMQ refuses a TTL or x-expires above 2^32 - 1 ms (~49.7 days): longer delays hop
# through 30-day wait queues, back to the ready queue and on (see `delay_into`).
MAX_HOP_MS = 30 * 24 * 3600 * 1000

_stamp_lock = threading.Lock()
_last_stamp = 0.0


def stamp() -> float:
    """Now, strictly after the previous stamp of this process (FIFO across queues)."""
    global _last_stamp
    with _stamp_lock:
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


def dead_props(reason: str | None, meta: dict[str, Any]) -> pika.BasicProperties:
    """Properties of a dead letter: its reason, meta and when it died."""
    headers: dict[str, Any] = {"sl-meta": json.dumps(meta), "sl-dead": repr(time.time())}
    if reason is not None:
        headers["sl-reason"] = reason
    return pika.BasicProperties(delivery_mode=2, headers=headers)


def dead_entry(queue: str, props: pika.BasicProperties, raw: bytes) -> DeadLetterEntry:
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
