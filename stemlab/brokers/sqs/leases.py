"""Process-wide lease book: receipt fencing and the per-consumer-name prefetch cap.

SQS gives no fencing of its own that stemlab can rely on: AWS may accept a receipt
handle from an earlier receive (its documentation says a delete with a stale handle
"might not" delete), and moto accepts every handle a message ever had. So the adapter
keeps, for every message this process received, its latest receipt handle, who holds
it and until when; and the handles already settled. A settle whose handle is not the
latest of its message, or was settled before, is `LeaseLost` before anything is sent.
The same book counts the unexpired leases of each consumer name (prefetch is a cap per
name) and the messages read ahead into consumers' buffers (counted as pending by
brokers of this process, as the contract wants). It is per process: see docs/sqs.md
for what that leaves to the server.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from stemlab.errors import LeaseLost

__all__ = ["BOOK", "Key", "LeaseBook"]

Key = tuple[str, str, str]  # (store id + namespace, SQS queue URL, SQS message id)
SETTLED_MEMORY = 200_000  # settled handles remembered (oldest forgotten first)
_STALE = "this delivery was already settled or handed to another consumer"


@dataclass(slots=True)
class _Lease:
    handle: str
    owner: tuple[str, str]  # (store id + namespace, consumer name)
    expires: float  # epoch seconds
    received: float = 0.0  # epoch seconds of the receive (SQS caps visibility from there)
    body: str | None = None  # the stored message body, as received


class LeaseBook:
    """The latest lease of each message received in this process; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[Key, _Lease] = {}
        self._by_owner: dict[tuple[str, str], set[Key]] = {}
        self._settled: OrderedDict[str, None] = OrderedDict()
        self._peeks: OrderedDict[Key, int] = OrderedDict()
        self._buffered: set[Key] = set()
        self._caps: dict[tuple[str, str], int] = {}  # owner -> prefetch

    def buffer(self, key: Key, buffered: bool) -> None:
        """Mark a received message as read ahead (True) or handed out/given back (False)."""
        with self._lock:
            if buffered:
                self._buffered.add(key)
            else:
                self._buffered.discard(key)

    def is_buffered(self, key: Key) -> bool:
        """Whether a message read ahead is still in a buffer (a purge takes it out)."""
        with self._lock:
            return key in self._buffered

    def buffered(self, scope: str, urls: set[str]) -> int:
        """Messages of these SQS queues read ahead by consumers of this process."""
        with self._lock:
            return sum(1 for k in self._buffered if k[0] == scope and k[1] in urls)

    def peeked(self, key: Key) -> None:
        """A message was received only to compare ages and given back: not a delivery."""
        with self._lock:
            self._peeks[key] = self._peeks.get(key, 0) + 1
            while len(self._peeks) > SETTLED_MEMORY:
                self._peeks.popitem(last=False)

    def give_back(self, key: Key, handle: str) -> None:
        """A read-ahead message went back unhanded: no lease, and not a delivery."""
        with self._lock:
            lease = self._latest.get(key)
            if lease is not None and lease.handle == handle:
                del self._latest[key]
                self._by_owner.get(lease.owner, set()).discard(key)
            self._peeks[key] = self._peeks.get(key, 0) + 1
            while len(self._peeks) > SETTLED_MEMORY:
                self._peeks.popitem(last=False)
            self._buffered.discard(key)

    def peeks(self, key: Key) -> int:
        """How many receives of this message so far were peeks (received, given back
        unhanded). SQS's receive count includes every one of them, so they add up."""
        with self._lock:
            return self._peeks.get(key, 0)

    def set_cap(self, owner: tuple[str, str], prefetch: int) -> None:
        """The prefetch of a consumer name (the largest its consumers asked for)."""
        with self._lock:
            self._caps[owner] = max(prefetch, self._caps.get(owner, 0))

    def lease_of(self, key: Key, handle: str) -> tuple[float, str | None]:
        """(receive time, stored body) of a live lease, else (0.0, None)."""
        with self._lock:
            lease = self._latest.get(key)
            if lease is None or lease.handle != handle:
                return 0.0, None
            return lease.received, lease.body

    def check_extend(self, key: Key, handle: str, now: float) -> None:
        """`LeaseLost` if extending an expired lease would exceed its owner's prefetch."""
        with self._lock:
            lease = self._latest.get(key)
            if lease is None or lease.handle != handle or lease.expires > now:
                return
            owner, cap = lease.owner, self._caps.get(lease.owner)
        if cap is not None and self.held(owner, now) >= cap:
            raise LeaseLost(_STALE)

    def record(
        self,
        key: Key,
        handle: str,
        owner: tuple[str, str],
        expires: float,
        received: float = 0.0,
        body: str | None = None,
    ) -> None:
        """A new delivery of a message: its handle becomes the only live one."""
        with self._lock:
            old = self._latest.get(key)
            if old is not None:
                self._by_owner.get(old.owner, set()).discard(key)
            self._latest[key] = _Lease(handle, owner, expires, received, body)
            self._by_owner.setdefault(owner, set()).add(key)

    def check(self, key: Key, handle: str) -> None:
        """`LeaseLost` unless `handle` may still settle its message."""
        with self._lock:
            if handle in self._settled:
                raise LeaseLost(_STALE)
            lease = self._latest.get(key)
            if lease is not None and lease.handle != handle:
                raise LeaseLost(_STALE)

    def settle(self, key: Key, handle: str) -> None:
        """The message left this lease (acked, requeued, dead-lettered, buried)."""
        with self._lock:
            lease = self._latest.get(key)
            if lease is not None and lease.handle == handle:
                del self._latest[key]
                self._by_owner.get(lease.owner, set()).discard(key)
            self._settled[handle] = None
            self._peeks.pop(key, None)
            self._buffered.discard(key)
            while len(self._settled) > SETTLED_MEMORY:
                self._settled.popitem(last=False)

    def extend(self, key: Key, handle: str, expires: float) -> None:
        with self._lock:
            lease = self._latest.get(key)
            if lease is not None and lease.handle == handle:
                lease.expires = expires
                self._by_owner.setdefault(lease.owner, set()).add(key)

    def held(self, owner: tuple[str, str], now: float) -> int:
        """Unexpired, unsettled leases of one consumer name."""
        with self._lock:
            keys = self._by_owner.get(owner, set())
            live = 0
            for key in list(keys):
                lease = self._latest.get(key)
                if lease is None or lease.owner != owner:
                    keys.discard(key)
                elif lease.expires > now:
                    live += 1
            return live

    def forget_queue(self, scope: str, urls: set[str]) -> None:
        """A purge removed every message of these SQS queues: their leases are gone."""
        with self._lock:
            self._buffered -= {k for k in self._buffered if k[0] == scope and k[1] in urls}
            for key in [k for k in self._latest if k[0] == scope and k[1] in urls]:
                lease = self._latest.pop(key)
                self._by_owner.get(lease.owner, set()).discard(key)
                self._settled[lease.handle] = None


BOOK = LeaseBook()
