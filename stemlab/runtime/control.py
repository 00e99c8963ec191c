"""`app.control`: send a command to the workers and say who answered, who was silent, and why.

One call: validate, read the live workers from the result backend's
heartbeats (the *expected* ones), subscribe to a fresh reply channel, then
broadcast the command on the control channel and collect replies until the
deadline (or until every expected, reachable worker has answered). An expected
worker that did not answer is ``silent``, unless the broker's
`capabilities.broadcast_scope` cannot reach it (``"process"``: another
process; ``"host"``: another host; ``None``: any), in which case it is
``unreachable``: silence is never reported as absence when the message could
not have arrived. Every result is a pandas DataFrame, one row per worker (per
worker and task for `stats`); ``df.attrs`` holds the command, the scope and a
note.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from stemlab.runtime.protocol import (
    COMMANDS,
    Reply,
    check_task_id,
    check_timeout,
    command_envelope,
    parse_reply,
)

if TYPE_CHECKING:
    import pandas as pd

    from stemlab.runtime.app import Stem

__all__ = ["COLUMNS", "Control"]

# the columns of every frame, then each command's own
COLUMNS = ("worker", "status", "host", "pid")
EXTRA: dict[str, tuple[str, ...]] = {
    "ping": ("queues", "paused", "concurrency", "in_flight", "uptime_s", "draining"),
    "stats": ("task", "succeeded", "failed", "retried", "revoked", "renewals", "last_error"),
    "shutdown": ("in_flight", "draining"),
    "revoke": ("task_id", "running"),
    "pause": ("queue", "paused"),
    "resume": ("queue", "paused"),
}
SCOPE_NOTE = {
    "process": "memory broker: the command reaches workers in this process only",
    "host": "SQLite broker: the command reaches workers on this host only",
    None: "this broker has no broadcast: the command reaches no worker",
}


class Control:
    """Commands for the workers of one app's broker namespace (`app.control`)."""

    def __init__(self, app: Stem) -> None:
        self.app = app

    # ------------------------------------------------------------- commands
    def ping(self, timeout: float = 1.0, *, workers: list[str] | None = None) -> pd.DataFrame:
        """Who is there: id, host, pid, queues, concurrency, tasks in flight, uptime."""
        return self.send("ping", timeout=timeout, workers=workers)

    def stats(self, timeout: float = 1.0, *, workers: list[str] | None = None) -> pd.DataFrame:
        """Per worker and task: succeeded, failed, retried, revoked, lease renewals, last error."""
        return self.send("stats", timeout=timeout, workers=workers)

    def shutdown(self, timeout: float = 1.0, *, workers: list[str] | None = None) -> pd.DataFrame:
        """Warm shutdown: the workers take no new task, finish what runs, and exit."""
        return self.send("shutdown", timeout=timeout, workers=workers)

    def revoke(
        self, task_id: str, timeout: float = 1.0, *, workers: list[str] | None = None
    ) -> pd.DataFrame:
        """Revoke a task: stored in the result backend first (so any worker, now or later,
        dead-letters it as ``"revoked"`` at delivery), then announced; a worker running it
        says so (it is not killed)."""
        check_timeout(timeout)
        self.app.backend.revoke(check_task_id(task_id), {"by": f"{socket.gethostname()}"})
        return self.send("revoke", {"task_id": task_id}, timeout=timeout, workers=workers)

    def pause(
        self, queue: str, timeout: float = 1.0, *, workers: list[str] | None = None
    ) -> pd.DataFrame:
        """The workers stop taking tasks from `queue` (tasks already running finish)."""
        return self.send("pause", {"queue": queue}, timeout=timeout, workers=workers)

    def resume(
        self, queue: str, timeout: float = 1.0, *, workers: list[str] | None = None
    ) -> pd.DataFrame:
        """The workers take tasks from `queue` again."""
        return self.send("resume", {"queue": queue}, timeout=timeout, workers=workers)

    # ----------------------------------------------------------------- core
    def send(
        self,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float = 1.0,
        workers: list[str] | None = None,
    ) -> pd.DataFrame:
        """Send any command of `COMMANDS`; ValueError for bad input, before anything is sent."""
        seconds = check_timeout(timeout)
        if command not in COMMANDS:
            raise ValueError(f"unknown control command {command!r} (known: {', '.join(COMMANDS)})")
        targets = None if workers is None else tuple(_worker_ids(workers))
        cmd, env = command_envelope(command, args or {}, targets, seconds)
        broker = self.app.broker
        scope = broker.capabilities.broadcast_scope
        expected = {
            wid: info
            for wid, info in self.app.backend.workers().items()
            if targets is None or wid in targets
        }
        reachable = {wid for wid, info in expected.items() if _reaches(scope, info)}
        replies: dict[str, Reply] = {}
        if scope is not None:
            with broker.consume(channels=[cmd.reply_to]) as consumer:
                broker.broadcast("stemlab.control", env)
                end = time.monotonic() + seconds
                while (left := end - time.monotonic()) > 0:
                    if reachable and reachable <= set(replies):
                        break  # every worker that could answer did
                    d = consumer.get(timeout=min(left, 0.1))
                    if d is None:
                        continue
                    broker.ack(d)
                    reply = parse_reply(d.envelope)
                    if reply is not None and reply.request_id == cmd.request_id:
                        replies[reply.worker] = reply
        return _frame(command, scope, expected, reachable, replies)


def _worker_ids(workers: object) -> list[str]:
    if isinstance(workers, str) or not isinstance(workers, list | tuple):
        raise ValueError("workers must be a list of worker ids")
    if not workers or not all(isinstance(w, str) and w for w in workers):
        raise ValueError("workers must be a non-empty list of non-empty worker ids")
    return list(workers)


def _reaches(scope: str | None, info: dict[str, Any]) -> bool:
    """Whether a broadcast of this scope can reach the worker whose heartbeat is `info`."""
    if scope is None:
        return False
    if scope == "cluster":
        return True
    same_host = info.get("host") == socket.gethostname()
    if scope == "host":
        return same_host
    return same_host and info.get("pid") == os.getpid()


def _rows(command: str, reply: Reply) -> list[dict[str, Any]]:
    body = reply.reply
    base = {
        "worker": reply.worker,
        "status": "ok" if reply.ok else f"error: {reply.error}",
        "host": body.get("host"),
        "pid": body.get("pid"),
    }
    if command == "stats":
        tasks = body.get("tasks") or {}
        if not isinstance(tasks, dict) or not tasks:
            return [{**base, "task": None}]
        return [{**base, "task": name, **counts} for name, counts in sorted(tasks.items())]
    row = {**base, **{k: body.get(k) for k in EXTRA[command]}}
    for key in ("queues", "paused"):
        value = row.get(key)
        if isinstance(value, list):
            row[key] = ",".join(str(v) for v in value)
    return [row]


def _frame(
    command: str,
    scope: str | None,
    expected: dict[str, dict[str, Any]],
    reachable: set[str],
    replies: dict[str, Reply],
) -> pd.DataFrame:
    import pandas as pd

    rows: list[dict[str, Any]] = []
    for wid in sorted(replies):
        rows += _rows(command, replies[wid])
    for wid in sorted(set(expected) - set(replies)):
        info = expected[wid]
        status = "silent" if wid in reachable else "unreachable"
        rows.append(
            {"worker": wid, "status": status, "host": info.get("host"), "pid": info.get("pid")}
        )
    frame = pd.DataFrame(rows, columns=[*COLUMNS, *EXTRA[command]])
    unreachable = sorted(set(expected) - reachable)
    note = SCOPE_NOTE.get(scope, "") if scope != "cluster" else ""
    if unreachable:
        note = f"{note}; {len(unreachable)} expected worker(s) cannot be reached"
    frame.attrs.update(
        command=command,
        scope=scope,
        note=note.strip("; "),
        answered=sorted(replies),
        silent=sorted(set(reachable) - set(replies)),
        unreachable=unreachable,
    )
    return frame
