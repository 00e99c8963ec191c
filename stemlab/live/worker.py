"""The moving parts of a live run: shared run state and the worker slot threads.

`run_live` (in `run.py`, whose docstring is the specification the simulator
copies) owns the producer and the clock; each `Slot` here is one task slot:
a thread with its own consumer that executes deliveries one at a time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import from_epoch
from stemlab.core.envelope import Delivery
from stemlab.errors import LeaseLost
from stemlab.model.protocol import POLL_S, QUEUE, RENEW_FRACTION, retry_delay
from stemlab.model.result import TaskLedger
from stemlab.model.scenario import Scenario
from stemlab.model.workload import Execution, draw_execution

__all__ = ["COUNTERS", "LiveRun", "Slot"]

COUNTERS = (
    "crashes",
    "failures",
    "retries",
    "renewals",
    "lease_lost",
    "strays",
    "worker_errors",
    "expired_skips",
    "max_deliveries",
)
_MAX_ERRORS_KEPT = 20


@dataclass
class LiveRun:
    """What every thread of one live run shares; every ledger call goes through `lock`."""

    scenario: Scenario
    broker: Broker
    exec_rng: np.random.Generator
    t0: float  # epoch seconds at which the scenario started
    total: int
    ledger: TaskLedger = field(default_factory=TaskLedger)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    all_done: threading.Event = field(default_factory=threading.Event)
    resolved: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    errors: list[str] = field(default_factory=list)
    # run_live(app=..., task=...): the registered task, called with the task index, replaces
    # the service-time sleep (None: the synthetic sleep)
    call: Callable[[int], object] | None = None
    services: dict[tuple[str, int], float] = field(default_factory=dict)

    def now(self) -> float:
        """Seconds since the scenario started."""
        return time.time() - self.t0

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counters[key] += n

    def error(self, exc: BaseException) -> None:
        with self.lock:
            self.counters["worker_errors"] += 1
            if len(self.errors) < _MAX_ERRORS_KEPT:
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def enqueued(self, task_id: str, priority: int) -> None:
        with self.lock:
            self.ledger.enqueued(task_id, priority, self.now())

    def delivered(self, task_id: str) -> bool:
        """Record a delivery; False when the message is not one of this run's tasks."""
        with self.lock:
            if task_id not in self.ledger:
                self.counters["strays"] += 1
                return False
            self.ledger.delivered(task_id, self.now())
            return True

    def start(self, task_id: str, attempt: int = 0, delivery_count: int = 1) -> Execution:
        """Draw this execution's plan and record its start.

        With `redelivery_service="same"` a redelivery (delivery_count > 1)
        reuses the service time its message's first execution drew here.
        """
        with self.lock:
            key = (task_id, attempt)
            if self.scenario.redelivery_service == "same" and delivery_count > 1:
                plan = draw_execution(self.scenario, self.exec_rng, self.services.get(key))
            else:
                plan = draw_execution(self.scenario, self.exec_rng)
                self.services[key] = plan.service_s
            self.ledger.started(task_id, self.now())
            return plan

    def finished(self, task_id: str, success: bool) -> None:
        with self.lock:
            self.ledger.finished(task_id, self.now(), success=success)

    def abandoned(self, task_id: str) -> None:
        with self.lock:
            self.ledger.abandoned(task_id)
            self.counters["crashes"] += 1

    def settled(self, task_id: str, outcome: str) -> None:
        """The task was acked or dead-lettered for good; set `all_done` with the last one."""
        with self.lock:
            if outcome == "acked":
                self.ledger.acked(task_id, self.now())
            else:
                self.ledger.dead(task_id, self.now())
            self.resolved.add(task_id)
            if len(self.resolved) >= self.total:
                self.all_done.set()


class Slot(threading.Thread):
    """One task slot: its own consumer (prefetch = the scenario's), one execution at a time."""

    def __init__(self, run: LiveRun, index: int, run_id: str) -> None:
        super().__init__(name=f"stemlab-slot-{index}", daemon=True)
        self.run_state = run
        self.index = index
        self.run_id = run_id
        self.generation = 0
        self.buffer: deque[Delivery] = deque()
        self.renewed: dict[str, float] = {}  # receipt -> lease expiry (epoch s) after a renewal

    # ------------------------------------------------------------- lifecycle
    def _open(self) -> Consumer:
        self.generation += 1
        name = f"{self.run_id}-s{self.index}-g{self.generation}"
        return self.run_state.broker.consume(
            QUEUE, prefetch=self.run_state.scenario.prefetch, consumer=name
        )

    def run(self) -> None:
        state = self.run_state
        consumer = self._open()
        while not state.stop.is_set():
            try:
                self._fill(consumer)
                if self.buffer and self._execute(self.buffer.popleft()):
                    consumer = self._reopen(consumer)  # the worker died: start afresh
            except Exception as exc:
                state.error(exc)
                consumer = self._reopen(consumer)
                state.stop.wait(POLL_S)
        _quietly(consumer.close)

    def _reopen(self, consumer: Consumer) -> Consumer:
        """Close the consumer without settling anything it holds, and open a new one."""
        _quietly(consumer.close)
        self.buffer.clear()
        return self._open()

    # ------------------------------------------------------------- receiving
    def _fill(self, consumer: Consumer) -> None:
        """Take deliveries until `prefetch` are held (blocking only while none is)."""
        state = self.run_state
        while len(self.buffer) < state.scenario.prefetch and not state.stop.is_set():
            d = consumer.get(timeout=0.0 if self.buffer else POLL_S)
            if d is None:
                return
            if state.delivered(d.envelope.id):
                self.buffer.append(d)
            else:  # not one of this run's tasks: settle it and drop it
                with contextlib.suppress(Exception):
                    state.broker.ack(d)

    # ------------------------------------------------------------- executing
    def _execute(self, d: Delivery) -> bool:
        """Run one delivery to its end; True when the worker crashed (consumer must go)."""
        try:
            return self._execute_one(d)
        finally:
            self.renewed.pop(d.receipt, None)

    def _execute_one(self, d: Delivery) -> bool:
        """Refuse it (expired, over max_deliveries), renew it if it waited, then run it."""
        state = self.run_state
        task_id = d.envelope.id
        refused = self._refuse(d)
        if refused is not None:
            return False
        sc = state.scenario
        waited = self._left(d) < (1 - RENEW_FRACTION) * sc.visibility_timeout
        if sc.lease_renewal and waited and not self._renew(d):  # renew one that waited
            return False
        plan = state.start(task_id, d.envelope.attempt, d.delivery_count)
        if plan.outcome == "crash":
            if not self._work(d, plan.crash_after_s):
                return False  # the run is over before the crash
            state.abandoned(task_id)
            return True
        if state.call is not None:
            ran = self._work_call(d, state.call)
            if ran is None:
                return False  # the run is over; leave the delivery as it is
            ok = ran and plan.outcome == "ok"
        else:
            if not self._work(d, plan.service_s):
                return False  # the run is over; leave the delivery as it is
            ok = plan.outcome == "ok"
        if ok:
            state.finished(task_id, success=True)
            if self._settle(state.broker.ack, d):
                state.settled(task_id, "acked")
            return False
        state.finished(task_id, success=False)
        state.count("failures")
        self._fail(d)
        return False

    def _left(self, d: Delivery) -> float:
        """Seconds left on the delivery's lease by this host's clock (inf without a lease)."""
        expires = self.renewed.get(d.receipt)
        if expires is None:
            if d.lease_expires_at is None:
                return float("inf")
            expires = d.lease_expires_at.timestamp()
        return expires - time.time()

    def _refuse(self, d: Delivery) -> str | None:
        """Why this delivery is not executed: "expired" (its lease ran out while it waited in
        the buffer; the broker redelivers it) or "max-deliveries" (dead-lettered); None: run it.
        """
        state = self.run_state
        if self._left(d) <= 0:
            state.count("expired_skips")
            return "expired"
        limit = state.scenario.max_deliveries
        if limit is not None and d.delivery_count > limit:
            state.count("max_deliveries")
            call = lambda x: state.broker.dead_letter(x, reason="max-deliveries")  # noqa: E731
            if self._settle(call, d):
                state.settled(d.envelope.id, "dead")
            return "max-deliveries"
        return None

    def _fail(self, d: Delivery) -> None:
        """The runtime retry path: retry later under the same id, or dead-letter for good."""
        state = self.run_state
        env = d.envelope
        delay = retry_delay(env.attempt)
        if delay is None:
            dead = self._settle(lambda x: state.broker.dead_letter(x, reason="failed"), d)
            if dead:
                state.settled(env.id, "dead")
            return
        retry = replace(env, attempt=env.attempt + 1, not_before=from_epoch(time.time() + delay))
        state.broker.publish(retry)
        state.count("retries")
        self._settle(state.broker.ack, d)

    def _settle(self, call: Callable[[Delivery], None], d: Delivery) -> bool:
        """Ack or dead-letter; a LeaseLost (someone else has it now) is counted, not fatal."""
        try:
            call(d)
        except LeaseLost:
            self.run_state.count("lease_lost")
            return False
        return True

    def _work(self, d: Delivery, seconds: float) -> bool:
        """Spend `seconds` working (sleeping), renewing the lease if asked; False if stopped.

        Renewals happen at k * RENEW_FRACTION * visibility_timeout after the start
        (k = 1, 2, ...) while the work lasts, each extending by the visibility timeout.
        """
        state = self.run_state
        sc = state.scenario
        start = time.monotonic()
        end = start + seconds
        if not sc.lease_renewal:
            return not state.stop.wait(max(0.0, seconds))
        interval = RENEW_FRACTION * sc.visibility_timeout
        next_renew = start + interval
        renewing = True
        while True:
            now = time.monotonic()
            wake = min(end, next_renew) if renewing else end
            if now >= end:
                return True
            if state.stop.wait(max(0.0, wake - now)):
                return False
            if renewing and next_renew < end and time.monotonic() >= next_renew:
                renewing = self._renew(d)
                for held in tuple(self.buffer):  # the prefetched ones too
                    if self._left(held) > 0:
                        self._renew(held)
                next_renew += interval

    def _work_call(self, d: Delivery, call: Callable[[int], object]) -> bool | None:
        """Run the real task (in a helper thread) while renewing the lease as `_work` does.

        True when it returned, False when it raised (the fail path), None when the
        run ended first (the helper thread is then abandoned, like a crashed worker).
        """
        state = self.run_state
        sc = state.scenario
        done = threading.Event()
        raised: list[BaseException] = []

        def target() -> None:
            try:
                call(int(d.envelope.args.get("i", -1)))
            except Exception as exc:
                raised.append(exc)
            finally:
                done.set()

        threading.Thread(target=target, name=f"{self.name}-task", daemon=True).start()
        interval = RENEW_FRACTION * sc.visibility_timeout
        renewing = sc.lease_renewal
        while not done.wait(interval if renewing else POLL_S):
            if state.stop.is_set():
                return None
            if renewing:
                renewing = self._renew(d)
        if raised:
            state.error(raised[0])
        return not raised

    def _renew(self, d: Delivery) -> bool:
        """Extend `d`'s lease by the visibility timeout; False (counted) on LeaseLost."""
        try:
            expires = self.run_state.broker.extend_lease(
                d, self.run_state.scenario.visibility_timeout
            )
            self.renewed[d.receipt] = expires.timestamp()
        except LeaseLost:
            self.run_state.count("lease_lost")
            return False
        self.run_state.count("renewals")
        return True


def _quietly(call: Callable[[], object]) -> None:
    """Best-effort cleanup call: a failure here must not end the slot."""
    with contextlib.suppress(Exception):
        call()
