"""Issue #12: validation at every load on the real services (slow, kept in CI).

Each broker (memory, SQLite, Redis, Postgres) is calibrated quickly (with
the load ramp, so its profile has the host model) and then runs the shipped
broker-bound scenarios `sat-fast-050/080/095/120` (1 ms tasks, one worker,
load 0.5 to 1.2) live and simulated, one replication each: about 30-40 s
per broker on a quiet 2-core machine.

What is asserted is what holds (docs/fidelity.md has the measured table and
the misses): every run completes in both worlds, the reports carry the
machine's load, the targets are the ones for each load, and at load 1.2
the host model predicts the capacity at least as well as the same profile
without it (the old model, which over-predicts capacity). The fidelity
targets themselves (throughput within 10 %, e2e p50/p95 within 20 % up to
load 0.95) are evaluated and printed with their figures, not asserted:
they are missed on this shared machine (see docs/fidelity.md).

Retry (documented): when a check fails and the machine's 1-minute load
average was above its core count during the run, the broker's whole run
(calibration included) is repeated once, and the second run decides.
"""

from __future__ import annotations

import os
import uuid
import warnings
from pathlib import Path

import pytest

import stemlab
from stemlab import calibrate, simulate, validate
from stemlab.calibration import BusyMachineWarning
from stemlab.cli._common import load_scenario
from stemlab.experiments.validate import ValidationReport, targets_for
from tests.experiments.conftest import CLEANUP, _url

pytestmark = pytest.mark.slow

SCENARIOS = ("sat-fast-050", "sat-fast-080", "sat-fast-095", "sat-fast-120")
CORES = os.cpu_count() or 1


def _run(adapter: str, folder: Path) -> list[ValidationReport]:
    namespace = "sat" + uuid.uuid4().hex[:10]
    try:
        with stemlab.connect(_url(adapter, folder), namespace=namespace) as broker:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", BusyMachineWarning)  # recorded in meta
                profile = calibrate(broker, quick=True, force=True)
            return [
                validate(load_scenario(name), broker, replications=1, profile=profile)
                for name in SCENARIOS
            ]
    finally:
        if adapter in CLEANUP:
            CLEANUP[adapter](namespace)


def _capacity_errors(report: ValidationReport) -> tuple[float, float]:
    """|relative error| of the predicted throughput with and without the host model."""
    measured = report.live[0].summary()["throughput"]
    plain = report.profile.with_overrides(host=None)
    without = simulate(report.scenario, plain, seed=0, record_ops=False).summary()["throughput"]
    with_host = report.sim[0].summary()["throughput"]
    return abs(with_host / measured - 1), abs(without / measured - 1)


def _problems(reports: list[ValidationReport]) -> list[str]:
    problems = []
    for report in reports:
        name = report.scenario.name
        for run in (*report.live, *report.sim):
            summary = run.summary()
            if summary["acked"] != report.scenario.tasks:
                problems.append(f"{name} {run.kind}: {summary['acked']} acked")
        if report.meta.get("load_average_max") is None:
            problems.append(f"{name}: no load average recorded")
        frame = report.frame
        expected = targets_for(report.scenario)
        if set(frame["target"].dropna().index) != set(expected):
            problems.append(f"{name}: targets {list(frame['target'].dropna().index)}")
    over = next(r for r in reports if r.scenario.load > 1)
    hosted, plain = _capacity_errors(over)
    if hosted > plain + 0.02:
        problems.append(f"capacity error with host model {hosted:.0%} > without {plain:.0%}")
    return problems


def _summary(adapter: str, reports: list[ValidationReport]) -> str:
    lines = [f"{adapter}:"]
    for report in reports:
        f = report.frame
        cells = [
            f"{m} {f.at[m, 'measured'] * (1 if m == 'throughput' else 1000):.1f}"
            f"/{f.at[m, 'predicted'] * (1 if m == 'throughput' else 1000):.1f}"
            f" ({f.at[m, 'rel_error']:+.0%}{'' if f.at[m, 'within_target'] else ' MISSED'})"
            for m in ("e2e_p50", "e2e_p95", "throughput")
        ]
        load = report.meta.get("load_average_max")
        lines.append(f"  {report.scenario.name} load avg {load}: " + ", ".join(cells))
    return "\n".join(lines)


@pytest.mark.parametrize("adapter", ["memory", "sqlite", "redis", "postgres"])
def test_validation_at_every_load(adapter: str, tmp_path: Path) -> None:
    reports = _run(adapter, tmp_path)
    problems = _problems(reports)
    busiest = max(r.meta.get("load_average_max") or 0.0 for r in reports)
    if problems and busiest > CORES:  # the documented retry: once, on a busy machine
        print(f"retrying {adapter}: load average {busiest} > {CORES} cores; {problems}")
        reports = _run(adapter, tmp_path / "retry")
        problems = _problems(reports)
    print(_summary(adapter, reports))
    assert not problems, problems
