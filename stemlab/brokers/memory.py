"""`memory://`: a thread-safe shell around the shared queue state machine.

Brokers opened in one process with the same namespace share one store, the
way two clients of one server do.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import Clock, SystemClock, from_epoch
from stemlab.core.consumer import IDLE, Cast, Claim, StoreConsumer
from stemlab.core.envelope import Delivery, Envelope, detached
from stemlab.core.options import BrokerOptions, Rule, option, split_url
from stemlab.core.receipts import INT, Receipts
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.core.state import QueueState
from stemlab.errors import ConfigError, LeaseLost

__all__ = ["MemoryBroker"]


class _Store:
    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.state = QueueState()
        self.id = uuid.uuid4().hex[:12]  # its identity in receipts
        self.version = 0  # bumped at every change a waiting consumer may care about

    def notify(self) -> None:
        """Wake waiting consumers (the caller holds `cond`)."""
        self.version += 1
        self.cond.notify_all()


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
        self.store = self._store = _store(self.namespace)
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
        # store copies decoded from the JSON the base encoded: never the caller's dicts
        envelopes = [detached(e) for e in envelopes]
        with self._store.cond:
            now = self._now()
            for envelope in envelopes:
                self._store.state.publish(envelope, now)
            self._store.notify()

    def _broadcast(self, channel: str, envelope: Envelope) -> None:
        envelope = detached(envelope)
        with self._store.cond:
            self._store.state.broadcast(channel, envelope)
            self._store.notify()

    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer:
        with self._store.cond:
            self._store.state.subscribe(consumer, channels)
        return _MemoryConsumer(self, queues, channels, prefetch, consumer)

    def _settle(self, delivery: Delivery, queue_op: str, *args: Any) -> Any:
        (token,) = self.receipts.read(delivery)
        return self._settle_token(int(token), queue_op, *args, cast=delivery.channel is not None)

    def _settle_token(self, token: int, queue_op: str, *args: Any, cast: bool = False) -> Any:
        state = self._store.state
        with self._store.cond:
            now = self._now()
            if cast:
                if queue_op == "dead_letter":
                    state.dead_letter_broadcast(token, now, *args)
                else:
                    state.settle_broadcast(token)
                return None
            result = getattr(state, queue_op)(token, now, *args)
            self._store.notify()
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
            self._store.notify()
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


class _MemoryConsumer(StoreConsumer):
    """The consumer core over the shared state: claims one message at a time."""

    def __init__(
        self,
        broker: MemoryBroker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        super().__init__(broker, queues, channels, prefetch, name)
        self._store = broker.store
        self._clock = broker.clock
        self._vt = broker.default_visibility_timeout
        self._seen = -1  # the store's version when we last found nothing

    def _fill(self) -> float:
        store, state = self._store, self._store.state
        with store.cond:
            now = self._clock.time()
            # Reclaim expired leases first: an expired lease frees its prefetch slot, and
            # popping past-due heap entries keeps `next_wakeup` from busy-waking `get`.
            state.tick(now)
            while (item := state.take_broadcast(self.name)) is not None:
                token, channel, envelope = item
                self.add_casts([Cast((token,), channel, envelope)])
            if self.queues and state.held(self.name) < self.prefetch:
                vt = self._vt
                for lease in state.claim(self.queues, self.name, now, 1, vt, self.prefetch):
                    self.add_claims(
                        [
                            Claim(
                                (lease.token,),
                                lease.queue,
                                lease.envelope,
                                lease.delivery_count,
                                lease.expires_at,
                            )
                        ]
                    )
            self._seen = store.version
            wake = state.next_wakeup()
        return IDLE if wake is None else min(IDLE, max(0.0, wake - now) + 0.001)

    def _wait(self, seconds: float) -> bool:
        store = self._store
        with store.cond:
            if store.version != self._seen:
                return True
            return store.cond.wait(seconds)

    def _bury(self, claim: Claim, error: Exception) -> None:  # pragma: no cover
        token = int(claim.fields[0])
        with self._store.cond:
            state = self._store.state
            state.dead_letter(token, self._clock.time(), "undecodable", {"error": str(error)})

    def _release(self, claims: list[Claim]) -> None:
        with self._store.cond:
            now = self._clock.time()
            for claim in claims:
                with contextlib.suppress(LeaseLost):
                    self._store.state.nack(int(claim.fields[0]), now)
            self._store.notify()

    def _unsubscribe(self, casts: list[Cast]) -> None:
        with self._store.cond:
            for cast in casts:
                with contextlib.suppress(LeaseLost):
                    self._store.state.settle_broadcast(int(cast.fields[0]))
            self._store.state.unsubscribe(self.name)
            self._store.notify()
