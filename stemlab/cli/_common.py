"""What several subcommands share: scenario and broker arguments, output folders, tables."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from stemlab.model.distributions import Exponential
from stemlab.model.replications import Replications
from stemlab.model.result import RunResult
from stemlab.model.scenario import Scenario, ScenarioError
from stemlab.model.shipped import shipped_file, shipped_names

__all__ = [
    "DEFAULT_SCENARIO",
    "add_scenario_args",
    "load_scenario",
    "out_dir",
    "summary_table",
]

# `stemlab compare` / `simulate` / `run` without --scenario: short tasks at load 0.5, where
# the brokers' pickup and round trips are a visible share of the end-to-end latency.
DEFAULT_SCENARIO = Scenario(
    name="short-tasks",
    arrival_rate=200.0,
    tasks=4000,
    service_time=Exponential(0.01),
    workers=4,
    priority_weights={0: 0.8, 9: 0.2},
)


def load_scenario(arg: str | None, tasks: int | None = None) -> Scenario:
    """A scenario from a JSON file or a shipped name (`light-mmc`), else the default one."""
    if arg is None:
        scenario = DEFAULT_SCENARIO
    else:
        path = Path(arg)
        source = path if path.is_file() else shipped_file("scenarios", arg)
        if source is None:
            known = shipped_names("scenarios")
            raise ScenarioError(f"no scenario file {arg!r} (shipped scenarios: {known})")
        try:
            scenario = Scenario.from_json(source.read_text(encoding="utf-8"))
        except ScenarioError as exc:
            raise ScenarioError(f"{arg}: {exc}") from exc
    if tasks is not None:
        if tasks < 1:
            raise ScenarioError(f"--tasks must be >= 1, got {tasks}")
        scenario = replace(scenario, tasks=tasks)
    return scenario


def add_scenario_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        "-s",
        help="scenario JSON file, or the name of a shipped one (data/scenarios); "
        f"default: {DEFAULT_SCENARIO.name!r} (M/M/4 at load 0.5, 10 ms tasks)",
    )
    parser.add_argument("--tasks", type=int, help="override the scenario's number of tasks")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def out_dir(arg: str | None) -> Path | None:
    """The output folder, created; None when not asked for."""
    if arg is None:
        return None
    path = Path(arg)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _ms(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value * 1000:.2f}"


def summary_table(results: Sequence[RunResult | Replications], *, first: str = "run") -> str:
    """One line per run: throughput, waits and end-to-end latency percentiles (ms), counts.

    A `Replications` shows the means over its runs, and the table gains the
    95 % half-widths of throughput and e2e p95 ("±").
    """
    cols = ["throughput/s", "wait p50", "wait p95", "wait p99", "e2e p50", "e2e p95", "e2e p99"]
    cols += ["acked", "lost", "redeliv."]
    replicated = any(isinstance(r, Replications) for r in results)
    if replicated:
        cols += ["± thr/s", "± e2e p95"]
    labels = [r.broker if first == "broker" else r.label for r in results]
    width = max([len(first), *map(len, labels)]) + 2
    lines = [f"{first:<{width}}" + "".join(f"{c:>13}" for c in cols)]
    for label, result in zip(labels, results, strict=True):
        s = result.summary()
        thr = s["throughput"]
        cells = [f"{thr:.1f}" if math.isfinite(thr) else "-"]
        cells += [_ms(float(s[k])) for k in ("wait_p50", "wait_p95", "wait_p99")]
        cells += [_ms(float(s[k])) for k in ("e2e_p50", "e2e_p95", "e2e_p99")]
        cells += [_count(s[k]) for k in ("acked", "lost", "redeliveries")]
        if replicated and isinstance(result, Replications):
            ci = result.summary_ci()
            half = (ci["ci_high"] - ci["ci_low"]) / 2
            cells += [f"{half['throughput']:.1f}", _ms(float(half["e2e_p95"]))]
        elif replicated:
            cells += ["-", "-"]
        lines.append(f"{label:<{width}}" + "".join(f"{c:>13}" for c in cells))
    lines.append("(latencies in ms; wait = started - enqueued, e2e = finished - enqueued)")
    if replicated:
        lines.append("(means over replications; ± = half-width of the 95 % interval)")
    return "\n".join(lines)


def _count(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def summary_json(result: RunResult) -> str:
    data: dict[str, Any] = {"label": result.label, "kind": result.kind, "broker": result.broker}
    data.update(result.summary())
    return json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                       for k, v in data.items()})  # fmt: skip
