"""Options of the SQS adapter, URL parsing, and the SQS queue names of stemlab queues.

SQS queue names are 1 to 80 characters of `A-Za-z0-9_-`, while stemlab queue names
and namespaces allow `.` and `:` and are longer; so a stemlab queue's SQS names are a
readable, sanitised prefix (namespace first, so a namespace's queues list together)
plus a hash of the exact (namespace, queue) pair, then the generation and level:
`-g<N>p0`..`-g<N>p9` for the priority queues of generation N (a purge moves to N+1;
see docs/sqs.md) and `-dlq` for its dead letters.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from stemlab.core.options import BrokerOptions, fixed, integer, option, pattern, seconds, split_url
from stemlab.errors import ConfigError

__all__ = [
    "DLQ",
    "LEVELS",
    "MAX_DELAY",
    "MAX_LEASE",
    "Settings",
    "lease_seconds",
    "namespace_prefix",
    "parse_url",
    "queue_prefix",
]

MAX_DELAY = 900  # seconds: SQS's longest DelaySeconds; longer delays hop (see docs/sqs.md)
MAX_LEASE = 43_200  # seconds: SQS's longest visibility timeout
LEVELS = tuple(range(9, -1, -1))  # priority levels, polled in this order (highest first)
DLQ = "dlq"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Settings(BrokerOptions):
    """Everything an `SQSBroker` needs; validated on construction.

    `endpoint` is the HTTP(S) endpoint built from the URL's host and port.
    """

    scheme: ClassVar[str] = "sqs"

    endpoint: str = fixed("http://127.0.0.1:5000")
    where: str = fixed("127.0.0.1:5000")
    access_key: str | None = fixed(None)
    secret_key: str | None = fixed(None)
    region: str = option("us-east-1", pattern(r"[a-z0-9-]{1,40}", "an AWS region name"))
    poll_interval: float = option(0.05, seconds())
    connect_timeout: float = option(2.0, seconds())
    read_timeout: float = option(10.0, seconds())
    max_attempts: int = option(2, integer(1, 10))


def parse_url(url: str, **options: Any) -> Settings:
    """`sqs://[key:secret@]host[:port][?option=value...]` (or `sqss://`) -> Settings."""
    parts, query = split_url(url, ("sqs", "sqss"), "e.g. sqs://127.0.0.1:5000?region=us-east-1")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"malformed sqs URL {url!r}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(f"malformed sqs URL {url!r}: no host")
    if parts.path not in ("", "/"):
        raise ConfigError(f"malformed sqs URL {url!r}: no path expected, got {parts.path!r}")
    if (parts.username is None) != (parts.password is None):
        raise ConfigError(f"malformed sqs URL {url!r}: give both key and secret, or neither")
    secure = parts.scheme.lower() == "sqss"
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    where = host if port is None else f"{host}:{port}"
    endpoint = f"{'https' if secure else 'http'}://{where}"
    return Settings.build(
        options,
        query,
        endpoint=endpoint,
        where=where,
        access_key=parts.username,
        secret_key=parts.password,
    )


def namespace_prefix(namespace: str) -> str:
    """The prefix of every SQS queue name of a namespace (may be shared by a look-alike
    namespace: "a.b" and "a_b" both give "a_b-"; `queue_prefix` tells them apart)."""
    return _UNSAFE.sub("_", namespace)[:20] + "-"


def queue_prefix(namespace: str, queue: str) -> str:
    """The common prefix of a stemlab queue's SQS queue names (ends with "-")."""
    digest = hashlib.blake2b(f"{namespace}\0{queue}".encode(), digest_size=5).hexdigest()
    name = _UNSAFE.sub("_", queue)[:30]
    return f"{namespace_prefix(namespace)}{name}-{digest}-"


def lease_seconds(seconds_: float) -> int:
    """An SQS visibility timeout: whole seconds, rounded up, within SQS's limits."""
    return max(1, min(MAX_LEASE, math.ceil(seconds_ - 1e-9)))
