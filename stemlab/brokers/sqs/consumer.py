"""The SQS consumer: polls each queue's priority-level SQS queues, highest level first.

Each `_fill` first checks the consumer name's unexpired leases against `prefetch` (the
process-wide lease book), then, for each level from 9 down to 0, receives up to the
free slots (at most ten) from that level's SQS queue of each of the consumer's queues;
the first level that yields anything fills the read-ahead buffer, oldest `SentTimestamp`
first, and what is beyond the free slots is made visible again at once (a "peek": the
lease book subtracts peeks from SQS's receive count). A received message whose
`not_before` is still ahead (a delay longer than SQS's 15 minutes) is sent again with
the remaining delay and the received copy deleted; one whose receive count shows an
earlier lease ran out is re-sent to the tail of its level. The lease is the visibility
timeout, in whole seconds rounded up; an envelope with its own `visibility_timeout`
gets it by a `ChangeMessageVisibility` right after the receive. A claim whose lease ran
out in the buffer is given back, unless it was received just now and its lease is
shorter than the receive took: SQS still hides it (whole seconds), so it is handed out,
its expiry already past.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any

from stemlab.brokers.sqs.client import generation_of
from stemlab.brokers.sqs.leases import BOOK
from stemlab.brokers.sqs.settings import LEVELS, lease_seconds
from stemlab.core.clock import to_epoch
from stemlab.core.consumer import Claim, StoreConsumer
from stemlab.core.envelope import Envelope, undecodable_envelope
from stemlab.errors import EnvelopeError, LeaseLost

if TYPE_CHECKING:
    from stemlab.brokers.sqs.broker import SQSBroker

__all__ = ["BASE_ATTR", "SQSConsumer"]

BATCH = 10  # SQS receives at most ten messages per call
RECHECK_AFTER = 0.25  # seconds in the read-ahead buffer before a hand-out checks for a purge
FRESH_CLAIM = 0.25  # seconds after its receive a claim whose short lease ran out is still ours
BASE_ATTR = "stem_base"  # deliveries before this SQS message existed (requeue, re-delay)


class SQSConsumer(StoreConsumer):
    """See the module docstring; thread-safe (one `get` at a time)."""

    def __init__(
        self,
        broker: SQSBroker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        super().__init__(broker, queues, channels, prefetch, name)
        self._sqs = broker
        self._owner = (broker.scope, name)
        self._poll = broker.settings.poll_interval
        self._woken = threading.Event()
        BOOK.set_cap(self._owner, prefetch)
        self._filled: dict[str, float] = {}  # message id -> monotonic time of its receive
        self._hidden: dict[str, float] = {}  # message id -> epoch until SQS surely hides it

    # ----------------------------------------------------------- core hooks
    def _fill(self) -> float:
        free = self.prefetch - BOOK.held(self._owner, time.time())
        if free <= 0:
            return self._poll
        link, ns = self._sqs.link, self._sqs.namespace
        urls = {q: link.level_urls(ns, q) for q in self.queues}
        default = lease_seconds(self._sqs.default_visibility_timeout)
        want = min(free, BATCH)
        for level in LEVELS:
            found: list[tuple[int, int, str, str, dict[str, Any], float]] = []
            for order, queue in enumerate(self.queues):
                url = urls[queue].get(level)
                if url is None:
                    continue
                before = time.time()
                for message in self._receive(url, default, want):
                    sent = int(message.get("Attributes", {}).get("SentTimestamp", "0"))
                    found.append((sent, order, queue, url, message, before))
            if not found:
                continue
            found.sort(key=lambda f: (f[0], f[1]))
            for _, _, _, url, message, _ in found[want:]:  # beyond the free slots: give back
                self._give_back(url, message)
            claims = []
            for _, _, queue, url, message, before in found[:want]:
                claim = self._claim(queue, level, url, message, before, default)
                if claim is not None:
                    claims.append(claim)
            self.add_claims(claims)
            return 0.0
        return self._poll

    def _receive(self, url: str, lease: int, most: int) -> list[dict[str, Any]]:
        """One ReceiveMessage of at most `most` messages, leased for `lease` seconds."""
        reply = self._sqs.call_queue(
            url,
            "receive_message",
            QueueUrl=url,
            MaxNumberOfMessages=most,
            VisibilityTimeout=lease,
            WaitTimeSeconds=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            MessageAttributeNames=[BASE_ATTR],
        )
        return [dict(m) for m in (reply or {}).get("Messages", [])]

    def _give_back(self, url: str, message: dict[str, Any]) -> None:
        """Make a message received but not kept visible again, in place, its count kept."""
        handle = str(message["ReceiptHandle"])
        self._sqs.call_queue(
            url,
            "change_message_visibility",
            QueueUrl=url,
            ReceiptHandle=handle,
            VisibilityTimeout=0,
        )
        BOOK.give_back((self._sqs.scope, url, str(message["MessageId"])), handle)

    def _claim(
        self, queue: str, level: int, url: str, message: dict[str, Any], at: float, lease: int
    ) -> Claim | None:
        body = str(message.get("Body", ""))
        handle, mid = str(message["ReceiptHandle"]), str(message["MessageId"])
        base = _base(message)
        key = (self._sqs.scope, url, mid)
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        count = max(1, count - BOOK.peeks(key))
        if count > 1:  # its lease ran out: ready again at the tail of its level
            self._sqs.send(url, body, base=base + count - 1)
            self._sqs.call_queue(url, "delete_message", QueueUrl=url, ReceiptHandle=handle)
            BOOK.settle(key, handle)  # this copy is gone (its peeks with it)
            return None
        payload: Envelope | str = body
        with contextlib.suppress(EnvelopeError, TypeError, ValueError):
            payload = Envelope.from_json(body)
        if isinstance(payload, Envelope) and payload.not_before is not None:
            left = to_epoch(payload.not_before) - time.time()
            if left > 0:  # a delay longer than SQS allows: hop again
                self._sqs.send(url, body, base=base, delay=left)
                self._sqs.call_queue(url, "delete_message", QueueUrl=url, ReceiptHandle=handle)
                return None
        seconds = self._sqs.default_visibility_timeout
        if isinstance(payload, Envelope) and payload.visibility_timeout is not None:
            seconds = payload.visibility_timeout
            if lease_seconds(seconds) != lease:
                self._sqs.link.call(
                    "change_message_visibility",
                    QueueUrl=url,
                    ReceiptHandle=handle,
                    VisibilityTimeout=lease_seconds(seconds),
                )
        expires = at + seconds  # SQS frees it up to a second later (reclaim_delay)
        BOOK.record(key, handle, self._owner, expires, at, body)
        self._filled[mid] = time.monotonic()
        self._hidden[mid] = at + lease_seconds(seconds) - 0.5  # SQS hides it until then
        BOOK.buffer(key, True)
        fields = (level, generation_of(url), mid, handle)
        return Claim(fields, queue, payload, base + count, expires, url)

    def _hand_out(self, claim: Claim) -> float | None:
        key = (self._sqs.scope, str(claim.extra), str(claim.fields[2]))
        filled = self._filled.pop(str(claim.fields[2]), None)
        hidden = self._hidden.pop(str(claim.fields[2]), 0.0)
        if not BOOK.is_buffered(key):  # purged (in this process) while read ahead: gone
            return None
        if filled is not None and time.monotonic() - filled > RECHECK_AFTER:
            # read ahead a while ago: a purge in another process may have replaced it
            current = self._sqs.link.generation_since(self._sqs.namespace, claim.queue, filled)
            if int(claim.fields[1]) < current:
                BOOK.buffer(key, False)
                return None
        now = time.time()
        fresh = filled is not None and time.monotonic() - filled < FRESH_CLAIM
        if now < claim.expires or (fresh and now < hidden):
            # (a lease shorter than the receive took: SQS still hides the message for
            # whole seconds, so it is ours; handed out with its expiry already past)
            BOOK.buffer(key, False)
            return claim.expires
        self._release([claim])  # its lease ran out in the buffer: back in place
        return None

    def _wait(self, seconds: float) -> bool:
        woke = self._woken.wait(seconds)
        self._woken.clear()
        return woke

    def _interrupt(self) -> None:
        self._woken.set()

    def _bury(self, claim: Claim, error: Exception) -> None:
        """Dead-letter an undecodable payload with reason "undecodable", then go on."""
        _, _, mid, handle = claim.fields
        placeholder = undecodable_envelope(claim.payload, claim.queue, error=str(error))
        with contextlib.suppress(LeaseLost):  # settled by someone else meanwhile
            self._sqs.bury(
                claim.queue, str(claim.extra), str(mid), str(handle), placeholder, str(error)
            )

    def _release(self, claims: list[Claim]) -> None:
        """Give back what was read ahead but never handed out: in place, count kept."""
        for claim in claims:
            self._filled.pop(str(claim.fields[2]), None)
            self._hidden.pop(str(claim.fields[2]), None)
            message = {"ReceiptHandle": claim.fields[3], "MessageId": claim.fields[2]}
            self._give_back(str(claim.extra), message)


def _base(message: dict[str, Any]) -> int:
    attr = message.get("MessageAttributes", {}).get(BASE_ATTR, {})
    try:
        return int(attr.get("StringValue", "0"))
    except ValueError:
        return 0
