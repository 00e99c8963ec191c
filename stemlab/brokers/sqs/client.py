"""The boto3 link to one SQS endpoint: lazy import, error translation, queue URL cache.

Every call goes through `Link.call`, which turns botocore's errors into stemlab's:
an endpoint that cannot be reached (after botocore's bounded retries) is one
`BrokerUnavailable` line; a receipt handle the server no longer knows is `LeaseLost`;
a missing queue is `QueueMissing` (callers decide what that means); anything else is
a `StemlabError` naming the operation. Like every driver, boto3 is imported only when
`stemlab.connect` is asked for `sqs://` (a missing one is `ConfigError` naming the extra).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from typing import Any

import boto3
from botocore import exceptions
from botocore.config import Config

from stemlab.brokers.sqs.settings import DLQ, LEVELS, Settings, queue_prefix
from stemlab.errors import BrokerUnavailable, ConfigError, LeaseLost, StemlabError

__all__ = ["Link", "QueueMissing", "changes", "generation_of", "level_name"]

LIST_TTL = 1.0  # seconds a listing of a queue's SQS queues is trusted
FRESH = 0.1  # seconds a listing counts as fresh (no second look for a missing DLQ)
_MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
_LEVEL = re.compile(r"g([0-9]+)p([0-9])")  # a level queue's name suffix: generation, level
_STALE = ("ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight")


_READS = frozenset({"get_queue_attributes", "list_queues", "get_queue_url"})
_CHANGES = [0]  # SQS calls of this process that may change a queue (all but _READS)
_CHANGES_LOCK = threading.Lock()
_SESSION_LOCK = threading.Lock()
_SESSION: list[Any] = []  # the process's one boto3 Session, made on first use


def _new_client(kwargs: dict[str, Any]) -> Any:
    """A boto3 SQS client from the process's shared Session.

    A fresh Session loads and parses botocore's service model every time (about 0.3 s);
    one shared Session caches it, so a new broker costs a few milliseconds. Credentials
    are per client. Sessions are not thread-safe, hence the lock; clients are.
    """
    with _SESSION_LOCK:
        if not _SESSION:
            _SESSION.append(boto3.session.Session())
        return _SESSION[0].client("sqs", **kwargs)


class QueueMissing(StemlabError):
    """The SQS queue does not exist (never published to, or deleted)."""


class Link:
    """One boto3 SQS client plus a cache of which level queues exist per stemlab queue."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._exceptions = exceptions
        config = Config(
            region_name=settings.region,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            retries={"max_attempts": settings.max_attempts, "mode": "standard"},
        )
        kwargs: dict[str, Any] = {"endpoint_url": settings.endpoint, "config": config}
        if settings.access_key is not None:
            kwargs["aws_access_key_id"] = settings.access_key
            kwargs["aws_secret_access_key"] = settings.secret_key
        self.client = _new_client(kwargs)
        self._lock = threading.Lock()
        self._urls: dict[str, str] = {}  # SQS queue name -> URL
        self._listed: dict[str, tuple[float, dict[str, str]]] = {}  # prefix -> (at, suffix->url)

    # ---------------------------------------------------------------- calls
    def call(self, operation: str, **kwargs: Any) -> Any:
        """Call one SQS operation, translating driver errors (see the module docstring)."""
        exc_mod = self._exceptions
        if operation not in _READS:
            with _CHANGES_LOCK:  # before the call: a snapshot taken meanwhile is stale
                _CHANGES[0] += 1
        try:
            return getattr(self.client, operation)(**kwargs)
        except exc_mod.ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = str(error.get("Message", "")) or code
            if code in _MISSING or "NonExistentQueue" in code:
                raise QueueMissing(f"{operation}: {message}") from exc
            if "PurgeQueueInProgress" in code:
                raise StemlabError(
                    "SQS allows one PurgeQueue per queue every 60 seconds; purge again later"
                ) from exc
            if code in _STALE and "ReceiptHandle" in kwargs:
                raise LeaseLost(
                    "this delivery was already settled or handed to another consumer"
                ) from exc
            raise StemlabError(f"sqs {operation} failed: {code}: {message}") from exc
        except (
            exc_mod.EndpointConnectionError,
            exc_mod.ConnectTimeoutError,
            exc_mod.ReadTimeoutError,
            exc_mod.ConnectionClosedError,
        ) as exc:
            raise BrokerUnavailable(
                f"SQS endpoint {self.settings.endpoint} unreachable ({operation}): "
                f"{type(exc).__name__}"
            ) from exc
        except exc_mod.NoCredentialsError as exc:
            raise ConfigError(
                "sqs:// found no AWS credentials: put key:secret@ in the URL or set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
            ) from exc
        except exc_mod.BotoCoreError as exc:
            raise StemlabError(f"sqs {operation} failed: {exc}") from exc

    def close(self) -> None:
        self.client.close()

    # ---------------------------------------------------------- queue names
    def generation(self, namespace: str, queue: str, *, fresh: bool = False) -> int:
        """The current generation of a stemlab queue's level queues (0 if none yet)."""
        return _current(self._list(queue_prefix(namespace, queue), fresh))

    def generation_since(self, namespace: str, queue: str, since: float) -> int:
        """The current generation, from a listing made at or after `since` (monotonic)."""
        prefix = queue_prefix(namespace, queue)
        with self._lock:
            cached = self._listed.get(prefix)
        return _current(self._list(prefix, cached is None or cached[0] < since))

    def level_urls(self, namespace: str, queue: str, *, fresh: bool = False) -> dict[int, str]:
        """The existing priority-level SQS queues of a stemlab queue's current generation."""
        found = self._list(queue_prefix(namespace, queue), fresh)
        gen = _current(found)
        return {lvl: found[level_name(gen, lvl)] for lvl in LEVELS if level_name(gen, lvl) in found}

    def all_level_urls(self, namespace: str, queue: str) -> dict[str, str]:
        """Every level queue of every generation of a stemlab queue (fresh): suffix -> URL."""
        found = self._list(queue_prefix(namespace, queue), True)
        return {suffix: url for suffix, url in found.items() if _LEVEL.fullmatch(suffix)}

    def dlq_url(self, namespace: str, queue: str, *, create: bool) -> str | None:
        """The dead-letter SQS queue of a stemlab queue (created when `create`)."""
        prefix = queue_prefix(namespace, queue)
        if create:
            return self.ensure(prefix + DLQ)
        found = self._list(prefix, False)
        if DLQ in found or self._age(prefix) < FRESH:
            return found.get(DLQ)
        return self._list(prefix, True).get(DLQ)

    def level_url(self, namespace: str, queue: str, level: int) -> str:
        """The SQS queue of one priority level of the current generation, created on first
        use. A queue created for a generation that a purge has meanwhile replaced is
        deleted again and the new generation's used (see docs/sqs.md, Purge)."""
        prefix = queue_prefix(namespace, queue)
        for _ in range(10):
            gen = self.generation(namespace, queue)
            name = prefix + level_name(gen, level)
            with self._lock:
                url = self._urls.get(name)
            if url is not None:
                return url
            url = self.ensure(name)
            if self.generation(namespace, queue, fresh=True) <= gen:
                return url
            self.drop(url)  # a purge moved on meanwhile: not this generation
        raise StemlabError(f"sqs: the SQS queues of {queue!r} keep being purged")

    def existing_url(self, namespace: str, queue: str, gen: int, level: int) -> str:
        """The URL of a level queue of generation `gen`, never created: else `QueueMissing`."""
        name = queue_prefix(namespace, queue) + level_name(gen, level)
        with self._lock:
            url = self._urls.get(name)
        if url is None:
            url = str(self.call("get_queue_url", QueueName=name)["QueueUrl"])
            with self._lock:
                self._urls[name] = url
        return url

    def drop(self, url: str) -> None:
        """Delete an SQS queue (gone already is fine) and forget it."""
        with contextlib.suppress(QueueMissing):
            self.call("delete_queue", QueueUrl=url)
        self.forget(url)

    def ensure(self, name: str) -> str:
        """The URL of SQS queue `name`, creating it if needed (idempotent)."""
        with self._lock:
            url = self._urls.get(name)
        if url is None:
            url = str(self.call("create_queue", QueueName=name)["QueueUrl"])
            with self._lock:
                self._urls[name] = url
                for prefix, (_, found) in self._listed.items():
                    if name.startswith(prefix):
                        found[name[len(prefix) :]] = url
        return url

    def forget(self, url: str) -> None:
        """Drop a URL that turned out not to exist any more."""
        with self._lock:
            self._urls = {k: v for k, v in self._urls.items() if v != url}
            self._listed.clear()

    def _age(self, prefix: str) -> float:
        """Seconds since the cached listing of `prefix` was made (inf: none)."""
        with self._lock:
            cached = self._listed.get(prefix)
        return float("inf") if cached is None else time.monotonic() - cached[0]

    def _list(self, prefix: str, fresh: bool) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            cached = self._listed.get(prefix)
        if cached is not None and not fresh and now - cached[0] < LIST_TTL:
            return cached[1]
        reply = self.call("list_queues", QueueNamePrefix=prefix, MaxResults=1000)
        found: dict[str, str] = {}
        for url in reply.get("QueueUrls", []):
            name = str(url).rsplit("/", 1)[-1]
            if name.startswith(prefix):
                found[name[len(prefix) :]] = str(url)
        with self._lock:
            self._listed[prefix] = (now, found)
            for suffix, url in found.items():
                self._urls[prefix + suffix] = url
        return found


def changes() -> int:
    """How many SQS calls that may change a queue this process has made (ever growing)."""
    return _CHANGES[0]


def level_name(gen: int, level: int) -> str:
    """The name suffix of one priority level's SQS queue in generation `gen`."""
    return f"g{gen}p{level}"


def generation_of(url: str) -> int:
    """The generation of a level queue, from its URL."""
    match = _LEVEL.search(url.rsplit("/", 1)[-1].rsplit("-", 1)[-1])
    return int(match.group(1)) if match else 0


def _current(found: dict[str, str]) -> int:
    gens = [int(m.group(1)) for suffix in found if (m := _LEVEL.fullmatch(suffix))]
    return max(gens, default=0)
