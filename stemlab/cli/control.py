"""`stemlab control URL COMMAND [ARG]`: ping, stats, shutdown, revoke, pause or resume workers.

The command goes to the broker's control channel (namespace `--namespace`);
the expected workers are the live heartbeats in the result backend
(`--backend`, else the broker's own store, as `stemlab worker` does). The
table says who answered, who was expected but silent, and who the broker's
broadcast cannot reach (a memory broker: this process; SQLite: this host).
Bad input is refused before anything is opened.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import stemlab
from stemlab.runtime import Stem
from stemlab.runtime.protocol import COMMANDS, check_task_id, check_timeout

__all__ = ["register"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "control",
        help="ping, stats, shutdown, revoke ID, pause Q or resume Q the workers of a broker",
    )
    parser.add_argument("url", help="broker URL, e.g. redis://127.0.0.1:6379/0")
    parser.add_argument(
        "action", metavar="COMMAND", help="ping | stats | shutdown | revoke | pause | resume"
    )
    parser.add_argument("arg", nargs="?", help="the task id (revoke) or queue (pause, resume)")
    parser.add_argument("--timeout", type=float, default=1.0, help="reply deadline, s (default 1)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--namespace", default="stem", help="broker and backend namespace")
    parser.add_argument("--backend", help="result backend URL (default: the broker's store)")
    parser.add_argument(
        "--worker", action="append", dest="workers", help="only this worker id (repeatable)"
    )
    parser.set_defaults(func=run)


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The command's argument, checked before any connection is opened (ValueError)."""
    if args.action not in COMMANDS:
        raise ValueError(f"unknown control command {args.action!r} (known: {', '.join(COMMANDS)})")
    check_timeout(args.timeout)
    wanted = COMMANDS[args.action]
    if wanted is None:
        if args.arg is not None:
            raise ValueError(f"{args.action} takes no argument, got {args.arg!r}")
        return {}
    if args.arg is None:
        raise ValueError(f"{args.action} needs a {wanted.replace('_', ' ')}")
    if wanted == "task_id":
        check_task_id(args.arg)
    return {wanted: args.arg}


def run(args: argparse.Namespace) -> int:
    extra = _arguments(args)
    broker = stemlab.connect(args.url, namespace=args.namespace)
    try:
        backend = stemlab.connect_backend(args.backend or args.url, namespace=args.namespace)
        try:
            control = Stem(broker, backend).control
            if args.action == "revoke":
                df = control.revoke(extra["task_id"], args.timeout, workers=args.workers)
            else:
                df = control.send(args.action, extra, timeout=args.timeout, workers=args.workers)
        finally:
            backend.close()
    finally:
        broker.close()
    rows = df.astype(object).where(df.notna(), None).to_dict(orient="records")
    if args.json:
        doc = {key: df.attrs.get(key) for key in ("command", "scope", "note")}
        for key in ("answered", "silent", "unreachable"):
            doc[key] = df.attrs.get(key, [])
        print(json.dumps({**doc, "rows": rows}, default=str))
    else:
        if df.attrs.get("note"):
            print(f"note: {df.attrs['note']}", file=sys.stderr)
        answered, silent = len(df.attrs["answered"]), len(df.attrs["silent"])
        print(df.to_string(index=False) if rows else "(no worker answered, none expected)")
        print(f"{answered} answered, {silent} silent, {len(df.attrs['unreachable'])} unreachable")
    return 0
