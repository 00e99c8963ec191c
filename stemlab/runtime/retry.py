"""The retry rule: exponential backoff, capped, with jitter from an explicit generator.

Retry number ``attempt + 1`` of a task waits ``min(cap, base * 2**attempt)``
seconds times a uniform factor in [0.5, 1) drawn from the worker's own
`random.Random` (never the global random state, so a seeded worker is
reproducible and workers do not retry in lock-step).
"""

from __future__ import annotations

import random

__all__ = ["BACKOFF_CAP_S", "backoff"]

BACKOFF_CAP_S = 300.0  # no retry waits longer than five minutes


def backoff(attempt: int, base: float, rng: random.Random, cap: float = BACKOFF_CAP_S) -> float:
    """Seconds to wait before retrying a task that failed on attempt `attempt` (0-based)."""
    if attempt < 0 or base < 0:
        raise ValueError("attempt and base must be >= 0")
    return min(cap, base * 2.0 ** min(attempt, 64)) * rng.uniform(0.5, 1.0)
