"""The Redis result backend: one string per status, pub/sub to wake watchers, Lua for the rest.

Keys (all under ``<namespace>:rt:``, so a broker sharing the namespace is not
touched): ``result:<id>`` (status JSON, expires), ``done:<id>`` (a pub/sub
channel told when the status becomes final), ``group:<gid>`` and
``group:<gid>:done``, ``workers`` and ``worker-info``. Each script in the
`.lua` files beside this module names the keys it touches.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import redis

from stemlab.core.codec import dumps, loads
from stemlab.errors import BrokerUnavailable, StemlabError
from stemlab.runtime.backend import DEFAULT_TTL, GroupState, ResultBackend
from stemlab.runtime.backends._sql import load_script
from stemlab.runtime.status import TaskStatus

__all__ = ["RedisBackend"]

_SCRIPTS = ("set", "group_init", "group_done", "chord_claim", "heartbeat", "workers")


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Driver errors as stemlab errors: connection trouble is `BrokerUnavailable`."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BrokerUnavailable(f"redis result backend: {what}: {exc}") from exc
    except redis.RedisError as exc:
        raise StemlabError(f"redis result backend: {what}: {exc}") from exc


class RedisBackend(ResultBackend):
    """Statuses with native expiry; `watch` subscribes before it reads, so no wake-up is missed."""

    def __init__(self, url: str, namespace: str = "stem", ttl: float = DEFAULT_TTL) -> None:
        super().__init__(namespace, ttl)
        self.url = url
        self.prefix = f"{namespace}:rt:"
        with _translated("connect"):
            self.client = redis.Redis.from_url(url, socket_timeout=30.0, socket_connect_timeout=5.0)
            self._scripts = {
                n: self.client.register_script(load_script(f"{n}.lua")) for n in _SCRIPTS
            }

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBackend:
        return cls(url, **options)

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        with _translated(name):
            return self._scripts[name](keys=keys, args=args)

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -------------------------------------------------------------- statuses
    def _set(self, task_id: str, body: str, ttl: float, done: bool) -> None:
        keys = [self._key("result", task_id), self._key("done", task_id)]
        self._run("set", keys, [body, max(1, round(ttl * 1000)), "1" if done else "0"])

    def _get(self, task_id: str) -> str | None:
        with _translated("get"):
            raw = self.client.get(self._key("result", task_id))
        if raw is None:
            return None
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)

    def _watch(self, task_id: str, timeout: float) -> TaskStatus | None:
        end = time.monotonic() + timeout
        with _translated("watch"):
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self._key("done", task_id))
                while True:
                    raw = self._get(task_id)
                    status = None if raw is None else TaskStatus.from_json(raw)
                    left = end - time.monotonic()
                    if (status is not None and status.done) or left <= 0:
                        return status
                    pubsub.get_message(timeout=min(left, 1.0))
            finally:
                pubsub.close()

    # -------------------------------------------------------- groups, chords
    def _group_keys(self, group_id: str) -> list[str]:
        return [self._key("group", group_id), self._key("group", group_id, "done")]

    def _group_init(self, group_id: str, expected: int) -> None:
        self._run("group_init", self._group_keys(group_id), [expected, round(self.ttl * 1000)])

    def _group_done(self, group_id: str, task_id: str) -> GroupState | None:
        ttl_ms = round(self.ttl * 1000)
        row = self._run("group_done", self._group_keys(group_id), [task_id, ttl_ms])
        if not row:
            return None
        expected, done, claimed = (int(x) for x in row)
        return GroupState(group_id, expected, done, bool(claimed))

    def _group_get(self, group_id: str) -> GroupState | None:
        return self._group_done(group_id, "")

    def _chord_claim(self, group_id: str) -> bool:
        return bool(self._run("chord_claim", self._group_keys(group_id), []))

    # ------------------------------------------------------------ heartbeats
    def _worker_keys(self) -> list[str]:
        return [self._key("workers"), self._key("worker-info")]

    def _heartbeat(self, worker_id: str, info: dict[str, Any], ttl: float) -> None:
        self._run("heartbeat", self._worker_keys(), [worker_id, dumps(info), round(ttl * 1000)])

    def _workers(self) -> dict[str, dict[str, Any]]:
        flat = self._run("workers", self._worker_keys(), [])
        return {flat[i].decode(): loads(flat[i + 1]) for i in range(0, len(flat), 2)}

    def _forget_worker(self, worker_id: str) -> None:
        keys = self._worker_keys()
        with _translated("forget_worker"):
            self.client.zrem(keys[0], worker_id)
            self.client.hdel(keys[1], worker_id)

    def _clear(self) -> None:
        with _translated("clear"):
            keys = list(self.client.scan_iter(match=self.prefix + "*", count=1000))
            for i in range(0, len(keys), 500):
                self.client.delete(*keys[i : i + 500])

    def _close(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.client.close()
