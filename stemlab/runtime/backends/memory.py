"""An in-process result backend: dicts under one lock, watchers woken by a condition.

For tests and single-process apps; nothing survives the process.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from stemlab.runtime.backend import DEFAULT_TTL, GroupState, ResultBackend
from stemlab.runtime.status import TaskStatus

__all__ = ["MemoryBackend"]


class MemoryBackend(ResultBackend):
    """Statuses, groups and heartbeats in dicts; expiry is checked on read."""

    def __init__(self, namespace: str = "stem", ttl: float = DEFAULT_TTL) -> None:
        super().__init__(namespace, ttl)
        self._cond = threading.Condition()
        self._results: dict[str, tuple[str, float]] = {}  # id -> (body, expires at)
        self._groups: dict[str, tuple[int, set[str], bool]] = {}
        self._workers_seen: dict[str, tuple[dict[str, Any], float]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryBackend:
        return cls(**options)

    def _set(self, task_id: str, body: str, ttl: float, done: bool) -> None:
        with self._cond:
            self._results[task_id] = (body, time.time() + ttl)
            self._cond.notify_all()

    def _get(self, task_id: str) -> str | None:
        with self._cond:
            item = self._results.get(task_id)
            if item is None:
                return None
            if item[1] <= time.time():
                del self._results[task_id]
                return None
            return item[0]

    def _watch(self, task_id: str, timeout: float) -> TaskStatus | None:
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                raw = self._get(task_id)
                status = None if raw is None else TaskStatus.from_json(raw)
                left = end - time.monotonic()
                if (status is not None and status.done) or left <= 0:
                    return status
                self._cond.wait(min(left, 1.0))

    def _group_init(self, group_id: str, expected: int) -> None:
        with self._cond:
            self._groups[group_id] = (expected, set(), False)

    def _group_done(self, group_id: str, task_id: str) -> GroupState | None:
        with self._cond:
            if group_id not in self._groups:
                return None
            self._groups[group_id][1].add(task_id)
            return self._group_get(group_id)

    def _group_get(self, group_id: str) -> GroupState | None:
        with self._cond:
            item = self._groups.get(group_id)
            if item is None:
                return None
            return GroupState(group_id, item[0], len(item[1]), item[2])

    def _chord_claim(self, group_id: str) -> bool:
        with self._cond:
            item = self._groups.get(group_id)
            if item is None or item[2] or len(item[1]) < item[0]:
                return False
            self._groups[group_id] = (item[0], item[1], True)
            return True

    def _heartbeat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        with self._cond:
            self._workers_seen[worker_id] = (dict(info), time.time() + ttl)

    def _workers(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        with self._cond:
            return {w: dict(info) for w, (info, exp) in self._workers_seen.items() if exp > now}

    def _forget_worker(self, worker_id: str) -> None:
        with self._cond:
            self._workers_seen.pop(worker_id, None)

    def _clear(self) -> None:
        with self._cond:
            self._results.clear()
            self._groups.clear()
            self._workers_seen.clear()

    def _close(self) -> None:
        pass
