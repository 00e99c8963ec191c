"""The consumer core: everything a consumer does that is not a store call.

`StoreConsumer` owns the constructor fields, the `get()` deadline and wake
loop, a read-ahead buffer of claimed-but-not-handed-out messages and a buffer
of broadcast copies, turning both into `Delivery`s with their receipts,
dead-lettering payloads that do not decode (reason "undecodable", the error
in meta, then carry on), registering with the broker (so `Broker.close`
closes it), and closing (give back what was claimed but never handed out,
unsubscribe). An adapter supplies only its store calls:

* `_fill()`: lease up to the free prefetch into the buffer (`add_claims`), take
  broadcast copies (`add_casts`), and say how long to idle when it found nothing;
* `_hand_out(claim)`: last step before a claim becomes a delivery (e.g. mark it
  delivered); its payload is the decoded Envelope by then; returns its lease expiry,
  or None when the claim is gone;
* `_wait(seconds)`: block until a wake-up or the timeout; True when woken;
* `_bury(claim, error)`: dead-letter an undecodable claim;
* `_release(claims)`, `_unsubscribe(casts)`, `_closed_store()`: give back,
  detach and drop connections on close; `_interrupt()` wakes a waiting `get`;
* `_poll_signals()`: take in, without waiting, what the store said meanwhile (e.g.
  a purge notice from another process: call `purged(queue)`), before a buffered
  claim is handed out;
* optionally `_ack_and_claim(delivery)`: ack a delivery this consumer handed out and
  claim into the buffer in the same store call (script, statement or transaction).

Settling with read-ahead: an adapter's `_ack` first offers the delivery to
`ack_ahead`. When the consumer that handed it out is idle in this process (its
lock is free), open, and its buffer is empty, the consumer acks it and claims
its next message(s) in one round trip (`_ack_and_claim`), so a steady drain costs
one store call per task. Otherwise (another thread is in `get`, the buffer still
holds claims, the adapter has no native hook) the adapter acks the usual way and
the next `get` claims. The claim part obeys the same prefetch cap, purge
generations and fencing as `_fill`.

A claim buffered across a `purge()` of its queue (by any broker of this process,
or one the adapter heard of through `purged`) is given back, never handed out
(see core/purges.py). A `get` interrupted by a `close()` from another thread
returns None whatever the store's driver raised meanwhile.
"""

from __future__ import annotations

import abc
import contextlib
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stemlab.core.broker import Consumer
from stemlab.core.clock import from_epoch
from stemlab.core.envelope import Delivery, Envelope
from stemlab.core.purges import PURGES
from stemlab.errors import EnvelopeError, LeaseLost, StemlabError

if TYPE_CHECKING:
    from stemlab.core.broker import Broker

__all__ = ["IDLE", "Cast", "Claim", "StoreConsumer", "ack_ahead", "read_ahead"]

IDLE = 0.25  # longest uninterrupted wait, so close() from another thread is seen
_HOLDER = "_stemlab_holder"  # attribute of a queue Delivery: weakref to the consumer


_open: dict[tuple[str, str], weakref.WeakSet[StoreConsumer]] = {}
_open_lock = threading.Lock()


def read_ahead(broker: Broker, queue: str) -> int:
    """Messages of `queue` leased into the buffers of this process's open consumers on
    `broker`'s store and namespace, not handed out yet, their lease still running.

    Brokers whose stores count such leases in flight subtract them (they count as
    pending, as everywhere else): exact within one process.
    """
    key = (broker.receipts.store, broker.receipts.namespace)
    with _open_lock:
        consumers = list(_open.get(key, ()))
    now = time.time()
    return sum(c.unhanded(queue, now) for c in consumers)


def ack_ahead(broker: Broker, delivery: Delivery) -> bool:
    """Ack `delivery` through the consumer that handed it out, claiming ahead in the same call.

    For an adapter's `_ack` (after `broker` validated the receipt): True when it was
    acked that way, False when the adapter should ack it alone (a consumer of another
    broker object, gone, or busy). Raises `LeaseLost` for a stale receipt like a plain ack.
    """
    ref = delivery.__dict__.get(_HOLDER)
    consumer = ref() if ref is not None else None
    if consumer is None or consumer.broker is not broker or delivery.channel is not None:
        return False
    return consumer._settle_ahead(delivery)


@dataclass(slots=True)
class Claim:
    """One leased message waiting in the read-ahead buffer.

    `fields` go into its receipt; `payload` is an Envelope or its undecoded bytes;
    `expires` is the lease expiry (epoch seconds); `extra` is the adapter's own;
    `gen` is the purge generation of its queue before it was claimed (set by the core
    unless the adapter read it earlier, see `generation`).
    """

    fields: tuple[int | str, ...]
    queue: str
    payload: Envelope | bytes | str
    deliveries: int
    expires: float
    extra: Any = field(default=None)
    gen: int | None = field(default=None)


@dataclass(slots=True)
class Cast:
    """One broadcast copy taken for this subscriber (`fields` go into its receipt)."""

    fields: tuple[int | str, ...]
    channel: str
    payload: Envelope | bytes | str


class StoreConsumer(Consumer):
    """The shared consumer loop; see the module docstring for the adapter's part.

    `max_wait` caps one `_wait`, so a `close()` from another thread is seen; an
    adapter whose `_interrupt` wakes a waiting `get` may lift it.
    """

    max_wait: float = IDLE

    def __init__(
        self,
        broker: Broker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        super().__init__(name)
        self.broker = broker
        self.queues = queues
        self.channels = channels
        self.prefetch = prefetch
        self._lock = threading.RLock()
        self._ahead: deque[Claim] = deque()
        self._casts: deque[Cast] = deque()
        self._store_key = (broker.receipts.store, broker.receipts.namespace)
        self._gens: dict[str, int] = {}  # purge generations read before the current fill
        broker.track(self)
        with _open_lock:
            _open.setdefault(self._store_key, weakref.WeakSet()).add(self)

    # ------------------------------------------------------------------ get
    def get(self, timeout: float | None = None) -> Delivery | None:
        """The next delivery, waiting up to `timeout` seconds (None: forever)."""
        try:
            return self._get(timeout)
        except Exception:
            if self._stopped():  # closed from another thread while the store call ran
                return None
            raise

    def _get(self, timeout: float | None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._ahead:
                self._poll_signals()
            while not self._stopped():
                delivery = self._next()
                if delivery is not None:
                    return delivery
                store, ns = self._store_key
                self._gens = {q: PURGES.get(store, ns, q) for q in self.queues}
                idle = self._fill()
                if self._ahead or self._casts:
                    continue
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    idle = min(idle, left)
                if idle > 0:
                    self._wait(min(idle, self.max_wait))
        return None

    def _stopped(self) -> bool:
        return self.closed or self.broker.closed

    def _next(self) -> Delivery | None:
        """A buffered broadcast copy first, then the next good buffered claim."""
        while self._casts:
            delivery = self._cast_delivery(self._casts.popleft())
            if delivery is not None:
                return delivery
        while self._ahead:
            delivery = self._deliver(self._ahead.popleft())
            if delivery is not None:
                return delivery
        return None

    def _deliver(self, claim: Claim) -> Delivery | None:
        store, ns = self._store_key
        if claim.gen != PURGES.get(store, ns, claim.queue):
            with contextlib.suppress(StemlabError):  # purged: giving back is a no-op then
                self._release([claim])
            return None
        envelope = claim.payload
        if not isinstance(envelope, Envelope):
            try:
                envelope = Envelope.from_json(envelope)
            except (EnvelopeError, TypeError, ValueError) as exc:
                with contextlib.suppress(LeaseLost):  # settled by someone else meanwhile
                    self._bury(claim, exc)
                return None
            claim.payload = envelope  # decoded: `_hand_out` may read it
        expires = self._hand_out(claim)
        if expires is None:
            return None
        receipt = self.broker.receipts.issue("q", *claim.fields)
        delivery = Delivery(envelope, receipt, claim.queue, from_epoch(expires), claim.deliveries)
        object.__setattr__(delivery, _HOLDER, weakref.ref(self))  # not a field: see ack_ahead
        return delivery

    def _cast_delivery(self, cast: Cast) -> Delivery | None:
        envelope = cast.payload
        if not isinstance(envelope, Envelope):
            try:
                envelope = Envelope.from_json(envelope)
            except EnvelopeError:  # broadcasts are written by `broadcast`: not ours to bury
                return None
        receipt = self.broker.receipts.issue("b", *cast.fields)
        return Delivery(envelope, receipt, envelope.queue, None, 1, cast.channel)

    def add_claims(self, claims: Sequence[Claim]) -> None:
        """Buffer claims, best first (called by `_fill`)."""
        gens = self._gens
        for claim in claims:
            if claim.gen is None:
                claim.gen = gens.get(claim.queue, 0)
        self._ahead.extend(claims)

    def generation(self, queue: str) -> int:
        """The purge generation of `queue` now (to tag a claim received out of `_fill`)."""
        store, ns = self._store_key
        return PURGES.get(store, ns, queue)

    def purged(self, queue: str) -> None:
        """The store reported a purge of `queue`: buffered claims of it are stale."""
        store, ns = self._store_key
        PURGES.bump(store, ns, queue)

    def add_casts(self, casts: Sequence[Cast]) -> None:
        """Buffer broadcast copies (called by the adapter whenever it takes some)."""
        self._casts.extend(casts)

    # ------------------------------------------------------------- close
    def close(self) -> None:
        """Stop delivering; give back buffered claims the application never received.

        Deliveries already handed out stay leased until settled or expired.
        """
        if self.closed:
            return
        super().close()
        self._interrupt()
        with self._lock:
            claims, self._ahead = list(self._ahead), deque()
            casts, self._casts = list(self._casts), deque()
            with contextlib.suppress(StemlabError):  # unreachable store: leases just expire
                self._release(claims)
            with contextlib.suppress(StemlabError):
                self._unsubscribe(casts)
            self._closed_store()
        self.broker.untrack(self)
        with _open_lock:
            mine = _open.get(self._store_key)
            if mine is not None:
                mine.discard(self)
                if not mine:
                    del _open[self._store_key]

    # ------------------------------------------------------- adapter hooks
    @abc.abstractmethod
    def _fill(self) -> float:
        """Claim into the buffer and take broadcasts; seconds worth idling if nothing came."""

    def _hand_out(self, claim: Claim) -> float | None:
        """The claim's lease expiry as it is handed out, or None if it is no longer ours."""
        return claim.expires

    @abc.abstractmethod
    def _wait(self, seconds: float) -> bool:
        """Block until something may have changed or `seconds` pass; True when woken."""

    @abc.abstractmethod
    def _bury(self, claim: Claim, error: Exception) -> None:
        """Dead-letter an undecodable claim with reason "undecodable" and meta {"error"}."""

    @abc.abstractmethod
    def _release(self, claims: list[Claim]) -> None:
        """Give back claims that were never handed out (old place, count restored)."""

    def _interrupt(self) -> None:
        """Wake a `get` blocked in `_wait` from another thread (never blocks)."""

    def _poll_signals(self) -> None:
        """Take in what the store reported meanwhile, without waiting (e.g. purges)."""

    def _ack_and_claim(self, delivery: Delivery) -> bool:
        """Ack `delivery` and claim into the buffer in one store call (under the lock).

        Raise `LeaseLost` for a stale receipt (after buffering whatever was claimed);
        return False when this adapter has no such call (the broker then acks alone).
        """
        return False

    def unhanded(self, queue: str, now: float) -> int:
        """Buffered claims of `queue` whose lease runs past `now` (see `read_ahead`)."""
        return sum(1 for c in tuple(self._ahead) if c.queue == queue and c.expires > now)

    def _acks_ahead(self) -> bool:
        """Whether an ack should go through `_ack_and_claim` now: when the buffer is empty.

        An adapter whose hand-out itself writes may say yes with claims buffered too
        (and fold that write into the ack).
        """
        return not self._ahead

    def _settle_ahead(self, delivery: Delivery) -> bool:
        """`ack_ahead` for a delivery of this consumer; False: ack the usual way."""
        if not self._lock.acquire(blocking=False):
            return False  # a `get` runs in another thread: leave the buffer to it
        try:
            if self._casts or not self.queues or self._stopped() or not self._acks_ahead():
                return False
            store, ns = self._store_key
            self._gens = {q: PURGES.get(store, ns, q) for q in self.queues}
            return self._ack_and_claim(delivery)
        finally:
            self._lock.release()

    def _unsubscribe(self, casts: list[Cast]) -> None:
        """Stop receiving broadcasts; `casts` were taken but never handed out."""

    def _closed_store(self) -> None:
        """Drop the consumer's own connections (after release and unsubscribe)."""
