"""The PostgreSQL result backend: four tables in the schema `stemlab_rt`, LISTEN/NOTIFY for watch.

A final status is written and NOTIFYed in one transaction (the notification
goes out at commit, so a woken watcher always reads it). `watch` LISTENs on a
connection of its own before it reads, so no wake-up is missed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from stemlab.core.codec import dumps, loads
from stemlab.errors import BrokerUnavailable, StemlabError
from stemlab.runtime.backend import DEFAULT_TTL, GroupState, ResultBackend
from stemlab.runtime.backends._sql import load_sql
from stemlab.runtime.status import TaskStatus

__all__ = ["PostgresBackend"]

_Q = load_sql("postgres.sql")
_CHANNEL_STATEMENT = "listen"
_EXPIRE_EVERY = 200  # every so many writes, one of them also deletes expired statuses
_schema_ready: set[str] = set()
_schema_lock = threading.Lock()


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Driver errors as stemlab errors: connection trouble is `BrokerUnavailable`."""
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
        raise BrokerUnavailable(f"postgres result backend: {what}: {exc}") from exc
    except psycopg.Error as exc:
        raise StemlabError(f"postgres result backend: {what}: {exc}") from exc


class PostgresBackend(ResultBackend):
    """Statuses, groups and heartbeats keyed by (namespace, id), expiry by the server's clock."""

    def __init__(
        self, url: str, namespace: str = "stem", ttl: float = DEFAULT_TTL, pool_size: int = 8
    ) -> None:
        super().__init__(namespace, ttl)
        self.url = url
        self._sets = 0
        with _translated("connect"):
            self._ensure_schema()
            self.pool: ConnectionPool = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                kwargs={"autocommit": True},
                name=f"stemlab-results-{namespace}"[:60],
                timeout=30.0,
                open=True,
            )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresBackend:
        return cls(url, **options)

    def _ensure_schema(self) -> None:
        with _schema_lock:
            if self.url in _schema_ready:
                return
            with psycopg.connect(self.url, autocommit=False, connect_timeout=10) as conn:
                for statement in _Q["schema"].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.commit()
            _schema_ready.add(self.url)

    def _rows(self, name: str, **params: Any) -> list[Any]:
        with _translated(name), self.pool.connection() as conn:
            cur = conn.execute(_Q[name], {"ns": self.namespace, **params})
            return cur.fetchall() if cur.description else []

    # -------------------------------------------------------------- statuses
    def _set(self, task_id: str, body: str, ttl: float, done: bool) -> None:
        params = {"ns": self.namespace, "id": task_id, "body": body, "ttl": ttl}
        self._sets += 1
        with _translated("set"), self.pool.connection() as conn, conn.transaction():
            conn.execute(_Q["set"], params)
            if done:
                conn.execute(_Q["notify"], params)
            if self._sets % _EXPIRE_EVERY == 0:  # expired rows are skipped on read, dropped here
                conn.execute(_Q["expire"], params)

    def _get(self, task_id: str) -> str | None:
        rows = self._rows("get", id=task_id)
        return str(rows[0][0]) if rows else None

    def _watch(self, task_id: str, timeout: float) -> TaskStatus | None:
        end = time.monotonic() + timeout
        payload = f"{self.namespace} {task_id}"
        with (
            _translated("watch"),
            psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn,
        ):
            conn.execute(_Q[_CHANNEL_STATEMENT])
            while True:
                raw = self._get(task_id)
                status = None if raw is None else TaskStatus.from_json(raw)
                left = end - time.monotonic()
                if (status is not None and status.done) or left <= 0:
                    return status
                for note in conn.notifies(timeout=min(left, 1.0)):
                    if note.payload == payload:
                        break

    # -------------------------------------------------------- groups, chords
    def _group_init(self, group_id: str, expected: int) -> None:
        params = {"ns": self.namespace, "id": group_id, "expected": expected}
        with _translated("group_init"), self.pool.connection() as conn, conn.transaction():
            conn.execute(_Q["group_reset"], params)
            conn.execute(_Q["group_init"], params)

    def _group_done(self, group_id: str, task_id: str) -> GroupState | None:
        self._rows("group_done", id=group_id, task_id=task_id)
        return self._group_get(group_id)

    def _group_get(self, group_id: str) -> GroupState | None:
        rows = self._rows("group_get", id=group_id)
        if not rows:
            return None
        expected, claimed, done = rows[0]
        return GroupState(group_id, int(expected), int(done), bool(claimed))

    def _chord_claim(self, group_id: str) -> bool:
        return bool(self._rows("chord_claim", id=group_id))

    # ------------------------------------------------------------ heartbeats
    def _heartbeat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        self._rows("heartbeat", id=worker_id, info=dumps(info), ttl=ttl)

    def _workers(self) -> dict[str, dict[str, Any]]:
        return {str(w): loads(info) for w, info in self._rows("workers")}

    def _forget_worker(self, worker_id: str) -> None:
        self._rows("forget_worker", id=worker_id)

    def _clear(self) -> None:
        for name in ("clear_results", "clear_members", "clear_groups", "clear_workers"):
            self._rows(name)

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self.pool.close()
