"""`sqs://`: the contract on Amazon SQS (or an SQS-compatible server) through boto3.

A stemlab queue is ten SQS standard queues, one per priority level, created on first
publish, plus a dead-letter queue; consumers poll the levels highest first. `purge`
moves the queue to a new generation of level queues and deletes the old ones (no
PurgeQueue, which SQS allows once a minute). The
visibility timeout is the lease (whole seconds, rounded up), `ChangeMessageVisibility`
extends it, requeue sends a fresh copy (so it goes to the tail) and deletes the
delivered one, and delays use `DelaySeconds` (longer ones hop every 15 minutes).
Receipts are fenced by the process-wide lease book (leases.py) and by the server's
own check of receipt handles. No broadcast. Design and limits: docs/sqs.md.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

from stemlab.brokers.sqs import deadletters
from stemlab.brokers.sqs.client import Link, QueueMissing, changes, generation_of, level_name
from stemlab.brokers.sqs.consumer import BASE_ATTR, SQSConsumer
from stemlab.brokers.sqs.leases import BOOK, Key
from stemlab.brokers.sqs.settings import (
    MAX_DELAY,
    MAX_LEASE,
    lease_seconds,
    parse_url,
    queue_prefix,
)
from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import from_epoch, to_epoch
from stemlab.core.envelope import Delivery, Envelope
from stemlab.core.receipts import INT, TEXT, Receipts, store_id
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.errors import EnvelopeError, LeaseLost, StemlabError

__all__ = ["SQSBroker"]

_COUNTS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]
_NO_BROADCAST = "sqs:// has no broadcast (capabilities.broadcast_scope is None)"
_BATCH = 10
_RETRIES = 5  # sends to a level queue that a purge just replaced
COUNTS_FRESH = 0.1  # seconds a counts snapshot serves the next count (no change between)
_MEMO_LOCK = threading.Lock()
_Memo = tuple[int, float, tuple[int, int, int], frozenset[str]]  # changes, at, counts, URLs
_MEMO: dict[tuple[str, str], _Memo] = {}


class SQSBroker(Broker):
    """The contract on SQS: durable, cross-process, polled, no broadcast.

    Options: `namespace` (prefixes every SQS queue name), `default_visibility_timeout`,
    `region`, `poll_interval` (seconds between an idle consumer's sweeps),
    `connect_timeout`, `read_timeout` and `max_attempts` (botocore's bounded retries).
    """

    def __init__(self, url: str = "sqs://127.0.0.1:5000", **options: Any) -> None:
        self.settings = parse_url(url, **options)
        self.namespace = self.settings.namespace
        self.default_visibility_timeout = float(self.settings.default_visibility_timeout)
        self.where = f"{self.settings.endpoint}/{self.settings.region}"
        sid = store_id("sqs", self.where)
        self.scope = f"{sid}|{self.namespace}"
        self.receipts = Receipts(sid, self.namespace, {"q": (INT, INT, TEXT, TEXT), "b": (TEXT,)})
        self._caps = Capabilities(
            priority_levels=10,
            delayed=True,
            broadcast_scope=None,
            durable=True,
            cross_process=True,
            poll_interval=self.settings.poll_interval,
            reclaim_delay=1.0,  # leases are whole seconds, rounded up
        )
        self.link = Link(self.settings)
        try:
            self.link.call("list_queues", QueueNamePrefix=self.namespace[:20], MaxResults=1)
        except BaseException:
            self.link.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQSBroker:
        return cls(url, **options)

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def _close(self) -> None:
        self.link.close()

    # ----------------------------------------------------------------- calls
    def call_queue(self, url: str, operation: str, **kwargs: Any) -> Any:
        """One call on a queue that may have vanished (then None, and the cache forgets it)."""
        try:
            return self.link.call(operation, **kwargs)
        except QueueMissing:
            self.link.forget(url)
            return None

    def send(self, url: str, body: str, *, base: int = 0, delay: float = 0.0) -> None:
        """Send one message body, delayed by `delay` seconds (at most 15 minutes at once)."""
        self.link.call("send_message", QueueUrl=url, MessageBody=body, **_extras(base, delay))

    # --------------------------------------------------------------- produce
    def _url_of(self, envelope: Envelope) -> str:
        return self.link.level_url(self.namespace, envelope.queue, envelope.priority)

    def _publish(self, envelope: Envelope) -> None:
        for attempt in range(_RETRIES):
            url = self._url_of(envelope)
            try:
                self.send(url, envelope.to_json(), delay=_delay(envelope))
                return
            except QueueMissing:  # a purge (maybe in another process) replaced it
                self.link.forget(url)
                if attempt == _RETRIES - 1:
                    raise

    def _publish_many(self, envelopes: list[Envelope]) -> None:
        """Runs of envelopes for the same SQS queue go in batches of ten, in order."""
        run: list[Envelope] = []
        run_url = ""
        for envelope in envelopes:
            url = self._url_of(envelope)
            if run and (url != run_url or len(run) == _BATCH):
                self._send_batch(run_url, run)
                run = []
            run_url = url
            run.append(envelope)
        if run:
            self._send_batch(run_url, run)

    def _send_batch(self, url: str, envelopes: list[Envelope]) -> None:
        for attempt in range(_RETRIES):
            try:
                self._send_batch_to(url, envelopes)
                return
            except QueueMissing:  # a purge (maybe in another process) replaced it
                self.link.forget(url)
                if attempt == _RETRIES - 1:
                    raise
                url = self._url_of(envelopes[0])

    def _send_batch_to(self, url: str, envelopes: list[Envelope]) -> None:
        entries = [
            {"Id": str(i), "MessageBody": e.to_json(), **_extras(0, _delay(e))}
            for i, e in enumerate(envelopes)
        ]
        reply = self.link.call("send_message_batch", QueueUrl=url, Entries=entries)
        failed = reply.get("Failed") or []
        if failed:
            raise StemlabError(f"sqs send_message_batch refused {len(failed)}: {failed[0]}")

    def _broadcast(self, channel: str, envelope: Envelope) -> None:
        raise StemlabError(_NO_BROADCAST)

    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer:
        if channels:
            raise StemlabError(_NO_BROADCAST)
        return SQSConsumer(self, queues, channels, prefetch, consumer)

    # ----------------------------------------------------------------- settle
    def _lease(self, delivery: Delivery) -> tuple[Key, str, str]:
        """(book key, SQS queue URL, receipt handle), fenced: else `LeaseLost`."""
        level, gen, mid, handle = self.receipts.read(delivery)
        try:
            url = self.link.existing_url(self.namespace, delivery.queue, int(gen), int(level))
        except QueueMissing:  # purged: the generation's queues are gone
            raise LeaseLost("this delivery was purged") from None
        key = (self.scope, url, str(mid))
        BOOK.check(key, str(handle))
        return key, url, str(handle)

    def _hold(self, url: str, handle: str, seconds: int) -> None:
        """Take (or keep) the lease; the server refuses a handle it no longer knows."""
        self.link.call(
            "change_message_visibility",
            QueueUrl=url,
            ReceiptHandle=handle,
            VisibilityTimeout=seconds,
        )

    def _ack(self, delivery: Delivery) -> None:
        with _purged_is_lost():
            key, url, handle = self._lease(delivery)
            self._hold(url, handle, lease_seconds(self.default_visibility_timeout))
            self.link.call("delete_message", QueueUrl=url, ReceiptHandle=handle)
            BOOK.settle(key, handle)

    def _nack(self, delivery: Delivery) -> None:
        with _purged_is_lost():
            key, url, handle = self._lease(delivery)
            self._hold(url, handle, lease_seconds(self.default_visibility_timeout))
            body = BOOK.lease_of(key, handle)[1] or delivery.envelope.to_json()
            self.send(url, body, base=delivery.delivery_count)
            self.link.call("delete_message", QueueUrl=url, ReceiptHandle=handle)
            BOOK.settle(key, handle)

    def _dead_letter(self, delivery: Delivery, reason: str | None, meta: dict[str, Any]) -> None:
        with _purged_is_lost():
            key, url, handle = self._lease(delivery)
            self._hold(url, handle, lease_seconds(self.default_visibility_timeout))
            self._to_dlq(delivery.queue, _stored(key, handle, delivery), reason, meta)
            self.link.call("delete_message", QueueUrl=url, ReceiptHandle=handle)
            BOOK.settle(key, handle)

    def bury(
        self, queue: str, url: str, mid: str, handle: str, placeholder: Envelope, error: str
    ) -> None:
        """Dead-letter a received message that does not decode (reason "undecodable")."""
        key = (self.scope, url, mid)
        BOOK.check(key, handle)
        with _purged_is_lost():
            self._to_dlq(queue, placeholder, "undecodable", {"error": error})
            self.link.call("delete_message", QueueUrl=url, ReceiptHandle=handle)
        BOOK.settle(key, handle)

    def _to_dlq(
        self, queue: str, envelope: Envelope, reason: str | None, meta: dict[str, Any]
    ) -> None:
        dlq = self.link.dlq_url(self.namespace, queue, create=True)
        assert dlq is not None
        self.send(dlq, deadletters.bury_body(envelope, reason, meta))

    def _extend_lease(self, delivery: Delivery, by: float) -> datetime:
        with _purged_is_lost():
            key, url, handle = self._lease(delivery)
            now = time.time()
            BOOK.check_extend(key, handle, now)
            seconds = lease_seconds(by)  # SQS: whole seconds, rounded up
            received = BOOK.lease_of(key, handle)[0] or now
            # SQS caps a message's visibility at 12 h after its receive (docs/sqs.md)
            seconds = max(1, min(seconds, MAX_LEASE - math.ceil(now - received) - 1))
            self._hold(url, handle, seconds)
            BOOK.extend(key, handle, now + by)
            return from_epoch(now + by)

    # ---------------------------------------------------------------- counts
    def _counts(self, queue: str) -> tuple[int, int, int]:
        """(pending, in flight, delayed): one `GetQueueAttributes` per level queue, less
        what consumers of this process read ahead (pending to the contract)."""
        totals, urls = self._server_counts(queue)
        ahead = min(totals[1], BOOK.buffered(self.scope, urls))
        return totals[0] + ahead, totals[1] - ahead, totals[2]

    def _server_counts(self, queue: str) -> tuple[tuple[int, int, int], set[str]]:
        """SQS's three counts summed over the level queues, and those queues' URLs.

        `pending_count`, `inflight_count` and `delayed_count` each need all three, so a
        snapshot serves again for `COUNTS_FRESH` seconds while this process made no SQS
        call that may change a queue (docs/sqs.md, Counts)."""
        key = (self.scope, queue)
        seen = changes()
        with _MEMO_LOCK:
            memo = _MEMO.get(key)
        if memo is not None and memo[0] == seen and time.monotonic() - memo[1] < COUNTS_FRESH:
            return memo[2], set(memo[3])
        totals = [0, 0, 0]
        urls = self.link.level_urls(self.namespace, queue)
        for url in urls.values():
            reply = self.call_queue(
                url, "get_queue_attributes", QueueUrl=url, AttributeNames=_COUNTS
            )
            attrs = (reply or {}).get("Attributes", {})
            for i, name in enumerate(_COUNTS):
                totals[i] += int(attrs.get(name, 0))
        value = (totals[0], totals[1], totals[2])
        with _MEMO_LOCK:
            _MEMO[key] = (seen, time.monotonic(), value, frozenset(urls.values()))
            while len(_MEMO) > 1000:
                del _MEMO[next(iter(_MEMO))]
        return value, set(urls.values())

    def _purge(self, queue: str) -> int:
        """Switch the queue to a new generation of level queues, then count and delete
        the old ones (no PurgeQueue: it may run once a minute; see docs/sqs.md)."""
        old = self.link.all_level_urls(self.namespace, queue)
        if not old:
            return 0
        gen = self.link.generation(self.namespace, queue) + 1
        self.link.ensure(queue_prefix(self.namespace, queue) + level_name(gen, 0))
        old = {
            s: u
            for s, u in self.link.all_level_urls(self.namespace, queue).items()
            if generation_of(u) < gen
        }
        total = 0
        for url in old.values():
            reply = self.call_queue(
                url, "get_queue_attributes", QueueUrl=url, AttributeNames=_COUNTS
            )
            attrs = (reply or {}).get("Attributes", {})
            total += sum(int(attrs.get(name, 0)) for name in _COUNTS)
            self.link.drop(url)
        BOOK.forget_queue(self.scope, set(old.values()))
        return total

    # ----------------------------------------------------------- dead letters
    def _scan(self, queue: str) -> tuple[str | None, list[deadletters.Dead]]:
        url = self.link.dlq_url(self.namespace, queue, create=False)
        if url is None:
            return None, []
        return url, deadletters.scan(self.link, url, queue)

    def _list_dead_letters(self, queue: str, limit: int, offset: int) -> DeadLetterPage:
        url, dead = self._scan(queue)
        if url is not None:
            deadletters.restore(self.link, url, dead)
        newest = [d.entry for d in reversed(dead)]
        more = offset + limit < len(newest)
        return DeadLetterPage(newest[offset : offset + limit], offset + limit if more else None)

    def _get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None:
        url, dead = self._scan(queue)
        if url is not None:
            deadletters.restore(self.link, url, dead)
        for d in reversed(dead):
            if d.entry.envelope.id == id:
                return d.entry
        return None

    def _pick(
        self, queue: str, since: float | None, limit: int | None
    ) -> tuple[str | None, list[deadletters.Dead], list[deadletters.Dead]]:
        """(DLQ URL, picked oldest first, the rest): everything stays hidden until settled."""
        url, dead = self._scan(queue)
        picked: list[deadletters.Dead] = []
        rest: list[deadletters.Dead] = []
        for d in dead:
            ok = since is None or to_epoch(d.entry.dead_at) >= since - 1e-6
            if ok and (limit is None or len(picked) < limit):
                picked.append(d)
            else:
                rest.append(d)
        return url, picked, rest

    def _replay_dead_letters(
        self, queue: str, limit: int, since: float | None, delay: float | None, dry_run: bool
    ) -> ReplayResult:
        url, picked, rest = self._pick(queue, since, limit)
        if url is None:
            return ReplayResult([], dry_run)
        try:
            if not dry_run and picked:
                not_before = from_epoch(time.time() + delay) if delay else None
                for d in picked:
                    again = replace(d.entry.envelope, queue=queue, not_before=not_before)
                    self._publish(again)
                    deadletters.remove(self.link, url, [d])
        finally:
            deadletters.restore(self.link, url, rest + (picked if dry_run else []))
        return ReplayResult([d.entry for d in picked], dry_run)

    def _purge_dead_letters(self, queue: str, since: float | None, limit: int | None) -> int:
        url, picked, rest = self._pick(queue, since, limit)
        if url is None:
            return 0
        try:
            deadletters.remove(self.link, url, picked)
        finally:
            deadletters.restore(self.link, url, rest)
        return len(picked)


@contextlib.contextmanager
def _purged_is_lost() -> Iterator[None]:
    """A settle whose SQS queue a purge deleted meanwhile: the delivery is gone."""
    try:
        yield
    except QueueMissing:
        raise LeaseLost("this delivery was purged") from None


def _stored(key: Key, handle: str, delivery: Delivery) -> Envelope:
    """The envelope as stored (received by this process), else the delivery's."""
    body = BOOK.lease_of(key, handle)[1]
    if body is not None:
        with contextlib.suppress(EnvelopeError, TypeError, ValueError):
            return Envelope.from_json(body)
    return delivery.envelope


def _delay(envelope: Envelope) -> float:
    nb = envelope.not_before
    return 0.0 if nb is None else to_epoch(nb) - time.time()


def _extras(base: int, delay: float) -> dict[str, Any]:
    """DelaySeconds (whole seconds, rounded up, at most 15 minutes) and the base count."""
    extras: dict[str, Any] = {
        "MessageAttributes": {BASE_ATTR: {"DataType": "Number", "StringValue": str(base)}}
    }
    if delay > 0:
        extras["DelaySeconds"] = min(MAX_DELAY, math.ceil(delay))
    return extras
