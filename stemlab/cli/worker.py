"""`stemlab worker URL --app module:app`: run an app's registered tasks from a broker.

The module declares the tasks (``app = stemlab.Stem("memory://")`` and
``@app.task``); the command line says where they run. The statuses go to
`--backend`, else to the app's own backend if it is not in-process memory,
else to the broker's store (same URL). SIGTERM drains and exits 0; a second
SIGTERM, or SIGINT, stops at once (exit 130) and leaves un-acked messages to
their leases.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

import stemlab
from stemlab.errors import ConfigError
from stemlab.runtime import ResultBackend, Stem
from stemlab.runtime.backends.memory import MemoryBackend

__all__ = ["load_app", "register"]


def register(sub: Any) -> None:
    parser = sub.add_parser("worker", help="run an app's registered tasks from a broker")
    parser.add_argument("url", help="broker URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument("--app", required=True, help="the app to run, as module:attribute")
    parser.add_argument("--backend", help="result backend URL (default: see `stemlab worker -h`)")
    parser.add_argument("--concurrency", "-c", type=int, default=4, help="task slots (default 4)")
    parser.add_argument("--queues", "-Q", default="default", help="comma-separated queues")
    parser.add_argument("--prefetch", type=int, default=None, help="deliveries held per slot")
    parser.add_argument("--namespace", default="stem", help="broker and backend namespace")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    parser.set_defaults(func=run)


def load_app(spec: str) -> Stem:
    """The `Stem` named by ``module:attribute`` (the current directory is importable)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--app must look like module:attribute, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    app = getattr(module, attr, None)
    if not isinstance(app, Stem):
        raise ConfigError(f"{spec} is not a stemlab.Stem (got {type(app).__name__})")
    return app


def _backend(args: argparse.Namespace, app: Stem) -> ResultBackend:
    if args.backend:
        return stemlab.connect_backend(args.backend, namespace=args.namespace)
    if not isinstance(app.backend, MemoryBackend):
        return app.backend
    return stemlab.connect_backend(args.url, namespace=args.namespace)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    declared = load_app(args.app)
    broker = stemlab.connect(args.url, namespace=args.namespace)
    backend = _backend(args, declared)
    app = declared.using(broker, backend)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    worker = app.worker(queues=queues, concurrency=args.concurrency, prefetch=args.prefetch)
    tasks = ", ".join(sorted(app.tasks)) or "none"
    print(f"stemlab worker {worker.id}: queues {','.join(queues)}; tasks: {tasks}", flush=True)
    worker.run()
    if worker.killed:  # stopped at once: do not wait for tasks still running in threads
        print(f"stemlab worker {worker.id}: stopped at once", file=sys.stderr, flush=True)
        os._exit(130)
    print(f"stemlab worker {worker.id}: drained and stopped", flush=True)
    if backend is not declared.backend:
        backend.close()
    broker.close()
    return 0
