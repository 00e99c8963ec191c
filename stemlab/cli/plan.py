"""`stemlab plan`: the fewest workers meeting an SLO on each broker's profile (simulated)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from stemlab.cli._common import add_scenario_args, load_scenario, out_dir
from stemlab.core.progress import ticking
from stemlab.experiments.plan import DEFAULT_BROKERS, CapacityPlan, plan

__all__ = ["plan_table", "register", "run"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "plan",
        help="find the fewest workers that meet a latency SLO on each broker (simulated)",
        description="Search worker counts on each broker's calibrated profile for the fewest "
        "that meet the SLO with 95 %% confidence over seeded replications; print a table "
        "with the saturation throughput and headroom, and a one-line verdict.",
    )
    add_scenario_args(parser)
    parser.add_argument(
        "--slo",
        action="append",
        metavar="METRIC=SECONDS",
        help="a target such as e2e_p95=0.25 or wait_p99=0.1 (repeatable; default e2e_p95=0.25; "
        '"throughput=N" is a floor in tasks/s)',
    )
    parser.add_argument(
        "--brokers",
        "-b",
        default=",".join(DEFAULT_BROKERS),
        help="comma-separated profile names or JSON files (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", default="1-32", help="worker counts to search, LOW-HIGH (default: 1-32)"
    )
    parser.add_argument(
        "--replications", "-r", type=int, default=3, help="replications per count (default: 3)"
    )
    parser.add_argument("--out", "-o", help="folder for plan.csv")
    parser.set_defaults(func=run)


def _slo(items: list[str] | None) -> dict[str, float]:
    if not items:
        return {"e2e_p95": 0.25}
    out: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--slo wants METRIC=VALUE, got {item!r}")
        out[key.strip()] = float(value)
    return out


def _range(text: str) -> range:
    low, sep, high = text.partition("-")
    try:
        lo, hi = (int(low), int(high)) if sep else (1, int(low))
    except ValueError:
        raise ValueError(f"--workers wants LOW-HIGH, got {text!r}") from None
    if not 1 <= lo <= hi:
        raise ValueError(f"--workers wants 1 <= LOW <= HIGH, got {text!r}")
    return range(lo, hi + 1)


def plan_table(result: CapacityPlan) -> str:
    """Broker, workers, each SLO metric's mean [95 % interval] vs target, saturation, headroom."""
    head = ["broker", "workers"]
    for metric in result.slo:
        head.append(f"{metric} [95 % CI]")
    head += ["target", "saturation/s", "headroom"]
    lines = []
    for row in result.rows:
        workers = str(row["workers"]) if row["meets"] else f">{result.meta['max_workers']}"
        cells = [row["broker"], workers]
        targets = []
        for metric, target in result.slo.items():
            cells.append(_interval(metric, row))
            targets.append(_value(metric, target))
        cells.append(", ".join(targets))
        cells.append(f"{row['saturation_throughput']:.1f}")
        headroom = row["headroom"]
        cells.append(f"{headroom:.0%}" if math.isfinite(headroom) else "-")
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) + 2 for i, h in enumerate(head)]
    out = ["".join(f"{h:>{w}}" for h, w in zip(head, widths, strict=True))]
    out += ["".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)) for cells in lines]
    return "\n".join(out)


def _value(metric: str, value: float) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:.1f}/s" if metric == "throughput" else f"{value * 1000:.1f} ms"


def _interval(metric: str, row: dict[str, Any]) -> str:
    mean, low, high = (row[f"{metric}_{k}"] for k in ("mean", "ci_low", "ci_high"))
    return f"{_value(metric, mean)} [{_value(metric, low)}, {_value(metric, high)}]"


def run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario, args.tasks)
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    if not brokers:
        raise ValueError("--brokers is empty")
    slo = _slo(args.slo)
    workers = _range(args.workers)
    tasks = args.tasks if args.tasks is not None else 2_000
    with ticking(f"planning {scenario.name} on {len(brokers)} brokers"):
        result = plan(
            scenario,
            slo,
            brokers,
            workers,
            replications=args.replications,
            tasks=tasks,
            seed=args.seed,
        )
    print(
        f"{scenario.name}: {scenario.arrival_rate:g}/s, mean service "
        f"{scenario.service_time.mean * 1000:g} ms, {result.meta['tasks']} tasks x "
        f"{args.replications} replications per count, workers {workers.start}-{workers.stop - 1} "
        f"(simulated in {result.meta['wall_s']:.1f} s)"
    )
    print(plan_table(result))
    print(result.verdict())
    folder = out_dir(args.out)
    if folder is not None:
        result.frame().to_csv(folder / "plan.csv")
        print(f"wrote {folder / 'plan.csv'}")
    return 0
