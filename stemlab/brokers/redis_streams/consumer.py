"""The Redis Streams consumer: claims by script, woken by pub/sub, broadcasts read by XREAD.

A consumer owns two connections: one for its scripts and reads, one subscribed to the
wake-up channel of each of its queues, its own "slot freed" and "push" channels and a
wake-up channel per broadcast channel. It subscribes before its first claim and before it
notes the tail of each broadcast stream, so nothing appended afterwards goes unnoticed. A
claim that finds nothing registers the consumer as waiting; the next publish then reads
the entry into the group for it and pushes it over pub/sub in the same script (no second
round trip). While idle it also wakes at the next due time or lease deadline the claim
reported (at most `MAX_IDLE`), so delayed messages and expired leases are taken on time
with no sweeper.

With prefetch > 1 and a backlog, one claim leases several entries (see claim.lua); those
not handed out yet wait in the consumer core's read-ahead buffer. One that has used up
half its lease there, and all of them when the consumer closes, are released: left in
the pending entries list at their old place with their delivery count taken back.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from redis.connection import AbstractConnection

from stemlab.brokers.redis.link import Arg
from stemlab.brokers.redis.settings import MAX_IDLE, MAX_IDLE_MS, undecodable_envelope
from stemlab.brokers.redis_streams.store import SCRIPTS
from stemlab.core.codec import new_id
from stemlab.core.consumer import Cast, Claim, StoreConsumer
from stemlab.core.envelope import Envelope
from stemlab.errors import EnvelopeError

if TYPE_CHECKING:
    from stemlab.brokers.redis_streams.broker import RedisStreamsBroker

__all__ = ["StreamConsumer"]

TICK_CAP = 1000  # delayed messages promoted / expired leases freed per claim and queue
CAST_TTL = 86_400  # seconds an unsettled broadcast receipt stays valid
CAST_BATCH = 100  # broadcast entries read per XREAD
_REGISTERED = 8  # index of the "registered as waiting" flag in the claim arguments
T = TypeVar("T")
Lease = tuple[str, str, str]  # (queue, "<p>/<entry id>", token)


class StreamConsumer(StoreConsumer):
    """See the module docstring; thread-safe (one `get` at a time)."""

    def __init__(
        self,
        broker: RedisStreamsBroker,
        queues: tuple[str, ...],
        channels: tuple[str, ...],
        prefetch: int,
        name: str,
    ) -> None:
        super().__init__(broker, queues, channels, prefetch, name)
        self._store = broker.store
        prefix = self._store.prefix
        self._cast_key = prefix + "cast:"
        self._cast_prefix = (prefix + "bcast:").encode()
        self._wake_queues = {(prefix + "wake:" + q).encode(): q for q in queues}
        self._topics = [prefix + "wake:" + q for q in queues] + [prefix + "slot:" + name]
        oid = new_id()
        self._push_channel = (prefix + "push:" + oid).encode()
        self._topics += [prefix + "push:" + oid] + [prefix + "bcast:" + ch for ch in channels]
        lease_ms = broker.settings.default_lease_ms
        self._idle_member = f"{oid}|{prefetch}|{lease_ms}|{name}"
        self._claim_args: list[Arg] = [prefix, name, prefetch, prefetch, lease_ms, MAX_IDLE_MS]
        self._claim_args += [TICK_CAP, oid, "0", *queues]
        self._pushed: deque[tuple[bytes, int]] = deque()  # (payload, purge generation)
        self._streams = {prefix + "bc:" + ch: ch for ch in channels}
        self._cursors: dict[str, str] = {}
        self._cast_due = False
        self._subscribed = self._was_subscribed = False
        self._cmd = self._store.new_link()
        self._sub = self._store.new_link()
        try:
            self._pubsub(lambda conn: None)  # subscribed before consume() returns...
            for key in self._streams:  # ...and before the tails are noted
                last = self._cmd.execute("XREVRANGE", key, "+", "-", "COUNT", 1)
                self._cursors[key] = last[0][0].decode() if last else "0-0"
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------- core hooks
    def _fill(self) -> float:
        self._pubsub(self._drain)
        if self._cast_due:
            self._read_casts()
        while self._pushed:
            self._take_push(*self._pushed.popleft())
        if self._ahead or self._casts or not self.queues:
            return MAX_IDLE
        return self._claim()

    def _wait(self, seconds: float) -> bool:
        if seconds <= 0:
            return False
        woke: bool = self._pubsub(lambda conn: conn.can_read(timeout=seconds))
        return woke

    def _poll_signals(self) -> None:
        self._pubsub(self._drain)

    def _hand_out(self, claim: Claim) -> float | None:
        if time.monotonic() <= claim.extra:
            return claim.expires
        self._store.release(self._cmd, [self._lease_of(claim)])  # half its lease used up
        return None

    def unhanded(self, queue: str, now: float) -> int:
        """Buffered claims plus entries pushed meanwhile (not taken in yet) of `queue`.

        The Redis broker's counts (inherited) treat them as pending for this process.
        """
        pushed = 0
        for payload, _gen in tuple(self._pushed):
            q, _, _, _, expires, _ = payload.split(b"\n", 5)
            pushed += q.decode() == queue and int(expires) > now * 1000
        return super().unhanded(queue, now) + pushed

    def _bury(self, claim: Claim, error: Exception) -> None:
        """Dead-letter an undecodable payload with reason "undecodable", then go on."""
        assert isinstance(claim.payload, bytes)
        placeholder = undecodable_envelope(claim.payload, claim.queue, error=str(error))
        mid, token = str(claim.fields[0]), str(claim.fields[1])
        receipt = self.broker.receipts.issue("q", mid, token)
        meta = {"error": str(error)}
        self._store.dead_letter(
            receipt, claim.queue, mid, token, "undecodable", meta, placeholder.id, placeholder
        )

    def _release(self, claims: list[Claim]) -> None:
        """Stop waiting, give back what was leased ahead or pushed meanwhile, leave the groups."""
        leases = [self._lease_of(c) for c in claims]
        try:
            if self.queues:
                args = [self._store.prefix, self.name, self._idle_member, *self.queues]
                self._cmd.eval(SCRIPTS["unregister"], args)
                self._pubsub(lambda conn: self._drain(conn, 0.02))  # pushes already under way
            for payload, _gen in self._pushed:
                q, mid, token, _ = payload.split(b"\n", 3)
                leases.append((q.decode(), mid.decode(), token.decode()))
        finally:
            self._pushed.clear()
            self._store.release(self._cmd, leases)

    def _unsubscribe(self, casts: list[Cast]) -> None:
        if casts:
            self._cmd.execute("DEL", *[self._cast_key + str(c.fields[0]) for c in casts])

    def _closed_store(self) -> None:
        for link in (self._cmd, self._sub):
            self._store.drop_link(link)

    # ---------------------------------------------------------------- claim
    def _claim(self) -> float:
        """One claim script call: leases into the buffer, else seconds worth idling."""
        reply = self._cmd.eval(SCRIPTS["claim"], self._claim_args)
        now, nxt = reply[0], reply[2]
        self._claim_args[_REGISTERED] = "1" if reply[3] else "0"
        if len(reply) > 4:
            received = time.monotonic()
            for i in range(4, len(reply), 6):
                self._add(received, now, *reply[i : i + 6])
            return 0.0
        if nxt < 0:
            return MAX_IDLE
        return min(MAX_IDLE, max(0.0, (nxt - now) / 1000.0) + 0.001)

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
        gen: int | None = None,
    ) -> None:
        """Buffer one lease, to be handed out while half its lease is left."""
        fresh_until = received + (expires - now) / 2000.0
        fields = (mid.decode(), int(token))
        claim = Claim(fields, q.decode(), raw, count, expires / 1000.0, fresh_until, gen)
        self.add_claims([claim])

    def _take_push(self, payload: bytes, gen: int) -> None:
        """An entry the publish script leased to this consumer while it waited.

        `gen` is its queue's purge generation when the push arrived: a purge notice that
        follows it on the connection makes it stale.
        """
        q, mid, token, count, expires, now, raw = payload.split(b"\n", 6)
        self._add(time.monotonic(), int(now), q, mid, token, int(count), int(expires), raw, gen)

    @staticmethod
    def _lease_of(claim: Claim) -> Lease:
        return claim.queue, str(claim.fields[0]), str(claim.fields[1])

    # ------------------------------------------------------------ broadcast
    def _read_casts(self) -> None:
        """Read every channel stream past this subscriber's cursor."""
        self._cast_due = False
        while True:
            keys = list(self._cursors)
            reply = self._cmd.execute(
                "XREAD", "COUNT", CAST_BATCH, "STREAMS", *keys, *[self._cursors[k] for k in keys]
            )
            if not reply:
                return
            more = False
            for raw_key, entries in reply:
                key = raw_key.decode()
                for entry_id, flat in entries:
                    self._cursors[key] = entry_id.decode()
                    fields = dict(zip(flat[::2], flat[1::2], strict=True))
                    self._take_cast(self._streams[key], fields)
                more = more or len(entries) == CAST_BATCH
            if not more:
                return

    def _take_cast(self, channel: str, entry: dict[bytes, bytes]) -> None:
        try:
            envelope = Envelope.from_json(entry.get(b"e", b""))
        except EnvelopeError:  # not ours to dead-letter: no queue holds it
            return
        rid = new_id()
        self._cmd.execute("SET", self._cast_key + rid, "1", "EX", CAST_TTL)
        self.add_casts([Cast((rid,), channel, envelope)])

    # ---------------------------------------------------------------- pub/sub
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
        if self._was_subscribed:  # a purge notice may have been lost with the connection
            for queue in self.queues:
                self.purged(queue)
        conn.send_command("SUBSCRIBE", *self._topics)
        confirmed = 0
        while confirmed < len(self._topics):
            reply = conn.read_response()
            if isinstance(reply, list) and reply and reply[0] == b"subscribe":
                confirmed += 1
            else:
                self._dispatch(reply)
        self._subscribed = self._was_subscribed = True
        self._cast_due = bool(self._cursors)  # anything sent while we were not subscribed

    def _drain(self, conn: AbstractConnection, wait: float = 0.0) -> None:
        while conn.can_read(timeout=wait):
            self._dispatch(conn.read_response())

    def _dispatch(self, reply: Any) -> None:
        if not (isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message"):
            return
        if reply[1] == self._push_channel:
            queue = reply[2].split(b"\n", 1)[0].decode()
            self._pushed.append((reply[2], self.generation(queue)))
        elif reply[2] == b"purge" and reply[1] in self._wake_queues:
            self.purged(self._wake_queues[reply[1]])
        elif reply[1].startswith(self._cast_prefix):
            self._cast_due = True
