"""`Stem`: the app that registers task functions, enqueues them and reads their results.

The producer side of the runtime: `enqueue` writes the `queued` status BEFORE
it publishes, so a fast worker's `running` or `succeeded` can never be
overwritten by a late `queued`. `wait` watches the result backend, so it works
from any process that shares the backend (pub/sub, LISTEN/NOTIFY or polling).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, overload

from stemlab.brokers import connect
from stemlab.core.broker import Broker
from stemlab.core.clock import from_epoch, require_aware
from stemlab.core.envelope import Envelope, validate_priority, validate_queue_name
from stemlab.errors import ConfigError
from stemlab.runtime.backend import ResultBackend, connect_backend
from stemlab.runtime.backends.memory import MemoryBackend
from stemlab.runtime.control import Control
from stemlab.runtime.status import TaskState, TaskStatus
from stemlab.runtime.worker import Worker

__all__ = ["Stem", "Task"]


@dataclass(frozen=True)
class Task:
    """A registered task: the function and the defaults its messages are sent with."""

    name: str
    fn: Callable[..., Any]
    queue: str = "default"
    priority: int = 0
    max_retries: int = 0
    visibility_timeout: float | None = None
    retry_backoff: float = 2.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly, in this thread (no broker involved)."""
        return self.fn(*args, **kwargs)


class Stem:
    """Tasks registered by name on one broker, with their statuses in one result backend.

    `broker` and `backend` are objects (left open by `close`) or URLs (opened
    here, closed by `close`). Without a backend the statuses live in this
    process only (`memory://`): enough for `.start()`-ed workers, not for
    `app.wait` in another process.
    """

    def __init__(self, broker: Broker | str, backend: ResultBackend | str | None = None) -> None:
        self._owned: list[Broker | ResultBackend] = []
        if isinstance(broker, str):
            broker = connect(broker)
            self._owned.append(broker)
        if not isinstance(broker, Broker):
            raise TypeError(f"broker must be a Broker or a URL, got {type(broker).__name__}")
        if backend is None:
            backend = MemoryBackend()
            self._owned.append(backend)
        elif isinstance(backend, str):
            backend = connect_backend(backend)
            self._owned.append(backend)
        if not isinstance(backend, ResultBackend):
            kind = type(backend).__name__
            raise TypeError(f"backend must be a ResultBackend or a URL, got {kind}")
        self.broker = broker
        self.backend = backend
        self.tasks: dict[str, Task] = {}

    # ----------------------------------------------------------- registering
    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_retries: int = 0,
        visibility_timeout: float | None = None,
        retry_backoff: float = 2.0,
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_retries: int = 0,
        visibility_timeout: float | None = None,
        retry_backoff: float = 2.0,
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a function as a task (``@app.task`` or ``@app.task(name=..., ...)``)."""
        validate_queue_name(queue)
        validate_priority(priority)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if visibility_timeout is not None and not visibility_timeout > 0:
            raise ConfigError(f"visibility_timeout must be > 0 seconds, got {visibility_timeout}")
        if not retry_backoff >= 0:
            raise ConfigError(f"retry_backoff must be >= 0 seconds, got {retry_backoff}")

        def register(func: Callable[..., Any]) -> Task:
            task_name = name or func.__name__
            if task_name in self.tasks and self.tasks[task_name].fn is not func:
                raise ConfigError(f"a task named {task_name!r} is registered already")
            task = Task(
                task_name,
                func,
                queue,
                priority,
                max_retries,
                None if visibility_timeout is None else float(visibility_timeout),
                float(retry_backoff),
            )
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else register

    def using(self, broker: Broker | str, backend: ResultBackend | str | None = None) -> Stem:
        """A second app sharing this one's task registry on another broker and backend.

        `stemlab worker URL --app module:app` uses it: the module declares the
        tasks, the command line says where to run them.
        """
        other = Stem(broker, backend)
        other.tasks = self.tasks
        return other

    # ------------------------------------------------------------- producing
    def enqueue(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
    ) -> str:
        """Send task `name` with keyword `args`; returns the task id (to `result` or `wait` on).

        A name not registered here is sent with the default queue, priority and
        no retries (the worker that runs it must know it). `countdown` (seconds)
        or `eta` (an aware datetime) delays it.
        """
        task = self.tasks.get(name)
        if countdown is not None and eta is not None:
            raise ValueError("give countdown or eta, not both")
        not_before: datetime | None = None
        if countdown is not None:
            seconds = countdown.total_seconds() if isinstance(countdown, timedelta) else countdown
            if not seconds >= 0:
                raise ValueError(f"countdown must be >= 0 seconds, got {countdown}")
            not_before = from_epoch(time.time() + float(seconds)) if seconds > 0 else None
        elif eta is not None:
            not_before = require_aware(eta, "eta")
        env = Envelope(
            name=name,
            args=dict(args or {}),
            queue=queue or (task.queue if task else "default"),
            priority=priority if priority is not None else (task.priority if task else 0),
            not_before=not_before,
            visibility_timeout=task.visibility_timeout if task else None,
            max_retries=task.max_retries if task else 0,
        )
        meta = {"name": name, "queue": env.queue, "enqueued_at": time.time()}
        self.backend.set(TaskStatus(env.id, TaskState.QUEUED, 0, meta=meta))  # before publish
        self.broker.publish(env)
        return env.id

    def cancel(self, task_id: str) -> bool:
        """Mark a task not yet finished as cancelled (a worker then skips it); False if too late."""
        status = self.backend.get(task_id)
        if status is not None and status.done:
            return False
        meta = dict(status.meta) if status else {}
        attempt = status.attempt if status else 0
        self.backend.set(TaskStatus(task_id, TaskState.CANCELLED, attempt, meta=meta))
        return True

    # --------------------------------------------------------------- results
    def result(self, task_id: str) -> TaskStatus | None:
        """The task's latest status, or None (unknown id, or expired)."""
        return self.backend.get(task_id)

    def wait(self, task_id: str, timeout: float = 10.0) -> TaskStatus:
        """Block until the task succeeded, failed or was cancelled; TimeoutError after `timeout`."""
        status = self.backend.watch(task_id, timeout)
        if status is None or not status.done:
            state = "unknown" if status is None else status.state.value
            raise TimeoutError(f"task {task_id} not done after {timeout:g} s (state: {state})")
        return status

    # --------------------------------------------------------------- workers
    def worker(
        self,
        queues: list[str] | tuple[str, ...] | str = ("default",),
        concurrency: int = 4,
        prefetch: int | None = None,
        *,
        rng: random.Random | None = None,
    ) -> Worker:
        """A worker for this app's tasks on `queues` (`.run()` blocks, `.start()` does not)."""
        return Worker(self, queues, concurrency=concurrency, prefetch=prefetch, rng=rng)

    @property
    def control(self) -> Control:
        """Commands for this namespace's workers: ping, stats, shutdown, revoke, pause, resume."""
        return Control(self)

    def close(self) -> None:
        """Close the broker and backend this app opened from URLs (objects given are left open)."""
        for item in reversed(self._owned):
            item.close()
        self._owned.clear()

    def __enter__(self) -> Stem:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
