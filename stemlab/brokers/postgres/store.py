"""The Postgres store: one server, schema and namespace; its pools and named statements.

Both the broker and its consumers call this module; neither calls the other's
private methods. Brokers of one process on the same server, schema and
namespace also share one `Local`: the consumers open there (an ack in this
process wakes the consumer whose prefetch it frees; counts treat rows those
consumers read ahead as pending). It is reference-counted:
taken when a store opens and dropped when the last store using it closes, so
nothing outlives the brokers that need it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import sql

from stemlab.brokers.postgres import _sql
from stemlab.brokers.postgres._connection import Runner, Settings, ensure_schema
from stemlab.core.codec import dumps
from stemlab.core.envelope import undecodable_envelope
from stemlab.errors import LeaseLost, StemlabError

if TYPE_CHECKING:
    from stemlab.brokers.postgres.consumer import PostgresConsumer

__all__ = ["STALE", "Local", "Store"]

STALE = "this delivery was already settled or handed to another consumer"
_VACUUMABLE = ("queue_messages", "queue_broadcasts", "queue_dead_letters", "queue_subscriptions")


@dataclass
class Local:
    """Process-local state of one (server, schema, namespace), shared by its brokers."""

    consumers: weakref.WeakSet[PostgresConsumer] = field(default_factory=weakref.WeakSet)
    refs: int = 0


_locals: dict[tuple[str, str], Local] = {}
_locals_lock = threading.Lock()


class Store:
    """Pools, statements, retention and the shared `Local` of one broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.ns = s.namespace
        digest = hashlib.md5(f"{s.schema}\0{s.namespace}".encode(), usedforsecurity=False)
        self.channel = "stemlab_" + digest.hexdigest()  # LISTEN/NOTIFY channel
        ensure_schema(s)
        self.runner = Runner(s)
        self._key = (f"{s.url}#{s.schema}", s.namespace)
        with _locals_lock:
            self.local = _locals.setdefault(self._key, Local())
            self.local.refs += 1
        self.closed = False
        self._next_sweep = time.monotonic() + s.sweep_interval
        self._sweep_lock = threading.Lock()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with _locals_lock:
            self.local.refs -= 1
            if self.local.refs <= 0:
                _locals.pop(self._key, None)
        self.runner.close()

    # ------------------------------------------------------------ statements
    def run(
        self, name: str, params: dict[str, Any], *, fetch: str = "none", publish: bool = False
    ) -> Any:
        """Execute one named statement on a pooled connection and read its result there.

        `fetch`: "one" (first row or None), "all" (rows), "count" (rowcount) or "none".
        """
        params["ns"] = self.ns

        def fn(conn: Any, attempt: int) -> Any:
            cur = conn.execute(_sql.query(name), params)
            if fetch == "one":
                return cur.fetchone()
            if fetch == "all":
                return cur.fetchall()
            return cur.rowcount if fetch == "count" else None

        return self.runner.run(fn, name, publish=publish)

    def settle(
        self,
        name: str,
        row_id: int,
        token: int,
        consumer: str,
        *,
        maybe_applied: bool = False,
        **extra: Any,
    ) -> None:
        """Run a fenced statement; no row changed means the receipt is stale.

        After a retried connection failure (or with `maybe_applied`: an earlier call
        broke off) the first try may have committed, so the receipt then counts as
        stale only if the row was handed to another delivery.
        """
        params = {"id": row_id, "token": token, "ns": self.ns, **extra}

        def fn(conn: Any, attempt: int) -> None:
            cur = conn.execute(_sql.query(name), params)
            if cur.rowcount > 0:
                return
            retried = attempt > 0 or maybe_applied
            if retried and not conn.execute(_sql.query("taken_by_other"), params).fetchone()[0]:
                return
            raise LeaseLost(STALE)

        self.runner.run(fn, name)
        self.slot_freed(consumer)
        self.maybe_sweep()

    def settle_cast(self, name: str, bid: int, **extra: Any) -> None:
        """Ack, nack or dead-letter one taken broadcast copy."""
        params = {"id": bid, "ns": self.ns, **extra}

        def fn(conn: Any, attempt: int) -> None:
            if conn.execute(_sql.query(name), params).rowcount <= 0 and not attempt:
                raise LeaseLost("this broadcast delivery was already settled")

        self.runner.run(fn, name)

    def bury(self, row_id: int, token: int, queue: str, body: bytes, exc: Exception) -> None:
        """Dead-letter a claimed row whose body is not an envelope, keeping its bytes."""
        envelope = undecodable_envelope(bytes(body), queue, error=str(exc))
        params = {
            "id": row_id,
            "token": token,
            "task_id": envelope.id,
            "body": envelope.to_json().encode(),
            "reason": "undecodable",
            "meta": dumps({"error": str(exc)[:500]}),
        }
        self.run("dead_letter", params)

    def release(self, rows: Sequence[tuple[int, int, datetime]]) -> None:
        """Un-claim (id, token, ready_at) rows a consumer never handed out."""
        if rows:
            params = {
                "ids": [r[0] for r in rows],
                "tokens": [r[1] for r in rows],
                "ready_ats": [r[2] for r in rows],
            }
            self.run("release", params)

    # ---------------------------------------------------------- process-local
    def register(self, consumer: PostgresConsumer) -> None:
        with _locals_lock:
            self.local.consumers.add(consumer)

    def unregister(self, consumer: PostgresConsumer) -> None:
        with _locals_lock:
            self.local.consumers.discard(consumer)

    def _consumers(self) -> list[PostgresConsumer]:
        with _locals_lock:
            return list(self.local.consumers)

    def slot_freed(self, name: str) -> None:
        """A lease of consumer `name` was settled: if it was full, it may claim again now."""
        for consumer in self._consumers():
            if consumer.name == name:
                consumer.slot_freed()

    def read_ahead(self, queue: str) -> int:
        """Rows of `queue` that consumers of this process claimed but have not handed out.

        They are leased in the table (nobody else can take them) but not delivered, so
        brokers of this process count them as pending rather than in flight.
        """
        return sum(consumer.read_ahead(queue) for consumer in self._consumers())

    # -------------------------------------------------------------- retention
    def sweep(self) -> dict[str, int]:
        """Apply the retention now and vacuum tables that carry many dead tuples."""
        s = self.settings
        params = {
            "dead_retention": s.dead_letter_retention,
            "broadcast_retention": s.broadcast_retention,
        }
        row = self.run("sweep", params, fetch="one")
        result = {"dead_letters": row[0], "broadcasts": row[1], "subscriptions": row[2]}
        result["vacuumed"] = self._vacuum() if s.vacuum_threshold is not None else 0
        return result

    def _vacuum(self) -> int:
        threshold = self.settings.vacuum_threshold

        def fn(conn: Any, attempt: int) -> int:
            tables = conn.execute(_sql.query("vacuum_candidates"), {"threshold": threshold})
            names = [r[0] for r in tables.fetchall() if r[0] in _VACUUMABLE]
            for name in names:
                conn.execute(sql.SQL("VACUUM (SKIP_LOCKED) {}").format(sql.Identifier(name)))
            return len(names)

        try:
            return self.runner.run(fn, "vacuum")
        except StemlabError:
            return 0  # e.g. not the table owner: autovacuum has to do it

    def maybe_sweep(self) -> None:
        """Start a background sweep when one is due (never blocks the caller)."""
        now = time.monotonic()
        if now < self._next_sweep or self.closed:
            return
        with self._sweep_lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + self.settings.sweep_interval
        threading.Thread(
            target=self._background_sweep, name="stemlab-pg-sweep", daemon=True
        ).start()

    def _background_sweep(self) -> None:
        with contextlib.suppress(StemlabError):  # best effort: the next sweep catches up
            if not self.closed:
                self.sweep()
