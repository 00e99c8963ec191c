"""The load ramp behind a profile's `host` section: CPU per call, serialisation, the machine's load.

Three measurements on the queue `stemlab.calibrate` (calibrate purges it):

1. costs: one thread publishes `calls` messages with no consumer, then
   drains them (get + ack). Each call's client CPU is the calling thread's
   `time.thread_time` across it (the mean); the server's CPU per call is the server
   process tree's CPU over each batch (`stemlab.calibration.procfs`) divided
   by its calls, the drain's split between claim and ack by their share of
   the time spent outside the client.
   With a declared `lock_backoff` (SQLite), a lock probe follows: a thread
   drains messages as a worker does while this one publishes at random
   instants, and the share of publishes that slept gives the lock's hold.
2. ramp: 1, 2, 4 ... threads each run publish -> get -> ack cycles for
   `step_s`; the throughput and the CPU per cycle at each concurrency, the
   server processes that did the work at the top step (when they used
   enough CPU to tell), and the machine's busy time are recorded. The CPU
   per call two busy threads add over one is the interpreter lock's handoff.
3. fit: with G the client CPU of a cycle (one interpreter lock) and S the
   server CPU, the host model alone caps the cycle rate at
   min(1 / G, cores / (G + S), 1 / S if one server process did all the
   work). If the best step's measured rate stays below 90 % of that cap, the
   gap is a serialisation the CPU figures do not explain (SQLite's writer):
   each call then holds one point for its share of 1 / rate. Only a ramp
   whose rate never falls by more than 10 % from one step to the next is a
   plateau; a falling one means interference (another program took the
   CPU), and no serial point is fitted from it.

`background_cores` is the CPU other programs used during the ramp (machine
busy minus this process minus the server), in cores: the load calibration
cannot explain, which `calibrate` warns about or refuses.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

from stemlab.calibration.measure import QUEUE, _clean, _envelope
from stemlab.calibration.procfs import ServerTree, machine_busy
from stemlab.core.codec import new_id
from stemlab.errors import CalibrationError
from stemlab.instrument import InstrumentedBroker
from stemlab.model.distributions import Distribution
from stemlab.model.host import HostModel

__all__ = ["RampPlan", "RampResult", "fit_host", "ramp"]

_GET_S = 5.0
_MONOTONE = 0.9  # a step slower than this share of the previous one is not a plateau
_MIN_SERVER_CPU_S = 0.2  # server CPU (20 ticks of 10 ms) needed to count its busy processes
_CYCLE_OPS = ("publish", "claim", "ack")
_PROBE_GAP_S = 0.001  # the lock probe's mean publish gap, and its drain's task length


@dataclass(frozen=True)
class RampPlan:
    """How long the ramp runs: calls timed one by one, concurrency steps and their length."""

    calls: int = 600
    steps: tuple[int, ...] = (1, 2, 4, 8)
    step_s: float = 1.0
    harness_tasks: int = 500  # per round of the harness's CPU timing (calibration/harness.py)
    waits: int = 400  # work overshoot samples

    @classmethod
    def quick(cls) -> RampPlan:
        return cls(calls=200, steps=(1, 2, 4), step_s=0.4, harness_tasks=150, waits=150)


@dataclass
class RampResult:
    """What the ramp measured (seconds; rates per second)."""

    client_cpu: dict[str, float]
    server_cpu: dict[str, float] | None  # None: the server is not reachable (or in-process)
    wall: dict[str, float]  # mean wall latency per call, single thread
    rates: dict[int, float]  # cycles per second at each concurrency
    server_processes: int | None  # processes that did the server's work at the top step
    own_cores: float  # this process's CPU during the ramp, in cores
    server_cores: float | None
    busy_cores: float | None  # the whole machine's
    wall_s: float
    notes: list[str] = field(default_factory=list)
    lock: dict[str, float] = field(default_factory=dict)  # `_collisions`, with a lock backoff
    cycle_cpu: dict[int, float] = field(default_factory=dict)  # client CPU per cycle, by step

    @property
    def background_cores(self) -> float | None:
        """Other programs' CPU during the ramp (cores): what calibration cannot explain."""
        if self.busy_cores is None:
            return None
        return max(0.0, self.busy_cores - self.own_cores - (self.server_cores or 0.0))


def _server_cpu(tree: ServerTree | None) -> dict[int, float] | None:
    return tree.cpu() if tree is not None else None


def _delta(after: dict[int, float] | None, before: dict[int, float] | None) -> dict[int, float]:
    if after is None or before is None:
        return {}
    return {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}


def _costs(
    ib: InstrumentedBroker, plan: RampPlan, tree: ServerTree | None
) -> tuple[dict[str, float], dict[str, float] | None, dict[str, float]]:
    """Client CPU, server CPU and wall time per publish, claim and ack (one thread)."""
    cpu: dict[str, list[float]] = {op: [] for op in _CYCLE_OPS}
    wall: dict[str, list[float]] = {op: [] for op in _CYCLE_OPS}
    server: dict[str, float] = {}

    def timed(op: str, call: Any, *args: Any) -> Any:
        c, w = time.thread_time(), time.perf_counter()
        out = call(*args)
        cpu[op].append(time.thread_time() - c)
        wall[op].append(time.perf_counter() - w)
        return out

    before = _server_cpu(tree)
    for i in range(plan.calls):
        timed("publish", ib.publish, _envelope(i))
    middle = _server_cpu(tree)
    server["publish"] = sum(_delta(middle, before).values()) / plan.calls
    with ib.consume(QUEUE, prefetch=1, consumer=f"calibrate-{new_id()[-8:]}-costs") as consumer:
        for _ in range(plan.calls):
            d = timed("claim", consumer.get, _GET_S)
            if d is None:
                raise CalibrationError("load ramp: a published message was not delivered")
            timed("ack", ib.ack, d)
    drain = sum(_delta(_server_cpu(tree), middle).values()) / plan.calls
    client = {op: float(np.mean(v)) for op, v in cpu.items()}  # a rate is set by the mean
    walls = {op: float(np.mean(v)) for op, v in wall.items()}
    outside = {op: max(walls[op] - client[op], 0.0) for op in ("claim", "ack")}
    total = sum(outside.values()) or 1.0
    server["claim"] = drain * outside["claim"] / total
    server["ack"] = drain * outside["ack"] / total
    return client, (server if tree is not None else None), walls


def _collisions(ib: InstrumentedBroker, calls: int, threshold: float) -> dict[str, float]:
    """How often a publish at a random instant finds a sleep-and-retry lock taken.

    One thread drains `calls` messages as a worker does (get, a 1 ms sleep,
    ack; a tight loop would hold the interpreter lock and let the probe run
    only while the store's code runs, which is while it holds the lock) and
    this one publishes at Poisson instants (mean gap `_PROBE_GAP_S`, as a
    producer does); a publish that took `threshold` (the first backoff
    sleep) or more found the lock taken. Returns that share and the drain's
    rate (cycles per second).
    """
    for i in range(calls):
        ib.publish(_envelope(i))
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            with ib.consume(QUEUE, prefetch=1, consumer=f"calibrate-{new_id()[-8:]}-lock") as c:
                for _ in range(calls):
                    d = c.get(timeout=_GET_S)
                    if d is None:
                        raise CalibrationError("load ramp: a published message was not delivered")
                    time.sleep(_PROBE_GAP_S)  # a worker's task: the interpreter lock is free
                    ib.ack(d)
        except BaseException as exc:  # reported below
            errors.append(exc)

    rng = np.random.default_rng(calls)
    worker = threading.Thread(target=drain, daemon=True)
    probes: list[float] = []
    t0 = time.perf_counter()
    worker.start()
    while worker.is_alive():
        time.sleep(float(rng.exponential(_PROBE_GAP_S)))
        start = time.perf_counter()
        ib.publish(_envelope(len(probes)))
        probes.append(time.perf_counter() - start)
    wall = time.perf_counter() - t0
    if errors:
        raise CalibrationError(f"load ramp: {errors[0]}") from errors[0]
    slept = sum(1 for x in probes if x >= threshold) / max(len(probes), 1)
    return {"probe_slept": slept, "probes": len(probes), "drain_rate": calls / wall}


def _step(ib: InstrumentedBroker, threads: int, seconds: float) -> tuple[int, float]:
    """`threads` closed loops of publish -> get -> ack for `seconds`: the cycles completed and
    the CPU seconds the loops used (their threads' CPU clocks)."""
    stop = threading.Event()
    counts = [0] * threads
    cpu = [0.0] * threads
    errors: list[BaseException] = []
    run = new_id()[-8:]

    def loop(k: int) -> None:
        try:
            with ib.consume(QUEUE, prefetch=1, consumer=f"calibrate-{run}-ramp{k}") as consumer:
                i = 0
                start = time.thread_time()
                while not stop.is_set():
                    ib.publish(_envelope(i))
                    d = consumer.get(timeout=_GET_S)
                    if d is None:
                        raise CalibrationError("load ramp: a cycle's message was not delivered")
                    ib.ack(d)
                    counts[k] += 1
                    i += 1
                cpu[k] = time.thread_time() - start
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=loop, args=(k,), daemon=True) for k in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join(_GET_S + 1.0)
    if errors:
        exc = errors[0]
        raise CalibrationError(f"load ramp: {type(exc).__name__}: {exc}") from exc
    return sum(counts), sum(cpu)


def ramp(ib: InstrumentedBroker, plan: RampPlan, tree: ServerTree | None) -> RampResult:
    """Run the cost measurement and the concurrency ramp (see the module doc)."""
    t0, own0, busy0 = time.perf_counter(), time.process_time(), machine_busy()
    server0 = _server_cpu(tree)
    client, server, walls = _costs(ib, plan, tree)
    _clean(ib)
    backoff = ib.capabilities.lock_backoff
    lock = _collisions(ib, plan.calls, backoff[0]) if backoff else {}
    _clean(ib)
    rates: dict[int, float] = {}
    cycle_cpu: dict[int, float] = {}
    top: dict[int, float] = {}
    for threads in plan.steps:
        before, start = _server_cpu(tree), time.perf_counter()
        cycles, cpu = _step(ib, threads, plan.step_s)
        rates[threads] = cycles / (time.perf_counter() - start)
        cycle_cpu[threads] = cpu / max(cycles, 1)
        top = _delta(_server_cpu(tree), before)
        _clean(ib)
    wall = time.perf_counter() - t0
    own = (time.process_time() - own0) / wall
    busy1 = machine_busy()
    busy = (busy1 - busy0) / wall if busy0 is not None and busy1 is not None else None
    server_cores = sum(_delta(_server_cpu(tree), server0).values()) / wall if tree else None
    total = sum(top.values())  # too few clock ticks to tell how many processes worked: None
    enough = tree is not None and total >= _MIN_SERVER_CPU_S
    working = sum(1 for v in top.values() if v > 0.05 * total) if enough else None
    notes = [] if tree else ["no server process on this machine's loopback: in-process"]
    return RampResult(
        client, server, walls, rates, working, own, server_cores, busy, wall, notes, lock, cycle_cpu
    )


def fit_host(
    result: RampResult,
    cores: int,
    publish_unwatched: Distribution | None,
    listeners: int,
    backoff: tuple[float, ...] | None = None,
) -> tuple[HostModel, dict[str, Any]]:
    """The profile's `host` section from a ramp, and how it was derived (for `meta`).

    `backoff` is the adapter's declared `lock_backoff`: its writes take one
    store-wide lock by sleeping and retrying, so the holds come from the
    lock probe's collisions (`_backoff_holds`), and a rate that falls as
    threads are added is that lock's backoff, not interference.
    """
    client = result.client_cpu
    server = result.server_cpu or {}
    g = sum(client.get(op, 0.0) for op in _CYCLE_OPS)
    s = sum(server.get(op, 0.0) for op in _CYCLE_OPS)
    single = result.server_processes == 1
    caps = [1 / g if g > 0 else float("inf"), cores / (g + s) if g + s > 0 else float("inf")]
    if single and s > 0:
        caps.append(1 / s)
    cap = min(caps)
    top = max(result.rates.values()) if result.rates else float("nan")  # the best step
    serial: dict[str, float] = {}
    if single:  # one server process: its work is done one call at a time
        serial = {op: server[op] for op in _CYCLE_OPS if op in server}
    steps = [result.rates[k] for k in sorted(result.rates)]
    monotone = all(b >= _MONOTONE * a for a, b in pairwise(steps))
    unexplained = bool(top < 0.9 * cap) and monotone and not backoff
    if backoff:
        serial = _backoff_holds(result)
    elif unexplained:  # the rate plateaus below what CPU explains: one point admits one call
        outside = {op: max(result.wall[op] - client.get(op, 0.0), 0.0) for op in _CYCLE_OPS}
        total = sum(outside.values()) or 1.0
        for op in _CYCLE_OPS:
            serial[op] = max(serial.get(op, 0.0), outside[op] / total / top)
    model = HostModel(
        cores=cores,
        client_cpu={op: _r(v) for op, v in client.items()},
        server_cpu={op: _r(v) for op, v in server.items()},
        serial={op: _r(v) for op, v in serial.items()},
        publish_unwatched=publish_unwatched,
        listeners=listeners,
        serial_backoff=tuple(backoff or ()),
        handoff_cpu=_r(_handoff(result)),
    )
    info = {
        "rates_per_s": {str(k): round(v, 1) for k, v in result.rates.items()},
        "cycle_cpu_s": {str(k): _r(v) for k, v in result.cycle_cpu.items()},
        "lock_collisions": {k: round(v, 4) for k, v in result.lock.items()},
        "cycle_client_cpu_s": _r(g),
        "cycle_server_cpu_s": _r(s),
        "cpu_cap_per_s": round(cap, 1) if cap != float("inf") else None,
        "server_processes": result.server_processes,
        "serialisation": (
            "a write lock taken by sleeping and retrying (the adapter's lock_backoff): "
            "each call's hold from how often random arrivals found it taken"
            if backoff
            else "rate plateaus below the CPU cap: a serial point fitted from it"
            if unexplained
            else "one server process: its CPU per call is serial"
            if single
            else "none fitted: the rate fell as threads were added (interference?)"
            if not monotone
            else "none beyond the client lock and the cores"
        ),
        "wall_per_call_s": {op: _r(v) for op, v in result.wall.items()},
        "own_cores": round(result.own_cores, 3),
        "server_cores": round(result.server_cores, 3) if result.server_cores is not None else None,
        "busy_cores": round(result.busy_cores, 3) if result.busy_cores is not None else None,
        "background_cores": (
            round(result.background_cores, 3) if result.background_cores is not None else None
        ),
        "ramp_wall_s": round(result.wall_s, 2),
        "notes": result.notes,
    }
    return model, info


def _handoff(result: RampResult) -> float:
    """Client CPU a call adds when it must wait for the interpreter lock (the other thread
    has it): the one- and two-thread steps' CPU per cycle apart, over the cycle's 3 calls.

    Both threads of the two-thread step are always busy, so nearly every call
    there waits for the lock at least once; the handoff (a futex sleep and
    wake, a context switch) is CPU the single thread never spends.
    """
    one, two = result.cycle_cpu.get(1), result.cycle_cpu.get(2)
    if one is None or two is None:
        return 0.0
    return max(two - one, 0.0) / len(_CYCLE_OPS)


def _backoff_holds(result: RampResult) -> dict[str, float]:
    """Each call's hold of a lock taken by sleeping and retrying, from `_collisions`.

    A publish arriving at a random instant finds the lock taken when the
    draining thread holds it: with that thread cycling r times a second and
    holding it H seconds per cycle, a share r * H of the publishes sleep, so
    H = share / r. Each call is taken to hold the lock for the same part of
    its single-thread wall time as the drain's get + ack do.
    """
    lock = result.lock
    if not lock.get("drain_rate"):
        return {}
    per_cycle = lock["probe_slept"] / lock["drain_rate"]
    part = per_cycle / ((result.wall["claim"] + result.wall["ack"]) or 1.0)
    return {op: min(part, 1.0) * result.wall[op] for op in _CYCLE_OPS}


def _r(value: float) -> float:
    return float(f"{value:.4g}")
