"""`stemlab compare`: one scenario simulated on several brokers' profiles; no service needed."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from stemlab.cli._common import add_scenario_args, load_scenario, out_dir, summary_table
from stemlab.core.progress import Progress
from stemlab.model.profile import load_profile
from stemlab.model.replications import Replications
from stemlab.model.result import RunResult, compare
from stemlab.sim import simulate
from stemlab.viz import latency_cdf

__all__ = ["register", "run"]

DEFAULT_BROKERS = "memory,sqlite,redis,redis-streams,postgres"


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "compare",
        help="simulate one scenario on several brokers and compare (no service needed)",
        description="Simulate a scenario on each broker's profile (data/profiles), print a "
        "table of throughput and latency percentiles, and write a latency CDF figure.",
    )
    add_scenario_args(parser)
    parser.add_argument(
        "--brokers",
        "-b",
        default=DEFAULT_BROKERS,
        help=f"comma-separated profile names or JSON files (default: {DEFAULT_BROKERS})",
    )
    parser.add_argument(
        "--replications",
        "-r",
        type=int,
        default=1,
        help="seeded replications per broker; > 1 reports means with 95 %% intervals "
        "and draws bands (default: 1)",
    )
    parser.add_argument(
        "--out",
        "-o",
        default="stemlab-out",
        help="folder for the figure and CSV (default: %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario, args.tasks)
    names = [b.strip() for b in args.brokers.split(",") if b.strip()]
    if not names:
        raise ValueError("--brokers is empty")
    profiles = [load_profile(name) for name in names]  # fail before any work on a bad name
    k = args.replications
    if k < 1:
        raise ValueError(f"--replications must be >= 1, got {k}")
    results: list[RunResult | Replications] = []
    with Progress(len(profiles), "simulating", unit="broker") as bar:
        for profile in profiles:
            bar.note(profile.name)
            results.append(
                simulate(scenario, profile, seed=args.seed, label=profile.name, replications=k)
            )
            bar.advance()
    reps = f", {k} replications" if k > 1 else ""
    print(
        f"{scenario.name}: {scenario.tasks} tasks, {scenario.arrival_rate:g}/s, "
        f"{scenario.workers} workers, load {scenario.load:.2f}, seed {args.seed}{reps} (simulated)"
    )
    print(summary_table(results, first="broker"))
    folder = out_dir(args.out)
    assert folder is not None
    stem = f"compare-{scenario.name}"
    compare({r.label: r for r in results}).to_csv(folder / f"{stem}.csv")
    figure(results, f"{scenario.name} (load {scenario.load:.2f}), simulated").savefig(
        folder / f"{stem}.png", dpi=120
    )
    print(f"wrote {folder / f'{stem}.png'} and {folder / f'{stem}.csv'}")
    return 0


def figure(results: Sequence[RunResult | Replications], title: str) -> Figure:
    """Wait and end-to-end latency CDFs of every run, side by side (log time axis).

    With replications it is `stemlab.viz.latency_cdf` of the end-to-end
    latency instead: each broker's mean curve and its 95 % band.
    """
    if any(isinstance(r, Replications) for r in results):
        banded = latency_cdf(list(results), metric="e2e")
        banded.suptitle(title)
        return banded
    runs = [r for r in results if isinstance(r, RunResult)]
    fig = Figure(figsize=(11.0, 4.0), layout="constrained")
    fig.suptitle(title)
    for ax, (metric, what) in zip(
        fig.subplots(1, 2),
        [("wait", "wait (started - enqueued)"), ("e2e", "end to end")],
        strict=True,
    ):
        for result in runs:
            t = result.tasks
            if metric == "e2e":
                t = t[t["outcome"] == "acked"]
                values = t["finished_at"] - t["enqueued_at"]
            else:
                values = t["started_at"] - t["enqueued_at"]
            x = np.sort(values.to_numpy(dtype=float))
            x = x[np.isfinite(x) & (x > 0)] * 1000
            if x.size:
                ax.step(x, np.arange(1, x.size + 1) / x.size, where="post", label=result.label)
        ax.set_xscale("log")
        ax.set_xlabel(f"{what} (ms)")
        ax.set_ylabel("fraction of tasks")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return fig
