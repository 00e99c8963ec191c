"""Options of the Redis adapter, the URL parsing, and small conversions shared by its modules."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from redis import ConnectionPool
from redis.connection import AbstractConnection

from stemlab.core.clock import to_epoch
from stemlab.core.envelope import Envelope, undecodable_envelope
from stemlab.errors import ConfigError

__all__ = [
    "MAX_IDLE",
    "MAX_IDLE_MS",
    "Settings",
    "connection_factory",
    "envelope_json",
    "from_ms",
    "from_us",
    "publish_fields",
    "undecodable_envelope",
]

# An idle consumer re-checks at least this often even without a wake-up (a safety net for
# notifications lost while a connection was down); leases shorter than this wake waiters.
MAX_IDLE = 1.0
MAX_IDLE_MS = int(MAX_IDLE * 1000)
NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Settings:
    """Everything a `RedisBroker` needs; validated on construction."""

    url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "stem"
    default_visibility_timeout: float = 30.0
    socket_timeout: float = 10.0
    connect_timeout: float = 2.0
    retry_timeout: float = 5.0

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme.lower() if isinstance(self.url, str) else ""
        if scheme not in ("redis", "rediss"):
            raise ConfigError(f"not a redis:// or rediss:// URL: {self.url!r}")
        if not isinstance(self.namespace, str) or not NAMESPACE_RE.fullmatch(self.namespace):
            raise ConfigError(
                f"namespace must match [A-Za-z0-9_.-]{{1,100}} (it prefixes every Redis key), "
                f"got {self.namespace!r}"
            )
        for name in ("default_visibility_timeout", "socket_timeout", "connect_timeout"):
            _positive(self, name)
        value = self.retry_timeout
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"retry_timeout must be seconds >= 0, got {value!r}")

    @property
    def prefix(self) -> str:
        return self.namespace + ":"

    @property
    def default_lease_ms(self) -> int:
        return max(1, round(self.default_visibility_timeout * 1000))


def _positive(settings: Settings, name: str) -> None:
    value = getattr(settings, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be seconds > 0, got {value!r}")


def connection_factory(settings: Settings) -> tuple[Callable[[], AbstractConnection], str]:
    """A maker of fresh redis-py connections for the URL, and a printable address."""
    try:
        pool = ConnectionPool.from_url(
            settings.url,
            protocol=2,
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.connect_timeout,
            health_check_interval=0,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"malformed redis URL {settings.url!r}: {exc}") from exc
    kwargs: dict[str, Any] = dict(pool.connection_kwargs)
    cls = pool.connection_class
    where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"

    def connect() -> AbstractConnection:
        conn: AbstractConnection = cls(**kwargs)
        return conn

    return connect, where


def publish_fields(envelope: Envelope) -> list[str | int]:
    """The five script arguments of one envelope: queue, priority, lease ms, due ms, JSON."""
    vt = envelope.visibility_timeout
    lease: str | int = "" if vt is None else max(1, round(vt * 1000))
    nb = envelope.not_before
    due: str | int = "" if nb is None else math.ceil(to_epoch(nb) * 1000)
    return [envelope.queue, envelope.priority, lease, due, envelope_json(envelope)]


def envelope_json(envelope: Envelope) -> str:
    """The envelope's JSON (kept as a name for the adapter's call sites)."""
    return envelope.to_json()


def from_ms(ms: int | float) -> datetime:
    """An aware UTC datetime from server milliseconds (exact, no float rounding)."""
    return _EPOCH + timedelta(milliseconds=int(ms))


def from_us(us: int) -> datetime:
    """An aware UTC datetime from server microseconds (exact)."""
    return _EPOCH + timedelta(microseconds=int(us))
