"""`stemlab run URL`: one scenario on a real broker, in wall time, with a progress bar."""

from __future__ import annotations

import argparse
from typing import Any

import stemlab
from stemlab.cli._common import (
    add_scenario_args,
    load_scenario,
    out_dir,
    summary_json,
    summary_table,
)
from stemlab.viz import latency_cdf, queue_depth

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "run",
        help="run a scenario on a real broker (live, wall time)",
        description="Run a scenario against a live broker and print its summary. The queue "
        "'scenario' of the namespace is purged before and after the run.",
    )
    parser.add_argument(
        "url", help="broker URL, e.g. sqlite:///jobs.db or redis://127.0.0.1:6379/0"
    )
    add_scenario_args(parser)
    parser.add_argument(
        "--namespace", default="stemlab-run", help="broker namespace (default: %(default)s)"
    )
    parser.add_argument("--out", "-o", help="folder for tasks.csv, ops.csv and figures")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario, args.tasks)
    with stemlab.connect(args.url, namespace=args.namespace) as broker:
        result = stemlab.run_live(scenario, broker, seed=args.seed, progress=True)
    if args.json:
        print(summary_json(result))
    else:
        state = " (timed out)" if result.meta.get("timed_out") else ""
        print(
            f"{scenario.name} on {result.broker} (live): {scenario.tasks} tasks, "
            f"load {scenario.load:.2f}, seed {args.seed}, {result.duration_s:.1f} s{state}"
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
    return 1 if result.summary()["lost"] else 0
