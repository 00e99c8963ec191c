"""compare, simulate, run, bench, calibrate and validate, run for real in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stemlab import BrokerProfile, Scenario
from stemlab.sim import Exponential
from tests.cli.test_cli import stemlab_cmd

SUBCOMMANDS = ["compare", "simulate", "run", "bench", "calibrate", "validate", "dlq", "demo"]


def one_line_error(proc: object, *, contains: str) -> None:
    assert proc.returncode == 1, proc.stdout  # type: ignore[attr-defined]
    err = proc.stderr.strip()  # type: ignore[attr-defined]
    assert len(err.splitlines()) == 1, err
    assert contains in err and "Traceback" not in err


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.json"
    Scenario(
        name="tiny",
        arrival_rate=100.0,
        tasks=120,
        service_time=Exponential(0.005),
        workers=3,
    ).save(path)
    return path


def test_every_subcommand_is_listed_and_has_help() -> None:
    listed = stemlab_cmd("--help")
    assert listed.returncode == 0
    for name in SUBCOMMANDS:
        assert name in listed.stdout
        proc = stemlab_cmd(name, "--help")
        assert proc.returncode == 0, (name, proc.stderr)
        assert proc.stdout.startswith("usage: stemlab " + name)


def test_compare_needs_no_service(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = stemlab_cmd("compare", "--tasks", "400", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for broker in ("memory", "sqlite", "redis", "redis-streams", "postgres"):
        assert f"\n{broker} " in proc.stdout
    assert "e2e p95" in proc.stdout and "load 0.50" in proc.stdout
    assert (out / "compare-short-tasks.png").stat().st_size > 0
    csv = (out / "compare-short-tasks.csv").read_text()
    assert csv.startswith("run,kind,broker") and csv.count("\n") == 6


def test_compare_takes_a_scenario_file_and_broker_list(tmp_path: Path, scenario_file: Path) -> None:
    proc = stemlab_cmd(
        "compare", "-s", str(scenario_file), "-b", "ideal,sqlite", "-o", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    assert "tiny: 120 tasks" in proc.stdout
    assert "\nideal " in proc.stdout and "\nsqlite " in proc.stdout
    assert "\nredis " not in proc.stdout
    assert (tmp_path / "compare-tiny.png").exists()


def test_bad_scenario_and_profile_are_one_line_errors(tmp_path: Path) -> None:
    one_line_error(stemlab_cmd("compare", "-s", "no-such-scenario"), contains="no scenario file")
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "workers": 0}')
    one_line_error(stemlab_cmd("compare", "-s", str(bad)), contains="workers")
    bad.write_text("{not json")
    one_line_error(stemlab_cmd("simulate", "-s", str(bad)), contains="not valid JSON")
    one_line_error(stemlab_cmd("compare", "-b", "nosuch"), contains="no broker profile")


def test_simulate_prints_a_summary_and_json(tmp_path: Path, scenario_file: Path) -> None:
    proc = stemlab_cmd("simulate", "-s", str(scenario_file), "-b", "ideal", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["acked"] == 120 and summary["kind"] == "sim"
    out = tmp_path / "sim"
    proc = stemlab_cmd("simulate", "-s", str(scenario_file), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "tiny on redis" in proc.stdout
    assert (out / "tasks.csv").exists() and (out / "latency.png").exists()


def test_run_live_on_sqlite(tmp_path: Path, scenario_file: Path) -> None:
    url = f"sqlite:///{tmp_path / 'run.db'}"
    proc = stemlab_cmd("run", url, "-s", str(scenario_file), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["kind"] == "live" and summary["broker"] == "sqlite"
    assert summary["acked"] == 120 and summary["lost"] == 0


def test_run_with_a_bad_url_or_a_service_down() -> None:
    one_line_error(stemlab_cmd("run", "nosuch://x"), contains="unknown URL scheme")
    # nothing listens on port 1: the adapter gives up with BrokerUnavailable (or the
    # driver is missing: ConfigError); either way one line and exit code 1
    proc = stemlab_cmd("run", "postgresql://postgres@127.0.0.1:1/test", "--tasks", "5")
    one_line_error(proc, contains="stemlab run: error:")


def test_bench_memory(tmp_path: Path) -> None:
    proc = stemlab_cmd("bench", "memory://", "--n", "200", "--rate", "100", "--seconds", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert "drain/s, prefetch 1" in proc.stdout and "pickup p50" in proc.stdout
    one_line_error(stemlab_cmd("bench", "memory://", "--n", "1"), contains="--n >= 2")


def test_calibrate_writes_a_profile(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cal.db'}"
    target = tmp_path / "sqlite.json"
    proc = stemlab_cmd("calibrate", url, "--quick", "--force", "-o", str(target))
    assert proc.returncode == 0, proc.stderr
    assert "quick calibration" in proc.stdout and "idle pickup" in proc.stdout
    assert "polling every" in proc.stdout
    profile = BrokerProfile.load_file(target)
    assert profile.name == "sqlite" and profile.meta["broker"] == url
    one_line_error(stemlab_cmd("calibrate", "nosuch://x", "--quick"), contains="unknown URL")


def test_validate_prints_the_fidelity_table(tmp_path: Path, scenario_file: Path) -> None:
    out = tmp_path / "val"
    proc = stemlab_cmd(
        "validate",
        "memory://",
        "-s",
        str(scenario_file),
        "-r",
        "1",
        "--quick",
        "--force",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "tiny on memory: 1 replication(s)" in proc.stdout
    assert "| broker | scenario | load |" in proc.stdout
    assert "| memory | tiny | 0.17 |" in proc.stdout
    assert (out / "fidelity.md").read_text().startswith("| broker |")
    assert (out / "validate-memory-tiny.png").exists()
    report = json.loads((out / "validate-memory-tiny.json").read_text())
    assert {e["metric"] for e in report["errors"]} >= {"e2e_p50", "e2e_p95", "throughput"}
    assert (out / "profile-memory.json").exists()
    proc = stemlab_cmd("validate", "memory://", "sqlite:///x.db", "-s", "tiny", "-p", "memory")
    one_line_error(proc, contains="--profile applies to one URL")


def test_compare_with_replications_reports_intervals(tmp_path: Path) -> None:
    proc = stemlab_cmd(
        "compare", "--tasks", "300", "-r", "3", "-b", "ideal,redis", "-o", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 replications" in proc.stdout and "± e2e p95" in proc.stdout
    csv = (tmp_path / "compare-short-tasks.csv").read_text()
    assert "e2e_p95_ci_low" in csv.splitlines()[0]
    assert (tmp_path / "compare-short-tasks.png").stat().st_size > 0


def test_plan_prints_a_table_and_a_verdict_quickly(tmp_path: Path) -> None:
    import time

    wall = time.perf_counter()
    proc = stemlab_cmd("plan", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - wall < 30
    lines = proc.stdout.strip().splitlines()
    assert "headroom" in lines[1] and "saturation/s" in lines[1]
    for broker in ("memory", "sqlite", "redis", "postgres"):
        assert any(line.split()[0] == broker for line in lines[2:6])
    assert "e2e_p95 <= 250 ms with the fewest workers" in lines[-2]
    assert (tmp_path / "plan.csv").read_text().startswith("broker,workers,meets")


def test_plan_takes_slos_and_reports_unreachable_ones() -> None:
    proc = stemlab_cmd("plan", "-s", "light-mmc", "--slo", "e2e_p95=0.05", "-b", "ideal",
                       "--workers", "1-6")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "no broker meets e2e_p95 <= 50 ms within 6 workers" in proc.stdout
    one_line_error(stemlab_cmd("plan", "--slo", "p95"), contains="METRIC=VALUE")
