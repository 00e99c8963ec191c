"""The worker protocol both interpreters follow: queue and task names, polling, retries, renewals.

`stemlab.live.run` (whose docstring specifies the worker behaviour step by
step) and the simulator in `stemlab.sim` read these same constants, so a live
and a simulated run of one scenario differ only by what the broker does.
"""

from __future__ import annotations

__all__ = [
    "POLL_S",
    "QUEUE",
    "RENEW_FRACTION",
    "RETRY_BACKOFF",
    "RETRY_MAX",
    "TASK_NAME",
    "retry_delay",
]

QUEUE = "scenario"  # the queue a scenario's tasks go through (purged before and after a run)
TASK_NAME = "stemlab.task"  # the envelope name of every scenario task
POLL_S = 0.1  # how long an idle task slot blocks in one get() before checking for the end

# The runtime retry path: a failed task is retried after RETRY_BACKOFF * 2**attempt
# seconds, up to RETRY_MAX times, then dead-lettered.
RETRY_MAX = 3
RETRY_BACKOFF = 0.05

# A worker that renews leases extends by the full visibility timeout every
# RENEW_FRACTION of it (a third, like most brokers' heartbeats).
RENEW_FRACTION = 1 / 3


def retry_delay(attempt: int) -> float | None:
    """Backoff before retry number `attempt + 1`, or None when retries are used up."""
    if attempt >= RETRY_MAX:
        return None
    return float(RETRY_BACKOFF * 2**attempt)
