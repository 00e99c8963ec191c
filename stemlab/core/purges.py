"""Purge generations: how a consumer learns that buffered claims of a queue were purged.

A consumer claims ahead (prefetch) and hands the claims out later; a `purge()` in
between removes the messages from the store, and handing them out then would run
purged tasks. Every `Broker.purge` bumps the queue's generation here (one process-
wide counter per store, namespace and queue), so consumers of any broker object of
this process see it at once; adapters whose store tells other processes about a
purge (a pub/sub or NOTIFY message) bump it too when the message arrives. The
consumer core tags each claim with the generation read before it was claimed and
gives a claim back instead of handing it out once the generation moved on.
"""

from __future__ import annotations

import threading

__all__ = ["PURGES", "PurgeGenerations"]


class PurgeGenerations:
    """Thread-safe counters keyed by (store id, namespace, queue); missing keys are 0."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()

    def bump(self, store: str, namespace: str, queue: str) -> None:
        key = (store, namespace, queue)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def get(self, store: str, namespace: str, queue: str) -> int:
        return self._counts.get((store, namespace, queue), 0)


PURGES = PurgeGenerations()
