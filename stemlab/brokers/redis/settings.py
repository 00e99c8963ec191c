"""Options of the Redis adapter, the URL parsing, and small conversions shared by its modules."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote, urlunsplit

from redis import ConnectionPool
from redis.connection import AbstractConnection

from stemlab.core.clock import to_epoch
from stemlab.core.envelope import Envelope, undecodable_envelope
from stemlab.core.options import (
    BrokerOptions,
    Secret,
    fixed,
    option,
    redact_url,
    seconds,
    split_url,
)
from stemlab.errors import ConfigError

__all__ = [
    "MAX_IDLE",
    "MAX_IDLE_MS",
    "Settings",
    "connection_factory",
    "envelope_json",
    "from_ms",
    "from_us",
    "parse_url",
    "publish_fields",
    "undecodable_envelope",
]

# An idle consumer re-checks at least this often even without a wake-up (a safety net for
# notifications lost while a connection was down); leases shorter than this wake waiters.
MAX_IDLE = 1.0
MAX_IDLE_MS = int(MAX_IDLE * 1000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


MAX_DB = 2**31 - 1  # Redis' `databases` setting is a C int; the server refuses an index >= it


@dataclass(frozen=True)
class Settings(BrokerOptions):
    """Everything a `RedisBroker` needs; validated on construction.

    `url` is the server URL without its query (query options are stemlab's own) and
    without its password, which is kept in `password` (a `Secret`: never shown).
    """

    scheme: ClassVar[str] = "redis"

    url: str = fixed("redis://127.0.0.1:6379/0")
    db: int = fixed(0)
    password: Secret | None = fixed(None)  # noqa: RUF009 - a Field, not a default
    socket_timeout: float = option(10.0, seconds())
    connect_timeout: float = option(2.0, seconds())
    retry_timeout: float = option(5.0, seconds(zero_ok=True))

    @property
    def prefix(self) -> str:
        return self.namespace + ":"

    @property
    def default_lease_ms(self) -> int:
        return max(1, round(self.default_visibility_timeout * 1000))


def parse_url(url: str, **options: Any) -> Settings:
    """`redis://[:password@]host[:port][/db][?option=value...]` (or `rediss://`) -> Settings.

    The database is the path: an integer from 0 (the default) up to the server's
    `databases` setting minus one (16 databases unless configured otherwise; a
    larger index is accepted here and refused by the server on first use).
    """
    parts, query = split_url(url, ("redis", "rediss"))
    shown = redact_url(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"malformed redis URL {shown!r}: {exc}") from None
    if not parts.hostname:
        raise ConfigError(f"malformed redis URL {shown!r}: no host")
    raw_db = parts.path[1:] if parts.path.startswith("/") else parts.path
    if raw_db == "":
        db = 0
    elif raw_db.isascii() and raw_db.isdigit() and int(raw_db) <= MAX_DB:
        db = int(raw_db)
    else:
        raise ConfigError(
            f"malformed redis URL {shown!r}: the database (the path) must be an integer "
            f"in 0..{MAX_DB} (0..15 with the default `databases 16`), got {raw_db!r}"
        )
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    base = urlunsplit((parts.scheme, netloc, f"/{db}", "", ""))
    password = None if parts.password is None else Secret(unquote(parts.password))
    return Settings.build(options, query, url=base, db=db, password=password)


def connection_factory(settings: Settings) -> tuple[Callable[[], AbstractConnection], str]:
    """A maker of fresh redis-py connections for the URL, and a printable address."""
    secret = {} if settings.password is None else {"password": settings.password.reveal()}
    try:
        pool = ConnectionPool.from_url(
            settings.url,
            **secret,
            protocol=2,
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.connect_timeout,
            health_check_interval=0,
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"malformed redis URL {settings.url!r}: {exc}") from None
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
