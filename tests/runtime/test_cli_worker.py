"""`stemlab worker` as a real process: it runs tasks, drains on SIGTERM, halts on a second one,
and dead-letters a task that keeps killing it."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import stemlab
from stemlab import TaskState
from stemlab.runtime import Stem
from tests.runtime import fault_app
from tests.runtime.workers import WorkerProcesses

START_S = 30.0  # a worker process imports stemlab and connects within this


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Stem, WorkerProcesses]]:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    ns = f"t{uuid.uuid4().hex[:10]}"
    app = fault_app.app.using(
        stemlab.connect(url, namespace=ns), stemlab.connect_backend(url, namespace=ns)
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = WorkerProcesses(url, ns, tmp_path / "out.txt", logs)
    try:
        yield app, procs
    finally:
        procs.kill_all()
        app.backend.close()
        app.broker.close()


def _until(check: Callable[[], bool], timeout: float = START_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return False


def _state(app: Stem, task_id: str) -> TaskState | None:
    status = app.result(task_id)
    return None if status is None else status.state


def test_sigterm_drains_the_running_task(setup: tuple[Stem, WorkerProcesses]) -> None:
    app, procs = setup
    task_id = app.enqueue("nap", {"seconds": 1.0})
    proc = procs.start()
    assert _until(lambda: _state(app, task_id) is TaskState.RUNNING), procs.logs()
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(15) == 0, procs.logs()
    status = app.result(task_id)
    assert status is not None and status.state is TaskState.SUCCEEDED and status.result == 1.0
    assert app.broker.inflight_count("default") == 0
    assert "drained and stopped" in procs.logs()


def test_a_second_sigterm_stops_at_once(setup: tuple[Stem, WorkerProcesses]) -> None:
    app, procs = setup
    task_id = app.enqueue("nap", {"seconds": 20.0})
    proc = procs.start()
    assert _until(lambda: _state(app, task_id) is TaskState.RUNNING), procs.logs()
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(10) == 130, procs.logs()
    assert time.monotonic() - started < 5.0
    assert _state(app, task_id) is TaskState.RUNNING  # abandoned, not settled
    assert app.broker.inflight_count("default") == 1  # left to its lease


def test_a_task_that_kills_its_worker_ends_in_the_dead_letters(
    setup: tuple[Stem, WorkerProcesses],
) -> None:
    app, procs = setup
    task_id = app.enqueue("suicide")
    for _ in range(2):  # max_retries=1: two deliveries run (and kill the worker)
        proc = procs.start(concurrency=1)
        assert proc.wait(START_S) == 3, procs.logs()
    proc = procs.start(concurrency=1)  # the third delivery is refused
    status = app.wait(task_id, timeout=START_S)
    assert status.state is TaskState.FAILED and "delivered 3 times" in (status.error or "")
    (entry,) = app.broker.list_dead_letters("default").entries
    assert entry.reason == "max-deliveries" and entry.envelope.id == task_id
    assert proc.poll() is None  # the worker lives on
