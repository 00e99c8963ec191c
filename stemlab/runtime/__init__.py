"""Run your own tasks: a `Stem` app of registered functions, its workers, and result backends.

`Stem(broker, backend)` registers tasks and enqueues them on any stemlab
broker; `app.worker(...)` runs them with leases renewed, retries with backoff
and dead letters; a `ResultBackend` (memory, SQLite, Redis, PostgreSQL) keeps
each task's `TaskStatus` so `app.wait` works across processes.
"""

from stemlab.runtime.app import Stem, Task
from stemlab.runtime.backend import GroupState, ResultBackend, connect_backend
from stemlab.runtime.control import Control
from stemlab.runtime.retry import backoff
from stemlab.runtime.status import TaskState, TaskStatus
from stemlab.runtime.worker import Worker

__all__ = [
    "Control",
    "GroupState",
    "ResultBackend",
    "Stem",
    "Task",
    "TaskState",
    "TaskStatus",
    "Worker",
    "backoff",
    "connect_backend",
]
