"""A broker in simpy time: the shared `QueueState` plus a profile's latency and pickup model.

Delivery semantics (priorities, delays, leases, fencing, dead letters) are all
the state machine's; this module only decides *when* it is called:

- each call costs a draw from its latency distribution. Publish, ack, nack,
  dead_letter and extend take effect when the call completes; a claim takes
  effect when the broker grants it and the delivery reaches the consumer one
  claim latency later.
- pickup: a blocking (push / notify) broker hands a ready message to the
  longest-waiting idle consumer at once, and that consumer gets it one
  wake-up delay plus one claim latency later (the wake-up delay is the one
  calibration measures and stores in `profile.meta["wakeup"]`: notification
  and thread wake-up beyond a claim; none when a profile has no such
  measurement, e.g. `ideal`); with a polling broker an idle consumer asks
  again every `poll_interval`.
- reclaim: with a sweep every `reclaim_interval` s an expired lease is only
  noticed at the next sweep; this is modelled by ending each lease on the
  sweep grid, which is exactly when such a broker would find it.
- host (only with a profile's `host` section): every call also queues for
  the client lock, the broker's serialisation point and the cores, and
  publish depends on how many consumers are idle (`stemlab.sim.host`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
import simpy

from stemlab.core.envelope import Envelope
from stemlab.core.state import QueueState
from stemlab.model.distributions import Constant, Distribution, Empirical
from stemlab.model.profile import OPS, BrokerProfile
from stemlab.model.protocol import QUEUE, RETRY_MAX, TASK_NAME
from stemlab.sim.host import SimHost

__all__ = [
    "SIM_QUEUE",
    "EnvelopeFactory",
    "LatencyDraw",
    "SimBroker",
    "fixed_latency",
    "wakeup_distribution",
]

SIM_QUEUE = QUEUE  # the queue run_live uses ("scenario")
_BLOCK = 2048  # latency draws fetched per refill


class LatencyDraw:
    """Draws of one operation's latency, fetched in blocks (a constant costs nothing)."""

    __slots__ = ("_buf", "_dist", "_i", "_rng", "const")

    def __init__(self, dist: Distribution, rng: np.random.Generator) -> None:
        self._dist = dist
        self._rng = rng
        self.const: float | None = dist.value if isinstance(dist, Constant) else None
        self._buf: list[float] = []
        self._i = 0

    def __call__(self) -> float:
        if self.const is not None:
            return self.const
        if self._i >= len(self._buf):
            self._buf = self._dist.sample_many(self._rng, _BLOCK).tolist()
            self._i = 0
        value = self._buf[self._i]
        self._i += 1
        return float(value)


def fixed_latency(draw: object) -> float | None:
    """The constant a latency draw always returns (None: it varies, or it is not a `LatencyDraw`).

    The hot paths skip the call for a constant; a latency wrapped by another
    model (any other callable) is always called.
    """
    return draw.const if isinstance(draw, LatencyDraw) else None


class EnvelopeFactory:
    """The envelopes run_live publishes, built without re-validating each one.

    Every field except id, args, priority, not_before, attempt and
    enqueued_at is copied from one template validated the normal way (name
    "stemlab.task", queue "scenario", max_retries RETRY_MAX); the others are
    produced by the simulator itself (non-empty ids, priorities 0..9, aware
    instants, JSON args), so the result equals what `Envelope(...)` builds at
    a tenth of the cost. The lease length is not stored on the envelope: the
    broker model passes it at claim time (see `SimBroker.lease_for`).
    """

    def __init__(self) -> None:
        template = Envelope(name=TASK_NAME, queue=SIM_QUEUE, id="template", max_retries=RETRY_MAX)
        self._fields = dict(template.__dict__)

    def __call__(
        self,
        task_id: str,
        index: int,
        priority: int,
        enqueued_at: datetime,
        not_before: datetime | None = None,
    ) -> Envelope:
        env = object.__new__(Envelope)
        data = env.__dict__
        data.update(self._fields)
        data["id"] = task_id
        data["args"] = {"i": index}
        data["priority"] = priority
        data["enqueued_at"] = enqueued_at
        data["not_before"] = not_before
        return env

    @staticmethod
    def retry(envelope: Envelope, not_before: datetime) -> Envelope:
        """`replace(envelope, attempt=attempt + 1, not_before=not_before)`, unvalidated."""
        env = object.__new__(Envelope)
        data = env.__dict__
        data.update(envelope.__dict__)
        data["attempt"] = envelope.attempt + 1
        data["not_before"] = not_before
        return env


_WAKE_GRID = 200  # points of the inverse CDF rebuilt from the stored wake-up quantiles


def wakeup_distribution(profile: BrokerProfile) -> Distribution | None:
    """The idle-consumer wake-up delay calibration measured (`meta["wakeup"]`), or None.

    Calibration stores quantiles of (idle pickup after publish - median claim):
    p50, p95, p99 and max. They are joined into a piecewise-linear inverse CDF
    from 0 (at probability 0) through each stored quantile, resampled on a
    200-point grid; the negative part (a pickup quicker than the median claim)
    is clipped to 0 because the claim latency already covers it.
    """
    info = profile.meta.get("wakeup") if isinstance(profile.meta, dict) else None
    if not isinstance(info, dict) or not info.get("n"):
        return None
    probs, values = [0.0], [0.0]
    for key, prob in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0)):
        value = info.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            probs.append(prob)
            values.append(max(float(value), values[-1], 0.0))
    if len(probs) < 2 or values[-1] <= 0:
        return None
    grid = (np.arange(_WAKE_GRID) + 0.5) / _WAKE_GRID
    return Empirical(np.interp(grid, probs, values).tolist())


class SimBroker:
    """The queue state machine driven in simpy time, with the profile's costs."""

    def __init__(
        self,
        env: simpy.Environment,
        profile: BrokerProfile,
        rng: np.random.Generator,
        *,
        visibility_timeout: float,
        record_ops: bool = True,
        wake_rng: np.random.Generator | None = None,
        work_rng: np.random.Generator | None = None,
    ) -> None:
        self.env = env
        self.profile = profile
        self.state = QueueState(visibility_timeout)
        self.queues = (SIM_QUEUE,)
        self.visibility_timeout = visibility_timeout
        self.latency: dict[str, Callable[[], float]] = {
            op: LatencyDraw(profile.latency[op], rng) for op in OPS
        }
        self.blocking = profile.pickup == "blocking"
        self.poll_interval = profile.poll_interval or 0.0
        self.sweep = profile.reclaim_interval
        self.sweep_phase = float(rng.uniform(0.0, self.sweep)) if self.sweep else 0.0
        self.levels = profile.priority_levels
        wake = wakeup_distribution(profile) if self.blocking else None
        self.wakeup = LatencyDraw(wake, wake_rng or rng) if wake is not None else None
        self.idle: deque[tuple[simpy.Event, str]] = deque()
        self.polling = 0  # consumers of a polling broker waiting in get (SimRun._poll)
        # --- host model (stemlab.sim.host): calls also queue for cores and locks
        self.host: SimHost | None = None
        self.overshoot: Callable[[], float] | None = None  # how late a live worker's work ends
        if profile.host is not None:
            late = profile.host.work_overshoot
            if late is not None:
                self.overshoot = LatencyDraw(late, work_rng or rng)
            host = profile.host
            self.host = SimHost(
                env,
                host,
                lambda: len(self.idle) + self.polling,
                lambda: self.state.pending_count(SIM_QUEUE, env.now) > 0,
            )
            alone, loaded = host.publish_unwatched, host.ack_loaded
            self.latency = self.host.wrap_all(
                self.latency,
                LatencyDraw(alone, rng) if alone is not None else None,
                LatencyDraw(loaded, rng) if loaded is not None else None,
            )
        # --- end host model
        self._timer_at = math.inf
        self.ops: list[tuple[Any, ...]] | None = [] if record_ops else None

    # ------------------------------------------------------------ modelling
    def level(self, priority: int) -> int:
        """The priority a broker with fewer than 10 levels actually stores."""
        return priority if self.levels == 10 else priority * self.levels // 10

    def lease_for(self, now: float, by: float) -> float:
        """Lease length that ends when this broker notices the expiry (sweep grid or exact)."""
        sweep = self.sweep
        if sweep is None:
            return by
        phase = self.sweep_phase
        due = math.ceil((now + by - phase) / sweep) * sweep + phase
        return max(due - now, by)

    def record(
        self,
        ts: float,
        op: str,
        task_id: str | None,
        priority: int | None,
        duration: float,
        ok: bool = True,
        error: str | None = None,
        consumer: str | None = None,
        delivery_count: int | None = None,
    ) -> None:
        """One `.ops` row (kept as tuples; the frame is built once at the end)."""
        if self.ops is not None:
            row = (
                ts,
                op,
                SIM_QUEUE,
                task_id,
                priority,
                duration,
                ok,
                error,
                consumer,
                delivery_count,
            )
            self.ops.append(row)

    # ------------------------------------------------------------ pickup
    def published(self, delayed: bool) -> None:
        """After a publish: hand ready work to idle consumers, or arm a timer for a delay."""
        if self.idle:
            if delayed:
                self.arm()
            else:
                self.dispatch()

    def wait(self, consumer: str) -> simpy.Event:
        """Park an idle consumer of a blocking broker; the event's value is its lease."""
        event = self.env.event()
        self.idle.append((event, consumer))
        self.arm()
        return event

    def dispatch(self) -> None:
        """Give each waiting consumer (longest idle first) a lease while messages are ready."""
        idle = self.idle
        state = self.state
        now = self.env.now
        vt = (
            self.visibility_timeout
            if self.sweep is None
            else self.lease_for(now, self.visibility_timeout)
        )
        while idle:
            event, consumer = idle[0]
            leases = state.claim(self.queues, consumer, now, 1, vt)
            if not leases:
                break
            idle.popleft()
            event.succeed(leases[0])
        self.arm()

    def expire(self) -> None:
        """Hand messages whose leases end now to idle consumers before a settle at this instant.

        A lease ends AT its expiry instant (docs/contract.md); simpy orders
        simultaneous events by insertion, so a worker's ack at exactly the
        expiry calls this first to make the broker's expiry win every time.
        """
        if self.idle:
            self.dispatch()

    def arm(self) -> None:
        """Make sure a blocking broker wakes its idle consumers at the next due/expiry instant."""
        if not self.idle:
            return
        wake = self.state.next_wakeup()
        if wake is None or wake >= self._timer_at:
            return
        self._timer_at = wake
        timer = self.env.timeout(max(0.0, wake - self.env.now))
        timer.callbacks.append(self._on_timer)

    def _on_timer(self, _event: simpy.Event) -> None:
        if self.env.now >= self._timer_at:
            self._timer_at = math.inf
        self.dispatch()

    # ------------------------------------------------------------ status
    def empty(self) -> bool:
        """Nothing ready, delayed or leased is left in the queue."""
        state, now, queue = self.state, self.env.now, SIM_QUEUE
        return (
            state.pending_count(queue, now)
            + state.inflight_count(queue, now)
            + state.delayed_count(queue, now)
        ) == 0
