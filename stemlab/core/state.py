"""The one queue state machine: ready, delayed, leased and dead messages.

Pure: no threads, no I/O, no clock. Every call that depends on time takes
`now` (float seconds on any fixed origin). The in-memory broker wraps it with
a lock and the wall clock; the simulator drives it in simpy time. Leases carry
an integer fencing token; a token stays valid until its message is settled or
handed to another delivery, so a late ack of an expired-but-untaken lease
still succeeds while a stale one raises `LeaseLost`.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from heapq import heappush
from typing import Any, NamedTuple

from stemlab.core.clock import from_epoch, to_epoch
from stemlab.core.envelope import Envelope
from stemlab.core.records import DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.errors import LeaseLost

__all__ = ["Lease", "QueueState"]

READY, DELAYED, LEASED = "ready", "delayed", "leased"


@dataclass(slots=True)
class _Msg:
    key: int
    envelope: Envelope
    queue: str
    priority: int
    state: str
    seq: int = 0
    deliveries: int = 0
    token: int | None = None
    consumer: str | None = None  # whose prefetch slot the live lease holds
    expires: float = 0.0
    owner: str | None = None  # the consumer of the last lease, and its prefetch (0: none)
    cap: int = 0


class Lease(NamedTuple):
    """A claimed message: its fencing token, envelope, expiry and delivery count.

    An immutable named tuple rather than a frozen dataclass: one is built per
    delivery, and a tuple costs a third as much (`lease._replace(...)` copies one).
    """

    token: int
    envelope: Envelope
    queue: str
    expires_at: float
    delivery_count: int


class _Queue:
    __slots__ = ("counts", "dead", "ready", "seen", "used")

    def __init__(self) -> None:
        self.ready: list[deque[tuple[int, int]]] = [deque() for _ in range(10)]
        self.counts = {READY: 0, DELAYED: 0, LEASED: 0}
        self.dead: list[DeadLetterEntry] = []
        # the ready deques of the priorities this queue has seen, highest first: a claim
        # scans only those (one, with a single priority) instead of all ten levels
        self.seen = [False] * 10
        self.used: list[deque[tuple[int, int]]] = []

    def see(self, priority: int) -> None:
        """Add a priority's deque to `used`, keeping highest-first order (once per level)."""
        self.seen[priority] = True
        self.used = [self.ready[p] for p in range(9, -1, -1) if self.seen[p]]


class QueueState:
    """All queues of one namespace plus its broadcast hub, advanced by explicit `now`."""

    def __init__(self, default_visibility_timeout: float = 30.0) -> None:
        self.default_visibility_timeout = float(default_visibility_timeout)
        self._queues: dict[str, _Queue] = {}
        self._msgs: dict[int, _Msg] = {}
        self._leases: dict[int, int] = {}  # token -> message key
        self._held: dict[str, int] = {}  # consumer -> live leases
        self._delayed: list[tuple[float, int, int]] = []  # (due, key, seq)
        self._expiry: list[tuple[float, int, int]] = []  # (expires, token, key)
        self._counter = itertools.count(1)
        self._subs: dict[str, set[str]] = {}
        self._inbox: dict[str, deque[tuple[int, str, Envelope]]] = {}
        self._bcast: dict[int, Envelope] = {}  # outstanding broadcast token -> envelope

    # ------------------------------------------------------------------ time
    def tick(self, now: float) -> None:
        """Release due delayed messages and take back expired leases.

        The hot paths (publish, claim, settling) check the two heap heads
        themselves and call this only when one of them is due.
        """
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, key, seq = heapq.heappop(delayed)
            msg = self._msgs.get(key)
            if msg is not None and msg.state == DELAYED and msg.seq == seq:
                self._make_ready(msg)
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            expires, token, key = heapq.heappop(expiry)
            msg = self._msgs.get(key)
            if msg and msg.state == LEASED and msg.token == token and msg.expires == expires:
                self._release_slot(msg)
                self._make_ready(msg)

    def next_wakeup(self) -> float | None:
        """The earliest instant at which `tick` will change something (None: never).

        Heap entries left behind by acked, re-leased or extended messages are
        discarded here, so a waiter is never woken for a lease that no longer
        exists (the simulator relies on this to avoid one timer per task).
        """
        msgs = self._msgs
        delayed = self._delayed
        while delayed:
            _, key, seq = delayed[0]
            msg = msgs.get(key)
            if msg is not None and msg.state == DELAYED and msg.seq == seq:
                break
            heapq.heappop(delayed)
        expiry = self._expiry
        while expiry:
            expires, token, key = expiry[0]
            msg = msgs.get(key)
            if msg and msg.state == LEASED and msg.token == token and msg.expires == expires:
                break
            heapq.heappop(expiry)
        if delayed and expiry:
            return min(delayed[0][0], expiry[0][0])
        if delayed or expiry:
            return (delayed or expiry)[0][0]
        return None

    # ------------------------------------------------------------ transitions
    def _queue(self, name: str) -> _Queue:
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = _Queue()
        return q

    def _move(self, msg: _Msg, state: str) -> None:
        counts = self._queue(msg.queue).counts
        counts[msg.state] -= 1
        counts[state] += 1
        msg.state = state

    def _make_ready(self, msg: _Msg) -> None:
        self._move(msg, READY)
        msg.seq = next(self._counter)
        q = self._queue(msg.queue)
        if not q.seen[msg.priority]:
            q.see(msg.priority)
        q.ready[msg.priority].append((msg.seq, msg.key))

    def _release_slot(self, msg: _Msg) -> None:
        consumer = msg.consumer
        if consumer is not None:
            left = self._held[consumer] - 1
            if left:
                self._held[consumer] = left
            else:  # no entry per idle consumer: closed consumers leave nothing behind
                del self._held[consumer]
            msg.consumer = None

    def _remove(self, msg: _Msg) -> None:
        if msg.state == LEASED:
            self._release_slot(msg)
        if msg.token is not None:
            self._leases.pop(msg.token, None)
        self._queue(msg.queue).counts[msg.state] -= 1
        del self._msgs[msg.key]

    # -------------------------------------------------------------- producer
    def publish(self, envelope: Envelope, now: float) -> None:
        """Store a validated envelope: ready now, or delayed until `not_before`.

        Written out (no `_make_ready`) because it runs once per message; the key
        and sequence numbers are drawn in the same order as the general path.
        """
        delayed, expiry = self._delayed, self._expiry
        if (delayed and delayed[0][0] <= now) or (expiry and expiry[0][0] <= now):
            self.tick(now)
        counter = self._counter
        key = next(counter)
        queue = envelope.queue
        q = self._queues.get(queue) or self._queue(queue)
        not_before = envelope.not_before
        if not_before is not None and (due := to_epoch(not_before)) > now:
            seq = next(counter)
            msg = _Msg(key, envelope, queue, envelope.priority, DELAYED, seq)
            q.counts[DELAYED] += 1
            heappush(delayed, (due, key, seq))
        else:
            seq = next(counter)
            msg = _Msg(key, envelope, queue, envelope.priority, READY, seq)
            q.counts[READY] += 1
            if not q.seen[msg.priority]:
                q.see(msg.priority)
            q.ready[msg.priority].append((seq, key))
        self._msgs[key] = msg

    # -------------------------------------------------------------- consumer
    def held(self, consumer: str) -> int:
        """Live leases held by a consumer (what prefetch caps)."""
        return self._held.get(consumer, 0)

    def claim(
        self,
        queues: Sequence[str],
        consumer: str,
        now: float,
        limit: int,
        visibility_timeout: float | None = None,
        prefetch: int | None = None,
    ) -> list[Lease]:
        """Lease up to `limit` ready messages: highest priority first, FIFO within one.

        The lease lasts the envelope's visibility timeout, else `visibility_timeout`,
        else this state's default. With `prefetch` (the consumer's cap), extending such
        a lease after it expired takes a slot of the consumer again, only if one is free.
        """
        delayed, expiry = self._delayed, self._expiry
        if (delayed and delayed[0][0] <= now) or (expiry and expiry[0][0] <= now):
            self.tick(now)
        default = visibility_timeout or self.default_visibility_timeout
        if limit == 1 and len(queues) == 1:  # one delivery from one queue: the hot path
            q = self._queues.get(queues[0])
            if q is None or not q.counts[READY]:
                return []
            one = self._pop_one(q)
            return [] if one is None else [self._lease(one, consumer, now, default, prefetch or 0)]
        out: list[Lease] = []
        while len(out) < limit:
            msg = self._pop_best(queues)
            if msg is None:
                break
            out.append(self._lease(msg, consumer, now, default, prefetch or 0))
        return out

    def _pop_best(self, queues: Sequence[str]) -> _Msg | None:
        # counts[READY] is exact (stale deque entries are not counted), so
        # queues with nothing ready are skipped without scanning their levels.
        qs = [q for n in queues if (q := self._queues.get(n)) is not None and q.counts[READY]]
        if len(qs) == 1:
            return self._pop_one(qs[0])
        for prio in range(9, -1, -1):
            best: tuple[int, int] | None = None
            best_dq: deque[tuple[int, int]] | None = None
            for q in qs:
                dq = q.ready[prio]
                while dq:
                    seq, key = dq[0]
                    msg = self._msgs.get(key)
                    if msg is not None and msg.state == READY and msg.seq == seq:
                        break
                    dq.popleft()
                if dq and (best is None or dq[0][0] < best[0]):
                    best, best_dq = dq[0], dq
            if best is not None and best_dq is not None:
                best_dq.popleft()
                return self._msgs[best[1]]
        return None

    def _pop_one(self, q: _Queue) -> _Msg | None:
        """The best ready message of one queue (the common case, kept fast)."""
        msgs = self._msgs
        for dq in q.used:
            while dq:
                seq, key = dq.popleft()
                msg = msgs.get(key)
                if msg is not None and msg.state == READY and msg.seq == seq:
                    return msg
        return None

    def _lease(
        self, msg: _Msg, consumer: str, now: float, default_vt: float, cap: int = 0
    ) -> Lease:
        if msg.token is not None:
            self._leases.pop(msg.token, None)
            if msg.consumer is not None:
                self._release_slot(msg)
        token = next(self._counter)
        envelope = msg.envelope
        expires = now + (envelope.visibility_timeout or default_vt)
        msg.token, msg.consumer, msg.expires = token, consumer, expires
        msg.owner, msg.cap = consumer, cap
        deliveries = msg.deliveries = msg.deliveries + 1
        counts = self._queues[msg.queue].counts  # `_move(msg, LEASED)`, written out
        counts[msg.state] -= 1
        counts[LEASED] += 1
        msg.state = LEASED
        key = msg.key
        self._leases[token] = key
        held = self._held
        held[consumer] = held.get(consumer, 0) + 1
        heappush(self._expiry, (expires, token, key))
        return Lease(token, envelope, msg.queue, expires, deliveries)

    def _live(self, token: int, now: float) -> _Msg:
        delayed, expiry = self._delayed, self._expiry
        if (delayed and delayed[0][0] <= now) or (expiry and expiry[0][0] <= now):
            self.tick(now)
        key = self._leases.get(token)
        msg = self._msgs.get(key) if key is not None else None
        if msg is None or msg.token != token:
            raise LeaseLost("this delivery was already settled or handed to another consumer")
        return msg

    def ack(self, token: int, now: float) -> None:
        """Settle a delivery: the message is gone.

        `_live` then `_remove`, written out (one ack per message, the hot path).
        """
        delayed, expiry = self._delayed, self._expiry
        if (delayed and delayed[0][0] <= now) or (expiry and expiry[0][0] <= now):
            self.tick(now)
        leases, msgs = self._leases, self._msgs
        key = leases.get(token)
        msg = msgs.get(key) if key is not None else None
        if msg is None or msg.token != token:
            raise LeaseLost("this delivery was already settled or handed to another consumer")
        state = msg.state
        if state == LEASED and (consumer := msg.consumer) is not None:  # `_release_slot`
            held = self._held
            left = held[consumer] - 1
            if left:
                held[consumer] = left
            else:
                del held[consumer]
            msg.consumer = None
        del leases[token]
        self._queues[msg.queue].counts[state] -= 1
        del msgs[msg.key]

    def nack(self, token: int, now: float, requeue: bool = True) -> None:
        """Requeue at the tail of its priority, or dead-letter with reason "nack"."""
        if not requeue:
            self.dead_letter(token, now, reason="nack")
            return
        msg = self._live(token, now)
        self._leases.pop(token, None)
        msg.token = None
        if msg.state == LEASED:
            self._release_slot(msg)
            self._make_ready(msg)

    def dead_letter(
        self, token: int, now: float, reason: str | None = None, meta: dict[str, Any] | None = None
    ) -> None:
        msg = self._live(token, now)
        self._remove(msg)
        entry = DeadLetterEntry(msg.envelope, reason, dict(meta or {}), from_epoch(now))
        self._queue(msg.queue).dead.append(entry)

    def extend(self, token: int, now: float, by: float, consumer: str | None = None) -> float:
        """Set the lease to expire at `now + by`; re-lease it if it expired but is untaken.

        Re-leasing takes a prefetch slot of the lease's consumer when it was claimed with
        a `prefetch` cap, and is refused (`LeaseLost`) when that consumer has none free.
        """
        msg = self._live(token, now)
        if msg.state != LEASED:
            if msg.cap and msg.owner is not None:
                consumer = msg.owner
                if self._held.get(consumer, 0) >= msg.cap:
                    raise LeaseLost(
                        "this lease expired and its consumer's prefetch slots are taken"
                    )
            self._move(msg, LEASED)
            msg.consumer = consumer
            if consumer is not None:
                self._held[consumer] = self._held.get(consumer, 0) + 1
        msg.expires = now + by
        heapq.heappush(self._expiry, (msg.expires, token, msg.key))
        return msg.expires

    # ------------------------------------------------------------- counting
    def pending_count(self, queue: str, now: float) -> int:
        self.tick(now)
        return self._queue(queue).counts[READY] if queue in self._queues else 0

    def inflight_count(self, queue: str, now: float) -> int:
        self.tick(now)
        return self._queue(queue).counts[LEASED] if queue in self._queues else 0

    def delayed_count(self, queue: str, now: float) -> int:
        self.tick(now)
        return self._queue(queue).counts[DELAYED] if queue in self._queues else 0

    def purge(self, queue: str, now: float) -> int:
        """Remove the queue's ready, delayed and leased messages; dead letters stay."""
        self.tick(now)
        doomed = [m for m in self._msgs.values() if m.queue == queue]
        for msg in doomed:
            self._remove(msg)
        if queue in self._queues:
            for dq in self._queues[queue].ready:
                dq.clear()
        return len(doomed)

    # ---------------------------------------------------------- dead letters
    def _dead(self, queue: str) -> list[DeadLetterEntry]:
        return self._queues[queue].dead if queue in self._queues else []

    def list_dead(self, queue: str, limit: int = 50, offset: int = 0) -> DeadLetterPage:
        """Newest first; `next_offset` is set when more entries remain."""
        dead = self._dead(queue)
        newest = dead[::-1][offset : offset + limit]
        more = offset + limit < len(dead)
        return DeadLetterPage(newest, offset + limit if more else None)

    def get_dead(self, queue: str, envelope_id: str) -> DeadLetterEntry | None:
        for entry in reversed(self._dead(queue)):
            if entry.envelope.id == envelope_id:
                return entry
        return None

    def _select_dead(self, queue: str, since: float | None, limit: int | None) -> list[int]:
        picked: list[int] = []
        for i, entry in enumerate(self._dead(queue)):
            if limit is not None and len(picked) >= limit:
                break
            if since is None or to_epoch(entry.dead_at) >= since:
                picked.append(i)
        return picked

    def replay_dead(
        self,
        queue: str,
        now: float,
        limit: int = 50,
        since: float | None = None,
        delay: float | None = None,
        dry_run: bool = False,
    ) -> ReplayResult:
        """Oldest first: republish with `not_before = now + delay` (or due now)."""
        picked = self._select_dead(queue, since, limit)
        entries = [self._dead(queue)[i] for i in picked]
        if dry_run:
            return ReplayResult(entries, True)
        self._drop_dead(queue, picked)
        not_before = from_epoch(now + delay) if delay else None
        for entry in entries:
            self.publish(replace(entry.envelope, not_before=not_before), now)
        return ReplayResult(entries, False)

    def purge_dead(self, queue: str, since: float | None = None, limit: int | None = None) -> int:
        """Remove dead letters (oldest first) dead at or after `since`, at most `limit`."""
        picked = self._select_dead(queue, since, limit)
        self._drop_dead(queue, picked)
        return len(picked)

    def _drop_dead(self, queue: str, indices: Iterable[int]) -> None:
        drop = set(indices)
        if drop:
            q = self._queues[queue]
            q.dead = [e for i, e in enumerate(q.dead) if i not in drop]

    # ------------------------------------------------------------- broadcast
    def subscribe(self, consumer: str, channels: Iterable[str]) -> None:
        self._inbox.setdefault(consumer, deque())
        for channel in channels:
            self._subs.setdefault(channel, set()).add(consumer)

    def unsubscribe(self, consumer: str) -> None:
        for channel, subs in list(self._subs.items()):
            subs.discard(consumer)
            if not subs:
                del self._subs[channel]
        self._inbox.pop(consumer, None)

    def broadcast(self, channel: str, envelope: Envelope) -> int:
        """Give every current subscriber of `channel` one copy; return how many."""
        subs = self._subs.get(channel, ())
        for consumer in subs:
            self._inbox[consumer].append((next(self._counter), channel, envelope))
        return len(subs)

    def take_broadcast(self, consumer: str) -> tuple[int, str, Envelope] | None:
        inbox = self._inbox.get(consumer)
        if not inbox:
            return None
        item = inbox.popleft()
        self._bcast[item[0]] = item[2]
        return item

    def settle_broadcast(self, token: int) -> Envelope:
        """Release a broadcast delivery (ack or nack); a second settle is stale."""
        envelope = self._bcast.pop(token, None)
        if envelope is None:
            raise LeaseLost("this broadcast delivery was already settled")
        return envelope

    def dead_letter_broadcast(
        self, token: int, now: float, reason: str | None, meta: dict[str, Any] | None = None
    ) -> None:
        """Keep a broadcast copy that its subscriber could not handle in the DLQ."""
        envelope = self.settle_broadcast(token)
        entry = DeadLetterEntry(envelope, reason, dict(meta or {}), from_epoch(now))
        self._queue(envelope.queue).dead.append(entry)
