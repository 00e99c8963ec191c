"""Progress bars for long work (calibration, validation, the command line), or nothing.

A bar is drawn with tqdm on standard error only when it is a terminal and
tqdm is installed (it comes with the `dev` and `notebook` extras); otherwise
every call is a no-op, so scripts, tests and pipes stay quiet.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

__all__ = ["Progress", "ticking"]


def _tqdm() -> Any:
    if sys.stderr is None or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """A counter with a tqdm bar when one can be shown; `advance` and `close` are always safe."""

    def __init__(
        self, total: float | None, desc: str, *, enabled: bool = True, unit: str = "it"
    ) -> None:
        tqdm = _tqdm() if enabled else None
        self._bar: Any = None
        if tqdm is not None:
            self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False, delay=0.5)
        self.done: float = 0

    def advance(self, n: float = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def note(self, text: str) -> None:
        """Show what is being done now (next to the bar)."""
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def ticking(desc: str, *, enabled: bool = True) -> Iterator[None]:
    """Show elapsed seconds while a block of work with no natural count runs."""
    bar = Progress(None, desc, enabled=enabled, unit="s")
    if bar._bar is None:
        yield
        return
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.advance(0.5)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(1.0)
        bar.close()
