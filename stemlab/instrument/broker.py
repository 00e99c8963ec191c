"""InstrumentedBroker: a Broker that forwards every call to another one and records it.

Every public call becomes one flat record (see `stemlab.instrument.records`):
`ts` is when the call began (epoch seconds), `duration_s` how long it took,
`ok`/`error` how it ended (the exception is re-raised untouched). Consumer
`get` calls are recorded as op "get" when they return a delivery; empty gets
would flood the record, so they are only counted (`empty_gets`). The wrapped
broker does all validation and semantics, so the wrapper passes the contract
suite exactly when the wrapped adapter does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from stemlab.core.broker import Broker, Consumer
from stemlab.core.codec import new_id
from stemlab.core.envelope import Delivery, Envelope
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.instrument.records import OpRecord, Recorder, fields_of, op_stats

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["InstrumentedBroker", "InstrumentedConsumer", "instrument"]

T = TypeVar("T")
Duration = float | int | timedelta
_perf = time.perf_counter_ns  # ints: cheaper than floats to read; converted when expanded


def _names(names: str | Sequence[str]) -> str | None:
    if isinstance(names, str):
        return names
    try:
        joined = ",".join(str(n) for n in names)
    except TypeError:
        return None
    return joined or None


class InstrumentedBroker(Broker):
    """Wraps `inner`; records one row per call; exposes them with `ops_frame()`.

    Attributes the wrapper does not define (``namespace``, ``clock``...) are
    read from the wrapped broker. Records hold plain values only (never the
    deliveries themselves), so a long record costs the garbage collector nothing.
    """

    def __init__(self, inner: Broker) -> None:
        if not isinstance(inner, Broker):
            raise TypeError(f"instrument() needs a Broker, got {type(inner).__name__}")
        self._inner = inner
        self.recorder = Recorder()
        # hot-path bindings (one attribute load instead of two per call)
        self._append = self.recorder.stored.append  # the list lives as long as the recorder
        self._inner_ack = inner.ack

    # -------------------------------------------------------------- plumbing
    @property
    def inner(self) -> Broker:
        """The wrapped broker."""
        return self._inner

    @property
    def closed(self) -> bool:
        return self._inner.closed

    @closed.setter
    def closed(self, value: bool) -> None:  # the base class assigns it; the inner decides
        pass

    @property
    def capabilities(self) -> Capabilities:
        return self._inner.capabilities

    @property
    def empty_gets(self) -> int:
        """How many consumer `get` calls returned nothing (not recorded one by one)."""
        return self.recorder.empty_gets

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_inner", "recorder", "_append", "_inner_ack"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"instrument({self._inner!r})"

    def _record(
        self, start: int, op: str, subject: Any, error: str | None, consumer: str | None
    ) -> None:
        """Append one record; `subject` is what the call was about (see `fields_of`)."""
        end = _perf()
        queue, task_id, priority, count, receipt = fields_of(subject)
        self._append((start, op, queue, task_id, priority, end, error, consumer, count, receipt))

    def _timed(
        self, op: str, subject: Any, consumer: str | None, fn: Callable[..., T], /, *args: Any
    ) -> T:
        """Call `fn(*args)` and record it (a failure is recorded, then re-raised)."""
        start = _perf()
        try:
            result = fn(*args)
        except BaseException as exc:
            self._record(start, op, subject, type(exc).__name__, consumer)
            raise
        self._record(start, op, subject, None, consumer)
        return result

    def _on_delivery(self, op: str, delivery: Delivery, fn: Callable[..., T], /, *args: Any) -> T:
        """Record a call about a delivery (its consumer is found later by receipt)."""
        return self._timed(op, delivery, None, fn, delivery, *args)

    # ------------------------------------------------------------- producing
    def publish(
        self, envelope: Envelope, *, queue: str | None = None, priority: int | None = None
    ) -> None:
        start = _perf()
        try:
            self._inner.publish(envelope, queue=queue, priority=priority)
        except BaseException as exc:
            env: Any = envelope
            subject = (
                queue if queue is not None else getattr(env, "queue", None),
                getattr(env, "id", None),
                priority if priority is not None else getattr(env, "priority", None),
            )
            self._record(start, "publish", subject, type(exc).__name__, None)
            raise
        end = _perf()  # the hot path: no helper calls (the end is kept, see records.Stored)
        q = envelope.queue if queue is None else queue
        p = envelope.priority if priority is None else priority
        self._append((start, "publish", q, envelope.id, p, end, None, None, None, None))

    def publish_many(self, envelopes: Iterable[Envelope]) -> None:
        items = list(envelopes)
        queues = {getattr(e, "queue", None) for e in items}
        queue = queues.pop() if len(queues) == 1 else None
        self._timed("publish_many", queue, None, self._inner.publish_many, items)

    def broadcast(self, channel: str, envelope: Envelope) -> None:
        self._timed("broadcast", envelope, None, self._inner.broadcast, channel, envelope)

    # ------------------------------------------------------------- consuming
    def consume(
        self,
        queues: str | Sequence[str] = (),
        *,
        channels: str | Sequence[str] = (),
        prefetch: int = 1,
        consumer: str | None = None,
    ) -> Consumer:
        name = consumer if consumer is not None else new_id()
        inner = self._timed(
            "consume",
            _names(queues),
            name,
            lambda: self._inner.consume(
                queues, channels=channels, prefetch=prefetch, consumer=name
            ),
        )
        return InstrumentedConsumer(self, inner)

    def ack(self, delivery: Delivery) -> None:
        start = _perf()
        try:
            self._inner_ack(delivery)
        except BaseException as exc:
            self._record(start, "ack", delivery, type(exc).__name__, None)
            raise
        end = _perf()  # the hot path: no helper calls
        env = delivery.envelope
        self._append(
            (start, "ack", delivery.queue, env.id, env.priority, end, None, None,
             delivery.delivery_count, delivery.receipt)
        )  # fmt: skip

    def nack(self, delivery: Delivery, *, requeue: bool = True) -> None:
        self._on_delivery("nack", delivery, lambda d: self._inner.nack(d, requeue=requeue))

    def dead_letter(
        self, delivery: Delivery, *, reason: str | None = None, meta: dict[str, Any] | None = None
    ) -> None:
        self._on_delivery(
            "dead_letter", delivery, lambda d: self._inner.dead_letter(d, reason=reason, meta=meta)
        )

    def extend_lease(self, delivery: Delivery, by: Duration) -> datetime:
        return self._on_delivery("extend_lease", delivery, self._inner.extend_lease, by)

    # -------------------------------------------------------------- counting
    def _on_queue(self, op: str, queue: str, fn: Callable[..., T], /, *args: Any) -> T:
        return self._timed(op, queue if isinstance(queue, str) else None, None, fn, queue, *args)

    def purge(self, queue: str) -> int:
        return self._on_queue("purge", queue, self._inner.purge)

    def pending_count(self, queue: str) -> int:
        return self._on_queue("pending_count", queue, self._inner.pending_count)

    def inflight_count(self, queue: str) -> int:
        return self._on_queue("inflight_count", queue, self._inner.inflight_count)

    def delayed_count(self, queue: str) -> int:
        return self._on_queue("delayed_count", queue, self._inner.delayed_count)

    # ---------------------------------------------------------- dead letters
    def list_dead_letters(self, queue: str, *, limit: int = 50, offset: int = 0) -> DeadLetterPage:
        return self._on_queue(
            "list_dead_letters",
            queue,
            lambda q: self._inner.list_dead_letters(q, limit=limit, offset=offset),
        )

    def get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None:
        subject = (queue, id, None) if isinstance(queue, str) and isinstance(id, str) else None
        return self._timed("get_dead_letter", subject, None, self._inner.get_dead_letter, queue, id)

    def replay_dead_letters(
        self,
        queue: str,
        *,
        limit: int = 50,
        since: datetime | None = None,
        delay: Duration | None = None,
        dry_run: bool = False,
    ) -> ReplayResult:
        return self._on_queue(
            "replay_dead_letters",
            queue,
            lambda q: self._inner.replay_dead_letters(
                q, limit=limit, since=since, delay=delay, dry_run=dry_run
            ),
        )

    def purge_dead_letters(
        self, queue: str, *, since: datetime | None = None, limit: int | None = None
    ) -> int:
        return self._on_queue(
            "purge_dead_letters",
            queue,
            lambda q: self._inner.purge_dead_letters(q, since=since, limit=limit),
        )

    # -------------------------------------------------------------- lifetime
    def close(self) -> None:
        if not self._inner.closed:
            self._timed("close", None, None, self._inner.close)

    # ---------------------------------------------------------------- output
    def records(self) -> list[OpRecord]:
        """The records so far, as named tuples (`ts` in epoch seconds)."""
        return self.recorder.records()

    def ops_frame(self, *, origin: float = 0.0) -> pd.DataFrame:
        """One row per call (OP_COLUMNS); `ts` is epoch seconds minus `origin`."""
        return self.recorder.frame(origin=origin)

    def op_stats(self) -> pd.DataFrame:
        """Calls, errors and latency percentiles per op."""
        return op_stats(self.ops_frame())

    def clear(self) -> None:
        """Forget the records and counters (the broker itself is untouched)."""
        self.recorder.clear()

    # ------------------------------------------- hooks (the public calls above
    # delegate to the wrapped broker's public API; these exist for completeness)
    def _publish(self, envelope: Envelope) -> None:
        self._inner._publish(envelope)

    def _publish_many(self, envelopes: list[Envelope]) -> None:
        self._inner._publish_many(envelopes)

    def _broadcast(self, channel: str, envelope: Envelope) -> None:
        self._inner._broadcast(channel, envelope)

    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer:
        return InstrumentedConsumer(
            self, self._inner._consume(queues, channels, prefetch, consumer)
        )

    def _ack(self, delivery: Delivery) -> None:
        self._inner._ack(delivery)

    def _nack(self, delivery: Delivery) -> None:
        self._inner._nack(delivery)

    def _dead_letter(self, delivery: Delivery, reason: str | None, meta: dict[str, Any]) -> None:
        self._inner._dead_letter(delivery, reason, meta)

    def _extend_lease(self, delivery: Delivery, by: float) -> datetime:
        return self._inner._extend_lease(delivery, by)

    def _purge(self, queue: str) -> int:
        return self._inner._purge(queue)

    def _counts(self, queue: str) -> tuple[int, int, int]:
        return self._inner._counts(queue)

    def _list_dead_letters(self, queue: str, limit: int, offset: int) -> DeadLetterPage:
        return self._inner._list_dead_letters(queue, limit, offset)

    def _get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None:
        return self._inner._get_dead_letter(queue, id)

    def _replay_dead_letters(
        self, queue: str, limit: int, since: float | None, delay: float | None, dry_run: bool
    ) -> ReplayResult:
        return self._inner._replay_dead_letters(queue, limit, since, delay, dry_run)

    def _purge_dead_letters(self, queue: str, since: float | None, limit: int | None) -> int:
        return self._inner._purge_dead_letters(queue, since, limit)

    def _close(self) -> None:
        self._inner.close()


class InstrumentedConsumer(Consumer):
    """Forwards to the wrapped consumer; a `get` that returns a delivery is recorded."""

    def __init__(self, broker: InstrumentedBroker, inner: Consumer) -> None:
        super().__init__(inner.name)
        self._broker = broker
        self._inner = inner
        self._append = broker.recorder.stored.append
        self._inner_get = inner.get
        self._empty = broker.recorder.empty_counter(id(self))

    @property
    def inner(self) -> Consumer:
        return self._inner

    def get(self, timeout: float | None = None) -> Delivery | None:
        start = _perf()
        try:
            d = self._inner_get(timeout)
        except BaseException as exc:
            self._broker._record(start, "get", None, type(exc).__name__, self.name)
            raise
        if d is None:
            self._empty[0] += 1
            return None
        end = _perf()
        env = d.envelope
        self._append(
            (start, "get", d.queue, env.id, env.priority, end, None, self.name,
             d.delivery_count, d.receipt)
        )  # fmt: skip
        return d

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._broker.recorder.retire_counter(id(self))
            self._inner.close()


def instrument(broker: Broker) -> InstrumentedBroker:
    """Wrap `broker` so every call is recorded; an instrumented broker is returned as is."""
    if isinstance(broker, InstrumentedBroker):
        return broker
    return InstrumentedBroker(broker)
