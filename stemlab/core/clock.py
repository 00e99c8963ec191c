"""Injectable clocks: wall time for real brokers, a manual clock for tests and replays."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = [
    "Clock",
    "ManualClock",
    "SystemClock",
    "as_seconds",
    "from_epoch",
    "require_aware",
    "to_epoch",
    "utcnow",
]


class Clock(Protocol):
    """Anything that tells the time as epoch seconds (float)."""

    def time(self) -> float: ...


class SystemClock:
    """The real wall clock (`time.time`)."""

    def time(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to; thread-safe."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward and return the new time."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        with self._lock:
            self._now = float(now)


def utcnow() -> datetime:
    """The current instant as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def require_aware(value: datetime, what: str) -> datetime:
    """Refuse naive datetimes: an instant without a zone is ambiguous."""
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{what} must be timezone-aware (got a naive datetime)")
    return value


def to_epoch(value: datetime) -> float:
    """Epoch seconds of an aware datetime."""
    return require_aware(value, "instant").timestamp()


def from_epoch(value: float) -> datetime:
    """An aware UTC datetime from epoch seconds."""
    return datetime.fromtimestamp(value, UTC)


def as_seconds(value: float | int | timedelta, what: str = "duration") -> float:
    """Accept float seconds or a timedelta; refuse anything else (bools included)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be seconds (float) or a timedelta, got {value!r}")
    return float(value)
