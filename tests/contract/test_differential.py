"""Differential test: every adapter against QueueState, the executable reference.

Hypothesis draws a plan (a prefetch per consumer and up to `STEPS` operations); the
plan runs step by step against a `QueueState` driven with an explicit clock AND a
real broker opened through the contract suite's `ADAPTERS`, and every observable
result is compared: return values, which envelope a `get` hands out (with its queue
and delivery count), the exception type of a refused call, counts after every step,
dead-letter pages, replay results. A closing audit compares the dead letters and
drains what is left ready through a fresh consumer, so the final order is checked too.

Nothing here depends on the wall clock: leases last `LEASE` seconds and delays are
`DELAY` (an hour) away, so no lease expires and no delayed message falls due while a
plan runs; the reference clock only moves by a millisecond a step.

Read-ahead. Adapters may lease more than one message per claim into a consumer's local
buffer (SQLite, Postgres, Redis with a backlog), and Redis may push a published message
to a consumer that recently found its queues empty. Both are allowed by the contract but
make "which message comes next" depend on the adapter, so the runner closes consumers
(which gives buffered messages back in place) before anything that makes a message ready
(publish, publish_many, nack with requeue, replay) and before another consumer's `get`.
Consecutive gets of one consumer, settles, counts, purges and dead-letter calls run with
its buffer still open, which is where the buffer's bookkeeping is exercised.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stemlab import (
    Broker,
    Consumer,
    DeadLetterEntry,
    DeadLetterPage,
    Delivery,
    Envelope,
    QueueState,
    ReplayResult,
    StemlabError,
)
from stemlab.core.codec import dumps
from stemlab.core.state import Lease
from tests.conftest import AMQP_URL, POSTGRES_URL, REDIS_URL, require_service
from tests.contract.conftest import (
    ADAPTERS,
    INSTRUMENTED,
    adapter_names,
    delete_amqp_namespaces,
    delete_redis_namespace,
)

pytestmark = pytest.mark.slow

QUEUES = ("a", "b")
# consumer name -> the queues it consumes; prefetch is drawn per plan
CONSUMERS = {"c1": ("a", "b"), "c2": ("a",)}
PREFETCHES = (1, 2, 3)
LEASE = 300.0  # seconds: no lease expires while a plan runs
DELAY = 3600.0  # seconds: a delayed message never falls due while a plan runs
EXTENDS = (120.0, 900.0)
STEPS = 30
EXAMPLES = 40  # per bare adapter
TWIN_EXAMPLES = 10  # per "+instrumented" twin: a thin wrapper over the same adapter
GET_WAIT = 5.0  # a get the reference says must deliver: generous, it returns at once
NOTHING_WAIT = {"memory": 0.05}  # how long a get must stay empty; durable adapters below
NOTHING_WAIT_DURABLE = 0.25
EXTEND_SLACK = 5.0  # seconds of clock difference allowed on an extended lease's expiry

T = TypeVar("T")


# ----------------------------------------------------------------------- the plan
class Publish(NamedTuple):
    queue: str
    priority: int
    delayed: bool
    route_priority: int | None  # publish(..., priority=) overrides the envelope's


class PublishMany(NamedTuple):
    items: tuple[tuple[str, int, bool], ...]  # (queue, priority, delayed)


class Get(NamedTuple):
    consumer: str
    check_empty: bool  # when the reference has nothing for it: really wait (costs time)


class Pick(NamedTuple):
    """Which delivery to settle: the `index`-th latest live one, or a stale one if `stale`."""

    index: int
    stale: bool


class Ack(NamedTuple):
    handle: Pick


class Nack(NamedTuple):
    handle: Pick
    requeue: bool


class DeadLetter(NamedTuple):
    handle: Pick
    reason: str | None
    with_meta: bool


class Extend(NamedTuple):
    handle: Pick
    by: float


class Purge(NamedTuple):
    queue: str


class ListDead(NamedTuple):
    queue: str
    limit: int
    offset: int


class GetDead(NamedTuple):
    queue: str
    which: int  # index (modulo) into the ids to look up
    dead: bool  # look up an id the reference has in that queue's dead letters (if any)


class Replay(NamedTuple):
    queue: str
    limit: int
    delayed: bool
    dry_run: bool


class PurgeDead(NamedTuple):
    queue: str
    limit: int | None


Op = (
    Publish
    | PublishMany
    | Get
    | Ack
    | Nack
    | DeadLetter
    | Extend
    | Purge
    | ListDead
    | GetDead
    | Replay
    | PurgeDead
)


@dataclass(frozen=True)
class Plan:
    prefetch: dict[str, int]
    ops: list[Op]


queues = st.sampled_from([QUEUES[0], QUEUES[0], QUEUES[1]])  # c2 consumes only "a"
priorities = st.integers(0, 9)
delayed = st.sampled_from([False, False, False, True])
handles = st.builds(Pick, st.integers(0, 7), st.sampled_from([False] * 4 + [True]))

publish = st.builds(Publish, queues, priorities, delayed, st.none() | priorities)
publish_many = st.builds(
    PublishMany, st.lists(st.tuples(queues, priorities, delayed), max_size=10).map(tuple)
)
get = st.builds(Get, st.sampled_from(sorted(CONSUMERS)), st.sampled_from([False] * 3 + [True]))
# kind -> (weight, strategy); one_of would pick branches evenly, this draws kinds by weight
OPS: dict[str, tuple[int, st.SearchStrategy[Any]]] = {
    "publish": (5, publish),
    "get": (8, get),
    "ack": (3, st.builds(Ack, handles)),
    "publish_many": (1, publish_many),
    "nack": (2, st.builds(Nack, handles, st.booleans())),
    "dead_letter": (
        2,
        st.builds(DeadLetter, handles, st.sampled_from([None, "boom", "nack"]), st.booleans()),
    ),
    "extend": (1, st.builds(Extend, handles, st.sampled_from(EXTENDS))),
    "list_dead": (1, st.builds(ListDead, queues, st.integers(1, 4), st.integers(0, 3))),
    "get_dead": (1, st.builds(GetDead, queues, st.integers(0, 30), st.booleans())),
    "replay": (2, st.builds(Replay, queues, st.integers(0, 3), delayed, st.booleans())),
    "purge_dead": (1, st.builds(PurgeDead, queues, st.none() | st.integers(0, 3))),
    "purge": (1, st.builds(Purge, queues)),
}
ops: st.SearchStrategy[Op] = st.sampled_from(
    [kind for kind, (weight, _) in OPS.items() for _ in range(weight)]
).flatmap(lambda kind: OPS[kind][1])
plans = st.builds(
    Plan,
    st.fixed_dictionaries({name: st.sampled_from(PREFETCHES) for name in CONSUMERS}),
    st.lists(ops, min_size=STEPS // 2, max_size=STEPS),
)


# ------------------------------------------------------------- what is compared
def envelope_view(e: Envelope) -> str:
    """Every field a broker must carry unchanged, compactly.

    `not_before` counts only as set or not (the reference's clock is not the wall
    clock); the fields not spelled out are compared through a checksum of their JSON.
    """
    delayed = "" if e.not_before is None else " delayed"
    rest = e.to_dict()
    for shown in ("id", "name", "args", "queue", "priority", "attempt", "not_before"):
        del rest[shown]
    digest = zlib.crc32(dumps(rest).encode())
    return (
        f"{e.id} {e.name} {e.args} q={e.queue} p={e.priority} attempt={e.attempt}{delayed}"
        f" rest={digest:08x}"
    )


def entry_view(e: DeadLetterEntry) -> tuple[str, str | None, dict[str, Any]]:
    return (envelope_view(e.envelope), e.reason, e.meta)


def page_view(p: DeadLetterPage) -> tuple[list[tuple[str, str | None, dict[str, Any]]], int | None]:
    return ([entry_view(e) for e in p.entries], p.next_offset)


def replay_view(r: ReplayResult) -> tuple[list[tuple[str, str | None, dict[str, Any]]], bool, int]:
    return ([entry_view(e) for e in r.entries], r.dry_run, r.count)


def delivery_view(envelope: Envelope, queue: str, count: int) -> str:
    """Which envelope was handed out, from which queue, for the how-many-th time."""
    return f"{envelope_view(envelope)} from={queue} delivery={count}"


Outcome = tuple[str, Any]  # ("ok", compared value) or ("raise", exception class name)


def outcome(fn: Callable[[], T], view: Callable[[T], Any] = lambda v: v) -> Outcome:
    """Run `fn`; a refusal the contract defines (StemlabError, ValueError) is a result."""
    try:
        return ("ok", view(fn()))
    except (StemlabError, ValueError) as exc:
        return ("raise", type(exc).__name__)


# ------------------------------------------------------------------- the runner
class Differential:
    """One plan against a fresh QueueState and one real broker, compared step by step."""

    def __init__(
        self,
        broker: Broker,
        prefetch: dict[str, int],
        nothing_wait: float,
    ) -> None:
        self.broker = broker
        self.prefetch = prefetch
        self.nothing_wait = nothing_wait
        self.ref = QueueState(default_visibility_timeout=LEASE)
        self.now = time.time()  # the reference's clock: moved only by `step`
        self.consumers: dict[str, Consumer] = {}
        self.handles: list[tuple[Delivery, int]] = []  # (adapter delivery, reference token)
        self.live: set[int] = set()  # reference tokens of deliveries not settled yet
        self.ids: list[str] = []
        self.serial = 0
        self.step_no = 0
        self.op: Op | None = None

    # ----------------------------------------------------------------- helpers
    def check(self, what: str, expected: Any, actual: Any) -> None:
        assert actual == expected, (
            f"step {self.step_no} {self.op!r}: {what} differs\n"
            f"  reference: {expected!r}\n  adapter:   {actual!r}"
        )

    def envelope(self, queue: str, priority: int, delayed: bool) -> Envelope:
        self.serial += 1
        e = Envelope(
            name=f"m{self.serial}",
            args={"n": self.serial},
            id=f"e{self.serial:03d}",
            queue=queue,
            priority=priority,
            not_before=datetime.now(UTC) + timedelta(seconds=DELAY) if delayed else None,
        )
        self.ids.append(e.id)
        return e

    def close_consumers(self, keep: str | None = None) -> None:
        for name in [n for n in self.consumers if n != keep]:
            self.consumers.pop(name).close()

    def consumer(self, name: str) -> Consumer:
        if name not in self.consumers:
            self.consumers[name] = self.broker.consume(
                CONSUMERS[name], prefetch=self.prefetch[name], consumer=name
            )
        return self.consumers[name]

    def handle(self, pick: Pick) -> tuple[Delivery, int] | None:
        live = [h for h in self.handles if h[1] in self.live]
        stale = [h for h in self.handles if h[1] not in self.live]
        pool = (stale or live) if pick.stale else (live or stale)
        return pool[-1 - pick.index % len(pool)] if pool else None

    def settled(self, token: int, result: Outcome) -> None:
        if result[0] == "ok":
            self.live.discard(token)

    def compare_counts(self) -> None:
        for q in QUEUES:
            expected = (
                self.ref.pending_count(q, self.now),
                self.ref.inflight_count(q, self.now),
                self.ref.delayed_count(q, self.now),
            )
            b = self.broker
            actual = (b.pending_count(q), b.inflight_count(q), b.delayed_count(q))
            what = f"counts of {q!r} (pending, inflight, delayed)"
            self.check(what, expected, actual)

    # -------------------------------------------------------------------- steps
    def run(self, plan: Plan) -> None:
        for self.step_no, self.op in enumerate(plan.ops, 1):
            self.now += 0.001
            self.step(self.op)
            self.compare_counts()
        self.audit()

    def step(self, op: Op) -> None:
        if isinstance(op, Publish | PublishMany | Replay) and not (
            isinstance(op, Replay) and op.dry_run
        ):
            self.close_consumers()  # something may become ready: no read-ahead may hide it
        match op:
            case Publish(queue, priority, delayed, route):
                e = self.envelope(queue, priority, delayed)
                self.ref.publish(e if route is None else replace(e, priority=route), self.now)
                self.broker.publish(e, priority=route)
            case PublishMany(items):
                envelopes = [self.envelope(*item) for item in items]
                for e in envelopes:
                    self.ref.publish(e, self.now)
                self.broker.publish_many(envelopes)
            case Get(name, check_empty):
                self.get(name, check_empty)
            case Ack(i) if (h := self.handle(i)) is not None:
                d, token = h
                self.settled(
                    token,
                    self.same(lambda: self.ref.ack(token, self.now), lambda: self.broker.ack(d)),
                )
            case Nack(i, requeue) if (h := self.handle(i)) is not None:
                d, token = h
                if requeue:
                    self.close_consumers()
                result = self.same(
                    lambda: self.ref.nack(token, self.now, requeue=requeue),
                    lambda: self.broker.nack(d, requeue=requeue),
                )
                self.settled(token, result)
            case DeadLetter(i, reason, with_meta) if (h := self.handle(i)) is not None:
                d, token = h
                meta = {"step": self.step_no} if with_meta else None
                result = self.same(
                    lambda: self.ref.dead_letter(token, self.now, reason, meta),
                    lambda: self.broker.dead_letter(d, reason=reason, meta=meta),
                )
                self.settled(token, result)
            case Extend(i, by) if (h := self.handle(i)) is not None:
                self.extend(*h, by)
            case Purge(queue):
                self.same(lambda: self.ref.purge(queue, self.now), lambda: self.broker.purge(queue))
                self.live -= {token for d, token in self.handles if d.queue == queue}
            case ListDead(queue, limit, offset):
                self.same(
                    lambda: self.ref.list_dead(queue, limit, offset),
                    lambda: self.broker.list_dead_letters(queue, limit=limit, offset=offset),
                    page_view,
                )
            case GetDead(queue, which, dead) if self.ids:
                dead_ids = [e.envelope.id for e in self.ref.list_dead(queue, limit=1000).entries]
                pool = dead_ids if dead and dead_ids else self.ids
                wanted = pool[which % len(pool)]
                self.same(
                    lambda: self.ref.get_dead(queue, wanted),
                    lambda: self.broker.get_dead_letter(queue, wanted),
                    lambda e: None if e is None else entry_view(e),
                )
            case Replay(queue, limit, delayed, dry_run):
                delay = DELAY if delayed else None
                self.same(
                    lambda: self.ref.replay_dead(
                        queue, self.now, limit=limit, delay=delay, dry_run=dry_run
                    ),
                    lambda: self.broker.replay_dead_letters(
                        queue, limit=limit, delay=delay, dry_run=dry_run
                    ),
                    replay_view,
                )
            case PurgeDead(queue, limit):
                self.same(
                    lambda: self.ref.purge_dead(queue, limit=limit),
                    lambda: self.broker.purge_dead_letters(queue, limit=limit),
                )
            case _:
                pass  # a settle with no delivery handed out yet, or get_dead before any id

    def same(
        self,
        ref: Callable[[], T],
        real: Callable[[], T],
        view: Callable[[T], Any] = lambda v: v,
    ) -> Outcome:
        """Run one call on both sides, compare results (or exception types), return it."""
        expected = outcome(ref, view)
        self.check("result", expected, outcome(real, view))
        return expected

    def get(self, name: str, check_empty: bool) -> None:
        lease: Lease | None = None
        if self.ref.held(name) < self.prefetch[name]:
            claimed = self.ref.claim(CONSUMERS[name], name, self.now, 1, LEASE)
            lease = claimed[0] if claimed else None
        if lease is None and not check_empty:
            return
        self.close_consumers(keep=name)
        d = self.consumer(name).get(timeout=GET_WAIT if lease is not None else self.nothing_wait)
        expected = None
        if lease is not None:
            expected = delivery_view(lease.envelope, lease.queue, lease.delivery_count)
        actual = None if d is None else delivery_view(d.envelope, d.queue, d.delivery_count)
        self.check(f"get by {name}", expected, actual)
        if d is not None and lease is not None:
            assert d.channel is None and d.lease_expires_at is not None
            self.handles.append((d, lease.token))
            self.live.add(lease.token)

    def extend(self, d: Delivery, token: int, by: float) -> None:
        before = datetime.now(UTC)
        ref = outcome(lambda: self.ref.extend(token, self.now, by), lambda _: None)
        real = outcome(lambda: self.broker.extend_lease(d, by))
        after = datetime.now(UTC)
        if ref[0] == "raise" or real[0] == "raise":
            self.check("extend_lease", ref, real)
            return
        slack = timedelta(seconds=EXTEND_SLACK)
        expires = real[1]
        lo, hi = before + timedelta(seconds=by) - slack, after + timedelta(seconds=by) + slack
        assert lo <= expires <= hi, f"step {self.step_no}: extend_lease returned {expires}"

    # -------------------------------------------------------------------- audit
    def audit(self) -> None:
        """Walk each queue's dead letters (paged, replayed, purged), then drain what is ready.

        Plans reach a populated dead-letter queue late, if at all, so this fixed tail gives
        every plan's dead letters the same checks: every page of two, a dry run, one
        replay and one purge (oldest first), then the full list once more. Last, one fresh
        consumer drains everything ready and the order is compared.
        """
        self.close_consumers()
        self.op = None
        for q in QUEUES:
            self.step_no += 1
            self.audit_dead(q)
        drain = "drain"
        expected = [
            delivery_view(x.envelope, x.queue, x.delivery_count)
            for x in self.ref.claim(QUEUES, drain, self.now, 10_000, LEASE)
        ]
        got = []
        with self.broker.consume(QUEUES, prefetch=1000, consumer=drain) as consumer:
            for _ in expected:
                d = consumer.get(timeout=GET_WAIT)
                if d is None:
                    break
                got.append(delivery_view(d.envelope, d.queue, d.delivery_count))
        self.check("drain order", expected, got)
        self.compare_counts()

    def audit_dead(self, q: str) -> None:
        """Every page of two, a dry run, one replay, one purge, then the full list again."""
        offset: int | None = 0
        while offset is not None:
            page = self.broker.list_dead_letters(q, limit=2, offset=offset)
            expected = self.ref.list_dead(q, limit=2, offset=offset)
            self.check(f"dead letters of {q!r} from {offset}", page_view(expected), page_view(page))
            offset = page.next_offset
        self.same(
            lambda: self.ref.replay_dead(q, self.now, limit=2, dry_run=True),
            lambda: self.broker.replay_dead_letters(q, limit=2, dry_run=True),
            replay_view,
        )
        self.same(
            lambda: self.ref.replay_dead(q, self.now, limit=1),
            lambda: self.broker.replay_dead_letters(q, limit=1),
            replay_view,
        )
        self.same(
            lambda: self.ref.purge_dead(q, limit=1),
            lambda: self.broker.purge_dead_letters(q, limit=1),
        )
        self.check(
            f"dead letters of {q!r}",
            page_view(self.ref.list_dead(q, limit=1000)),
            page_view(self.broker.list_dead_letters(q, limit=1000)),
        )

    def close(self) -> None:
        self.close_consumers()
        self.broker.close()


# -------------------------------------------------------------------- the tests
SERVICES = {"redis": REDIS_URL, "postgres": POSTGRES_URL, "amqp": AMQP_URL}


def _cleanup(adapter: str, namespace: str) -> None:
    """Delete a plan's namespace from the shared servers (the fixtures do it per test)."""
    base = adapter.removesuffix(INSTRUMENTED)
    if base == "redis":
        delete_redis_namespace(REDIS_URL, namespace)
    elif base == "postgres":
        from stemlab.brokers.postgres.maintenance import delete_namespaces

        delete_namespaces(POSTGRES_URL, [namespace])
    elif base == "amqp":
        delete_amqp_namespaces(AMQP_URL, [namespace])
    elif base == "sqs":
        from tests.sqs_server import delete_namespace, sqs_url

        delete_namespace(sqs_url(), namespace)


@pytest.mark.parametrize("adapter", adapter_names())
def test_adapter_matches_the_reference(adapter: str, tmp_path: Path) -> None:
    base = adapter.removesuffix(INSTRUMENTED)
    if base in SERVICES:  # skip (or fail) here, not from inside hypothesis
        require_service(base, SERVICES[base])
    nothing_wait = NOTHING_WAIT.get(base, NOTHING_WAIT_DURABLE)

    @settings(
        max_examples=TWIN_EXAMPLES if adapter.endswith(INSTRUMENTED) else EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(plan=plans)
    def run(plan: Plan) -> None:
        namespace = "d" + uuid.uuid4().hex[:12]
        broker = ADAPTERS[adapter](namespace, tmp_path, default_visibility_timeout=LEASE)
        runner = Differential(broker, plan.prefetch, nothing_wait)
        try:
            runner.run(plan)
        finally:
            runner.close()
            _cleanup(adapter, namespace)

    run()
