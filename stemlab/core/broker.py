"""The Broker contract (an ABC) and the Consumer every adapter returns.

Public methods validate and normalise their arguments once, here, then call
the adapter's protected hooks; so every adapter refuses bad input the same
way and before anything is written.
"""

from __future__ import annotations

import abc
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from stemlab.core.clock import to_epoch
from stemlab.core.codec import ensure_json, new_id
from stemlab.core.envelope import (
    Delivery,
    Envelope,
    duration,
    snapshot,
    validate_priority,
    validate_queue_name,
)
from stemlab.core.limits import check_count, check_identifier, check_lease, check_text
from stemlab.core.purges import PURGES
from stemlab.core.receipts import Receipts
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.errors import StemlabError

__all__ = ["Broker", "Consumer", "normalise_names"]

Duration = float | int | timedelta
_track_lock = threading.Lock()


def normalise_names(names: str | Sequence[str], what: str) -> tuple[str, ...]:
    """One name or a sequence of names, validated, duplicates dropped, order kept."""
    items = (names,) if isinstance(names, str) else tuple(names)
    return tuple(dict.fromkeys(validate_queue_name(n, what) for n in items))


def _count(value: Any, what: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    return check_count(value, what)


def _since(value: datetime | None) -> float | None:
    return None if value is None else to_epoch(value)


class Consumer(abc.ABC):
    """A blocking iterator of deliveries and a context manager.

    `get(timeout)` returns the next `Delivery` (broadcast copies first) or None
    when `timeout` passes. A consumer holds at most `prefetch` unsettled queue
    leases. Closing it (or its broker) stops delivery and gives back what it
    read ahead but never handed out; deliveries already handed out stay leased
    until settled or expired.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    @abc.abstractmethod
    def get(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, waiting up to `timeout` seconds (None: forever)."""

    def close(self) -> None:
        self.closed = True

    def __iter__(self) -> Iterator[Delivery]:
        while not self.closed:
            delivery = self.get(timeout=0.5)
            if delivery is not None:
                yield delivery

    def __enter__(self) -> Consumer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Broker(abc.ABC):
    """The contract: publish, consume, settle, count, dead letters, broadcast.

    Delivery is at least once. A consumed message is leased for its envelope's
    `visibility_timeout` (else the broker's `default_visibility_timeout`); an
    expired lease makes it deliverable again, with `delivery_count` one higher.
    Within a queue, higher priority first, FIFO within a priority.

    A `Delivery`'s receipt is opaque and settles it once: `ack` removes the
    message, `nack` makes it ready again (or dead-letters it as "nack" with
    `requeue=False`), `dead_letter` moves it to its queue's dead letters,
    `extend_lease` moves its expiry. A receipt that is stale (settled, or
    redelivered to someone else) or was not issued by this broker (another
    namespace or store, or forged) raises `LeaseLost` and changes nothing.

    Every argument is validated here, before anything is written: bad values are
    `ValueError`/`TypeError` (`EnvelopeError` for envelopes). Adapters raise
    `ConfigError` for a bad URL or option and `BrokerUnavailable` when their
    service stays unreachable after bounded retries. Brokers of one namespace on
    one store see the same queues; namespaces never see each other's.
    """

    closed: bool = False
    receipts: Receipts  # set by each adapter: issues and reads back its receipts

    # ------------------------------------------------------------- producing
    def publish(
        self, envelope: Envelope, *, queue: str | None = None, priority: int | None = None
    ) -> None:
        """Store one envelope, optionally routed to another queue or priority."""
        self._check_open()
        self._publish(self._route(envelope, queue, priority))

    def publish_many(self, envelopes: Iterable[Envelope]) -> None:
        """Store several envelopes, all or none: every one is validated and encoded first.

        Adapters do it in one round trip (one transaction or script) where they can.
        """
        self._check_open()
        items = [self._route(e, None, None) for e in envelopes]
        if items:
            self._publish_many(items)

    def broadcast(self, channel: str, envelope: Envelope) -> None:
        """Deliver `envelope` once to every consumer subscribed to `channel` now."""
        self._check_open()
        validate_queue_name(channel, "channel")
        self._broadcast(channel, self._route(envelope, None, None))

    @staticmethod
    def _route(envelope: Envelope, queue: str | None, priority: int | None) -> Envelope:
        """A snapshot of the envelope (see `snapshot`), re-routed if asked: what gets stored."""
        if not isinstance(envelope, Envelope):
            raise TypeError(f"expected an Envelope, got {type(envelope).__name__}")
        changes: dict[str, Any] = {}
        if queue is not None:
            changes["queue"] = validate_queue_name(queue)
        if priority is not None:
            changes["priority"] = validate_priority(priority)
        return snapshot(replace(envelope, **changes) if changes else envelope)

    # ------------------------------------------------------------- consuming
    def consume(
        self,
        queues: str | Sequence[str] = (),
        *,
        channels: str | Sequence[str] = (),
        prefetch: int = 1,
        consumer: str | None = None,
    ) -> Consumer:
        """Open a consumer on queues and/or broadcast channels."""
        self._check_open()
        qs = normalise_names(queues, "queue")
        chs = normalise_names(channels, "channel")
        if not qs and not chs:
            raise ValueError("consume needs at least one queue or channel")
        check_count(prefetch, "prefetch", 1)
        name = consumer if consumer is not None else new_id()
        if not isinstance(name, str):
            raise ValueError("consumer must be a non-empty string")
        check_identifier(name, "consumer")
        return self._consume(qs, chs, prefetch, name)

    def ack(self, delivery: Delivery) -> None:
        """Settle a delivery: the message is done and removed."""
        self._check_open()
        self._ack(self._delivery(delivery))

    def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        """Give a delivery back: ready again at once, or dead-lettered as "nack"."""
        self._check_open()
        delivery = self._delivery(delivery)
        if requeue:
            self._nack(delivery)
        else:
            self._dead_letter(delivery, "nack", {})

    def dead_letter(
        self, delivery: Delivery, *, reason: str | None = None, meta: dict[str, Any] | None = None
    ) -> None:
        """Move a delivery's message to its queue's dead letters."""
        self._check_open()
        if reason is not None and not isinstance(reason, str):
            raise TypeError("reason must be a string or None")
        if reason is not None:
            check_text(reason, "reason")
        meta = dict(meta or {})
        ensure_json(meta, "meta")
        self._dead_letter(self._delivery(delivery), reason, meta)

    def extend_lease(self, delivery: Delivery, by: Duration) -> datetime:
        """Make the lease expire `by` seconds from now; returns the new expiry."""
        self._check_open()
        seconds = check_lease(by, "by")
        delivery = self._delivery(delivery)
        if delivery.channel is not None:
            raise ValueError("broadcast deliveries have no lease to extend")
        return self._extend_lease(delivery, seconds)

    def _delivery(self, delivery: Delivery) -> Delivery:
        """Refuse anything but a delivery whose receipt this broker issued (before any write)."""
        if not isinstance(delivery, Delivery):
            raise TypeError(f"expected a Delivery, got {type(delivery).__name__}")
        self.receipts.read(delivery)
        return delivery

    # -------------------------------------------------------------- counting
    def purge(self, queue: str) -> int:
        """Remove the queue's ready, delayed and leased messages (not its dead letters)."""
        self._check_open()
        removed = self._purge(validate_queue_name(queue))
        PURGES.bump(self.receipts.store, self.receipts.namespace, queue)
        return removed

    def pending_count(self, queue: str) -> int:
        """Messages that are due and not leased."""
        self._check_open()
        return self._counts(validate_queue_name(queue))[0]

    def inflight_count(self, queue: str) -> int:
        """Messages leased and not yet settled."""
        self._check_open()
        return self._counts(validate_queue_name(queue))[1]

    def delayed_count(self, queue: str) -> int:
        """Messages whose `not_before` is still in the future."""
        self._check_open()
        return self._counts(validate_queue_name(queue))[2]

    # ---------------------------------------------------------- dead letters
    def list_dead_letters(self, queue: str, *, limit: int = 50, offset: int = 0) -> DeadLetterPage:
        """A page of dead letters, newest first."""
        self._check_open()
        validate_queue_name(queue)
        if _count(limit, "limit") == 0:
            raise ValueError("limit must be >= 1 (a page of nothing has no next offset)")
        _count(offset, "offset")
        return self._list_dead_letters(queue, limit, offset)

    def get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None:
        """The newest dead letter of `queue` whose envelope id is `id`."""
        self._check_open()
        validate_queue_name(queue)
        check_identifier(id, "id")
        return self._get_dead_letter(queue, id)

    def replay_dead_letters(
        self,
        queue: str,
        *,
        limit: int = 50,
        since: datetime | None = None,
        delay: Duration | None = None,
        dry_run: bool = False,
    ) -> ReplayResult:
        """Republish dead letters oldest first, due after `delay` (or now)."""
        self._check_open()
        validate_queue_name(queue)
        _count(limit, "limit")
        return self._replay_dead_letters(
            queue, limit, _since(since), duration(delay, "delay"), bool(dry_run)
        )

    def purge_dead_letters(
        self, queue: str, *, since: datetime | None = None, limit: int | None = None
    ) -> int:
        """Delete dead letters (oldest first) dead at or after `since`, at most `limit`."""
        self._check_open()
        validate_queue_name(queue)
        return self._purge_dead_letters(
            queue, _since(since), _count(limit, "limit", allow_none=True)
        )

    # -------------------------------------------------------------- lifetime
    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this adapter promises (priority levels, broadcast scope, polling...)."""

    def close(self) -> None:
        """Close open consumers (their unhanded read-ahead goes back), release connections.

        Idempotent. Deliveries already handed out stay leased until they expire.
        """
        if not self.closed:
            self.closed = True
            for consumer in list(self.__dict__.get("_open_consumers", ())):
                consumer.close()
            self._close()

    def track(self, consumer: Consumer) -> None:
        """Remember an open consumer, so closing the broker closes it."""
        with _track_lock:
            opened = self.__dict__.setdefault("_open_consumers", weakref.WeakSet())
            opened.add(consumer)

    def untrack(self, consumer: Consumer) -> None:
        with _track_lock:
            self.__dict__.get("_open_consumers", weakref.WeakSet()).discard(consumer)

    def _check_open(self) -> None:
        if self.closed:
            raise StemlabError("this broker is closed")

    def __enter__(self) -> Broker:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------ adapter hooks (protected)
    @abc.abstractmethod
    def _publish(self, envelope: Envelope) -> None: ...

    def _publish_many(self, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            self._publish(envelope)

    @abc.abstractmethod
    def _broadcast(self, channel: str, envelope: Envelope) -> None: ...

    @abc.abstractmethod
    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer: ...

    @abc.abstractmethod
    def _ack(self, delivery: Delivery) -> None: ...

    @abc.abstractmethod
    def _nack(self, delivery: Delivery) -> None:
        """Requeue (the `requeue=False` path is `_dead_letter` with reason "nack")."""

    @abc.abstractmethod
    def _dead_letter(
        self, delivery: Delivery, reason: str | None, meta: dict[str, Any]
    ) -> None: ...

    @abc.abstractmethod
    def _extend_lease(self, delivery: Delivery, by: float) -> datetime: ...

    @abc.abstractmethod
    def _purge(self, queue: str) -> int: ...

    @abc.abstractmethod
    def _counts(self, queue: str) -> tuple[int, int, int]:
        """(pending, inflight, delayed) of one queue, read together."""

    @abc.abstractmethod
    def _list_dead_letters(self, queue: str, limit: int, offset: int) -> DeadLetterPage: ...

    @abc.abstractmethod
    def _get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None: ...

    @abc.abstractmethod
    def _replay_dead_letters(
        self, queue: str, limit: int, since: float | None, delay: float | None, dry_run: bool
    ) -> ReplayResult: ...

    @abc.abstractmethod
    def _purge_dead_letters(self, queue: str, since: float | None, limit: int | None) -> int: ...

    @abc.abstractmethod
    def _close(self) -> None: ...
