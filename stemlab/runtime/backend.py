"""The result backend contract: task statuses, groups, chord claims and worker heartbeats.

Public methods validate their arguments once, here, and call the store's
protected hooks, so every backend refuses bad input the same way and before
anything is written. `connect_backend(url)` opens the store a URL names;
drivers are imported only then.
"""

from __future__ import annotations

import abc
import importlib
import math
import re
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from stemlab.core.codec import ensure_json
from stemlab.errors import ConfigError, EnvelopeError, ResultError, StemlabError
from stemlab.runtime.status import TaskState, TaskStatus

__all__ = ["DEFAULT_TTL", "REVOKED_PREFIX", "GroupState", "ResultBackend", "connect_backend"]

DEFAULT_TTL = 86_400.0  # a status is kept one day after its last write unless told otherwise
REVOKED_PREFIX = "revoked:"  # status ids under which revocations are kept
NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")

# scheme -> (module, class, the extra that brings its driver or None)
SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("stemlab.runtime.backends.memory", "MemoryBackend", None),
    "sqlite": ("stemlab.runtime.backends.sqlite", "SQLiteBackend", None),
    "redis": ("stemlab.runtime.backends.redis", "RedisBackend", "redis"),
    "rediss": ("stemlab.runtime.backends.redis", "RedisBackend", "redis"),
    "postgresql": ("stemlab.runtime.backends.postgres", "PostgresBackend", "postgres"),
    "postgres": ("stemlab.runtime.backends.postgres", "PostgresBackend", "postgres"),
}


@dataclass(frozen=True)
class GroupState:
    """A group of tasks: how many are expected, how many are done, and whether a chord ran."""

    id: str
    expected: int
    done: int
    claimed: bool

    @property
    def complete(self) -> bool:
        return self.done >= self.expected


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise ResultError(f"{what} must be a non-empty string of at most 200 characters")
    return value


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultError(f"{what} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not seconds > 0 or math.isinf(seconds):
        raise ResultError(f"{what} must be a finite number of seconds > 0, got {value!r}")
    return seconds


class ResultBackend(abc.ABC):
    """Where task statuses live, shared by producers and workers across processes."""

    closed: bool = False

    def __init__(self, namespace: str = "stem", ttl: float = DEFAULT_TTL) -> None:
        if not isinstance(namespace, str) or not NAMESPACE_RE.fullmatch(namespace):
            raise ConfigError(f"namespace must match {NAMESPACE_RE.pattern}, got {namespace!r}")
        self.namespace = namespace
        self.ttl = _seconds(ttl, "ttl")

    # -------------------------------------------------------------- statuses
    def set(self, status: TaskStatus, *, ttl: float | None = None) -> None:
        """Store `status` (replacing the whole record) for `ttl` seconds; wakes its watchers."""
        self._check_open()
        if not isinstance(status, TaskStatus):
            raise ResultError(f"expected a TaskStatus, got {type(status).__name__}")
        seconds = self.ttl if ttl is None else _seconds(ttl, "ttl")
        self._set(status.id, status.to_json(), seconds, status.done)

    def get(self, task_id: str) -> TaskStatus | None:
        """The stored status of `task_id`, or None (never written, or expired)."""
        self._check_open()
        raw = self._get(_name(task_id, "task_id"))
        return None if raw is None else TaskStatus.from_json(raw)

    def watch(self, task_id: str, timeout: float) -> TaskStatus | None:
        """Wait up to `timeout` seconds for `task_id` to be done; the latest status either way."""
        self._check_open()
        _name(task_id, "task_id")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
            raise ValueError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        return self._watch(task_id, float(timeout))

    # -------------------------------------------------------- groups, chords
    def group_init(self, group_id: str, expected: int) -> None:
        """Declare a group of `expected` tasks (re-declaring it resets it)."""
        self._check_open()
        _name(group_id, "group_id")
        if isinstance(expected, bool) or not isinstance(expected, int) or expected < 1:
            raise ResultError(f"expected must be an int >= 1, got {expected!r}")
        self._group_init(group_id, expected)

    def group_done(self, group_id: str, task_id: str) -> GroupState:
        """Count `task_id` as done in the group (idempotent) and return the group's state."""
        self._check_open()
        state = self._group_done(_name(group_id, "group_id"), _name(task_id, "task_id"))
        if state is None:
            raise ResultError(f"no group {group_id!r} (declare it with group_init first)")
        return state

    def group_get(self, group_id: str) -> GroupState | None:
        self._check_open()
        return self._group_get(_name(group_id, "group_id"))

    def chord_claim(self, group_id: str) -> bool:
        """True for exactly one caller of a complete group: the one that runs its callback."""
        self._check_open()
        return self._chord_claim(_name(group_id, "group_id"))

    # ------------------------------------------------------------ heartbeats
    def heartbeat(self, worker_id: str, info: dict[str, Any], *, ttl: float = 10.0) -> None:
        """Say `worker_id` is alive for `ttl` seconds, with `info` (JSON) about it."""
        self._check_open()
        _name(worker_id, "worker_id")
        if not isinstance(info, dict):
            raise ResultError("info must be a dict")
        try:
            ensure_json(info, "info")
        except EnvelopeError as exc:
            raise ResultError(str(exc)) from exc
        self._heartbeat(worker_id, info, _seconds(ttl, "ttl"))

    def workers(self) -> dict[str, dict[str, Any]]:
        """The workers whose last heartbeat has not expired, with their info."""
        self._check_open()
        return self._workers()

    def forget_worker(self, worker_id: str) -> None:
        """Remove a worker's heartbeat at once (a clean stop)."""
        self._check_open()
        self._forget_worker(_name(worker_id, "worker_id"))

    # ----------------------------------------------------------- revocations
    def revoke(self, task_id: str, info: dict[str, Any] | None = None) -> None:
        """Record that `task_id` is revoked (kept `ttl` seconds); workers check it at delivery.

        Stored as a status record under the reserved id ``revoked:<task_id>``, so
        every store keeps it with no schema of its own and a worker started
        later (or a delayed task falling due tomorrow) still sees it.
        """
        self._check_open()
        meta = {"revoked_at": time.time(), **(info or {})}
        self.set(
            TaskStatus(REVOKED_PREFIX + _name(task_id, "task_id"), TaskState.CANCELLED, meta=meta)
        )

    def revoked(self, task_id: str) -> dict[str, Any] | None:
        """The revocation record of `task_id` (its meta), or None if it was never revoked."""
        self._check_open()
        raw = self._get(REVOKED_PREFIX + _name(task_id, "task_id"))
        return None if raw is None else dict(TaskStatus.from_json(raw).meta)

    # -------------------------------------------------------------- lifetime
    def clear(self) -> None:
        """Delete everything this backend stored under its namespace."""
        self._check_open()
        self._clear()

    def close(self) -> None:
        """Release connections; idempotent."""
        if not self.closed:
            self.closed = True
            self._close()

    def _check_open(self) -> None:
        if self.closed:
            raise StemlabError("this result backend is closed")

    def __enter__(self) -> ResultBackend:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------- store hooks (protected)
    @abc.abstractmethod
    def _set(self, task_id: str, body: str, ttl: float, done: bool) -> None: ...

    @abc.abstractmethod
    def _get(self, task_id: str) -> str | None: ...

    @abc.abstractmethod
    def _watch(self, task_id: str, timeout: float) -> TaskStatus | None: ...

    @abc.abstractmethod
    def _group_init(self, group_id: str, expected: int) -> None: ...

    @abc.abstractmethod
    def _group_done(self, group_id: str, task_id: str) -> GroupState | None: ...

    @abc.abstractmethod
    def _group_get(self, group_id: str) -> GroupState | None: ...

    @abc.abstractmethod
    def _chord_claim(self, group_id: str) -> bool: ...

    @abc.abstractmethod
    def _heartbeat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None: ...

    @abc.abstractmethod
    def _workers(self) -> dict[str, dict[str, Any]]: ...

    @abc.abstractmethod
    def _forget_worker(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    def _clear(self) -> None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...


def connect_backend(url: str, **options: Any) -> ResultBackend:
    """Open the result backend `url` names: memory://, sqlite:///file, redis://, postgresql://."""
    supported = ", ".join(f"{s}://" for s in SCHEMES)
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"not a result backend URL: {url!r}; supported schemes: {supported}")
    scheme = urlsplit(url).scheme.lower()
    entry = SCHEMES.get(scheme)
    if entry is None:
        raise ConfigError(f"unknown URL scheme {scheme + '://'!r}; supported: {supported}")
    module_name, class_name, extra = entry
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is None or (exc.name or "").startswith("stemlab"):
            raise
        raise ConfigError(
            f"{scheme}:// needs the {exc.name!r} driver: pip install 'stemlab[{extra}]'"
        ) from exc
    backend: ResultBackend = getattr(module, class_name).from_url(url, **options)
    return backend
