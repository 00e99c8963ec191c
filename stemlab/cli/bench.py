"""`stemlab bench URL`: enqueue rate, drain rate and pickup latency (`stemlab.live.bench`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from stemlab.core.progress import ticking
from stemlab.live import bench

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "bench",
        help="benchmark a broker: enqueue/s, drain/s, pickup latency",
        description=(bench.__doc__ or "").strip().splitlines()[0],
    )
    parser.add_argument(
        "url", help="broker URL, e.g. sqlite:///bench.db or redis://127.0.0.1:6379/2"
    )
    parser.add_argument("--n", type=int, default=5000, help="tasks per drain measurement")
    parser.add_argument("--rate", type=float, default=200.0, help="publish rate of the pickup test")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the pickup test")
    parser.add_argument("--processes", type=int, default=1, help="consumer processes")
    parser.add_argument("--json", action="store_true", help="print one JSON record instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.n < 2 or args.processes < 1 or args.rate <= 0 or args.seconds <= 0:
        raise ValueError("need --n >= 2, --processes >= 1, --rate > 0, --seconds > 0")
    with ticking(f"benchmarking {args.url}"):
        res = bench.run(
            args.url, n=args.n, rate=args.rate, seconds=args.seconds, processes=args.processes
        )
    print(json.dumps(asdict(res)) if args.json else bench.table(res), flush=True)
    return 1 if res.errors else 0
