"""Settings, connections, pools with bounded retries, and the schema bootstrap.

Driver errors stop here: connection failures are retried a bounded number of
times and then raised as `BrokerUnavailable`; any other psycopg error becomes a
`StemlabError`. The schema is created on first connect under an advisory lock,
so many processes may start at once.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from stemlab.brokers.postgres import _sql
from stemlab.core.options import (
    BrokerOptions,
    Secret,
    choice,
    fixed,
    integer,
    option,
    pattern,
    redact_url,
    seconds,
    split_url,
)
from stemlab.errors import BrokerUnavailable, ConfigError, StemlabError

__all__ = ["SCHEMA_VERSION", "Runner", "Settings", "connect", "ensure_schema", "translated"]

SCHEMA_VERSION = 1
T = TypeVar("T")
_COMMIT_LEVELS = ("off", "local", "remote_write", "on", "remote_apply")
RETRYABLE: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError)


@dataclass(frozen=True)
class Settings(BrokerOptions):
    """Everything a broker, its pools and its consumers need to know (validated).

    The URL's query holds libpq parameters (`?sslmode=require`), checked by libpq's
    own parser; stemlab's options are keywords.
    """

    scheme: ClassVar[str] = "postgresql"

    url: str = fixed("")  # the URL as given, its password shown as *** (see `dsn`)
    dsn: Secret = fixed(Secret(""))  # noqa: RUF009 - the URL with its password: never shown
    schema: str = option("stemlab", pattern(r"[a-z_][a-z0-9_]{0,62}", "a plain SQL identifier"))
    pool_size: int = option(4, integer(1))
    connect_timeout: float = option(5.0, seconds())
    retries: int = option(3, integer(0))
    poll_interval: float = option(1.0, seconds())
    dead_letter_retention: float | None = option(7 * 86400.0, seconds(optional=True))
    broadcast_retention: float | None = option(3600.0, seconds(optional=True))
    sweep_interval: float = option(60.0, seconds())
    vacuum_threshold: int | None = option(20_000, integer(0, optional=True))
    synchronous_commit: str = option("off", choice(*_COMMIT_LEVELS))

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Settings:
        """Validate a URL and the adapter's options; anything wrong is a `ConfigError`."""
        split_url(url, ("postgresql", "postgres"))
        shown = redact_url(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split())
            secret = _password(url)
            if secret:  # libpq's message may quote the URL, password included
                detail = detail.replace(secret, "***")
            raise ConfigError(f"malformed postgres URL {shown!r}: {detail}") from None
        for port in str(params.get("port") or "").split(","):
            if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
                raise ConfigError(
                    f"malformed postgres URL {shown!r}: the port must be an integer in "
                    f"1..65535, got {port!r}"
                )
        return cls.build(options, url=shown, dsn=Secret(url))

    def server(self) -> tuple[str, str, str]:
        """(host, port, database) as the URL names them: part of the store's identity."""
        params = conninfo_to_dict(self.dsn.reveal())
        host = str(params.get("host") or params.get("hostaddr") or "")
        return host, str(params.get("port") or "5432"), str(params.get("dbname") or "")

    def conninfo(self, role: str, synchronous_commit: str, *, generic_plans: bool = False) -> str:
        """The libpq connection string for one kind of connection of this broker.

        `generic_plans` pins prepared statements to their generic plan: the claim is
        written so that plan is index-bound, and re-planning it per call cost ~2x.
        """
        params = conninfo_to_dict(self.dsn.reveal())
        # jit=off: these statements are short; a generic plan's cost estimate on a bloated
        # table can cross jit_above_cost and then every claim paid ~25 ms of compilation.
        extra = (
            f"-c search_path={self.schema} -c synchronous_commit={synchronous_commit} -c jit=off"
        )
        if generic_plans:
            extra += " -c plan_cache_mode=force_generic_plan"
        params["options"] = f"{params.get('options', '')} {extra}".strip()
        params.setdefault("application_name", f"stemlab:{role}:{self.namespace}"[:63])
        params.setdefault("connect_timeout", str(max(2, math.ceil(self.connect_timeout))))
        return make_conninfo("", **params)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based): 50 ms doubling to 1 s."""
        return min(1.0, 0.05 * 2**attempt)


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn a psycopg error raised inside the block into the stemlab error tree."""
    try:
        yield
    except PoolTimeout as exc:
        raise BrokerUnavailable(f"postgres: no connection for {what}: {exc}") from exc
    except RETRYABLE as exc:
        raise BrokerUnavailable(f"postgres: {what} failed: {exc}") from exc
    except psycopg.Error as exc:
        raise StemlabError(f"postgres: {what} failed: {exc}") from exc


def connect(settings: Settings, role: str, *, generic_plans: bool = False) -> Any:
    """One autocommit connection (the caller owns it); errors are left to the caller."""
    conninfo = settings.conninfo(role, settings.synchronous_commit, generic_plans=generic_plans)
    return psycopg.connect(conninfo, autocommit=True)


class Runner:
    """Two small pools (settles with the configured commit level, publishes durable).

    `run(fn)` lends a connection to `fn(conn, attempt)` and retries connection
    failures with backoff; `attempt > 0` tells `fn` that an earlier try may have
    committed before the connection broke.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ops = self._pool("ops", settings.synchronous_commit, 1)
        self._pub = self._pool("pub", "on", 0)
        with translated("connect"):
            self._ops.open(wait=True, timeout=settings.connect_timeout)
            self._pub.open()

    def _pool(self, role: str, level: str, min_size: int) -> ConnectionPool[Any]:
        s = self.settings
        return ConnectionPool(
            s.conninfo(role, level),
            kwargs={"autocommit": True},
            min_size=min_size,
            max_size=s.pool_size,
            open=False,
            timeout=s.connect_timeout,
            name=f"stemlab-{role}-{s.namespace}"[:60],
            num_workers=1,
            reconnect_timeout=max(30.0, s.connect_timeout),
        )

    def run(self, fn: Callable[[Any, int], T], what: str, *, publish: bool = False) -> T:
        pool = self._pub if publish else self._ops
        retries = self.settings.retries
        for attempt in range(retries + 1):
            try:
                with pool.connection() as conn:
                    return fn(conn, attempt)
            except PoolTimeout as exc:
                raise BrokerUnavailable(f"postgres: no connection for {what}: {exc}") from exc
            except RETRYABLE as exc:
                if attempt >= retries:
                    raise BrokerUnavailable(
                        f"postgres: {what} failed after {attempt + 1} tries: {exc}"
                    ) from exc
            except psycopg.Error as exc:
                raise StemlabError(f"postgres: {what} failed: {exc}") from exc
            time.sleep(self.settings.backoff(attempt))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pub.close()
        self._ops.close()


_ready: set[tuple[str, str]] = set()
_ready_lock = threading.Lock()


def ensure_schema(settings: Settings) -> None:
    """Create the schema and tables if missing: once per process, safe across processes."""
    key = (settings.url, settings.schema)
    if key in _ready:
        return
    with _ready_lock:
        if key in _ready:
            return
        for attempt in range(settings.retries + 1):
            try:
                with translated("schema bootstrap"):
                    _bootstrap(settings)
                break
            except (BrokerUnavailable, StemlabError):
                if attempt >= settings.retries:
                    raise
                time.sleep(settings.backoff(attempt))
        _ready.add(key)


def _bootstrap(settings: Settings) -> None:
    schema = sql.Identifier(settings.schema)
    lock = f"stemlab.broker:{settings.schema}"
    with psycopg.connect(settings.conninfo("schema", "on")) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [lock])
        table = sql.SQL("{}.queue_schema_version").format(schema)
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table.as_string(conn)]).fetchone()
        if row and row[0]:
            found = conn.execute(sql.SQL("SELECT max(version) FROM {}").format(table)).fetchone()
            if found and found[0] is not None and found[0] >= SCHEMA_VERSION:
                return
        conn.execute(sql.SQL(_sql.text("schema")).format(schema=schema))
