"""The boto3 link to one SQS endpoint: lazy import, error translation, queue URL cache.

Every call goes through `Link.call`, which turns botocore's errors into stemlab's:
an endpoint that cannot be reached (after botocore's bounded retries) is one
`BrokerUnavailable` line; a receipt handle the server no longer knows is `LeaseLost`;
a missing queue is `QueueMissing` (callers decide what that means); anything else is
a `StemlabError` naming the operation. Like every driver, boto3 is imported only when
`stemlab.connect` is asked for `sqs://` (a missing one is `ConfigError` naming the extra).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import boto3
from botocore import exceptions
from botocore.config import Config

from stemlab.brokers.sqs.settings import DLQ, LEVELS, Settings, queue_prefix
from stemlab.errors import BrokerUnavailable, ConfigError, LeaseLost, StemlabError

__all__ = ["Link", "QueueMissing"]

LIST_TTL = 1.0  # seconds a listing of a queue's SQS queues is trusted
_MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
_STALE = ("ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight")


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
        self.client = boto3.session.Session().client("sqs", **kwargs)
        self._lock = threading.Lock()
        self._urls: dict[str, str] = {}  # SQS queue name -> URL
        self._listed: dict[str, tuple[float, dict[str, str]]] = {}  # prefix -> (at, suffix->url)

    # ---------------------------------------------------------------- calls
    def call(self, operation: str, **kwargs: Any) -> Any:
        """Call one SQS operation, translating driver errors (see the module docstring)."""
        exc_mod = self._exceptions
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
    def level_urls(self, namespace: str, queue: str, *, fresh: bool = False) -> dict[int, str]:
        """The existing priority-level SQS queues of a stemlab queue: level -> URL."""
        found = self._list(queue_prefix(namespace, queue), fresh)
        return {lvl: found[f"p{lvl}"] for lvl in LEVELS if f"p{lvl}" in found}

    def dlq_url(self, namespace: str, queue: str, *, create: bool) -> str | None:
        """The dead-letter SQS queue of a stemlab queue (created when `create`)."""
        prefix = queue_prefix(namespace, queue)
        if create:
            return self.ensure(prefix + DLQ)
        return self._list(prefix, False).get(DLQ) or self._list(prefix, True).get(DLQ)

    def level_url(self, namespace: str, queue: str, level: int) -> str:
        """The SQS queue of one priority level, created on first use."""
        return self.ensure(queue_prefix(namespace, queue) + f"p{level}")

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
