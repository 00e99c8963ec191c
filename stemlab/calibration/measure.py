"""The live runs behind `calibrate`: idle pickup, a loaded queue, and leases left to expire.

Every call goes through an `InstrumentedBroker`, and each latency is read
from its records (perf-counter nanoseconds), so calibration measures the
same calls, the same way, as `run_live` does. Three phases on the queue
`stemlab.calibrate`, purged before and after:

1. idle: `listeners` consumers wait in `get`; messages are published one at a
   time, at a random instant after the previous one was acked, so the
   consumers are idle and the publish falls anywhere in a polling cycle.
   Gives publish (with consumers attached, as in a real run), ack, and the
   idle pickup: publish start -> `get` returned.
2. loaded: the queue is filled one publish at a time with no consumer
   attached (publish without anyone to wake, kept for reference), then one
   consumer drains it, so every `get` finds work ready (the loaded pickup,
   i.e. the claim round trip); along the way it extends, nacks and
   dead-letters some deliveries to time those calls. Its acks are kept as
   the ack with work waiting.
3. expiry: leases of `lease_s` are taken and left to expire while another
   consumer waits; the delay from expiry to that consumer's `get` returning
   the redelivery shows how an adapter notices an expired lease.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from stemlab.core.broker import Broker
from stemlab.core.codec import new_id
from stemlab.core.envelope import Delivery, Envelope
from stemlab.errors import CalibrationError
from stemlab.instrument import InstrumentedBroker

__all__ = ["QUEUE", "Measurements", "Plan", "measure"]

QUEUE = "stemlab.calibrate"
TASK = "stemlab.calibrate"
_WARMUP = 5  # first calls of a phase (connection set-up, caches) are not counted
_GET_S = 5.0  # longest a calibration get may wait before the broker is declared stuck

Tick = Callable[[int], None]


@dataclass(frozen=True)
class Plan:
    """How many calls each phase makes."""

    idle: int = 600  # messages published to idle consumers
    loaded: int = 2000  # messages drained from a pre-filled queue
    rounds: int = 3  # expiry rounds
    expiries: int = 6  # leases left to expire per round
    listeners: int = 4  # idle consumers attached during the idle phase
    lease_s: float = 0.3  # lease length in the expiry phase
    stagger_s: float = 0.04  # gap between the leases taken in one expiry round

    @classmethod
    def quick(cls) -> Plan:
        """A plan that finishes in a few seconds on a local service."""
        return cls(idle=200, loaded=500, rounds=1, expiries=5)

    @property
    def total(self) -> int:
        return self.idle + self.loaded + self.rounds * self.expiries


@dataclass
class Measurements:
    """Seconds per call or per event, as measured; `wall_s` is time spent per phase."""

    publish: np.ndarray
    ack: np.ndarray
    idle_pickup: np.ndarray  # publish start -> get returned, consumers idle
    after_publish: np.ndarray  # publish returned -> get returned (may be < 0)
    claim: np.ndarray  # get when work is ready
    extend: np.ndarray
    nack: np.ndarray
    dead_letter: np.ndarray
    expiry_delay: np.ndarray  # lease expiry -> redelivery returned by get
    publish_unwatched: np.ndarray = field(default_factory=lambda: np.array([]))  # no consumer
    ack_loaded: np.ndarray = field(default_factory=lambda: np.array([]))  # with work waiting
    wall_s: dict[str, float] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        names = ("publish", "ack", "idle_pickup", "claim", "extend", "nack", "dead_letter")
        counts = {name: int(getattr(self, name).size) for name in names}
        counts["expiry_delay"] = int(self.expiry_delay.size)
        return counts


def _envelope(i: int, **extra: object) -> Envelope:
    return Envelope(name=TASK, queue=QUEUE, args={"i": i}, **extra)  # type: ignore[arg-type]


def _ops(ib: InstrumentedBroker, start: int) -> dict[str, list[tuple[int, int, str | None]]]:
    """Raw records since `start`, by op: (start ns, duration ns, task id), successful calls only."""
    out: dict[str, list[tuple[int, int, str | None]]] = {}
    for row in ib.recorder.rows[start:]:
        t, op, _queue, task_id, _prio, dur, error = row[:7]
        if error is None:
            out.setdefault(op, []).append((t, dur, task_id))
    return out


def _seconds(rows: list[tuple[int, int, str | None]], skip: int = 0) -> np.ndarray:
    return np.array([dur for _, dur, _ in rows[skip:]], dtype=float) / 1e9


# ------------------------------------------------------------------ phase 1
def _idle_phase(ib: InstrumentedBroker, plan: Plan, rng: np.random.Generator, tick: Tick) -> dict:
    """Publish one message at a time to `listeners` idle consumers (see the module doc)."""
    stop = threading.Event()
    taken = threading.Semaphore(0)
    errors: list[BaseException] = []
    run = new_id()[-8:]

    def listen(k: int) -> None:
        try:
            with ib.consume(QUEUE, prefetch=1, consumer=f"calibrate-{run}-idle{k}") as consumer:
                while not stop.is_set():
                    d = consumer.get(timeout=0.05)
                    if d is not None:
                        ib.ack(d)
                        taken.release()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            taken.release()

    threads = [
        threading.Thread(target=listen, args=(k,), daemon=True) for k in range(plan.listeners)
    ]
    for thread in threads:
        thread.start()
    start = len(ib.recorder.rows)
    gaps = rng.uniform(0.002, 0.012, plan.idle + _WARMUP)
    try:
        time.sleep(0.2)  # let every consumer subscribe and settle into waiting
        for i, gap in enumerate(gaps):
            time.sleep(float(gap))
            ib.publish(_envelope(i))
            if not taken.acquire(timeout=_GET_S) or errors:
                raise CalibrationError(_stuck("idle pickup", i, errors))
            if i >= _WARMUP:
                tick(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(2.0)
    ops = _ops(ib, start)
    published = {tid: (t, d) for t, d, tid in ops.get("publish", [])[_WARMUP:]}
    pickup, after = [], []
    for t, d, tid in ops.get("get", []):
        if tid in published:
            p_start, p_dur = published[tid]
            pickup.append((t + d - p_start) / 1e9)
            after.append((t + d - p_start - p_dur) / 1e9)
    return {
        "publish": _seconds(ops.get("publish", []), _WARMUP),
        "ack": _seconds(ops.get("ack", []), _WARMUP),
        "idle_pickup": np.array(pickup),
        "after_publish": np.array(after),
    }


def _stuck(phase: str, i: int, errors: list[BaseException]) -> str:
    if errors:
        exc = errors[0]
        return f"{phase}: a consumer failed: {type(exc).__name__}: {exc}"
    return f"{phase}: message {i} was not delivered within {_GET_S:g} s"


# ------------------------------------------------------------------ phase 2
def _loaded_phase(ib: InstrumentedBroker, plan: Plan, tick: Tick) -> dict:
    """Fill the queue one publish at a time with no consumer attached, then drain it with
    one consumer, timing get, ack, extend, nack and dead_letter."""
    start = len(ib.recorder.rows)
    for i in range(plan.loaded):
        ib.publish(_envelope(i))
    unwatched = _seconds(_ops(ib, start).get("publish", []), _WARMUP)
    start = len(ib.recorder.rows)
    settled = 0
    with ib.consume(QUEUE, prefetch=1, consumer=f"calibrate-{new_id()[-8:]}-loaded") as consumer:
        i = 0
        while settled < plan.loaded:
            d = consumer.get(timeout=_GET_S)
            if d is None:
                raise CalibrationError(_stuck("loaded pickup", settled, []))
            done = _settle_varied(ib, d, i)
            settled += done
            tick(done)
            i += 1
    ops = _ops(ib, start)
    return {
        "claim": _seconds(ops.get("get", []), _WARMUP),
        "extend": _seconds(ops.get("extend_lease", [])),
        "nack": _seconds(ops.get("nack", [])),
        "dead_letter": _seconds(ops.get("dead_letter", [])),
        "publish_unwatched": unwatched,
        "ack_loaded": _seconds(ops.get("ack", []), _WARMUP),
    }


def _settle_varied(ib: InstrumentedBroker, d: Delivery, i: int) -> int:
    """Ack most deliveries; extend-then-ack, nack once, or dead-letter some. 1 when settled."""
    kind = i % 10
    if kind in (1, 6):
        ib.extend_lease(d, 30.0)
    elif kind == 3 and d.delivery_count == 1:
        ib.nack(d)  # back at the tail; settled when it comes round again
        return 0
    elif kind == 8:
        ib.dead_letter(d, reason="calibrate")
        return 1
    ib.ack(d)
    return 1


# ------------------------------------------------------------------ phase 3
def _expiry_round(ib: InstrumentedBroker, plan: Plan, tick: Tick) -> list[float]:
    """Take `expiries` short leases a little apart, let them expire, time their redelivery."""
    run = new_id()[-8:]
    ib.publish_many([_envelope(i, visibility_timeout=plan.lease_s) for i in range(plan.expiries)])
    expires: dict[str, float] = {}
    holder = ib.consume(QUEUE, prefetch=plan.expiries, consumer=f"calibrate-{run}-holder")
    waiter = ib.consume(QUEUE, prefetch=plan.expiries, consumer=f"calibrate-{run}-waiter")
    delays: list[float] = []
    try:
        for _ in range(plan.expiries):
            d = holder.get(timeout=_GET_S)
            if d is None or d.lease_expires_at is None:
                raise CalibrationError(_stuck("lease expiry", len(expires), []))
            expires[d.envelope.id] = d.lease_expires_at.timestamp()
            time.sleep(plan.stagger_s)
        holder.close()  # closing does not release: the leases must run out
        while len(delays) < plan.expiries:
            again = waiter.get(timeout=plan.lease_s + _GET_S)
            if again is None:
                raise CalibrationError(_stuck("lease expiry", len(delays), []))
            returned = time.time()
            if again.envelope.id in expires:
                delays.append(returned - expires.pop(again.envelope.id))
                tick(1)
            ib.ack(again)
    finally:
        holder.close()
        waiter.close()
    return delays


# ------------------------------------------------------------------ all
def measure(
    ib: InstrumentedBroker, plan: Plan, rng: np.random.Generator, tick: Tick | None = None
) -> Measurements:
    """Run the three phases on `QUEUE` (purged before and after) and collect the timings."""
    step: Tick = tick or (lambda n: None)
    wall: dict[str, float] = {}
    _clean(ib)
    try:
        t = time.perf_counter()
        idle = _idle_phase(ib, plan, rng, step)
        wall["idle"] = time.perf_counter() - t
        t = time.perf_counter()
        loaded = _loaded_phase(ib, plan, step)
        wall["loaded"] = time.perf_counter() - t
        t = time.perf_counter()
        delays: list[float] = []
        for _ in range(plan.rounds):
            delays += _expiry_round(ib, plan, step)
        wall["expiry"] = time.perf_counter() - t
    finally:
        _clean(ib)
    return Measurements(
        publish=idle["publish"],
        ack=idle["ack"],
        idle_pickup=idle["idle_pickup"],
        after_publish=idle["after_publish"],
        claim=loaded["claim"],
        extend=loaded["extend"],
        nack=loaded["nack"],
        dead_letter=loaded["dead_letter"],
        expiry_delay=np.array(delays),
        publish_unwatched=loaded["publish_unwatched"],
        ack_loaded=loaded["ack_loaded"],
        wall_s=wall,
    )


def _clean(broker: Broker) -> None:
    broker.purge(QUEUE)
    broker.purge_dead_letters(QUEUE)
