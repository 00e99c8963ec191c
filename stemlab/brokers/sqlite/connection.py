"""SQLite plumbing: URL and options, connections with their pragmas, named SQL, errors.

Only the standard library's `sqlite3` is used. Every connection runs in
autocommit mode (`isolation_level=None`) so the adapter issues its own
`BEGIN IMMEDIATE` for every write: the write lock is taken up front, and a
writer waits on the explicit busy timeout instead of failing half way.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

from stemlab.brokers.sqlfiles import statements
from stemlab.core.options import BrokerOptions, choice, fixed, option, seconds, split_url
from stemlab.errors import BrokerUnavailable, ConfigError, StemlabError

__all__ = ["Settings", "load_sql", "open_connection", "parse_url", "translate", "write"]

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


@dataclass(frozen=True)
class Settings(BrokerOptions):
    """Everything an SQLite broker needs to open connections and pace its consumers."""

    scheme: ClassVar[str] = "sqlite"

    path: str = fixed("")
    poll_interval: float = option(0.005, seconds())
    synchronous: str = option("NORMAL", choice(*SYNCHRONOUS, fold=str.upper))
    busy_timeout: float = option(10.0, seconds())
    subscriber_timeout: float = option(30.0, seconds(zero_ok=True))


def parse_url(url: str, **options: Any) -> Settings:
    """`sqlite:///relative/file.db` or `sqlite:////absolute/file.db` (+ options) -> Settings.

    Options may also come from the query string (`?synchronous=FULL&poll_interval=0.01`);
    keyword options win over the query string.
    """
    hint = "use sqlite:///relative/file.db or sqlite:////absolute/file.db"
    if not isinstance(url, str) or not url.lower().startswith("sqlite:///"):
        raise ConfigError(f"malformed SQLite URL {url!r}: {hint}")
    parts, query = split_url(url, ("sqlite",), hint)
    if parts.netloc:
        raise ConfigError(f"malformed SQLite URL {url!r}: {hint}")
    path = unquote(parts.path)[1:]  # "/rel.db" -> "rel.db", "//abs.db" -> "/abs.db"
    if not path or path.endswith("/") or path == ":memory:" or "\x00" in path:
        raise ConfigError(f"malformed SQLite URL {url!r}: no database file ({hint})")
    settings = Settings.build(options, query, path=path)
    parent = Path(path).parent
    if not parent.is_dir():
        raise ConfigError(f"the directory of the SQLite file does not exist: {parent}")
    return settings


def open_connection(settings: Settings) -> sqlite3.Connection:
    """A new autocommit connection in WAL mode with the configured pragmas."""
    try:
        conn = sqlite3.connect(
            settings.path,
            timeout=settings.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout * 1000)}")
        mode = _wal(conn, settings.busy_timeout)
        conn.execute(f"PRAGMA synchronous = {settings.synchronous}")
    except sqlite3.Error as exc:
        raise translate(exc, f"cannot open {settings.path}") from exc
    if str(mode).lower() != "wal":
        conn.close()
        raise ConfigError(f"{settings.path}: WAL journal mode is not available (got {mode!r})")
    return conn


def _wal(conn: sqlite3.Connection, patience: float) -> str:
    """Switch to WAL, retrying while another connection holds the lock the switch needs.

    SQLite answers a journal-mode change that collides with another connection's
    (first open of a new file by two threads, say) with SQLITE_BUSY at once,
    without calling the busy handler, so the wait is done here.
    """
    deadline = time.monotonic() + patience
    delay = 0.001
    while True:
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        if mode.lower() == "wal":
            return mode
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def translate(exc: sqlite3.Error, what: str = "sqlite") -> StemlabError:
    """Map a driver error to the stemlab error tree (callers `raise ... from exc`)."""
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError
    ):
        return BrokerUnavailable(f"{what}: {exc}")
    return StemlabError(f"{what}: {exc}")


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` ... `COMMIT` (rolled back on any error), driver errors translated."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise translate(exc, "cannot take the write lock") from exc
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise translate(exc) from exc
        raise


@contextmanager
def reading() -> Iterator[None]:
    """Translate driver errors of read-only statements."""
    try:
        yield
    except sqlite3.Error as exc:
        raise translate(exc) from exc


def load_sql(filename: str) -> dict[str, str]:
    """The `-- name: key` statements of one `.sql` file next to this module."""
    return statements(__package__, filename)


def schema() -> str:
    """The whole schema script (CREATE ... IF NOT EXISTS)."""
    return statements(__package__, "schema.sql")["schema"]
