"""run_live: play a Scenario on a real broker in wall time and measure every task and call.

This docstring is the specification of the worker behaviour; `simulate()`
copies it step by step, so a simulated and a live run of one scenario and
seed differ only by what the broker itself does.

Draws. ``streams(seed)`` gives ``[workload_rng, execution_rng, ...]``;
``make_workload(scenario, workload_rng)`` gives the arrival offsets,
priorities and delays of every task; each execution's plan is
``draw_execution(scenario, execution_rng)``, drawn when the execution starts
(in a live run threads interleave, so the order of those draws is not
reproducible; the simulator draws in simulated-time order).

Producer. At ``arrivals[i]`` seconds after the start (immediately if it has
fallen behind) task i is recorded with ``ledger.enqueued(id, priority, now)``
and then published as ``Envelope(name="stemlab.task", queue="scenario",
priority=priorities[i], not_before=now + delays[i] if delays[i] > 0 else None,
visibility_timeout=scenario.visibility_timeout, max_retries=RETRY_MAX,
args={"i": i})``. The ledger's task id is the envelope id.

Slots. ``scenario.workers`` task slots; each is one thread with its OWN
consumer of ``prefetch=scenario.prefetch`` (so the broker-side cap is per
slot), executing one delivery at a time. Before each execution the slot
takes deliveries until it holds ``prefetch`` of them, blocking only while it
holds none; each received delivery is ``ledger.delivered`` at once. It then
executes the oldest one it holds:

- draw the plan, ``ledger.started``; while working, if
  ``scenario.lease_renewal``, extend the lease by ``visibility_timeout`` at
  ``k * RENEW_FRACTION * visibility_timeout`` after the start (k = 1, 2, ...,
  strictly before the work ends); a LeaseLost on renewal stops renewing.
  Deliveries waiting in the slot's buffer are not renewed.
- ``"ok"``: sleep ``service_s``; ``ledger.finished(success=True)``; ``ack``;
  ``ledger.acked`` (stamped when the ack returned).
- ``"fail"``: sleep ``service_s``; ``ledger.finished(success=False)``; if
  ``retry_delay(attempt)`` is not None, publish a copy with ``attempt + 1``
  and ``not_before = now + retry_delay`` (same envelope id, so the same task)
  and then ack the original (if that ack raises LeaseLost the copy stays:
  the task then has two live messages); else ``dead_letter(reason="failed")``
  and ``ledger.dead``.
- ``"crash"``: sleep ``crash_after_s``; ``ledger.abandoned``; the slot's
  consumer is closed WITHOUT settling anything (the crashed delivery and any
  others in its buffer stay leased until their leases expire) and the slot
  at once opens a fresh consumer under a new consumer name.

Ledger times are wall-clock seconds since the start, taken when the step
happens (``delivered`` when ``get`` returned). A message whose id is not one
of this run's tasks is acked and dropped (``meta["strays"]``).

A ``LeaseLost`` from ``ack``, ``dead_letter`` or ``extend_lease`` (the lease
expired and the message went to someone else) is counted in
``meta["lease_lost"]`` and is not fatal; the task is then NOT marked acked or
dead by that slot (its other delivery will settle it).

Real tasks. With ``run_live(..., app=app, task="name")`` the slot calls the
registered task ``app.tasks[name].fn(**task_args)`` (``task_args`` a dict, or
a callable of the task index giving one) in place of the ``service_s`` sleep,
renewing the lease every ``RENEW_FRACTION * visibility_timeout`` while it
runs; the plan is still drawn: a ``"crash"`` plan crashes as above without
calling the task, a ``"fail"`` plan calls it and then takes the fail path, and
a task that raises takes the fail path too (its error is kept in
``meta["errors"]``). The result frames have the same columns either way.

End. The run ends when every task is acked or dead, or at the deadline
(default: see `default_deadline`), or on KeyboardInterrupt; tasks neither
acked nor dead then are ``"lost"`` and the result still comes back (with
``meta["timed_out"]`` / ``meta["interrupted"]``). Only published tasks have
rows. The queue "scenario" is purged before the run and after it (both
calls appear in `.ops`).

Ops. Every broker call goes through an `InstrumentedBroker` (the one given,
or one wrapped around the broker); `.ops` has the calls made from the start
of the run, `ts` in seconds since the scenario started (negative for the
purge before it). Op names are the Broker method names (``publish``,
``ack``, ``dead_letter``, ``extend_lease``, ``consume``, ``purge``...) plus
``get`` for a consumer ``get`` that returned a delivery; empty gets are only
counted (``meta["empty_gets"]``). ``ts`` is when a call began and
``duration_s`` how long it took (for ``get`` that includes waiting).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from stemlab.brokers import connect
from stemlab.core.broker import Broker
from stemlab.core.clock import from_epoch
from stemlab.core.codec import new_id
from stemlab.core.envelope import Envelope
from stemlab.core.progress import Progress
from stemlab.errors import ConfigError
from stemlab.instrument import InstrumentedBroker, instrument
from stemlab.live.worker import LiveRun, Slot
from stemlab.model.names import broker_name
from stemlab.model.protocol import QUEUE, RETRY_MAX, TASK_NAME, retry_delay
from stemlab.model.result import RunResult
from stemlab.model.scenario import Scenario
from stemlab.model.workload import Workload, make_workload, streams
from stemlab.runtime import Stem

TaskArgs = dict[str, Any] | Callable[[int], dict[str, Any]]

__all__ = ["default_deadline", "expected_duration", "run_live"]

_TICK_S = 0.1  # how often the main thread refreshes the progress bar while waiting
_ANNOUNCE_S = 3.0  # runs expected to take longer than this say so before they start
log = logging.getLogger(__name__)


def expected_duration(scenario: Scenario) -> float:
    """Rough wall time (s) of a live run: publishing at the arrival rate, or working through
    the tasks on every worker, whichever is longer, plus one service time to finish.

    It ignores broker latency, crashes' lease expiries and retries' delays, so it is
    a lower bound at heavy load; it is shown before a run so nobody waits blind.
    """
    sc = scenario
    per_task = sc.service_time.mean * (1 + sc.failure_probability + sc.crash_probability)
    arriving = sc.tasks / sc.arrival_rate
    working = sc.tasks * per_task / sc.workers
    return max(arriving, working) + sc.service_time.mean


def default_deadline(scenario: Scenario, workload: Workload, broker: Broker) -> float:
    """A generous end (s since start): last arrival + delays + twice the work + retries + leases.

    The lease term allows `RETRY_MAX + 3` lease expiries (crashes or short
    leases) on the path of the unluckiest task, plus 10 s of slack.
    """
    caps = broker.capabilities
    per_task = scenario.service_time.mean * (
        1 + scenario.failure_probability * RETRY_MAX + scenario.crash_probability
    )
    work = scenario.tasks * per_task / scenario.workers
    retries = sum(retry_delay(a) or 0.0 for a in range(RETRY_MAX))
    lease = scenario.visibility_timeout + caps.reclaim_delay + (caps.poll_interval or 0.0)
    last = float(workload.arrivals[-1]) + float(workload.delays.max(initial=0.0))
    return last + 2 * work + retries + (RETRY_MAX + 3) * lease + 10.0


def _show(bar: Progress, done: int, published: int) -> None:
    if done != bar.done:
        bar.advance(done - bar.done)
        bar.note(f"published={published}")


def run_live(
    scenario: Scenario,
    broker: Broker | str,
    *,
    seed: int = 0,
    progress: bool = True,
    label: str | None = None,
    deadline: float | None = None,
    app: Stem | None = None,
    task: str | None = None,
    task_args: TaskArgs | None = None,
) -> RunResult:
    """Run `scenario` on a real broker in wall time and return what happened.

    `broker` is an open Broker (left open) or a URL (opened and closed here).
    `deadline` is seconds after the start at which unfinished tasks are given
    up as "lost" (default `default_deadline`). With `app` and `task`, the
    registered task runs (with `task_args`) instead of the synthetic sleep.
    The worker behaviour is specified in this module's docstring.
    """
    if not isinstance(scenario, Scenario):
        raise TypeError(f"run_live needs a Scenario, got {type(scenario).__name__}")
    call = _task_call(app, task, task_args)
    with _opened(broker) as raw:
        ib = instrument(raw)
        return _Runner(scenario, ib, seed, progress, label, deadline, call).execute()


def _task_call(
    app: Stem | None, task: str | None, task_args: TaskArgs | None
) -> Callable[[int], object] | None:
    """The function a slot calls with the task index, or None for the synthetic sleep."""
    if app is None and task is None:
        if task_args is not None:
            raise ConfigError("task_args needs app= and task=")
        return None
    if not isinstance(app, Stem) or not isinstance(task, str):
        raise ConfigError("run_live needs both app= (a stemlab.Stem) and task= (a task name)")
    registered = app.tasks.get(task)
    if registered is None:
        raise ConfigError(f"no task {task!r} in the app (registered: {sorted(app.tasks)})")
    fn = registered.fn
    if callable(task_args):
        make = task_args
        return lambda i: fn(**make(i))
    fixed = dict(task_args or {})
    return lambda i: fn(**fixed)


@contextlib.contextmanager
def _opened(broker: Broker | str) -> Iterator[Broker]:
    if isinstance(broker, str):
        opened = connect(broker)
        try:
            yield opened
        finally:
            opened.close()
    elif isinstance(broker, Broker):
        yield broker
    else:
        raise TypeError(f"broker must be a Broker or a URL, got {type(broker).__name__}")


class _Runner:
    """One live run: set up, produce on schedule, wait, stop, collect."""

    def __init__(
        self,
        scenario: Scenario,
        broker: InstrumentedBroker,
        seed: int,
        progress: bool,
        label: str | None,
        deadline: float | None,
        call: Callable[[int], object] | None = None,
    ) -> None:
        self.call = call
        self.scenario = scenario
        self.broker = broker
        self.seed = seed
        self.name = broker_name(broker)
        self.label = label or f"{scenario.name} live {self.name}"
        workload_rng, self.exec_rng, *_ = streams(seed)
        self.workload = make_workload(scenario, workload_rng)
        self.deadline = (
            float(deadline)
            if deadline is not None
            else default_deadline(scenario, self.workload, broker)
        )
        self.progress = progress
        self.published = 0
        self.first_row = len(broker.recorder.rows)
        self.empty_gets_before = broker.empty_gets

    def execute(self) -> RunResult:
        purged_before = self.broker.purge(QUEUE)
        run = LiveRun(self.scenario, self.broker, self.exec_rng, time.time(), self.scenario.tasks)
        run.call = self.call
        slots = [Slot(run, k, new_id()[-12:]) for k in range(self.scenario.workers)]
        for slot in slots:
            slot.start()
        estimate = expected_duration(self.scenario)
        bar = Progress(
            self.scenario.tasks,
            f"{self.label} (about {estimate:.0f} s)",
            enabled=self.progress,
            unit="task",
        )
        line = f"{self.label}: {self.scenario.tasks} tasks, about {estimate:.0f} s"
        log.info("%s", line)
        if estimate >= _ANNOUNCE_S:
            bar.say(line)
        run.t0 = time.time()
        start = time.monotonic()
        interrupted = False
        try:
            self._produce(run, start, bar)
            self._wait(run, start, bar)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            elapsed = time.monotonic() - start
            run.stop.set()
            for slot in slots:
                slot.join(timeout=5.0)
            bar.close()
        leftover = self.broker.purge(QUEUE)
        return self._result(run, elapsed, interrupted, purged_before, leftover)

    def _produce(self, run: LiveRun, start: float, bar: Progress) -> None:
        arrivals, prios, delays = (
            self.workload.arrivals,
            self.workload.priorities,
            self.workload.delays,
        )
        sc = self.scenario
        for i in range(len(self.workload)):
            due = start + float(arrivals[i])
            while (left := due - time.monotonic()) > 0:
                run.stop.wait(min(left, _TICK_S))
                _show(bar, len(run.resolved), self.published)
            if time.monotonic() - start > self.deadline:
                return
            now = time.time()
            delay = float(delays[i])
            env = Envelope(
                name=TASK_NAME,
                queue=QUEUE,
                priority=int(prios[i]),
                not_before=from_epoch(now + delay) if delay > 0 else None,
                visibility_timeout=sc.visibility_timeout,
                max_retries=RETRY_MAX,
                args={"i": i},
            )
            run.enqueued(env.id, env.priority)
            self.broker.publish(env)
            self.published += 1

    def _wait(self, run: LiveRun, start: float, bar: Progress) -> None:
        run.total = self.published
        with run.lock:
            if len(run.resolved) >= run.total:
                run.all_done.set()
        while not run.all_done.is_set():
            left = self.deadline - (time.monotonic() - start)
            if left <= 0:
                return
            run.all_done.wait(min(left, _TICK_S))
            _show(bar, len(run.resolved), self.published)
        _show(bar, len(run.resolved), self.published)

    def _result(
        self, run: LiveRun, elapsed: float, interrupted: bool, purged: int, leftover: int
    ) -> RunResult:
        with run.lock:
            tasks = run.ledger.tasks_frame()
            counters = dict(run.counters)
            errors = list(run.errors)
            duplicates = run.ledger.duplicates
        ops = self.broker.recorder.frame(self.first_row, origin=run.t0)
        meta: dict[str, Any] = {
            "seed": self.seed,
            "scenario": self.scenario.to_dict(),
            "published": self.published,
            "deadline_s": self.deadline,
            "timed_out": not interrupted
            and (self.published < self.scenario.tasks or len(run.resolved) < self.published),
            "interrupted": interrupted,
            "empty_gets": self.broker.empty_gets - self.empty_gets_before,
            "purged_before": purged,
            "leftover": leftover,
            "errors": errors,
            **counters,
        }
        return RunResult(
            tasks=tasks,
            ops=ops,
            label=self.label,
            kind="live",
            broker=self.name,
            duplicates=duplicates,
            duration_s=elapsed,
            meta=meta,
        )
