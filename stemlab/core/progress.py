"""Progress bars for long work (calibration, validation, sweeps, live runs), or nothing.

A bar is drawn with tqdm when someone is watching: on standard error when it
is a terminal, or as a notebook widget when the code runs in a Jupyter
kernel (whose standard error is never a terminal). Otherwise every call is a
no-op, so scripts, tests and pipes stay quiet. tqdm comes with the `dev` and
`notebook` extras; it, IPython and ipykernel are only looked up when a bar
is asked for, so `import stemlab` stays light.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

__all__ = ["Progress", "in_notebook", "ticking"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython ZMQInteractiveShell), without importing IPython.

    A kernel that is running has already imported `ipykernel` and `IPython`,
    so looking them up in `sys.modules` is enough and costs nothing elsewhere.
    """
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return False
    try:
        shell = get_ipython()
    except Exception:  # a half-torn-down kernel: no bar rather than a crash
        return False
    # by name, subclasses included (Colab's shell derives from it): no IPython import needed
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def _tqdm() -> Any:
    """The tqdm class to draw with here (terminal or notebook), or None to stay quiet."""
    if sys.stderr is not None and sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            return None
        return tqdm
    if in_notebook():
        try:
            from tqdm.notebook import tqdm as notebook_tqdm
        except ImportError:
            return None
        return notebook_tqdm
    return None


def _open_bar(tqdm: Any, **kwargs: Any) -> Any:
    """Open a bar; a notebook without working widgets (ipywidgets missing) gets none."""
    try:
        return tqdm(**kwargs)
    except ImportError:
        return None


class Progress:
    """A counter with a tqdm bar when one can be shown; `advance` and `close` are always safe."""

    def __init__(
        self, total: float | None, desc: str, *, enabled: bool = True, unit: str = "it"
    ) -> None:
        tqdm = _tqdm() if enabled else None
        self._bar: Any = None
        if tqdm is not None:
            self._bar = _open_bar(tqdm, total=total, desc=desc, unit=unit, leave=False, delay=0.5)
        self.done: float = 0

    @property
    def shown(self) -> bool:
        """Whether a bar is being drawn (a terminal or a notebook is watching)."""
        return self._bar is not None

    def advance(self, n: float = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def say(self, text: str) -> None:
        """Print one line above the bar (standard error in a terminal, the cell's output in a
        notebook); nothing when no bar is shown, so quiet runs stay quiet."""
        if self._bar is not None:
            terminal = sys.stderr is not None and sys.stderr.isatty()
            self._bar.write(text, file=sys.stderr if terminal else sys.stdout)

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
