"""`stemlab simulate`: one scenario on one broker model, in simulated time."""

from __future__ import annotations

import argparse
from typing import Any

from stemlab.cli._common import (
    add_scenario_args,
    load_scenario,
    out_dir,
    summary_json,
    summary_table,
)
from stemlab.core.progress import ticking
from stemlab.model.profile import load_profile
from stemlab.sim import simulate
from stemlab.viz import latency_cdf, queue_depth

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "simulate",
        help="run a scenario on a broker model in simulated time",
        description="Simulate a scenario on one broker profile and print its summary.",
    )
    add_scenario_args(parser)
    parser.add_argument(
        "--broker",
        "-b",
        default="redis",
        help="profile name (ideal, memory, sqlite, redis, redis-streams, postgres) "
        "or JSON file (default: redis)",
    )
    parser.add_argument("--out", "-o", help="folder for tasks.csv, ops.csv and figures")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario, args.tasks)
    profile = load_profile(args.broker)
    with ticking(f"simulating {scenario.name} on {profile.name}"):
        result = simulate(scenario, profile, seed=args.seed)
    if args.json:
        print(summary_json(result))
    else:
        print(
            f"{scenario.name} on {profile.name} ({profile.meta.get('status', 'profile')}): "
            f"{scenario.tasks} tasks, load {scenario.load:.2f}, seed {args.seed}, "
            f"{result.duration_s:.1f} s simulated in {result.meta['wall_s']:.2f} s"
        )
        print(summary_table([result]))
    folder = out_dir(args.out)
    if folder is not None:
        result.tasks.to_csv(folder / "tasks.csv", index=False)
        result.ops.to_csv(folder / "ops.csv", index=False)
        latency_cdf(result).savefig(folder / "latency.png", dpi=120)
        queue_depth(result).savefig(folder / "queue-depth.png", dpi=120)
        if not args.json:
            print(f"wrote tasks.csv, ops.csv, latency.png, queue-depth.png to {folder}")
    return 0
