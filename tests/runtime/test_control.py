"""Worker control (`app.control`): commands answered in-process, bad input refused, reach honest.

The multi-process tests (three `stemlab worker` processes per store) are in
test_control_processes.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import stemlab
from stemlab import Envelope, TaskState, TaskStatus
from stemlab.runtime import Stem, Worker
from stemlab.runtime.protocol import CONTROL_CHANNEL, CONTROL_QUEUE
from tests.runtime import fault_app
from tests.runtime.conftest import backend_url, clean_namespace
from tests.runtime.workers import WorkerProcesses


def _until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def app() -> Iterator[Stem]:
    """An app on a fresh memory namespace with tasks `add` and `nap`; its workers stop after."""
    ns = f"t{uuid.uuid4().hex[:10]}"
    stem = Stem(stemlab.connect("memory://", namespace=ns))
    ran: list[int] = []
    stem.ran = ran  # type: ignore[attr-defined]

    @stem.task(queue="default")
    def add(a: int, b: int) -> int:
        ran.append(a)
        return a + b

    @stem.task(queue="slow")
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @stem.task(max_retries=1, retry_backoff=0.0)
    def boom() -> None:
        raise RuntimeError("kaboom")

    workers: list[Worker] = []
    stem.started = workers  # type: ignore[attr-defined]
    yield stem
    for w in workers:
        w.stop(timeout=5.0)
    stem.close()


def _start(app: Stem, **kw: object) -> Worker:
    worker = Worker(app, heartbeat_s=0.2, **kw)  # type: ignore[arg-type]
    worker.start()
    app.started.append(worker)  # type: ignore[attr-defined]
    assert _until(lambda: worker.id in app.backend.workers())
    return worker


def test_ping_finds_every_worker_and_says_how_far_it_reaches(app: Stem) -> None:
    a = _start(app, queues=["default", "slow"], concurrency=2)
    b = _start(app, queues=["default"], concurrency=1)
    t0 = time.monotonic()
    df = app.control.ping(timeout=2.0)
    assert time.monotonic() - t0 < 1.5  # returns once every expected worker answered
    assert sorted(df["worker"]) == sorted([a.id, b.id])
    assert set(df["status"]) == {"ok"}
    row = df.set_index("worker").loc[a.id]
    assert (row["pid"], row["queues"], row["concurrency"]) == (os.getpid(), "default,slow", 2)
    assert row["in_flight"] == 0 and row["uptime_s"] >= 0
    assert df.attrs["scope"] == "process" and "this process only" in df.attrs["note"]
    assert df.attrs["silent"] == [] and df.attrs["unreachable"] == []


def test_only_the_named_workers_answer(app: Stem) -> None:
    a = _start(app)
    _start(app)
    df = app.control.ping(timeout=1.0, workers=[a.id])
    assert list(df["worker"]) == [a.id]


def test_a_worker_out_of_reach_is_unreachable_not_silent(app: Stem) -> None:
    _start(app)
    info = {"host": "elsewhere", "pid": 1, "queues": ["default"], "concurrency": 1}
    app.backend.heartbeat("far-away", info, ttl=30.0)
    app.backend.heartbeat("gone-quiet", {**info, "host": socket.gethostname(), "pid": os.getpid()})
    df = app.control.ping(timeout=0.5).set_index("worker")
    assert df.loc["far-away", "status"] == "unreachable"
    assert df.loc["gone-quiet", "status"] == "silent"  # in reach, did not answer
    assert "cannot be reached" in df.attrs["note"]


def test_stats_counts_outcomes_per_task(app: Stem) -> None:
    w = _start(app, queues=["default"])
    ids = [app.enqueue("add", {"a": i, "b": 1}) for i in range(3)]
    bad = app.enqueue("boom")
    for task_id in ids:
        app.wait(task_id)
    assert app.wait(bad).state is TaskState.FAILED
    df = app.control.stats(timeout=1.0).set_index("task")
    assert set(df["worker"]) == {w.id}
    assert df.loc["add", "succeeded"] == 3 and df.loc["add", "failed"] == 0
    assert (df.loc["boom", "retried"], df.loc["boom", "failed"]) == (1, 1)
    assert "kaboom" in df.loc["boom", "last_error"]


def test_a_revoked_delayed_task_never_runs_and_is_dead_lettered(app: Stem) -> None:
    _start(app, queues=["default"])
    task_id = app.enqueue("add", {"a": 99, "b": 0}, countdown=0.5)
    df = app.control.revoke(task_id, timeout=0.5)
    assert list(df["running"]) == [False]
    status = app.wait(task_id, timeout=10.0)
    assert (status.state, status.error) == (TaskState.CANCELLED, "revoked")
    assert _until(lambda: bool(app.broker.list_dead_letters("default").entries))
    entries = app.broker.list_dead_letters("default").entries
    assert [(e.envelope.id, e.reason) for e in entries] == [(task_id, "revoked")]
    assert 99 not in app.ran  # type: ignore[attr-defined]


def test_a_running_task_is_reported_not_killed(app: Stem) -> None:
    _start(app, queues=["slow"])
    task_id = app.enqueue("nap", {"seconds": 0.8})
    assert _until(lambda: (s := app.result(task_id)) is not None and s.state is TaskState.RUNNING)
    df = app.control.revoke(task_id, timeout=1.0)
    assert list(df["running"]) == [True]
    assert app.wait(task_id).state is TaskState.SUCCEEDED


def test_pause_stops_intake_and_resume_restarts_it(app: Stem) -> None:
    w = _start(app, queues=["default", "slow"])
    df = app.control.pause("default", timeout=1.0)
    assert list(df["paused"]) == ["default"]
    time.sleep(0.5)  # every slot reopened its consumer without the queue
    held = app.enqueue("add", {"a": 7, "b": 0})
    other = app.enqueue("nap", {"seconds": 0.0})
    assert app.wait(other).state is TaskState.SUCCEEDED  # the other queue still flows
    time.sleep(0.5)
    assert app.result(held).state is TaskState.QUEUED  # type: ignore[union-attr]
    assert app.broker.pending_count("default") == 1
    df = app.control.resume("default", timeout=1.0)
    assert list(df["paused"]) == [""] and w.paused == set()
    assert app.wait(held, timeout=5.0).result == 7


def test_shutdown_drains_and_leaves_the_list(app: Stem) -> None:
    a = _start(app, queues=["slow"])
    b = _start(app, queues=["default"])
    task_id = app.enqueue("nap", {"seconds": 0.5})
    assert _until(lambda: (s := app.result(task_id)) is not None and s.state is TaskState.RUNNING)
    df = app.control.shutdown(timeout=1.0, workers=[a.id])
    assert list(df["worker"]) == [a.id] and list(df["in_flight"]) == [1]
    assert app.wait(task_id).state is TaskState.SUCCEEDED  # the running task finished
    assert _until(lambda: not a.alive and a.id not in app.backend.workers())
    assert list(app.control.ping(timeout=1.0)["worker"]) == [b.id]


def test_a_malformed_command_is_logged_and_the_worker_keeps_working(
    app: Stem, caplog: pytest.LogCaptureFixture
) -> None:
    w = _start(app, queues=["default"])
    caplog.set_level(logging.WARNING, logger="stemlab.runtime")
    for args in ({"v": 1, "command": "explode"}, {"hello": "world"}, {"v": 1, "command": "revoke"}):
        app.broker.broadcast(CONTROL_CHANNEL, Envelope(name="x", args=args, queue=CONTROL_QUEUE))
    assert _until(lambda: caplog.text.count("malformed control command") == 3)
    assert list(app.control.ping(timeout=1.0)["worker"]) == [w.id]
    assert app.wait(app.enqueue("add", {"a": 1, "b": 2})).result == 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.send("reboot"), "unknown control command"),
        (lambda c: c.revoke("not a task id!"), "malformed task id"),
        (lambda c: c.revoke(""), "malformed task id"),
        (lambda c: c.ping(timeout=0), "timeout"),
        (lambda c: c.ping(timeout=-1.0), "timeout"),
        (lambda c: c.pause("bad queue"), "queue name"),
        (lambda c: c.send("ping", {"x": 1}), "takes no argument"),
    ],
)
def test_bad_input_is_one_clear_error(
    app: Stem, call: Callable[[object], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call(app.control)


def test_every_result_backend_keeps_revocations(backend: stemlab.ResultBackend) -> None:
    assert backend.revoked("t-1") is None
    backend.revoke("t-1", {"by": "test"})
    record = backend.revoked("t-1")
    assert record is not None and record["by"] == "test" and record["revoked_at"] > 0
    assert backend.revoked("t-2") is None and backend.get("t-1") is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reboot"], "unknown control command 'reboot'"),
        (["revoke", "bad id!"], "malformed task id"),
        (["revoke"], "revoke needs a task id"),
        (["ping", "extra"], "ping takes no argument"),
        (["ping", "--timeout", "0"], "timeout must be > 0"),
        (["pause", "no space allowed"], "queue name"),
    ],
)
def test_the_command_refuses_bad_input_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from stemlab.cli import main

    assert main(["control", "memory://", *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("stemlab control: error: ") and message in err


def test_the_command_prints_the_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stemlab.cli import main

    url, ns = f"sqlite:///{tmp_path / 'jobs.db'}", f"t{uuid.uuid4().hex[:10]}"
    with Stem(
        stemlab.connect(url, namespace=ns), stemlab.connect_backend(url, namespace=ns)
    ) as app:
        worker = Worker(app, heartbeat_s=0.2).start()
        try:
            assert _until(lambda: worker.id in app.backend.workers())
            assert main(["control", url, "ping", "--namespace", ns]) == 0
            out, err = capsys.readouterr()
            assert worker.id in out and "1 answered, 0 silent, 0 unreachable" in out
            assert "this host only" in err
            assert main(["control", url, "pause", "default", "--namespace", ns, "--json"]) == 0
            doc = json.loads(capsys.readouterr().out)
            assert (doc["scope"], doc["answered"]) == ("host", [worker.id])
            assert doc["rows"][0]["paused"] == "default" and worker.paused == {"default"}
        finally:
            worker.stop(timeout=5.0)


# ------------------------------------------------- three `stemlab worker` processes
START_S = 30.0  # three processes import stemlab and connect within this on a loaded machine


def _ran(out: Path) -> list[int]:
    return [int(line.split()[0]) for line in out.read_text().splitlines()] if out.exists() else []


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_three_worker_processes_are_controlled(kind: str, tmp_path: Path) -> None:
    url = backend_url(kind, tmp_path)
    ns = f"ctl{uuid.uuid4().hex[:10]}"
    broker, backend = stemlab.connect(url, namespace=ns), stemlab.connect_backend(url, namespace=ns)
    app = fault_app.app.using(broker, backend)
    logs = tmp_path / "logs"
    logs.mkdir()
    out = tmp_path / "out.txt"
    procs = WorkerProcesses(url, ns, out, logs)
    t0 = time.monotonic()
    try:
        for _ in range(3):
            procs.start("--queues", "default,side", "--quiet", concurrency=2)
        assert _until(lambda: len(app.backend.workers()) == 3, START_S), procs.logs()

        # ping finds three, all reachable on this host
        df = app.control.ping(timeout=5.0)
        assert len(df) == 3 and set(df["status"]) == {"ok"}, df
        assert sorted(df["pid"]) == sorted(p.pid for p in procs.procs)
        assert df.attrs["silent"] == [] and df.attrs["unreachable"] == []
        cmd = [sys.executable, "-m", "stemlab.cli", "control", url, "ping", "--json"]
        proc = subprocess.run(
            [*cmd, "--namespace", ns, "--timeout", "5"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        assert len(json.loads(proc.stdout)["answered"]) == 3

        # shutdown to one while every slot runs a task: it drains and exits 0, two are left
        naps = [app.enqueue("nap", {"seconds": 1.5}) for _ in range(6)]

        def running() -> list[TaskStatus]:
            return [s for t in naps if (s := app.result(t)) and s.state is TaskState.RUNNING]

        assert _until(lambda: len(running()) == 6, 15.0), procs.logs()
        victim = str(running()[0].meta["worker"])
        df = app.control.shutdown(timeout=5.0, workers=[victim])
        assert list(df["worker"]) == [victim] and list(df["in_flight"]) == [2], df
        assert [app.wait(t, timeout=15.0).state for t in naps] == [TaskState.SUCCEEDED] * 6
        proc = next(p for p in procs.procs if f"-{p.pid}-" in victim)
        assert proc.wait(15.0) == 0, procs.logs()
        df = app.control.ping(timeout=5.0)
        assert len(df) == 2 and victim not in set(df["worker"]), df
        assert set(df["status"]) == {"ok"}

        # a delayed task revoked before it is due never runs and is dead-lettered "revoked"
        late = app.enqueue("record", {"i": 777}, countdown=1.5)
        df = app.control.revoke(late, timeout=5.0)
        assert len(df) == 2 and not any(df["running"]), df
        status = app.wait(late, timeout=15.0)
        assert (status.state, status.error) == (TaskState.CANCELLED, "revoked")
        # the status is written first, then the message is dead-lettered
        assert _until(lambda: app.broker.get_dead_letter("default", late) is not None, 10.0)
        dead = app.broker.get_dead_letter("default", late)
        assert dead is not None and dead.reason == "revoked"
        assert 777 not in _ran(out)

        # pause stops the queue's intake within a second; resume restarts it
        df = app.control.pause("side", timeout=5.0)
        assert list(df["paused"]) == ["side", "side"], df
        time.sleep(1.0)
        held = [app.enqueue("record", {"i": 500 + k}, queue="side") for k in range(3)]
        time.sleep(1.5)
        assert app.broker.pending_count("side") == 3 and not set(_ran(out)) & {500, 501, 502}
        df = app.control.resume("side", timeout=5.0)
        assert list(df["paused"]) == ["", ""], df
        assert [app.wait(t, timeout=15.0).result for t in held] == [500, 501, 502]
        elapsed = time.monotonic() - t0
        print(f"{kind}: three worker processes controlled in {elapsed:.1f} s")
    finally:
        procs.kill_all()
        with contextlib.suppress(Exception):
            backend.clear()
        backend.close()
        broker.close()
        clean_namespace(kind, ns)


def test_a_broker_without_broadcast_reaches_no_one_and_says_so(
    app: Stem, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = _start(app)
    caps = dataclasses.replace(app.broker.capabilities, broadcast_scope=None)
    monkeypatch.setattr(type(app.broker), "capabilities", property(lambda self: caps))
    t0 = time.monotonic()
    df = app.control.ping(timeout=2.0)
    assert time.monotonic() - t0 < 1.0  # nothing was sent, so nothing is awaited
    assert list(df["worker"]) == [w.id] and list(df["status"]) == ["unreachable"]
    assert df.attrs["scope"] is None and "reaches no worker" in df.attrs["note"]
