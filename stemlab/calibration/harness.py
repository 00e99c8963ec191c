"""What `run_live`'s own harness costs per task: the CPU outside the broker calls, and how
late a worker's work ends.

Near saturation a 1 ms task's cycle is not just its broker calls: the
producer builds and records each task, the worker slot records the delivery,
draws the plan and records the end, and the slot's "work" (a sleep of the
drawn service time) wakes late. None of that is the broker's, so the load
ramp does not see it; this module measures it on the harness's own code:

* `producer` CPU: building the task's envelope and recording it, as
  `run_live`'s producer does, timed with the thread's CPU clock;
* `worker` CPU: a real `Slot` (its receive and execute steps) draining
  tasks of 1 ms from an in-process broker, minus that broker's own get +
  ack CPU timed the same way (with a 1 ms sleep between them). The work is
  kept because the same code measured back to back runs faster (warm
  caches, no wake-up) than it does between tasks;
* work overshoot: the slot's wait primitive asked for durations spread
  log-uniformly over 0.2-5 ms, and how much longer each took.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from stemlab.brokers.memory import MemoryBroker
from stemlab.core.envelope import Envelope
from stemlab.errors import CalibrationError
from stemlab.instrument import instrument
from stemlab.live.worker import LiveRun, Slot
from stemlab.model.distributions import Constant
from stemlab.model.protocol import QUEUE, RETRY_MAX, TASK_NAME
from stemlab.model.scenario import Scenario

__all__ = ["HarnessCosts", "measure_harness"]

_WAIT_RANGE_S = (2e-4, 5e-3)
_WORK_S = 0.001  # each timed task's (and call pair's) work: a sleep, as in a live run


@dataclass(frozen=True)
class HarnessCosts:
    """CPU seconds per task by side, and the measured overshoots (seconds)."""

    producer_cpu: float
    worker_cpu: float
    overshoot: np.ndarray


def _scenario(tasks: int) -> Scenario:
    return Scenario(
        name="calibrate-harness",
        arrival_rate=1.0,
        tasks=tasks,
        service_time=Constant(_WORK_S),
        workers=1,
    )


def _produce(run: LiveRun, tasks: int, publish: bool) -> float:
    """CPU per task of building and recording `tasks` envelopes (published when asked)."""
    sc = run.scenario
    cpu = 0.0
    for i in range(tasks):
        start = time.thread_time()
        env = Envelope(
            name=TASK_NAME,
            queue=QUEUE,
            priority=0,
            not_before=None,
            visibility_timeout=sc.visibility_timeout,
            max_retries=RETRY_MAX,
            args={"i": i},
        )
        run.enqueued(env.id, env.priority)
        cpu += time.thread_time() - start
        if publish:
            run.broker.publish(env)
    return cpu / tasks


def _slot_cpu(tasks: int, rng: np.random.Generator) -> tuple[float, float]:
    """(producer CPU, slot CPU) per task on an in-process broker, the broker's calls included."""
    with MemoryBroker() as raw:
        ib = instrument(raw)
        run = LiveRun(_scenario(tasks), ib, rng, time.time(), tasks)
        producer = _produce(run, tasks, publish=True)
        slot = Slot(run, 0, "calibrate-harness")
        consumer = slot._open()
        try:
            start = time.thread_time()
            for _ in range(tasks):
                slot._fill(consumer)
                slot._execute(slot.buffer.popleft())
            cpu = (time.thread_time() - start) / tasks
        finally:
            consumer.close()
        if len(run.resolved) != tasks:
            raise CalibrationError(f"harness: {len(run.resolved)} of {tasks} tasks settled")
    return producer, cpu


def _calls_cpu(tasks: int) -> float:
    """The in-process broker's own get + ack CPU per task (what `_slot_cpu` must not count)."""
    with MemoryBroker() as raw:
        ib = instrument(raw)
        for i in range(tasks):
            ib.publish(Envelope(name=TASK_NAME, queue=QUEUE, args={"i": i}))
        with ib.consume(QUEUE, prefetch=1, consumer="calibrate-harness-calls") as consumer:
            start = time.thread_time()
            for _ in range(tasks):
                d = consumer.get(timeout=0.0)
                if d is None:
                    raise CalibrationError("harness: a published message was not delivered")
                time.sleep(_WORK_S)
                ib.ack(d)
            return (time.thread_time() - start) / tasks


def _overshoot(samples: int, rng: np.random.Generator) -> np.ndarray:
    """How much longer than asked the slot's wait primitive (`Event.wait`) takes."""
    low, high = np.log(_WAIT_RANGE_S[0]), np.log(_WAIT_RANGE_S[1])
    asked = np.exp(rng.uniform(low, high, samples))
    event = threading.Event()
    late = np.empty(samples)
    for k, seconds in enumerate(asked.tolist()):
        start = time.monotonic()
        event.wait(seconds)
        late[k] = time.monotonic() - start - seconds
    return np.maximum(late, 0.0)


def measure_harness(tasks: int, waits: int, rng: np.random.Generator) -> HarnessCosts:
    """Time the harness's per-task CPU (`tasks` tasks, best of three) and `waits` overshoots."""
    producer, slot, calls = [], [], []
    for _ in range(3):  # the least disturbed of three rounds of each, as timeit does
        p, s = _slot_cpu(tasks, rng)
        producer.append(p)
        slot.append(s)
        calls.append(_calls_cpu(tasks))
    worker = max(min(slot) - min(calls), 0.0)
    return HarnessCosts(min(producer), worker, _overshoot(waits, rng))
