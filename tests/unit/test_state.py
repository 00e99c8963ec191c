"""QueueState, the pure queue state machine, driven with explicit `now`.

Scenario tests pin each transition; a hypothesis state machine then runs random
sequences of publish/claim/ack/nack/dead_letter/extend/purge/replay/tick against
a small reference model and checks that nothing is lost or duplicated, that
priority/FIFO order and lease expiry match the model, and that counts add up.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

from stemlab import Envelope, LeaseLost, QueueState
from stemlab.core.clock import from_epoch, to_epoch
from tests.unit.state_model import QUEUES, Model, ModelMsg

T0 = 1_700_000_000.0


def env(name: str = "t", queue: str = "q", **fields: object) -> Envelope:
    return Envelope(name=name, queue=queue, **fields)  # type: ignore[arg-type]


def counts(s: QueueState, now: float, queue: str = "q") -> tuple[int, int, int, int]:
    dead = len(s.list_dead(queue, limit=10_000).entries)
    return (
        s.pending_count(queue, now),
        s.inflight_count(queue, now),
        s.delayed_count(queue, now),
        dead,
    )


def names(leases: list) -> list[str]:  # type: ignore[type-arg]
    return [lease.envelope.name for lease in leases]


@pytest.fixture
def s() -> QueueState:
    return QueueState(default_visibility_timeout=10.0)


# ------------------------------------------------------------ order and leases
def test_priority_then_fifo(s: QueueState) -> None:
    for name, prio in [("a", 0), ("b", 5), ("c", 9), ("d", 5), ("e", 0)]:
        s.publish(env(name, priority=prio), T0)
    assert names(s.claim(["q"], "c", T0, 10)) == ["c", "b", "d", "a", "e"]


def test_priority_and_fifo_across_queues(s: QueueState) -> None:
    s.publish(env("q-1", priority=1), T0)
    s.publish(env("r-5", queue="r", priority=5), T0)
    s.publish(env("q-5", priority=5), T0)
    s.publish(env("r-1", queue="r", priority=1), T0)
    assert names(s.claim(["q", "r"], "c", T0, 10)) == ["r-5", "q-5", "q-1", "r-1"]
    assert s.claim(["nothing-here"], "c", T0, 1) == []


def test_claim_respects_limit_and_counts_held(s: QueueState) -> None:
    for i in range(5):
        s.publish(env(f"m{i}"), T0)
    first = s.claim(["q"], "c", T0, 2)
    assert names(first) == ["m0", "m1"]
    assert s.held("c") == 2 and s.held("other") == 0
    assert counts(s, T0) == (3, 2, 0, 0)
    s.ack(first[0].token, T0)
    assert s.held("c") == 1


def test_lease_length_precedence(s: QueueState) -> None:
    s.publish(env("own", visibility_timeout=3.0), T0)
    s.publish(env("claim-default"), T0)
    s.publish(env("state-default"), T0)
    own, claimed = s.claim(["q"], "c", T0, 2, visibility_timeout=5.0)
    (state_default,) = s.claim(["q"], "c", T0, 1)
    assert own.expires_at == T0 + 3.0
    assert claimed.expires_at == T0 + 5.0
    assert state_default.expires_at == T0 + 10.0


def test_delayed_until_due(s: QueueState) -> None:
    s.publish(env("later", not_before=from_epoch(T0 + 5)), T0)
    s.publish(env("past", not_before=from_epoch(T0 - 5)), T0)
    assert counts(s, T0) == (1, 0, 1, 0)
    assert s.next_wakeup() == T0 + 5
    assert names(s.claim(["q"], "c", T0, 5)) == ["past"]
    assert s.claim(["q"], "c", T0 + 4.999, 5) == []
    assert names(s.claim(["q"], "c", T0 + 5, 5)) == ["later"]


def test_delayed_become_ready_in_due_order(s: QueueState) -> None:
    s.publish(env("late", not_before=from_epoch(T0 + 2)), T0)
    s.publish(env("early", not_before=from_epoch(T0 + 1)), T0)
    s.tick(T0 + 3)
    assert names(s.claim(["q"], "c", T0 + 3, 5)) == ["early", "late"]


def test_expiry_redelivers_with_count_plus_one_at_the_tail(s: QueueState) -> None:
    s.publish(env("a", visibility_timeout=2.0, attempt=4), T0)
    s.publish(env("b", priority=0), T0)
    (a1,) = s.claim(["q"], "c1", T0, 1)
    assert s.claim(["q"], "c2", T0 + 1.99, 5)[0].envelope.name == "b"
    assert s.held("c1") == 1
    (a2,) = s.claim(["q"], "c2", T0 + 2, 5)
    assert (a2.envelope, a2.delivery_count) == (a1.envelope, 2)
    assert a2.envelope.attempt == 4 and a2.token != a1.token
    assert s.held("c1") == 0 and s.held("c2") == 2
    with pytest.raises(LeaseLost):
        s.ack(a1.token, T0 + 2)


def test_ack_after_expiry_before_redelivery(s: QueueState) -> None:
    s.publish(env(visibility_timeout=1.0), T0)
    (lease,) = s.claim(["q"], "c", T0, 1)
    assert counts(s, T0 + 5) == (1, 0, 0, 0)
    assert s.held("c") == 0
    s.ack(lease.token, T0 + 5)
    assert counts(s, T0 + 5) == (0, 0, 0, 0)
    assert s.claim(["q"], "c", T0 + 5, 1) == []


def test_stale_and_double_settles_change_nothing(s: QueueState) -> None:
    s.publish(env(visibility_timeout=1.0), T0)
    (old,) = s.claim(["q"], "c1", T0, 1)
    (new,) = s.claim(["q"], "c2", T0 + 1, 1)
    for op in (
        lambda: s.ack(old.token, T0 + 1),
        lambda: s.nack(old.token, T0 + 1),
        lambda: s.nack(old.token, T0 + 1, requeue=False),
        lambda: s.dead_letter(old.token, T0 + 1, "x"),
        lambda: s.extend(old.token, T0 + 1, 5.0),
        lambda: s.ack(999_999, T0 + 1),
    ):
        with pytest.raises(LeaseLost):
            op()
        assert counts(s, T0 + 1) == (0, 1, 0, 0)
    s.ack(new.token, T0 + 1)
    with pytest.raises(LeaseLost):
        s.ack(new.token, T0 + 1)


def test_extend_postpones_and_returns_expiry(s: QueueState) -> None:
    s.publish(env(visibility_timeout=1.0), T0)
    (lease,) = s.claim(["q"], "c", T0, 1)
    assert s.extend(lease.token, T0 + 0.5, 4.0) == T0 + 4.5
    assert s.claim(["q"], "c2", T0 + 4.4, 1) == []
    assert counts(s, T0 + 4.4) == (0, 1, 0, 0)
    (again,) = s.claim(["q"], "c2", T0 + 4.5, 1)
    assert again.delivery_count == 2


def test_extend_after_expiry_releases_to_the_caller(s: QueueState) -> None:
    s.publish(env(visibility_timeout=1.0), T0)
    (lease,) = s.claim(["q"], "c", T0, 1)
    assert s.extend(lease.token, T0 + 3, 2.0, consumer="c") == T0 + 5
    assert counts(s, T0 + 3) == (0, 1, 0, 0) and s.held("c") == 1
    assert s.claim(["q"], "c2", T0 + 4, 1) == []
    s.ack(lease.token, T0 + 4)
    assert s.held("c") == 0 and counts(s, T0 + 4) == (0, 0, 0, 0)


def test_nack_requeue_goes_to_the_tail(s: QueueState) -> None:
    s.publish(env("a"), T0)
    s.publish(env("b"), T0)
    (a,) = s.claim(["q"], "c", T0, 1)
    s.nack(a.token, T0)
    assert counts(s, T0) == (2, 0, 0, 0) and s.held("c") == 0
    got = s.claim(["q"], "c", T0, 2)
    assert [(x.envelope.name, x.delivery_count) for x in got] == [("b", 1), ("a", 2)]


def test_nack_without_requeue_dead_letters(s: QueueState) -> None:
    e = env("a")
    s.publish(e, T0)
    (a,) = s.claim(["q"], "c", T0, 1)
    s.nack(a.token, T0 + 1, requeue=False)
    entry = s.get_dead("q", e.id)
    assert entry is not None and entry.reason == "nack" and entry.envelope == e
    assert to_epoch(entry.dead_at) == T0 + 1
    assert counts(s, T0 + 1) == (0, 0, 0, 1) and s.held("c") == 0


def test_purge_leaves_dead_letters(s: QueueState) -> None:
    for i in range(3):
        s.publish(env(f"m{i}"), T0)
    s.publish(env("later", not_before=from_epoch(T0 + 9)), T0)
    s.publish(env("other", queue="r"), T0)
    dead, leased = s.claim(["q"], "c", T0, 2)
    s.dead_letter(dead.token, T0, "x", {"k": 1})
    assert s.purge("q", T0) == 3
    assert counts(s, T0) == (0, 0, 0, 1) and counts(s, T0, "r") == (1, 0, 0, 0)
    assert s.held("c") == 0
    with pytest.raises(LeaseLost):
        s.ack(leased.token, T0)
    assert s.claim(["q"], "c", T0 + 10, 5) == []


def test_dead_letter_list_get_replay_purge(s: QueueState) -> None:
    ids = []
    for i in range(5):
        e = env(f"m{i}", attempt=2)
        ids.append(e.id)
        s.publish(e, T0)
        (lease,) = s.claim(["q"], "c", T0, 1)
        s.dead_letter(lease.token, T0 + i, f"r{i}")
    page = s.list_dead("q", limit=2)
    assert [e.envelope.name for e in page.entries] == ["m4", "m3"] and page.next_offset == 2
    assert s.list_dead("q", limit=2, offset=4).next_offset is None
    assert s.list_dead("q", limit=5).next_offset is None
    dry = s.replay_dead("q", T0 + 10, limit=2, dry_run=True)
    assert dry.dry_run and [e.envelope.id for e in dry.entries] == ids[:2]
    assert counts(s, T0 + 10) == (0, 0, 0, 5)
    since = s.replay_dead("q", T0 + 10, limit=1, since=T0 + 3)
    assert [e.envelope.name for e in since.entries] == ["m3"]
    delayed = s.replay_dead("q", T0 + 10, limit=1, delay=5.0)
    assert [e.envelope.name for e in delayed.entries] == ["m0"]
    assert counts(s, T0 + 10) == (1, 0, 1, 3)
    got = s.claim(["q"], "c", T0 + 15, 5)
    assert names(got) == ["m3", "m0"]
    assert all(x.envelope.attempt == 2 and x.delivery_count == 1 for x in got)
    assert s.purge_dead("q", since=T0 + 2, limit=1) == 1
    assert [e.envelope.name for e in s.list_dead("q").entries] == ["m4", "m1"]
    assert s.purge_dead("q") == 2 and s.list_dead("q").entries == []


def test_broadcast_hub(s: QueueState) -> None:
    s.subscribe("a", ["ch"])
    s.subscribe("b", ["ch", "other"])
    e = env("note")
    assert s.broadcast("ch", e) == 2
    assert s.broadcast("nobody", e) == 0
    ta, ch, got = s.take_broadcast("a")  # type: ignore[misc]
    assert (ch, got) == ("ch", e)
    assert s.take_broadcast("a") is None
    s.subscribe("late", ["ch"])
    assert s.take_broadcast("late") is None
    assert s.settle_broadcast(ta) == e
    with pytest.raises(LeaseLost):
        s.settle_broadcast(ta)
    tb, _, _ = s.take_broadcast("b")  # type: ignore[misc]
    s.dead_letter_broadcast(tb, T0, "bad")
    assert s.get_dead("q", e.id).reason == "bad"  # type: ignore[union-attr]
    s.unsubscribe("a")
    assert s.broadcast("ch", e) == 2  # b and late
    assert counts(s, T0) == (0, 0, 0, 1)


# ----------------------------------------------------------- property: model
CONSUMERS = ("c1", "c2")
DEFAULT_VT = 1.0


class QueueStateMachine(RuleBasedStateMachine):
    """Random operations on QueueState, mirrored on `Model`."""

    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.s = QueueState(default_visibility_timeout=DEFAULT_VT)
        self.m = Model()
        self.now = T0
        self.published: list[str] = []

    def _snapshot(self) -> tuple[object, ...]:
        return tuple(
            (
                self.s.pending_count(q, self.now),
                self.s.inflight_count(q, self.now),
                self.s.delayed_count(q, self.now),
                len(self.s.list_dead(q, 10_000).entries),
            )
            for q in QUEUES
        ) + tuple(self.s.held(c) for c in CONSUMERS)

    def _stale(self, op: str, *args: object) -> None:
        before = self._snapshot()
        with pytest.raises(LeaseLost):
            getattr(self.s, op)(*args)
        assert self._snapshot() == before

    @initialize(batch=st.lists(st.tuples(st.sampled_from(QUEUES), st.integers(0, 9)), max_size=8))
    def seed(self, batch: list[tuple[str, int]]) -> None:
        for queue, priority in batch:
            self.publish(queue, priority, None, None)

    @rule(
        queue=st.sampled_from(QUEUES),
        priority=st.integers(0, 9),
        delay=st.sampled_from([None, -1.0, 0.0, 0.5, 1.0, 2.5]),
        vt=st.sampled_from([None, 0.25, 2.0]),
    )
    def publish(self, queue: str, priority: int, delay: float | None, vt: float | None) -> None:
        nb = None if delay is None else from_epoch(self.now + delay)
        e = Envelope(name="t", queue=queue, priority=priority, not_before=nb, visibility_timeout=vt)
        self.m.tick(self.now)
        self.s.publish(e, self.now)
        self.m.add(e, self.now)
        self.published.append(e.id)

    @rule(
        target=tokens,
        queues=st.sampled_from([("a",), ("b",), ("a", "b"), ("b", "a")]),
        consumer=st.sampled_from(CONSUMERS),
        limit=st.integers(1, 3),
        vt=st.sampled_from([None, 0.5]),
    )
    def claim(self, queues: tuple[str, ...], consumer: str, limit: int, vt: float | None) -> object:
        self.m.tick(self.now)
        leases = self.s.claim(queues, consumer, self.now, limit, vt)
        expected = []
        for _ in range(limit):
            m = self.m.best(queues)
            if m is None:
                break
            m.deliveries += 1
            m.state, m.consumer, m.token = "leased", consumer, None
            m.expires = self.now + (m.envelope.visibility_timeout or vt or DEFAULT_VT)
            expected.append(m)
        assert [x.envelope.id for x in leases] == [m.envelope.id for m in expected]
        for lease, m in zip(leases, expected, strict=True):
            assert (lease.delivery_count, lease.expires_at) == (m.deliveries, m.expires)
            assert lease.queue == m.envelope.queue and lease.envelope == m.envelope
            m.token = lease.token
        return multiple(*(lease.token for lease in leases))

    @rule(token=tokens)
    def ack(self, token: int) -> None:
        self.m.tick(self.now)
        m = self.m.owner(token)
        if m is None:
            self._stale("ack", token, self.now)
            return
        self.s.ack(token, self.now)
        del self.m.live[m.envelope.id]
        self.m.acked.add(m.envelope.id)

    @rule(token=tokens, requeue=st.booleans())
    def nack(self, token: int, requeue: bool) -> None:
        self.m.tick(self.now)
        m = self.m.owner(token)
        if m is None:
            self._stale("nack", token, self.now, requeue)
            return
        self.s.nack(token, self.now, requeue)
        if not requeue:
            self._to_dlq(m)
            return
        m.token = None
        if m.state == "leased":
            self.m.ready(m)

    @rule(token=tokens)
    def dead_letter(self, token: int) -> None:
        self.m.tick(self.now)
        m = self.m.owner(token)
        if m is None:
            self._stale("dead_letter", token, self.now, "x")
            return
        self.s.dead_letter(token, self.now, "x")
        self._to_dlq(m)

    def _to_dlq(self, m: ModelMsg) -> None:
        del self.m.live[m.envelope.id]
        self.m.dead[m.envelope.queue].append(m.envelope.id)

    @rule(
        token=tokens,
        by=st.sampled_from([0.5, 1.0, 3.0]),
        consumer=st.sampled_from([None, *CONSUMERS]),
    )
    def extend(self, token: int, by: float, consumer: str | None) -> None:
        self.m.tick(self.now)
        m = self.m.owner(token)
        if m is None:
            self._stale("extend", token, self.now, by, consumer)
            return
        assert self.s.extend(token, self.now, by, consumer) == self.now + by
        if m.state != "leased":
            m.state, m.consumer = "leased", consumer
        m.expires = self.now + by

    @rule(queue=st.sampled_from(QUEUES))
    def purge(self, queue: str) -> None:
        self.m.tick(self.now)
        doomed = [i for i, m in self.m.live.items() if m.envelope.queue == queue]
        assert self.s.purge(queue, self.now) == len(doomed)
        for i in doomed:
            del self.m.live[i]
            self.m.purged.add(i)

    @rule(
        queue=st.sampled_from(QUEUES),
        limit=st.integers(0, 3),
        delay=st.sampled_from([None, 1.0]),
        dry_run=st.booleans(),
    )
    def replay(self, queue: str, limit: int, delay: float | None, dry_run: bool) -> None:
        self.m.tick(self.now)
        result = self.s.replay_dead(queue, self.now, limit, None, delay, dry_run)
        picked = self.m.dead[queue][:limit]
        assert [e.envelope.id for e in result.entries] == picked
        if dry_run:
            return
        del self.m.dead[queue][:limit]
        for entry in result.entries:
            nb = from_epoch(self.now + delay) if delay else None
            self.m.add(replace(entry.envelope, not_before=nb), self.now)

    @rule(dt=st.sampled_from([0.25, 0.5, 1.0, 3.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def tick(self) -> None:
        self.s.tick(self.now)
        self.m.tick(self.now)

    @invariant()
    def counts_add_up(self) -> None:
        self.m.tick(self.now)
        for q in QUEUES:
            assert self.s.pending_count(q, self.now) == self.m.count(q, "ready")
            assert self.s.inflight_count(q, self.now) == self.m.count(q, "leased")
            assert self.s.delayed_count(q, self.now) == self.m.count(q, "delayed")
            dead = [e.envelope.id for e in self.s.list_dead(q, 10_000).entries]
            assert dead == self.m.dead[q][::-1]
        for c in CONSUMERS:
            assert self.s.held(c) == self.m.held(c)

    @invariant()
    def nothing_lost_or_duplicated(self) -> None:
        dead = [i for q in QUEUES for i in self.m.dead[q]]
        parts = [set(self.m.live), set(dead), self.m.acked, self.m.purged]
        assert len(dead) == len(set(dead))
        assert set().union(*parts) == set(self.published)
        assert sum(len(p) for p in parts) == len(self.published)

    def teardown(self) -> None:
        """Drain: every live message is delivered exactly once more, nothing else."""
        later = self.now + 1_000
        drained = self.s.claim(QUEUES, "drain", later, 10_000)
        ids = [lease.envelope.id for lease in drained]
        assert len(ids) == len(set(ids))
        assert set(ids) == set(self.m.live)


TestQueueStateMachine = QueueStateMachine.TestCase
TestQueueStateMachine.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
