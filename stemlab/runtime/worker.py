"""The worker: slot threads that run registered tasks, a lease renewer, and heartbeats.

Rules (docs/runtime.md says the same for users):

- One consumer per slot (`concurrency` slots, `prefetch` each, default 1).
- Before a task runs: an unregistered name is dead-lettered ("unregistered-task");
  a message delivered more than ``max_retries + 1`` times (a task that kills its
  worker, redelivered on lease expiry) is dead-lettered ("max-deliveries"); a
  cancelled task is acked unrun. Each of those writes a final status first.
- While it runs its lease is renewed every third of the lease; a message whose
  id is already running in this worker (its lease was lost and it came back)
  waits for that run to end, so one worker never runs a task twice at once.
- The status is written BEFORE the message is settled: a crash between the two
  re-runs the task (at least once) and never loses its result.
- A failure with retries left writes ``retried`` and republishes the same id
  with ``attempt + 1`` and ``not_before = now + backoff`` (`stemlab.runtime.retry`),
  then acks; with none left it writes ``failed`` and dead-letters the message
  ("max-retries-exhausted", the error in its meta).
- A task revoked in the result backend (`app.control.revoke`) is dead-lettered
  unrun ("revoked") when it is delivered, its status `cancelled`.
- Control (`stemlab.runtime.responder`): the worker answers commands on its
  namespace's control channel; `pause(queue)` reopens the slots' consumers
  without that queue, `resume` with it again; `shutdown` drains.
- `stop()` (or a first SIGTERM under `run()`) drains: no new message is taken,
  running tasks finish and are settled. A second SIGTERM, or SIGINT, stops at
  once: un-acked messages are left to their leases.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import TYPE_CHECKING, Any

from stemlab.core.broker import Consumer, normalise_names
from stemlab.core.clock import from_epoch
from stemlab.core.codec import new_id
from stemlab.core.envelope import Delivery
from stemlab.errors import LeaseLost, ResultError, StemlabError
from stemlab.runtime.responder import Responder
from stemlab.runtime.retry import backoff
from stemlab.runtime.status import TaskState, TaskStatus

if TYPE_CHECKING:
    from stemlab.runtime.app import Stem, Task

__all__ = ["DEFAULT_LEASE_S", "Worker"]

log = logging.getLogger("stemlab.runtime")

DEFAULT_LEASE_S = 30.0  # lease length assumed when neither envelope nor delivery tells it
GET_S = 0.2  # how long an idle slot blocks in one get() before checking for a stop
RENEW_TICK_S = 0.05  # how often the renewer looks at the running deliveries
HEARTBEAT_S = 2.0  # heartbeat period; a heartbeat lives three periods
_MAX_ERROR_CHARS = 4000
STATS = ("received", "succeeded", "failed", "retried", "dead", "lease_lost", "errors")
TASK_STATS = ("succeeded", "failed", "retried", "revoked", "renewals")


@dataclass
class _Running:
    """A delivery being worked on, and when its lease is next renewed."""

    delivery: Delivery
    lease_s: float
    next_renew: float
    done: threading.Event = field(default_factory=threading.Event)
    lost: bool = False


def _lease_seconds(d: Delivery) -> float:
    if d.envelope.visibility_timeout is not None:
        return float(d.envelope.visibility_timeout)
    if d.lease_expires_at is not None:
        return max(0.5, d.lease_expires_at.timestamp() - time.time())
    return DEFAULT_LEASE_S


def _describe(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text[:_MAX_ERROR_CHARS]


class Worker:
    """Runs an app's tasks from some queues; `.run()` blocks, `.start()` / `.stop()` do not."""

    def __init__(
        self,
        app: Stem,
        queues: list[str] | tuple[str, ...] | str = ("default",),
        *,
        concurrency: int = 4,
        prefetch: int | None = None,
        rng: random.Random | None = None,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        self.app = app
        self.queues = normalise_names(queues, "queue")
        if not self.queues:
            raise ValueError("a worker needs at least one queue")
        self.concurrency = concurrency
        self.prefetch = 1 if prefetch is None else prefetch
        self.rng = rng if rng is not None else random.Random()
        self.heartbeat_s = heartbeat_s
        self.id = f"{socket.gethostname()}-{os.getpid()}-{new_id()[-8:]}"
        self.stats: dict[str, int] = dict.fromkeys(STATS, 0)
        self.task_stats: dict[str, dict[str, Any]] = {}  # task name -> counts and last_error
        self.paused: set[str] = set()
        self._queues_version = 0  # bumped by pause/resume: slots reopen their consumers
        self.started_at = time.time()
        self.responder = Responder(self)
        self._done = threading.Event()  # drained (or halted): helpers may stop
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._draining = threading.Event()  # take no new message
        self._halt = threading.Event()  # stop at once
        self._threads: list[threading.Thread] = []
        self._slots: list[threading.Thread] = []
        self._signals = 0
        self.killed = False  # True once stopped at once (tasks may have been abandoned)

    # ------------------------------------------------------------- lifecycle
    def start(self) -> Worker:
        """Start the slots, the lease renewer and the heartbeat in daemon threads."""
        if self._threads:
            raise StemlabError("this worker was started already")
        self._slots = [
            threading.Thread(target=self._slot, args=(k,), name=f"stemlab-worker-{k}", daemon=True)
            for k in range(self.concurrency)
        ]
        self.started_at = time.time()
        try:
            self.responder.subscribe()  # before the first heartbeat: an expected worker hears
        except Exception as exc:
            log.warning("worker %s: cannot subscribe to control: %s", self.id, _describe(exc))
        helpers = [
            threading.Thread(target=self._renewer, name="stemlab-renewer", daemon=True),
            threading.Thread(
                target=self.responder.run, args=(self._done,), name="stemlab-control", daemon=True
            ),
            threading.Thread(target=self._heartbeats, name="stemlab-heartbeat", daemon=True),
        ]
        self._threads = [*self._slots, *helpers]
        for thread in self._threads:
            thread.start()
        log.info("worker %s: %d slots on %s", self.id, self.concurrency, ",".join(self.queues))
        return self

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Drain: take nothing new, let running tasks finish; True if all ended in `timeout`."""
        self._draining.set()
        end = None if timeout is None else time.monotonic() + timeout
        for thread in self._slots:
            thread.join(None if end is None else max(0.0, end - time.monotonic()))
        drained = not any(t.is_alive() for t in self._slots)
        self._halt.set()
        self._done.set()
        for thread in self._threads:
            if thread not in self._slots:
                thread.join(2.0)
        with contextlib.suppress(StemlabError):
            self.app.backend.forget_worker(self.id)
        return drained

    def kill(self) -> None:
        """Stop at once: running tasks are abandoned and their messages left to their leases."""
        self.killed = True
        self._draining.set()
        self._halt.set()
        self._done.set()

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self._slots) and not self._halt.is_set()

    def run(self) -> None:
        """Run until stopped; in the main thread SIGTERM drains, a 2nd SIGTERM or SIGINT halts."""
        handlers: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self.start()
            while not self._halt.is_set() and any(t.is_alive() for t in self._slots):
                self._halt.wait(0.1)
            if not self._halt.is_set():
                self.stop(timeout=5.0)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if signum == signal.SIGTERM and self._signals == 1:
            log.info("worker %s: SIGTERM, draining (send it again to stop at once)", self.id)
            self._draining.set()
        else:
            log.info("worker %s: stopping at once", self.id)
            self.kill()

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1

    def _tally(self, task: str, key: str, error: str | None = None) -> None:
        """Count one outcome of task `task` (and keep its last error) for `stats`."""
        with self._lock:
            counts = self.task_stats.setdefault(task, {**dict.fromkeys(TASK_STATS, 0)})
            counts[key] += 1
            if error is not None:
                counts["last_error"] = error

    # --------------------------------------------------------------- control
    def describe(self) -> dict[str, Any]:
        """What `ping` answers: identity, queues, slots, tasks in flight, uptime."""
        with self._lock:
            in_flight = len({r.delivery.envelope.id for r in self._running.values()})
            paused = sorted(self.paused)
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(self.queues),
            "paused": paused,
            "concurrency": self.concurrency,
            "in_flight": in_flight,
            "uptime_s": round(time.time() - self.started_at, 3),
            "draining": self._draining.is_set(),
        }

    def task_report(self) -> dict[str, dict[str, Any]]:
        """What `stats` answers: per task name, its counts and last error."""
        with self._lock:
            return {name: dict(counts) for name, counts in self.task_stats.items()}

    def request_shutdown(self) -> int:
        """A warm shutdown: take no new message, finish what runs; returns how many run."""
        log.info("worker %s: shutdown requested: draining", self.id)
        self._draining.set()
        with self._lock:
            return len({r.delivery.envelope.id for r in self._running.values()})

    def is_running(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._running

    def pause(self, queue: str) -> list[str]:
        """Stop taking from `queue` (slots reopen their consumers at once); the paused queues."""
        with self._lock:
            if queue in self.queues:
                self.paused.add(queue)
                self._queues_version += 1
            return sorted(self.paused)

    def resume(self, queue: str) -> list[str]:
        """Take from `queue` again; the queues still paused."""
        with self._lock:
            if queue in self.paused:
                self.paused.discard(queue)
                self._queues_version += 1
            return sorted(self.paused)

    # ----------------------------------------------------------------- slots
    def _open(self, k: int, generation: int, queues: tuple[str, ...]) -> Consumer:
        name = f"{self.id}-s{k}-g{generation}"
        return self.app.broker.consume(queues, prefetch=self.prefetch, consumer=name)

    def _slot(self, k: int) -> None:
        generation = 0
        consumer: Consumer | None = None
        version = -1
        while not self._draining.is_set():
            try:
                with self._lock:
                    current = self._queues_version
                    active = tuple(q for q in self.queues if q not in self.paused)
                if consumer is not None and version != current:
                    consumer.close()  # paused or resumed: buffered messages go back in place
                    consumer = None
                if consumer is None:
                    version = current
                    if not active:  # every queue paused: idle until one is resumed
                        self._draining.wait(GET_S)
                        continue
                    generation += 1
                    consumer = self._open(k, generation, active)
                d = consumer.get(timeout=GET_S)
                if d is None:
                    continue
                if self._halt.is_set():
                    break  # leave it to its lease
                self._count("received")
                self._handle(d)
            except Exception as exc:  # the broker or backend failed: log, back off, reopen
                self._count("errors")
                log.warning("worker %s slot %d: %s", self.id, k, _describe(exc))
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        consumer.close()
                consumer = None
                self._halt.wait(0.5)
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close()

    # --------------------------------------------------------------- running
    def _handle(self, d: Delivery) -> None:
        env = d.envelope
        task = self.app.tasks.get(env.name)
        if task is None:
            error = f"no task named {env.name!r} is registered in this worker's app"
            self._give_up(d, "unregistered-task", error)
            return
        if d.delivery_count > env.max_retries + 1:
            error = (
                f"delivered {d.delivery_count} times (max_retries={env.max_retries}): "
                "its runs never ended (did the task kill its worker?)"
            )
            self._give_up(d, "max-deliveries", error)
            return
        revoked = self.app.backend.revoked(env.id)
        if revoked is not None:
            self._tally(env.name, "revoked")
            self._status(d, TaskState.CANCELLED, error="revoked")
            self._dead(d, "revoked", f"revoked at {revoked.get('revoked_at')}")
            return
        current = self.app.backend.get(env.id)
        if current is not None and current.state is TaskState.CANCELLED:
            self._ack(d)
            return
        running = self._begin(d)
        try:
            self._run(task, d)
        finally:
            with self._lock:
                if self._running.get(env.id) is running:
                    del self._running[env.id]
            running.done.set()

    def _begin(self, d: Delivery) -> _Running:
        """Register `d` as running; first wait for a run of the same id in this worker to end."""
        lease = _lease_seconds(d)
        mine = _Running(d, lease, time.monotonic() + lease / 3)
        while True:
            with self._lock:
                other = self._running.get(d.envelope.id)
                if other is None:
                    self._running[d.envelope.id] = mine
                    return mine
                # keep the waiting delivery leased too, under a key of its own
                self._running[f"{d.envelope.id}#{d.receipt}"] = mine
            other.done.wait()
            with self._lock:
                self._running.pop(f"{d.envelope.id}#{d.receipt}", None)

    def _status(self, d: Delivery, state: TaskState, **fields: Any) -> None:
        env = d.envelope
        meta = {"name": env.name, "queue": env.queue, "worker": self.id}
        self.app.backend.set(TaskStatus(env.id, state, env.attempt, meta=meta, **fields))

    def _run(self, task: Task, d: Delivery) -> None:
        env = d.envelope
        self._status(d, TaskState.RUNNING)
        try:
            result = task.fn(**env.args)
        except Exception as exc:
            self._failed(task, d, _describe(exc))
            return
        if self._halt.is_set():
            return  # stopped at once: the message is left to its lease
        try:
            self._status(d, TaskState.SUCCEEDED, result=result)
        except ResultError as exc:
            self._status(d, TaskState.FAILED, error=f"the result cannot be stored: {exc}")
            self._count("failed")
            self._tally(env.name, "failed", str(exc))
            self._dead(d, "unstorable-result", str(exc))
            return
        self._count("succeeded")
        self._tally(env.name, "succeeded")
        self._ack(d)

    def _failed(self, task: Task, d: Delivery, error: str) -> None:
        env = d.envelope
        if self._halt.is_set():
            return
        if env.attempt < env.max_retries:
            delay = backoff(env.attempt, task.retry_backoff, self.rng)
            self._status(d, TaskState.RETRIED, error=error)  # before the copy can run
            due = from_epoch(time.time() + delay)
            retry = replace(env, attempt=env.attempt + 1, not_before=due)
            self.app.broker.publish(retry)
            self._count("retried")
            self._tally(env.name, "retried", error)
            self._ack(d)
            return
        self._status(d, TaskState.FAILED, error=error)
        self._count("failed")
        self._tally(env.name, "failed", error)
        self._dead(d, "max-retries-exhausted", error)

    def _give_up(self, d: Delivery, reason: str, error: str) -> None:
        """Fail a message without running it: final status first, then its dead letter."""
        log.warning("worker %s: %s: %s", self.id, reason, error)
        self._status(d, TaskState.FAILED, error=error)
        self._count("failed")
        self._tally(d.envelope.name, "failed", error)
        self._dead(d, reason, error)

    def _dead(self, d: Delivery, reason: str, error: str) -> None:
        meta = {"error": error, "attempt": d.envelope.attempt, "worker": self.id}
        try:
            self.app.broker.dead_letter(d, reason=reason, meta=meta)
            self._count("dead")
        except LeaseLost:
            self._count("lease_lost")

    def _ack(self, d: Delivery) -> None:
        try:
            self.app.broker.ack(d)
        except LeaseLost:  # the lease ran out and someone else has the message now
            self._count("lease_lost")

    # --------------------------------------------------------------- helpers
    def _renewer(self) -> None:
        """Extend the lease of every running delivery each third of its lease."""
        while not self._halt.wait(RENEW_TICK_S):
            now = time.monotonic()
            with self._lock:
                due = [r for r in self._running.values() if not r.lost and r.next_renew <= now]
            for r in due:
                try:
                    self.app.broker.extend_lease(r.delivery, r.lease_s)
                    r.next_renew = time.monotonic() + r.lease_s / 3
                    self._tally(r.delivery.envelope.name, "renewals")
                except LeaseLost:
                    r.lost = True
                    self._count("lease_lost")
                except Exception as exc:
                    log.warning("worker %s: lease renewal failed: %s", self.id, _describe(exc))
                    r.next_renew = time.monotonic() + min(1.0, r.lease_s / 6)

    def _heartbeats(self) -> None:
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "started_at": self.started_at,
        }
        while True:
            if self._draining.is_set() and not any(t.is_alive() for t in self._slots):
                self._done.set()  # drained (a control shutdown under .start()): leave the list
                with contextlib.suppress(Exception):
                    self.app.backend.forget_worker(self.id)
                return
            with self._lock:
                stats = dict(self.stats)
                running = len(self._running)
                paused = sorted(self.paused)
            try:
                beat = {**info, "running": running, "stats": stats, "paused": paused}
                self.app.backend.heartbeat(self.id, beat, ttl=3 * self.heartbeat_s)
            except Exception as exc:
                log.warning("worker %s: heartbeat failed: %s", self.id, _describe(exc))
            if self._halt.wait(self.heartbeat_s):
                return
