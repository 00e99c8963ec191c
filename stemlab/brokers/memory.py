"""`memory://`: a thread-safe shell around the shared queue state machine.

Brokers opened in one process with the same namespace share one store, the
way two clients of one server do.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import Clock, SystemClock, from_epoch
from stemlab.core.envelope import Delivery, Envelope
from stemlab.core.options import BrokerOptions, Rule, option, split_url
from stemlab.core.receipts import INT, Receipts
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.core.state import QueueState
from stemlab.errors import ConfigError

__all__ = ["MemoryBroker"]

_MAX_WAIT = 0.25


class _Store:
    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.state = QueueState()
        self.id = uuid.uuid4().hex[:12]  # its identity in receipts


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


def _store(namespace: str) -> _Store:
    with _stores_lock:
        store = _stores.get(namespace)
        if store is None:
            store = _stores[namespace] = _Store()
        return store


def _check_clock(name: str, value: Any) -> Clock | None:
    if value is None or callable(getattr(value, "time", None)):
        return value
    raise ConfigError(f"option {name} must have a time() method (a Clock), got {value!r}")


_CLOCK = Rule(_check_clock)


@dataclass(frozen=True)
class MemoryOptions(BrokerOptions):
    """`memory://` options: the common ones plus an injectable clock."""

    scheme: ClassVar[str] = "memory"
    clock: Clock | None = option(None, _CLOCK)  # noqa: RUF009 - a Field, not a default


class MemoryBroker(Broker):
    """In-process broker with the full contract; broadcast scope is the process."""

    def __init__(
        self,
        namespace: str = "stem",
        *,
        default_visibility_timeout: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        self.options = MemoryOptions(
            namespace=namespace, default_visibility_timeout=default_visibility_timeout, clock=clock
        )
        self.namespace = self.options.namespace
        self.default_visibility_timeout = self.options.default_visibility_timeout
        self.clock: Clock = self.options.clock or SystemClock()
        self._store = _store(self.namespace)
        self.receipts = Receipts(self._store.id, self.namespace, {"q": (INT,), "b": (INT,)})
        self._caps = Capabilities(broadcast_scope="process", durable=False, cross_process=False)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryBroker:
        """`memory://` (options may also come as `memory://?namespace=jobs`)."""
        parts, query = split_url(url, ("memory",))
        if parts.netloc or parts.path:
            raise ConfigError(f"malformed URL {url!r}: memory:// takes no host or path")
        opts = MemoryOptions.build(options, query)
        return cls(
            opts.namespace,
            default_visibility_timeout=opts.default_visibility_timeout,
            clock=opts.clock,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def _now(self) -> float:
        return self.clock.time()

    def _publish(self, envelope: Envelope) -> None:
        self._publish_many([envelope])

    def _publish_many(self, envelopes: list[Envelope]) -> None:
        with self._store.cond:
            now = self._now()
            for envelope in envelopes:
                self._store.state.publish(envelope, now)
            self._store.cond.notify_all()

    def _broadcast(self, channel: str, envelope: Envelope) -> None:
        with self._store.cond:
            self._store.state.broadcast(channel, envelope)
            self._store.cond.notify_all()

    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer:
        with self._store.cond:
            self._store.state.subscribe(consumer, channels)
        return _MemoryConsumer(self, queues, channels, prefetch, consumer)

    def _settle(self, delivery: Delivery, queue_op: str, *args: Any) -> Any:
        (token,) = self.receipts.read(delivery)
        assert isinstance(token, int)
        state = self._store.state
        with self._store.cond:
            now = self._now()
            if delivery.channel is not None:
                if queue_op == "dead_letter":
                    state.dead_letter_broadcast(token, now, *args)
                else:
                    state.settle_broadcast(token)
                return None
            result = getattr(state, queue_op)(token, now, *args)
            self._store.cond.notify_all()
            return result

    def _ack(self, delivery: Delivery) -> None:
        self._settle(delivery, "ack")

    def _nack(self, delivery: Delivery) -> None:
        self._settle(delivery, "nack", True)

    def _dead_letter(self, delivery: Delivery, reason: str | None, meta: dict[str, Any]) -> None:
        self._settle(delivery, "dead_letter", reason, meta)

    def _extend_lease(self, delivery: Delivery, by: float) -> datetime:
        return from_epoch(self._settle(delivery, "extend", by))

    def _locked(self, op: str, *args: Any) -> Any:
        with self._store.cond:
            result = getattr(self._store.state, op)(*args)
            self._store.cond.notify_all()
            return result

    def _purge(self, queue: str) -> int:
        return int(self._locked("purge", queue, self._now()))

    def _counts(self, queue: str) -> tuple[int, int, int]:
        state = self._store.state
        with self._store.cond:
            now = self._now()
            return (
                state.pending_count(queue, now),
                state.inflight_count(queue, now),
                state.delayed_count(queue, now),
            )

    def _list_dead_letters(self, queue: str, limit: int, offset: int) -> DeadLetterPage:
        page: DeadLetterPage = self._locked("list_dead", queue, limit, offset)
        return page

    def _get_dead_letter(self, queue: str, id: str) -> DeadLetterEntry | None:
        entry: DeadLetterEntry | None = self._locked("get_dead", queue, id)
        return entry

    def _replay_dead_letters(
        self, queue: str, limit: int, since: float | None, delay: float | None, dry_run: bool
    ) -> ReplayResult:
        result: ReplayResult = self._locked(
            "replay_dead", queue, self._now(), limit, since, delay, dry_run
        )
        return result

    def _purge_dead_letters(self, queue: str, since: float | None, limit: int | None) -> int:
        return int(self._locked("purge_dead", queue, since, limit))

    def _close(self) -> None:
        pass


class _MemoryConsumer(Consumer):
    def __init__(
        self,
        broker: MemoryBroker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        super().__init__(name)
        self._broker = broker
        self._store = broker._store
        self._queues = queues
        self._channels = channels
        self._prefetch = prefetch

    def _take(self, now: float) -> Delivery | None:
        state = self._store.state
        # Reclaim expired leases first: an expired lease frees its prefetch slot, and
        # popping past-due heap entries keeps `next_wakeup` from busy-waking `get`.
        state.tick(now)
        item = state.take_broadcast(self.name)
        if item is not None:
            token, channel, env = item
            receipt = self._broker.receipts.issue("b", token)
            return Delivery(env, receipt, env.queue, None, 1, channel)
        if self._queues and state.held(self.name) < self._prefetch:
            vt = self._broker.default_visibility_timeout
            leases = state.claim(self._queues, self.name, now, 1, vt)
            if leases:
                lease = leases[0]
                expires = from_epoch(lease.expires_at)
                return Delivery(
                    lease.envelope,
                    self._broker.receipts.issue("q", lease.token),
                    lease.queue,
                    expires,
                    lease.delivery_count,
                )
        return None

    def get(self, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._store.cond:
            while not self.closed and not self._broker.closed:
                now = self._broker._now()
                delivery = self._take(now)
                if delivery is not None:
                    return delivery
                wait = _MAX_WAIT
                wake = self._store.state.next_wakeup()
                if wake is not None:
                    wait = min(wait, max(0.0, wake - now) + 0.001)
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = min(wait, left)
                self._store.cond.wait(wait)
        return None

    def close(self) -> None:
        if not self.closed:
            super().close()
            with self._store.cond:
                self._store.state.unsubscribe(self.name)
                self._store.cond.notify_all()
