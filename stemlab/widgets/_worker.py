"""One background thread per widget: runs queued actions in order and ticks on a timer.

Widgets never call a broker or the simulator from the kernel's thread: a click
queues an action here and returns at once, so a slow service cannot freeze the
notebook, and every broker call of one widget happens on one thread (a
consumer is only ever used by the thread that opened it). `wait_idle()` lets
tests and scripts wait for the queued work; `close()` stops the thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

__all__ = ["Worker"]

log = logging.getLogger(__name__)
Action = Callable[[], None]


class Worker:
    """Runs `submit`ted actions in order on one daemon thread; calls `tick` every `interval` s.

    `tick` also runs right after each action, so what a click changed shows at
    once. `on_stop` runs on the worker thread after the last action (to release
    what that thread opened). Exceptions escaping an action or a tick are
    logged and swallowed: the widgets report errors themselves.
    """

    def __init__(
        self,
        name: str,
        *,
        tick: Action | None = None,
        interval: float = 0.5,
        on_stop: Action | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval}")
        self._actions: queue.Queue[Action | None] = queue.Queue()
        self._tick = tick
        self._interval = interval
        self._on_stop = on_stop
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, action: Action) -> None:
        """Queue `action` to run on the worker thread (ignored once closing)."""
        if not self._stopped.is_set():
            self._actions.put(action)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every action queued so far has run (and a tick after it); False on timeout."""
        if self._stopped.is_set() or not self.alive:
            return False
        done = threading.Event()

        def mark() -> None:
            self._guard(self._tick)
            done.set()

        self._actions.put(mark)
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop after the action running now; wait up to `timeout` s for the thread to end."""
        if not self._stopped.is_set():
            self._stopped.set()
            self._actions.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        next_tick = time.monotonic()
        try:
            while not self._stopped.is_set():
                wait = max(0.0, next_tick - time.monotonic())
                try:
                    action = self._actions.get(timeout=wait)
                except queue.Empty:
                    action = None
                else:
                    if action is None:
                        break
                    self._guard(action)
                    if not self._actions.empty():
                        continue  # run queued work first; tick once it is drained
                self._guard(self._tick)
                next_tick = time.monotonic() + self._interval
        finally:
            self._guard(self._on_stop)

    @staticmethod
    def _guard(action: Action | None) -> None:
        if action is None:
            return
        try:
            action()
        except Exception:  # a widget's action must never kill its thread
            log.exception("widget action failed")
