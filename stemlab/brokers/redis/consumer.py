"""The Redis consumer: claims by script, woken by pub/sub, and pushed work while it waits.

A consumer owns two connections: one for its scripts, one subscribed to the wake-up
channel of each of its queues, its own "slot freed" and "push" channels and its
broadcast channels. It subscribes before its first claim, so nothing that becomes
ready after a claim found the queues empty can go unnoticed. A claim that finds
nothing registers the consumer as waiting; the next publish then leases the message
to it and pushes it over pub/sub in the same script (no second round trip, see
`push` in _lib.lua). While waiting it also wakes at the next due time or lease
expiry that the claim reported (at most `MAX_IDLE`), so delayed messages and
expired leases are taken on time.

With prefetch > 1 and a backlog, one claim leases several messages (see claim.lua);
those not handed out yet wait in a local buffer with pushed ones. One that has used
up half its lease there, and all of them when the consumer closes, are released:
put back in their old place, their delivery count taken back.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from redis.connection import AbstractConnection

from stemlab.brokers.redis.link import Arg, script
from stemlab.brokers.redis.settings import MAX_IDLE, MAX_IDLE_MS, from_ms, undecodable_envelope
from stemlab.core.broker import Consumer
from stemlab.core.codec import new_id
from stemlab.core.envelope import Delivery, Envelope
from stemlab.errors import EnvelopeError, LeaseLost, StemlabError

if TYPE_CHECKING:
    from stemlab.brokers.redis.broker import RedisBroker

__all__ = ["RedisConsumer"]

TICK_CAP = 1000  # delayed messages / expired leases moved to ready per claim and queue
CAST_TTL = 86_400  # seconds an unsettled broadcast receipt stays valid
_SLICE = 0.25  # longest uninterrupted wait, so close() from another thread is seen
_CLAIM = script("claim")
_RELEASE = script("release")
_UNREGISTER = script("unregister")
_REGISTERED = 8  # index of the "registered as waiting" flag in the claim arguments
T = TypeVar("T")
Lease = tuple[float, Delivery]  # (hand out before this monotonic instant, delivery)


class RedisConsumer(Consumer):
    """See the module docstring; thread-safe (one `get` at a time)."""

    def __init__(
        self,
        broker: RedisBroker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        super().__init__(name)
        self._broker = broker
        self._queues = queues
        prefix, oid = broker.prefix, new_id()
        self._ns = broker.namespace
        self._cast_key = prefix + "cast:"
        self._cast_prefix = (prefix + "bcast:").encode()
        self._push_channel = (prefix + "push:" + oid).encode()
        self._topics = [prefix + "wake:" + q for q in queues] + [prefix + "slot:" + name]
        self._topics += [prefix + "push:" + oid] + [prefix + "bcast:" + ch for ch in channels]
        lease_ms = broker.settings.default_lease_ms
        self._idle_member = f"{oid}|{prefetch}|{lease_ms}|{name}"
        self._claim_args: list[Arg] = [prefix, name, prefetch, prefetch, lease_ms, MAX_IDLE_MS]
        self._claim_args += [TICK_CAP, oid, "0", *queues]
        self._lock = threading.Lock()
        self._casts: deque[tuple[str, bytes]] = deque()
        self._pushed: deque[bytes] = deque()
        self._ahead: deque[Lease] = deque()
        self._subscribed = False
        self._cmd = broker.new_link()
        self._sub = broker.new_link()
        try:
            self._pubsub(lambda conn: None)  # subscribed before consume() returns
        except BaseException:
            self._teardown()
            raise

    # ------------------------------------------------------------ delivering
    def get(self, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._lock:
            try:
                return self._get(deadline)
            finally:
                if self._stopped():
                    self._teardown()

    def _get(self, deadline: float | None) -> Delivery | None:
        while not self._stopped():
            self._pubsub(self._drain)
            if self._casts:
                cast = self._cast_delivery()
                if cast is not None:
                    return cast
                continue
            while self._pushed:
                self._take_push(self._pushed.popleft())
            if self._ahead:
                ahead = self._from_buffer()
                if ahead is not None:
                    return ahead
            wait = MAX_IDLE
            if self._queues:
                delivery, wait = self._claim()
                if delivery is not None:
                    return delivery
                if wait <= 0:
                    continue
            if not self._sleep(wait, deadline):
                return None
        return None

    def _claim(self) -> tuple[Delivery | None, float]:
        """One claim script call: (a delivery, 0) or (None, seconds until worth retrying)."""
        reply = self._cmd.eval(_CLAIM, self._claim_args)
        now, nxt = reply[0], reply[2]
        self._claim_args[_REGISTERED] = "1" if reply[3] else "0"
        if len(reply) > 4:
            received = time.monotonic()
            for i in range(4, len(reply), 6):
                self._add(received, now, *reply[i : i + 6])
            return self._from_buffer(), 0.0
        if nxt < 0:
            return None, MAX_IDLE
        return None, min(MAX_IDLE, max(0.0, (nxt - now) / 1000.0) + 0.001)

    def _add(
        self,
        received: float,
        now: int,
        q: bytes,
        mid: bytes,
        token: bytes,
        count: int,
        expires: int,
        raw: bytes,
    ) -> None:
        """Buffer the delivery of one lease, to be handed out while half its lease is left.

        An undecodable payload is dead-lettered (reason "undecodable") instead.
        """
        queue = q.decode()
        receipt = self._broker.receipts.issue("q", mid.decode(), token.decode())
        try:
            envelope = Envelope.from_json(raw)
        except EnvelopeError as exc:
            self._bury(queue, receipt, count, expires, raw, exc)
            return
        delivery = Delivery(envelope, receipt, queue, from_ms(expires), count)
        self._ahead.append((received + (expires - now) / 2000.0, delivery))

    def _take_push(self, payload: bytes) -> None:
        """A message the publish script leased to this consumer while it waited."""
        q, mid, token, count, expires, now, raw = payload.split(b"\n", 6)
        self._add(time.monotonic(), int(now), q, mid, token, int(count), int(expires), raw)

    def _from_buffer(self) -> Delivery | None:
        """The next buffered delivery that is still fresh; stale ones are released."""
        now = time.monotonic()
        stale: list[tuple[str, str, str]] = []
        found: Delivery | None = None
        while self._ahead:
            deadline, delivery = self._ahead.popleft()
            if now <= deadline:
                found = delivery
                break
            stale.append(self._lease_of(delivery))
        self._release(stale)
        return found

    def _lease_of(self, delivery: Delivery) -> tuple[str, str, str]:
        mid, token = self._broker.receipts.read(delivery)
        return delivery.queue, str(mid), str(token)

    def _release(self, leases: Sequence[tuple[str, str, str]]) -> None:
        if leases:
            args: list[Arg] = [self._broker.prefix]
            for lease in leases:
                args.extend(lease)
            self._cmd.eval(_RELEASE, args)

    def _bury(
        self, queue: str, receipt: str, count: int, expires: int, raw: bytes, exc: Exception
    ) -> None:
        """Dead-letter an undecodable payload with reason "undecodable", then go on."""
        placeholder = undecodable_envelope(raw, queue, error=str(exc))
        delivery = Delivery(placeholder, receipt, queue, from_ms(expires), count)
        with contextlib.suppress(LeaseLost):  # settled by someone else meanwhile: fine
            self._broker.dead_letter_as(delivery, "undecodable", {"error": str(exc)}, placeholder)

    def _cast_delivery(self) -> Delivery | None:
        channel, raw = self._casts.popleft()
        try:
            envelope = Envelope.from_json(raw)
        except EnvelopeError:  # not ours to dead-letter: no queue holds it
            return None
        rid = new_id()
        self._cmd.execute("SET", self._cast_key + rid, "1", "EX", CAST_TTL)
        receipt = self._broker.receipts.issue("b", rid)
        return Delivery(envelope, receipt, envelope.queue, None, 1, channel)

    # ---------------------------------------------------------------- waiting
    def _sleep(self, wait: float, deadline: float | None) -> bool:
        """Wait for a notification or `wait` seconds; False once `deadline` has passed."""
        until = time.monotonic() + wait
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            end = until if deadline is None else min(until, deadline)
            if now >= end:
                return True
            if self._stopped():
                return False
            step = min(end - now, _SLICE)
            if self._pubsub(lambda conn, s=step: conn.can_read(timeout=s)):  # type: ignore[misc]
                return True

    def _pubsub(self, fn: Callable[[AbstractConnection], T]) -> T:
        """Run `fn` on the subscribed connection, (re)subscribing first when needed."""

        def send(conn: AbstractConnection, retried: bool) -> T:
            try:
                if not self._subscribed:
                    self._subscribe(conn)
                return fn(conn)
            except BaseException:
                self._subscribed = False
                raise

        result: T = self._sub.run(send)
        return result

    def _subscribe(self, conn: AbstractConnection) -> None:
        conn.send_command("SUBSCRIBE", *self._topics)
        confirmed = 0
        while confirmed < len(self._topics):
            reply = conn.read_response()
            if isinstance(reply, list) and reply and reply[0] == b"subscribe":
                confirmed += 1
            else:
                self._dispatch(reply)
        self._subscribed = True

    def _drain(self, conn: AbstractConnection, wait: float = 0.0) -> None:
        while conn.can_read(timeout=wait):
            self._dispatch(conn.read_response())

    def _dispatch(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            channel = reply[1]
            if channel == self._push_channel:
                self._pushed.append(reply[2])
            elif channel.startswith(self._cast_prefix):
                self._casts.append((channel[len(self._cast_prefix) :].decode(), reply[2]))

    # --------------------------------------------------------------- lifetime
    def _stopped(self) -> bool:
        return self.closed or self._broker.closed

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        if self._lock.acquire(blocking=False):  # else the thread inside get() tears down
            try:
                self._teardown()
            finally:
                self._lock.release()

    def _teardown(self) -> None:
        """Stop waiting, give back what was leased but never handed out, drop connections."""
        with contextlib.suppress(StemlabError):  # if Redis is gone, the leases just expire
            if self._claim_args[_REGISTERED] == "1":
                self._claim_args[_REGISTERED] = "0"
                self._cmd.eval(_UNREGISTER, [self._broker.prefix, self._idle_member, *self._queues])
                self._pubsub(lambda conn: self._drain(conn, 0.02))  # pushes already under way
            leases = [self._lease_of(d) for _, d in self._ahead]
            for payload in self._pushed:
                q, mid, token, _ = payload.split(b"\n", 3)
                leases.append((q.decode(), mid.decode(), token.decode()))
            self._ahead.clear()
            self._pushed.clear()
            self._release(leases)
        for link in (self._cmd, self._sub):
            self._broker.drop_link(link)
        self._casts.clear()
