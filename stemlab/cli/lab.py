"""`stemlab lab`: serve the playground notebook (07-playground) with Voila on 127.0.0.1.

The notebook is generated from `playground_notebook()` below into a temporary
folder at each start, rather than shipped as a file: this module is all a
wheel needs, no package data has to be found, and the command line never
imports `stemlab.widgets` (the two are independent layers: the notebook's own
kernel imports the widgets). `notebooks/07-playground.ipynb` is the same cells,
executed with their outputs; a test keeps the two identical. The broker the
playground opens is passed to the kernel in `STEMLAB_PLAYGROUND_URL`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from stemlab.errors import ConfigError

__all__ = ["NOTEBOOK_NAME", "URL_VARIABLE", "playground_notebook", "register", "run"]

NOTEBOOK_NAME = "07-playground.ipynb"
URL_VARIABLE = "STEMLAB_PLAYGROUND_URL"
DEFAULT_DB = "stemlab-playground.db"

_INTRO = """\
# 07 · Playground: a broker by hand, and every broker's prediction at once

Two widgets (`stemlab.widgets`). Both work in Jupyter and in Voilà (`stemlab lab` serves
this notebook), do their work on a background thread, and stop it with `.close()`.
The brokers are embedded by default (a SQLite file in the working folder, or memory);
set `STEMLAB_REDIS_URL` / `STEMLAB_POSTGRES_URL` to offer Redis and Postgres too."""

_PARAMETERS = """\
import os
import tempfile

PLAYGROUND_URL = os.environ.get("STEMLAB_PLAYGROUND_URL", "sqlite:///playground.db")
REDIS_URL = os.environ.get("STEMLAB_REDIS_URL")  # e.g. redis://127.0.0.1:6379/0
POSTGRES_URL = os.environ.get("STEMLAB_POSTGRES_URL")  # e.g. postgresql://postgres@127.0.0.1/test"""

_IMPORTS = """\
from stemlab.widgets import BrokerPlayground, ScenarioExplorer

LIVE_URLS = {
    "memory": "memory://",
    "sqlite": f"sqlite:///{tempfile.gettempdir()}/stemlab-explorer-live.db",
}
for name, url in (("redis", REDIS_URL), ("postgres", POSTGRES_URL)):
    if url:
        LIVE_URLS[name] = url"""

_PLAYGROUND_TEXT = """\
**BrokerPlayground** publishes, consumes and settles messages by hand on one broker (ack, nack,
requeue, extend the lease, dead-letter), with live counts, lease countdowns, the dead letters
and the log of every call; open this notebook twice on one SQLite file and both see one queue.
Its **Workers** panel lists the live workers (`stemlab worker PLAYGROUND_URL --app module:app`)
and pings, pauses, resumes, revokes or shuts them down over the broker's control channel."""

_EXPLORER_TEXT = """\
**ScenarioExplorer** re-simulates a scenario on every broker's profile whenever a slider
settles and redraws latency, per-priority waits, queue depth and load curves; *Run live*
plays a small copy on a real broker and overlays what was measured on what was predicted."""


_EXPLORER = """\
explorer = ScenarioExplorer(live_urls=LIVE_URLS)
explorer.wait_idle()  # the first drawing (about 2 s), so the figures are there when it shows
explorer"""


def _cell(kind: str, source: str, index: int, tags: list[str] | None = None) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "cell_type": kind,
        "id": f"playground-{index}",
        "metadata": {"tags": tags} if tags else {},
        "source": source,
    }
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def playground_notebook() -> dict[str, Any]:
    """The playground notebook (nbformat 4), without outputs: what `stemlab lab` serves."""
    cells = [
        ("markdown", _INTRO, None),
        ("code", _PARAMETERS, ["parameters"]),
        ("code", _IMPORTS, None),
        ("markdown", _PLAYGROUND_TEXT, None),
        ("code", "playground = BrokerPlayground(PLAYGROUND_URL)\nplayground", None),
        ("markdown", _EXPLORER_TEXT, None),
        ("code", _EXPLORER, None),
    ]
    return {
        "cells": [_cell(kind, src, i, tags) for i, (kind, src, tags) in enumerate(cells)],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "lab",
        help="serve the broker playground and scenario explorer in a browser (Voila)",
        description="Serve 07-playground with Voila on 127.0.0.1 (needs stemlab[notebook]).",
    )
    parser.add_argument("--port", type=int, default=8866, help="port to serve on (default 8866)")
    parser.add_argument(
        "--no-browser", action="store_true", help="do not open a browser, only print the address"
    )
    parser.add_argument(
        "--url",
        help=f"broker URL of the playground (default: sqlite:///./{DEFAULT_DB}, "
        f"or ${URL_VARIABLE})",
    )
    parser.set_defaults(func=run)


def _require_voila() -> None:
    missing = [m for m in ("voila", "ipywidgets") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"stemlab lab needs {' and '.join(missing)}: pip install 'stemlab[notebook]'"
        )


def run(args: argparse.Namespace) -> int:
    """Write the notebook into a temporary folder and run Voila on it in this process.

    In-process, so the server's PID is this command's: stopping it (Ctrl-C or
    SIGTERM) stops Voila, which shuts its kernels down.
    """
    _require_voila()
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    url = args.url or os.environ.get(URL_VARIABLE) or f"sqlite:///{Path(DEFAULT_DB).resolve()}"
    os.environ[URL_VARIABLE] = url  # the kernels Voila starts inherit it
    from voila.app import main as voila_main

    with tempfile.TemporaryDirectory(prefix="stemlab-lab-") as tmp:
        notebook = Path(tmp) / NOTEBOOK_NAME
        notebook.write_text(json.dumps(playground_notebook(), indent=1), encoding="utf-8")
        argv = [
            str(notebook),
            f"--port={args.port}",
            "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0",  # the port asked for, or an error
        ]
        if args.no_browser:
            argv.append("--no-browser")
        print(f"stemlab lab: playground broker {url}", flush=True)
        print(f"stemlab lab: serving on http://127.0.0.1:{args.port}/ (Ctrl-C stops)", flush=True)
        voila_main(argv=argv)
    return 0
