"""The SQLite result backend: tables in any SQLite file (the broker's own file is fine).

One connection per thread (WAL, busy timeout); writes are autocommit statements
or short `BEGIN IMMEDIATE` transactions. SQLite has no notifications, so
`watch` polls (every 50 ms); other processes see writes as soon as they commit.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from stemlab.core.codec import dumps, loads
from stemlab.errors import BrokerUnavailable, ConfigError, StemlabError
from stemlab.runtime.backend import DEFAULT_TTL, GroupState, ResultBackend
from stemlab.runtime.backends._sql import load_sql
from stemlab.runtime.status import TaskStatus

__all__ = ["SQLiteBackend"]

POLL_S = 0.05  # how often `watch` re-reads a status
_EXPIRE_EVERY = 200  # every so many writes, one of them also deletes expired statuses
_Q = load_sql("sqlite.sql")


def _translate(exc: sqlite3.Error, what: str) -> StemlabError:
    """A driver error as a stemlab error: a locked or unreadable file is 'unavailable'."""
    if isinstance(exc, sqlite3.OperationalError):
        return BrokerUnavailable(f"sqlite result backend: {what}: {exc}")
    return StemlabError(f"sqlite result backend: {what}: {exc}")


class SQLiteBackend(ResultBackend):
    """Statuses, groups and heartbeats in four tables keyed by (namespace, id)."""

    def __init__(self, path: str, namespace: str = "stem", ttl: float = DEFAULT_TTL) -> None:
        super().__init__(namespace, ttl)
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._sets = 0
        try:
            self._conn().executescript(_Q["schema"])
        except sqlite3.Error as exc:
            raise _translate(exc, f"cannot create the tables in {path}") from exc

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteBackend:
        path = unquote(urlsplit(url).path)[1:]  # "/rel.db" -> "rel.db", "//abs.db" -> "/abs.db"
        if not path or path.endswith("/") or path == ":memory:":
            raise ConfigError(f"sqlite:// needs a file path, got {url!r}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return cls(path, **options)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            raise _translate(exc, f"cannot open {self.path}") from exc
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._conns.append(conn)
        return conn

    @contextlib.contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction, committed or rolled back; driver errors translated."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _translate(exc, what) from exc

    def _read(self, name: str, **params: Any) -> list[Any]:
        try:
            return self._conn().execute(_Q[name], {"ns": self.namespace, **params}).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, name) from exc

    # -------------------------------------------------------------- statuses
    def _set(self, task_id: str, body: str, ttl: float, done: bool) -> None:
        now = time.time()
        params = {"ns": self.namespace, "id": task_id, "body": body, "expires_at": now + ttl}
        self._sets += 1
        with self._write("set") as conn:
            conn.execute(_Q["set"], params)
            if self._sets % _EXPIRE_EVERY == 0:  # expired rows are skipped on read, dropped here
                conn.execute(_Q["expire"], {"ns": self.namespace, "now": now})

    def _get(self, task_id: str) -> str | None:
        rows = self._read("get", id=task_id, now=time.time())
        return str(rows[0][0]) if rows else None

    def _watch(self, task_id: str, timeout: float) -> TaskStatus | None:
        end = time.monotonic() + timeout
        while True:
            raw = self._get(task_id)
            status = None if raw is None else TaskStatus.from_json(raw)
            left = end - time.monotonic()
            if (status is not None and status.done) or left <= 0:
                return status
            time.sleep(min(POLL_S, left))

    # -------------------------------------------------------- groups, chords
    def _group_init(self, group_id: str, expected: int) -> None:
        with self._write("group_init") as conn:
            conn.execute(_Q["group_reset"], {"ns": self.namespace, "id": group_id})
            conn.execute(
                _Q["group_init"], {"ns": self.namespace, "id": group_id, "expected": expected}
            )

    def _group_done(self, group_id: str, task_id: str) -> GroupState | None:
        with self._write("group_done") as conn:
            conn.execute(
                _Q["group_done"], {"ns": self.namespace, "id": group_id, "task_id": task_id}
            )
        return self._group_get(group_id)

    def _group_get(self, group_id: str) -> GroupState | None:
        rows = self._read("group_get", id=group_id)
        if not rows:
            return None
        expected, claimed, done = rows[0]
        return GroupState(group_id, int(expected), int(done), bool(claimed))

    def _chord_claim(self, group_id: str) -> bool:
        with self._write("chord_claim") as conn:
            cur = conn.execute(_Q["chord_claim"], {"ns": self.namespace, "id": group_id})
            return cur.rowcount == 1

    # ------------------------------------------------------------ heartbeats
    def _heartbeat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        params = {
            "ns": self.namespace,
            "id": worker_id,
            "info": dumps(info),
            "expires_at": time.time() + ttl,
        }
        with self._write("heartbeat") as conn:
            conn.execute(_Q["heartbeat"], params)

    def _workers(self) -> dict[str, dict[str, Any]]:
        return {str(w): loads(info) for w, info in self._read("workers", now=time.time())}

    def _forget_worker(self, worker_id: str) -> None:
        with self._write("forget_worker") as conn:
            conn.execute(_Q["forget_worker"], {"ns": self.namespace, "id": worker_id})

    def _clear(self) -> None:
        with self._write("clear") as conn:
            for statement in _Q["clear"].split(";"):
                if statement.strip():
                    conn.execute(statement, {"ns": self.namespace})

    def _close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
