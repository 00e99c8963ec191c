"""Issue #12: validation at every load on the real services (slow, kept in CI).

Each broker (memory, SQLite, Redis, Postgres) is calibrated quickly (with
the load ramp, so its profile has the host model) and then runs the shipped
broker-bound scenarios `sat-fast-050/080/095/120` (1 ms tasks, one worker,
load 0.5 to 1.2) live and simulated, one replication each.

What is asserted is what holds: every run completes in both worlds, the
reports carry the machine's load, each scenario is held to the targets of
its load (e2e p50/p95 and throughput up to 0.95, throughput alone above),
the calibrated profile has a host section with measured client CPU, and
its load check agrees with the CPU other programs used. The fidelity
targets themselves (throughput within 10 %, e2e p50/p95 within 20 % up to
load 0.95) are evaluated and printed with their figures (run with -s), NOT
asserted: they have not yet been seen to hold on any run (all were measured
on a 2-core machine shared with other jobs at load average 10-14; the
figures and the reasons are in docs/fidelity.md), and an assertion that
does not hold would be a red test, not a check.

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
from stemlab import calibrate, validate
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
    profile = reports[0].profile
    host, info = profile.host, profile.meta.get("host_model", {})
    if host is None or not all(host.client_cpu.get(op, 0) > 0 for op in ("publish", "claim")):
        problems.append(f"no measured host section: {host}")
    check = info.get("load_check", {})
    share = check.get("background_share")
    expected_verdict = "forced" if share is not None and share > check["refuse_above"] else None
    if expected_verdict and check.get("verdict") != expected_verdict:
        problems.append(f"load check {check} should be {expected_verdict}")
    if share is not None and share <= check["refuse_above"] and check["verdict"] == "forced":
        problems.append(f"load check {check} forced below the refusal threshold")
    return problems


def _summary(adapter: str, reports: list[ValidationReport]) -> str:
    lines = [f"{adapter}:"]
    for report in reports:
        f = report.frame
        cells = [
            f"{m} {f.at[m, 'measured'] * (1 if m == 'throughput' else 1000):.1f}"
            f"/{f.at[m, 'predicted'] * (1 if m == 'throughput' else 1000):.1f}"
            f" ({f.at[m, 'rel_error']:+.0%}"
            f"{' MISSED' if f.at[m, 'within_target'] is False else ''})"
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
