"""The limits every adapter can honour: durations, instants, counts, identifiers, nesting.

One place for the numbers (docs/contract.md, "Limits", explains each choice); the
Broker base, the Envelope and the option rules validate with these helpers before
anything is written, so every adapter refuses the same values the same way.

* A lease (an envelope's `visibility_timeout`, the `default_visibility_timeout`
  option, `extend_lease(by=...)`) lasts `MIN_LEASE`..`MAX_DURATION` seconds: below
  10 ms a lease can expire before its claim is even returned (Postgres re-claimed
  such a message forever); one year keeps every expiry a store computes (server
  milliseconds in Redis' Lua doubles, Postgres intervals, SQLite microseconds in a
  64-bit integer, Python datetimes) exact and far inside every range.
* A delay (`replay_dead_letters(delay=...)`) lasts 0..`MAX_DURATION` seconds.
* An instant (`not_before`) lies in `MIN_INSTANT`..`MAX_INSTANT` (1970 to 2200):
  Redis scores ready messages as priority band (2^43 ms, year 2248) plus the ms
  they became ready, so later instants would cross priority bands.
* Limits, offsets and prefetch are ints up to `MAX_COUNT` (2^31 - 1), which Lua's
  doubles, SQLite and Postgres all take as exact integers.
* Identifiers (envelope ids, consumer names, dead-letter lookups) are 1..200
  characters without control characters (NUL included) or lone surrogates, which
  Postgres text and UTF-8 cannot keep; other text (reasons) only the latter rule.
* JSON data (args, meta) nests at most `MAX_DEPTH` containers deep.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from stemlab.core.clock import as_seconds, require_aware

__all__ = [
    "MAX_COUNT",
    "MAX_DEPTH",
    "MAX_DURATION",
    "MAX_IDENTIFIER",
    "MAX_INSTANT",
    "MIN_INSTANT",
    "MIN_LEASE",
    "check_count",
    "check_delay",
    "check_identifier",
    "check_instant",
    "check_lease",
    "check_text",
]

MIN_LEASE = 0.01  # seconds
MAX_DURATION = 365 * 86_400.0  # seconds: one year
MIN_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)
MAX_COUNT = 2**31 - 1
MAX_DEPTH = 100
MAX_IDENTIFIER = 200

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _finite_seconds(value: float | int | timedelta, what: str) -> float:
    seconds = as_seconds(value, what)
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be a finite number of seconds, got {seconds}")
    return seconds


def check_lease(value: float | int | timedelta, what: str) -> float:
    """A lease length in seconds: finite, `MIN_LEASE`..`MAX_DURATION`."""
    seconds = _finite_seconds(value, what)
    if not MIN_LEASE <= seconds <= MAX_DURATION:
        raise ValueError(
            f"{what} must be {MIN_LEASE}..{MAX_DURATION:.0f} seconds (10 ms to one year), "
            f"got {seconds}"
        )
    return seconds


def check_delay(value: float | int | timedelta, what: str) -> float:
    """A delay in seconds: finite, 0..`MAX_DURATION`."""
    seconds = _finite_seconds(value, what)
    if not 0 <= seconds <= MAX_DURATION:
        raise ValueError(
            f"{what} must be 0..{MAX_DURATION:.0f} seconds (at most one year), got {seconds}"
        )
    return seconds


def check_instant(value: datetime, what: str) -> datetime:
    """An aware instant in `MIN_INSTANT`..`MAX_INSTANT`."""
    require_aware(value, what)
    try:
        inside = MIN_INSTANT <= value <= MAX_INSTANT
    except OverflowError:  # a far offset near datetime.min/max
        inside = False
    if not inside:
        raise ValueError(f"{what} must lie between 1970-01-01 and 2200-01-01 UTC, got {value}")
    return value


def check_count(value: Any, what: str, low: int = 0) -> int:
    """An int in `low`..`MAX_COUNT` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_COUNT:
        raise ValueError(f"{what} must be an int in {low}..{MAX_COUNT}, got {value!r}")
    return value


def check_identifier(value: Any, what: str) -> str:
    """1..200 characters, no control characters (NUL included), no lone surrogates."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_IDENTIFIER or _BAD_CHARS.search(value):
        raise ValueError(
            f"{what} must be 1..{MAX_IDENTIFIER} characters without control characters "
            f"or lone surrogates, got {value[:80]!r}"
        )
    return value


def check_text(value: str, what: str, *, nul_ok: bool = False) -> str:
    """Text every store keeps: no lone surrogates, and no NUL unless `nul_ok`.

    `nul_ok` is for text that travels inside the envelope's JSON (escaped there);
    text a store keeps in a column of its own (a dead letter's reason) has no NUL.
    """
    if (not nul_ok and "\x00" in value) or (not value.isascii() and _SURROGATE.search(value)):
        bad = "lone surrogates" if nul_ok else "NUL or lone surrogates"
        raise ValueError(f"{what} must not contain {bad}, got {value[:80]!r}")
    return value
