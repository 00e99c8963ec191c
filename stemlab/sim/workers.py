"""The producer and the task slots of a simulated run, following `run_live`'s specification.

`stemlab.live.run`'s docstring specifies the worker behaviour; this
module copies it step by step in simulated time. Producer: at each arrival
the task is recorded as enqueued and published. Slots: `scenario.workers`
of them, each with its own consumer of `scenario.prefetch`; before each
execution a slot takes deliveries until it holds `prefetch` (blocking only
while it holds none) and then executes the oldest: ok -> ack; fail -> retry
copy + ack, or dead letter when retries are used up; crash -> nothing is
settled, the consumer is dropped and the slot opens a fresh one. LeaseLost
on a settle or renewal is counted, never fatal. The run ends when every task
is acked or dead.

Before executing a delivery the slot dead-letters it ("max-deliveries") when
its delivery count exceeds `scenario.max_deliveries`, gives it up unexecuted
when its lease has already run out while it waited in the buffer (counted in
`expired_skips`; the broker redelivers it), and, with lease renewal, extends
a lease that waited in the buffer longer than one heartbeat. Heartbeats
extend every lease the slot holds (the one being worked on and the buffered
ones). A lease ends AT its expiry instant: a settle at exactly that instant
comes after the broker's own expiry handling (an idle consumer gets the
message first), whatever order simpy happens to hold the two events in.

Like run_live's slots, an idle slot calls `get(timeout=GET_TIMEOUT)` again
and again; that decides which call a "get" row belongs to, how many empty
gets there were, and caps a polling broker's effective poll interval (it
polls at the start of every call). The common path (get, work, ack) is
written out in `slot` because it runs once per task and sets the speed.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from stemlab.core.clock import from_epoch
from stemlab.core.envelope import Envelope
from stemlab.core.state import Lease
from stemlab.errors import LeaseLost
from stemlab.model.protocol import POLL_S, RENEW_FRACTION, retry_delay
from stemlab.model.result import TaskLedger
from stemlab.model.scenario import Scenario
from stemlab.model.workload import Workload
from stemlab.sim.broker import SIM_QUEUE, EnvelopeFactory, SimBroker, fixed_latency
from stemlab.sim.draws import ExecutionDraw

__all__ = ["COUNTERS", "GET_TIMEOUT", "SimRun"]

GET_TIMEOUT = POLL_S  # how long one idle get() blocks in run_live's slots
COUNTERS = (
    "crashes",
    "failures",
    "retries",
    "renewals",
    "lease_lost",
    "empty_gets",
    "expired_skips",
    "max_deliveries",
)

Proc = Generator[simpy.Event, Any, Any]


class SimRun:
    """One simulated run: the broker model, the ledger and the processes that drive them."""

    def __init__(
        self,
        scenario: Scenario,
        broker: SimBroker,
        workload: Workload,
        exec_rng: np.random.Generator,
        ids: list[str],
    ) -> None:
        self.scenario = scenario
        self.env = broker.env
        self.broker = broker
        self.workload = workload
        self.exec_rng = exec_rng
        self.ids = ids
        self.ledger = TaskLedger()
        self.make_envelope = EnvelopeFactory()
        self.resolved: set[str] = set()
        self.finished = self.env.event()
        self.counters = dict.fromkeys(COUNTERS, 0)
        # first service time per message, keyed by the identity of its envelope (a
        # redelivery hands back the very same object, a retry is a new one; Envelope is
        # unhashable). The value keeps the envelope alive, so no id is ever reused; an
        # ack drops the entry, so the map holds only messages still in play.
        self.services: dict[int, tuple[Envelope, float]] = {}
        self._procs: list[Proc] = []

    def start(self) -> None:
        """Register the producer and every slot with the environment."""
        self._procs = [self.producer()] + [self.slot(i) for i in range(self.scenario.workers)]
        for proc in self._procs:
            self.env.process(proc)

    def close(self) -> None:
        """End the suspended processes, so the run's objects are freed without the cyclic GC."""
        for proc in self._procs:
            proc.close()
        self._procs = []

    # ------------------------------------------------------------ producer
    def producer(self) -> Proc:
        """Publish task i at arrivals[i] (later if the previous publish is still running)."""
        env, broker, make, idle = self.env, self.broker, self.make_envelope, self.broker.idle
        publish, latency, ops = broker.state.publish, broker.latency["publish"], broker.ops
        enqueued, timeout, fixed = self.ledger.enqueued, env.timeout, fixed_latency(latency)
        arrivals = self.workload.arrivals.tolist()
        priorities = self.workload.priorities.tolist()
        levels = {p: broker.level(p) for p in set(priorities)}  # the priority the broker keeps
        delays = self.workload.delays.tolist()
        harness = broker.host.harness if broker.host is not None else None
        for i, task_id in enumerate(self.ids):
            start = env.now
            wait = arrivals[i] - start
            if wait > 0:
                yield timeout(wait)
                start = env.now
            if harness is not None and (own := harness("producer")):  # building the task
                yield timeout(own)
                start = env.now
            prio = priorities[i]
            enqueued(task_id, prio, start)
            delay = delays[i]
            not_before = from_epoch(start + delay) if delay > 0 else None
            envelope = make(task_id, i, levels[prio], from_epoch(start), not_before)
            lat = latency() if fixed is None else fixed
            if lat:
                yield timeout(lat)
                publish(envelope, env.now)
            else:
                publish(envelope, start)
            if idle:
                broker.published(not_before is not None)
            if ops is not None:
                ops.append(
                    (start, "publish", SIM_QUEUE, task_id, envelope.priority, lat, True, None,
                     None, None)
                )  # fmt: skip

    # ------------------------------------------------------------ slots
    def slot(self, index: int) -> Proc:
        """One task slot: fill its prefetch, execute the oldest delivery, settle; forever.

        The get / work / ack path is written out with its names bound up front
        (it runs once per task and sets the simulator's speed); every rarer
        branch (polling, prefetch top-up, refusals, renewals, failures, crashes)
        goes through the helper methods below.
        """
        env, broker, ledger, scenario = self.env, self.broker, self.ledger, self.scenario
        state, queues, ops, idle = broker.state, broker.queues, broker.ops, broker.idle
        claim, ack, timeout = state.claim, state.ack, env.timeout
        delivered, started, finished = ledger.delivered, ledger.started, ledger.finished
        claim_latency, ack_latency = broker.latency["claim"], broker.latency["ack"]
        claim_fixed, ack_fixed = fixed_latency(claim_latency), fixed_latency(ack_latency)
        vt, sweep, prefetch = broker.visibility_timeout, broker.sweep, scenario.prefetch
        blocking, resolved, total = broker.blocking, self.resolved, len(self.ids)
        services, plan = self.services, ExecutionDraw(scenario, self.exec_rng)
        wakeup, overshoot = broker.wakeup, broker.overshoot
        harness = broker.host.harness if broker.host is not None else None
        renewing, step = scenario.lease_renewal, RENEW_FRACTION * broker.visibility_timeout
        max_deliveries = scenario.max_deliveries or math.inf
        same = scenario.redelivery_service == "same"
        generation = 0
        consumer = self._open(index, generation)
        buffer: deque[Lease] = deque()
        while True:
            if not buffer:  # a blocking get
                start = env.now
                if blocking:
                    leases = claim(
                        queues, consumer, start, 1, broker.lease_for(start, vt) if sweep else vt
                    )
                    if leases:
                        lease = leases[0]
                        if idle:
                            broker.arm()
                        granted = start
                    else:
                        lease = yield broker.wait(consumer)
                        granted = env.now
                        if wakeup is not None:  # the idle consumer still has to wake up
                            yield timeout(wakeup())
                else:
                    lease, granted = yield from self._poll(consumer, start)
                lat = claim_latency() if claim_fixed is None else claim_fixed
                if lat:
                    yield timeout(lat)
                now = env.now
                envelope = lease.envelope
                if (granted - start) / GET_TIMEOUT >= 1.0:  # idle get() calls timed out first
                    self._received(lease, consumer, start, granted)
                else:  # `_received`, written out
                    delivered(envelope.id, now)
                    if ops is not None:
                        ops.append(
                            (start, "get", SIM_QUEUE, envelope.id, envelope.priority, now - start,
                             True, None, consumer, lease.delivery_count)
                        )  # fmt: skip
                buffer.append(lease)
            if prefetch > 1 and len(buffer) < prefetch:
                yield from self._top_up(consumer, buffer)
            lease = buffer.popleft()
            if harness is not None and (own := harness("worker")):  # recording, drawing
                yield timeout(own)
            now = env.now
            if lease.expires_at <= now or lease.delivery_count > max_deliveries:
                yield from self._refuse(lease, consumer)
                continue
            if renewing and lease.expires_at - now < vt - step:
                renewed = yield from self._extend(lease, consumer)  # it waited in the buffer
                if renewed is None:
                    continue
                lease = renewed
                now = env.now

            envelope = lease.envelope
            task_id = envelope.id
            if same and lease.delivery_count > 1:
                first = services.get(id(envelope))
                outcome, service, work = plan(first[1] if first else None)
            else:
                outcome, service, work = plan(None)
                if same:  # a redelivery carries this very envelope object
                    services[id(envelope)] = (envelope, service)
            started(task_id, now)
            if overshoot is not None and work > 0:  # a live worker wakes late
                work += overshoot()
            if renewing:
                yield from self._work_renewing(lease, consumer, work, buffer)
            elif work > 0:
                yield timeout(work)

            if outcome == "ok":
                start = env.now
                finished(task_id, start, success=True)
                lat = ack_latency() if ack_fixed is None else ack_fixed
                if lat:
                    yield timeout(lat)
                    now = env.now
                else:
                    now = start
                error: str | None = None
                if now >= lease.expires_at:
                    broker.expire()  # the broker's expiry comes first at the same instant
                try:
                    ack(lease.token, now)
                except LeaseLost:  # the lease expired and another delivery took it
                    error = "LeaseLost"
                    self.counters["lease_lost"] += 1
                else:
                    ledger.acked(task_id, now)
                    resolved.add(task_id)
                    if same:  # settled: no redelivery can follow
                        services.pop(id(envelope), None)
                if ops is not None:
                    ops.append(
                        (start, "ack", SIM_QUEUE, task_id, envelope.priority, lat,
                         error is None, error, consumer, lease.delivery_count)
                    )  # fmt: skip
            elif outcome == "fail":
                finished(task_id, env.now, success=False)
                self.counters["failures"] += 1
                yield from self._fail(lease, consumer)
            else:  # crash: the worker dies holding its deliveries; they wait for their leases
                ledger.abandoned(task_id)
                self.counters["crashes"] += 1
                buffer.clear()
                generation += 1
                consumer = self._open(index, generation)
                continue
            if len(resolved) >= total and not self.finished.triggered:
                self.finished.succeed()

    def _check_done(self) -> None:
        if len(self.resolved) >= len(self.ids) and not self.finished.triggered:
            self.finished.succeed()

    def _refuse(self, lease: Lease, consumer: str) -> Proc:
        """Do not execute a delivery: over `max_deliveries` (dead-letter it) or already expired."""
        if lease.expires_at <= self.env.now:  # the broker takes it back; someone redoes it
            self.counters["expired_skips"] += 1
            return
        self.counters["max_deliveries"] += 1
        if (yield from self._settle("dead_letter", lease, consumer, reason="max-deliveries")):
            self.ledger.dead(lease.envelope.id, self.env.now)
            self.resolved.add(lease.envelope.id)
            self._check_done()

    def _extend(self, lease: Lease, consumer: str) -> Generator[simpy.Event, Any, Lease | None]:
        """Renew a lease that waited in the buffer, now (a heartbeat before it starts).

        The call's latency is paid before the execution starts; None: LeaseLost.
        """
        env, broker = self.env, self.broker
        start = env.now
        lat = broker.latency["extend"]()
        renewed = self._renew(lease, consumer, start, lat)
        if lat:
            yield env.timeout(lat)
        return renewed

    def _open(self, index: int, generation: int) -> str:
        """`consume` under a fresh consumer name (a subscription: no latency is modelled)."""
        name = f"s{index}-g{generation + 1}"
        self.broker.record(self.env.now, "consume", None, None, 0.0, consumer=name)
        return name

    def _received(self, lease: Lease, consumer: str, start: float, granted: float) -> None:
        """A delivery reached the slot: ledger "delivered" and the "get" row of its call."""
        now = self.env.now
        envelope = lease.envelope
        self.ledger.delivered(envelope.id, now)
        calls = int((granted - start) / GET_TIMEOUT)  # idle get() calls that timed out first
        if calls:
            self.counters["empty_gets"] += calls
            start += calls * GET_TIMEOUT
        ops = self.broker.ops
        if ops is not None:
            ops.append(
                (start, "get", SIM_QUEUE, envelope.id, envelope.priority, now - start, True,
                 None, consumer, lease.delivery_count)
            )  # fmt: skip

    def _poll(self, consumer: str, start: float) -> Proc:
        """Wait for a delivery from a polling broker; returns (lease, instant of the claim).

        The broker is asked at the start of each get call and every poll
        interval during it; each ask costs a claim latency.
        """
        env, broker = self.env, self.broker
        state, latency, poll = broker.state, broker.latency["claim"], broker.poll_interval
        call_ends = start + GET_TIMEOUT
        broker.polling += 1  # idle: counted by the host model's publish law
        while True:
            now = env.now
            vt = broker.lease_for(now, broker.visibility_timeout)
            leases = state.claim(broker.queues, consumer, now, 1, vt)
            if leases:
                broker.arm()
                broker.polling -= 1
                return leases[0], now
            answered = now + latency()
            ask = answered + poll
            if ask >= call_ends:  # this call times out; the next one asks at once
                ask = max(call_ends, answered)
                call_ends = ask + GET_TIMEOUT
            yield env.timeout(ask - now)

    def _top_up(self, consumer: str, buffer: deque[Lease]) -> Proc:
        """Non-blocking gets until `prefetch` deliveries are held or none is ready."""
        env, broker = self.env, self.broker
        state, latency, prefetch = broker.state, broker.latency["claim"], self.scenario.prefetch
        while len(buffer) < prefetch:
            start = env.now
            leases: list[Lease] = []
            if state.held(consumer) < prefetch:  # the broker-side prefetch cap
                vt = broker.lease_for(start, broker.visibility_timeout)
                leases = state.claim(broker.queues, consumer, start, 1, vt)
            lat = latency()
            if lat:
                yield env.timeout(lat)
            if not leases:
                self.counters["empty_gets"] += 1
                return
            broker.arm()
            buffer.append(leases[0])
            self._received(leases[0], consumer, start, start)

    def _work_renewing(
        self, lease: Lease, consumer: str, work: float, buffer: deque[Lease]
    ) -> Proc:
        """Work while a heartbeat extends the leases at k * RENEW_FRACTION * vt (k = 1, 2, ...).

        The heartbeat runs beside the work, so its latency does not delay the
        task; an extension takes effect at the heartbeat instant (when the
        call is sent). Each heartbeat renews the lease being worked on and
        every lease waiting in the slot's prefetch buffer.
        """
        env, broker = self.env, self.broker
        step = RENEW_FRACTION * broker.visibility_timeout
        latency = broker.latency["extend"]
        left = work
        live: Lease | None = lease
        while left > step:
            yield env.timeout(step)
            left -= step
            now = env.now
            if live is not None:
                live = self._renew(live, consumer, now, latency())
            for i, held in enumerate(buffer):
                if held.expires_at > now:  # an expired one is refused when its turn comes
                    renewed = self._renew(held, consumer, now, latency())
                    buffer[i] = renewed if renewed is not None else held
        if left > 0:
            yield env.timeout(left)

    def _renew(self, lease: Lease, consumer: str, now: float, lat: float) -> Lease | None:
        """`extend` by the visibility timeout at `now`, recorded; the renewed lease, or None."""
        broker = self.broker
        vt = broker.visibility_timeout
        renewed: Lease | None = None
        try:
            expires = broker.state.extend(lease.token, now, broker.lease_for(now, vt), consumer)
            ok, error = True, None
            self.counters["renewals"] += 1
            renewed = lease._replace(expires_at=expires)
        except LeaseLost:
            ok, error = False, "LeaseLost"
            self.counters["lease_lost"] += 1
        broker.arm()
        broker.record(
            now, "extend_lease", lease.envelope.id, lease.envelope.priority, lat,
            ok, error, consumer, lease.delivery_count,
        )  # fmt: skip
        return renewed

    def _settle(self, op: str, lease: Lease, consumer: str, **kwargs: Any) -> Proc:
        """ack / dead_letter through the state machine after the call's latency."""
        env, broker = self.env, self.broker
        start = env.now
        lat = broker.latency[op]()
        if lat:
            yield env.timeout(lat)
        if env.now >= lease.expires_at:
            broker.expire()  # the broker's expiry comes first at the same instant
        try:
            getattr(broker.state, op)(lease.token, env.now, **kwargs)
            ok, error = True, None
        except LeaseLost:
            ok, error = False, "LeaseLost"
            self.counters["lease_lost"] += 1
        envelope = lease.envelope
        broker.record(
            start, op, envelope.id, envelope.priority, lat, ok, error, consumer,
            lease.delivery_count,
        )  # fmt: skip
        return ok

    def _fail(self, lease: Lease, consumer: str) -> Proc:
        """The runtime retry path: republish with attempt+1 after a backoff, or dead-letter."""
        env, broker = self.env, self.broker
        envelope = lease.envelope
        backoff = retry_delay(envelope.attempt)
        if backoff is None:
            if (yield from self._settle("dead_letter", lease, consumer, reason="failed")):
                self.ledger.dead(envelope.id, env.now)
                self.resolved.add(envelope.id)
            return
        start = env.now
        copy = self.make_envelope.retry(envelope, from_epoch(start + backoff))
        lat = broker.latency["publish"]()
        if lat:
            yield env.timeout(lat)
        broker.state.publish(copy, env.now)
        broker.published(True)
        broker.record(start, "publish", envelope.id, envelope.priority, lat)
        self.counters["retries"] += 1
        yield from self._settle("ack", lease, consumer)
