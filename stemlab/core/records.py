"""Plain records of the contract: capabilities and dead-letter results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from stemlab.core.envelope import Envelope

__all__ = [
    "BroadcastScope",
    "Capabilities",
    "DeadLetterEntry",
    "DeadLetterPage",
    "ReplayResult",
]

BroadcastScope = Literal["process", "host", "cluster"]


@dataclass(frozen=True)
class Capabilities:
    """What an adapter promises, as data that tests and the simulator read.

    `reclaim_delay` is the longest an expired lease can go unnoticed (seconds,
    0 when expiry is checked at every claim); `poll_interval` is None when
    consumers are woken by the service rather than by polling. `lock_backoff`
    is how a write waits for a store-wide write lock that another connection
    holds: the sleeps (seconds) before each retry, the last one repeated
    (SQLite's busy handler); None when writers queue in order or there is no
    such lock. The simulator's host model reads it.
    """

    priority_levels: int = 10
    delayed: bool = True
    broadcast_scope: BroadcastScope | None = "process"
    durable: bool = False
    cross_process: bool = False
    poll_interval: float | None = None
    reclaim_delay: float = 0.0
    lock_backoff: tuple[float, ...] | None = None


@dataclass(frozen=True)
class DeadLetterEntry:
    """A dead-lettered envelope, why it died and when."""

    envelope: Envelope
    reason: str | None
    meta: dict[str, Any]
    dead_at: datetime

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class DeadLetterPage:
    """One page of dead letters, newest first; `next_offset` is None on the last page."""

    entries: list[DeadLetterEntry]
    next_offset: int | None

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class ReplayResult:
    """What a replay moved back to its queue (or would have, when `dry_run`)."""

    entries: list[DeadLetterEntry]
    dry_run: bool

    __hash__ = None  # type: ignore[assignment]

    @property
    def count(self) -> int:
        return len(self.entries)
