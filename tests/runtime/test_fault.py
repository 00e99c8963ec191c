"""Fault test: 300 tasks, two `stemlab worker` processes, one SIGKILLed mid-run and restarted.

Every task must end `succeeded` and leave its side effect (a line in a file) at
least once; tasks run more than once (the killed worker's in-flight ones, after
their leases expired) are counted and printed.
"""

from __future__ import annotations

import collections
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

import stemlab
from stemlab import TaskState
from tests.runtime import fault_app
from tests.runtime.conftest import backend_url, clean_namespace
from tests.runtime.workers import WorkerProcesses

TASKS = 300
SLEEP_S = 0.04  # per task: 300 tasks over 8 slots last about 1.5 s, long enough to kill mid-run
DEADLINE_S = 40.0


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_sigkill_mid_run_loses_nothing(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = backend_url(kind, tmp_path)
    ns = f"fault{uuid.uuid4().hex[:10]}"
    out = tmp_path / "side-effects.txt"
    logs = tmp_path / "logs"
    logs.mkdir()
    broker = stemlab.connect(url, namespace=ns)
    backend = stemlab.connect_backend(url, namespace=ns)
    app = fault_app.app.using(broker, backend)
    procs = WorkerProcesses(url, ns, out, logs)
    started = time.monotonic()
    try:
        ids = [app.enqueue("record", {"i": i, "sleep": SLEEP_S}) for i in range(TASKS)]
        victim = procs.start()
        procs.start()
        end = time.monotonic() + DEADLINE_S
        while len(_lines(out)) < TASKS // 3 and time.monotonic() < end:
            time.sleep(0.01)
        done_before_kill = len(_lines(out))
        assert 0 < done_before_kill < TASKS, procs.logs()
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        procs.start()  # the restarted worker

        states: dict[str, TaskState | None] = {}
        while time.monotonic() < end:
            states = {t: getattr(app.result(t), "state", None) for t in ids}
            if all(s is TaskState.SUCCEEDED for s in states.values()):
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        succeeded = sum(s is TaskState.SUCCEEDED for s in states.values())
        runs = collections.Counter(int(line.split()[0]) for line in _lines(out))
        doubles = sum(1 for n in runs.values() if n > 1)
        extra = sum(n - 1 for n in runs.values())
        by_victim = sum(1 for line in _lines(out) if line.split()[1] == str(victim.pid))
        with capsys.disabled():
            print(
                f"\nfault[{kind}]: tasks={TASKS} succeeded={succeeded} "
                f"executed_at_least_once={len(runs)} double_executions={doubles} "
                f"extra_runs={extra} killed_after={done_before_kill} (victim ran {by_victim}) "
                f"runtime={elapsed:.1f}s"
            )
        assert succeeded == TASKS, procs.logs()[-3000:]
        assert set(runs) == set(range(TASKS))
        assert by_victim > 0  # the killed worker was really working
        settle_by = time.monotonic() + 10.0  # results are written before acks: let acks land
        while broker.inflight_count("default") and time.monotonic() < settle_by:
            time.sleep(0.05)
        assert broker.pending_count("default") == broker.inflight_count("default") == 0
        assert broker.list_dead_letters("default").entries == []
    finally:
        procs.kill_all()
        backend.clear()
        backend.close()
        broker.close()
        clean_namespace(kind, ns)
