"""Dead letters in a plain SQS queue per stemlab queue (`<prefix>dlq`).

Each dead letter is one SQS message whose body is JSON: the envelope, stemlab's
`reason` and `meta`, and `dead_ns` (when it died, epoch nanoseconds). SQS cannot
browse a queue, so reading the dead letters receives every message of the dead-letter
queue with a short visibility timeout (`SCAN_LEASE`), works on the sorted list, deletes
what was purged or replayed, and makes the rest visible again at once. Two scans of the
same queue at the same moment hide messages from each other (see docs/sqs.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from stemlab.core.codec import dumps, loads
from stemlab.core.envelope import Envelope, undecodable_envelope
from stemlab.core.records import DeadLetterEntry
from stemlab.errors import EnvelopeError

if TYPE_CHECKING:
    from stemlab.brokers.sqs.client import Link

__all__ = ["Dead", "bury_body", "remove", "restore", "scan"]

SCAN_LEASE = 10  # seconds a scanned dead letter stays hidden if the scanner dies
_BATCH = 10  # SQS batch calls take at most 10 entries


@dataclass(frozen=True)
class Dead:
    """One scanned dead letter: its SQS handle, when it died, and the entry."""

    handle: str
    dead_ns: int
    entry: DeadLetterEntry


def bury_body(envelope: Envelope, reason: str | None, meta: dict[str, Any]) -> str:
    """The SQS body of one dead letter."""
    data: dict[str, Any] = {"envelope": envelope.to_dict(), "reason": reason, "meta": meta}
    data["dead_ns"] = time.time_ns()
    return dumps(data)


def scan(link: Link, url: str, queue: str) -> list[Dead]:
    """Every dead letter of one queue, oldest first (all hidden until `restore`)."""
    found: list[Dead] = []
    while True:
        reply = link.call(
            "receive_message",
            QueueUrl=url,
            MaxNumberOfMessages=_BATCH,
            VisibilityTimeout=SCAN_LEASE,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["SentTimestamp"],
        )
        messages = reply.get("Messages", [])
        if not messages:
            break
        for message in messages:
            found.append(_dead(message, queue))
    found.sort(key=lambda d: d.dead_ns)
    return found


def restore(link: Link, url: str, dead: list[Dead]) -> None:
    """Make scanned dead letters visible again."""
    for i in range(0, len(dead), _BATCH):
        entries = [
            {"Id": str(n), "ReceiptHandle": d.handle, "VisibilityTimeout": 0}
            for n, d in enumerate(dead[i : i + _BATCH])
        ]
        link.call("change_message_visibility_batch", QueueUrl=url, Entries=entries)


def remove(link: Link, url: str, dead: list[Dead]) -> None:
    """Delete scanned dead letters."""
    for i in range(0, len(dead), _BATCH):
        entries = [
            {"Id": str(n), "ReceiptHandle": d.handle} for n, d in enumerate(dead[i : i + _BATCH])
        ]
        link.call("delete_message_batch", QueueUrl=url, Entries=entries)


def _dead(message: dict[str, Any], queue: str) -> Dead:
    raw = str(message.get("Body", ""))
    sent_ms = int(message.get("Attributes", {}).get("SentTimestamp", "0"))
    try:
        data = loads(raw)
        if not isinstance(data, dict):
            raise TypeError("not an object")
    except (EnvelopeError, TypeError, ValueError):
        data = {"envelope": None, "reason": "undecodable", "meta": {}, "raw": raw}
    try:
        envelope = Envelope.from_dict(data["envelope"])
    except (EnvelopeError, KeyError, TypeError) as exc:
        text = data.get("raw", dumps(data.get("envelope")))
        envelope = undecodable_envelope(text, queue, error=str(exc))
    dead_ns = data.get("dead_ns")
    if not isinstance(dead_ns, int):
        dead_ns = sent_ms * 1_000_000
    meta = data.get("meta")
    entry = DeadLetterEntry(
        envelope,
        data.get("reason") if isinstance(data.get("reason"), str) else None,
        meta if isinstance(meta, dict) else {},
        _from_ns(dead_ns),
    )
    return Dead(str(message["ReceiptHandle"]), dead_ns, entry)


def _from_ns(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
