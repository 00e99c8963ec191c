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
from stemlab.core.state import Lease
from tests.conftest import POSTGRES_URL, REDIS_URL
from tests.contract.conftest import (
    ADAPTERS,
    INSTRUMENTED,
    adapter_names,
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
EXAMPLES = 30
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


class Ack(NamedTuple):
    handle: int  # which delivery handed out so far, live or stale: 0 is the latest


class Nack(NamedTuple):
    handle: int
    requeue: bool


class DeadLetter(NamedTuple):
    handle: int
    reason: str | None
    with_meta: bool


class Extend(NamedTuple):
    handle: int
    by: float


class Purge(NamedTuple):
    queue: str


class ListDead(NamedTuple):
    queue: str
    limit: int
    offset: int


class GetDead(NamedTuple):
    queue: str
    which: int  # index (modulo) into every envelope id published so far


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


queues = st.sampled_from(QUEUES)
priorities = st.integers(0, 9)
delayed = st.sampled_from([False, False, False, True])
handles = st.integers(0, 15)

publish = st.builds(Publish, queues, priorities, delayed, st.none() | priorities)
publish_many = st.builds(
    PublishMany, st.lists(st.tuples(queues, priorities, delayed), max_size=4).map(tuple)
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
    "get_dead": (1, st.builds(GetDead, queues, st.integers(0, 30))),
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
def envelope_view(e: Envelope) -> tuple[Any, ...]:
    """The envelope fields a broker must carry unchanged (not_before: only whether set)."""
    return (e.id, e.name, e.args, e.queue, e.priority, e.attempt, e.not_before is None)


def entry_view(e: DeadLetterEntry) -> tuple[Any, ...]:
    return (envelope_view(e.envelope), e.reason, e.meta)


def page_view(p: DeadLetterPage) -> tuple[Any, ...]:
    return ([entry_view(e) for e in p.entries], p.next_offset)


def replay_view(r: ReplayResult) -> tuple[Any, ...]:
    return ([entry_view(e) for e in r.entries], r.dry_run, r.count)


def delivery_view(envelope: Envelope, queue: str, count: int) -> tuple[Any, ...]:
    return (envelope_view(envelope), queue, count)


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

    def __init__(self, broker: Broker, prefetch: dict[str, int], nothing_wait: float) -> None:
        self.broker = broker
        self.prefetch = prefetch
        self.nothing_wait = nothing_wait
        self.ref = QueueState(default_visibility_timeout=LEASE)
        self.now = time.time()  # the reference's clock: moved only by `step`
        self.consumers: dict[str, Consumer] = {}
        self.handles: list[tuple[Delivery, int]] = []  # (adapter delivery, reference token)
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

    def handle(self, index: int) -> tuple[Delivery, int] | None:
        return self.handles[-1 - index % len(self.handles)] if self.handles else None

    def compare_counts(self) -> None:
        for q in QUEUES:
            expected = (
                self.ref.pending_count(q, self.now),
                self.ref.inflight_count(q, self.now),
                self.ref.delayed_count(q, self.now),
            )
            b = self.broker
            actual = (b.pending_count(q), b.inflight_count(q), b.delayed_count(q))
            self.check(f"counts of {q!r} (pending, inflight, delayed)", expected, actual)

    # -------------------------------------------------------------------- steps
    def run(self, plan: Plan) -> None:
        for self.step_no, self.op in enumerate(plan.ops, 1):
            self.now += 0.001
            self.step(self.op)
            self.compare_counts()
        self.op = None
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
                self.same(lambda: self.ref.ack(token, self.now), lambda: self.broker.ack(d))
            case Nack(i, requeue) if (h := self.handle(i)) is not None:
                d, token = h
                if requeue:
                    self.close_consumers()
                self.same(
                    lambda: self.ref.nack(token, self.now, requeue=requeue),
                    lambda: self.broker.nack(d, requeue=requeue),
                )
            case DeadLetter(i, reason, with_meta) if (h := self.handle(i)) is not None:
                d, token = h
                meta = {"step": self.step_no} if with_meta else None
                self.same(
                    lambda: self.ref.dead_letter(token, self.now, reason, meta),
                    lambda: self.broker.dead_letter(d, reason=reason, meta=meta),
                )
            case Extend(i, by) if (h := self.handle(i)) is not None:
                self.extend(*h, by)
            case Purge(queue):
                self.same(lambda: self.ref.purge(queue, self.now), lambda: self.broker.purge(queue))
            case ListDead(queue, limit, offset):
                self.same(
                    lambda: self.ref.list_dead(queue, limit, offset),
                    lambda: self.broker.list_dead_letters(queue, limit=limit, offset=offset),
                    page_view,
                )
            case GetDead(queue, which) if self.ids:
                wanted = self.ids[which % len(self.ids)]
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
    ) -> None:
        """Run one call on both sides and compare results (or exception types)."""
        self.check("result", outcome(ref, view), outcome(real, view))

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
        """Dead letters in full, then drain what is ready in one consumer and compare order."""
        for q in QUEUES:
            self.check(
                f"dead letters of {q!r}",
                page_view(self.ref.list_dead(q, limit=1000)),
                page_view(self.broker.list_dead_letters(q, limit=1000)),
            )
        self.close_consumers()
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

    def close(self) -> None:
        self.close_consumers()
        self.broker.close()


# -------------------------------------------------------------------- the tests
def _cleanup(adapter: str, namespace: str) -> None:
    """Delete a plan's namespace from the shared servers (the fixtures do it per test)."""
    base = adapter.removesuffix(INSTRUMENTED)
    if base == "redis":
        delete_redis_namespace(REDIS_URL, namespace)
    elif base == "postgres":
        from stemlab.brokers.postgres.maintenance import delete_namespaces

        delete_namespaces(POSTGRES_URL, [namespace])


@pytest.mark.parametrize("adapter", adapter_names())
def test_adapter_matches_the_reference(adapter: str, tmp_path: Path) -> None:
    base = adapter.removesuffix(INSTRUMENTED)
    nothing_wait = NOTHING_WAIT.get(base, NOTHING_WAIT_DURABLE)

    @settings(
        max_examples=EXAMPLES,
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
