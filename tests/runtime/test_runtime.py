"""The Stem app and its worker on real brokers and result backends (memory, SQLite, Redis, PG)."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import stemlab
from stemlab import Envelope, TaskState
from stemlab.runtime import Stem, Worker, backoff
from stemlab.runtime import worker as worker_module
from stemlab.runtime.backends.memory import MemoryBackend
from tests.runtime.conftest import backend_url, broker_url

WAIT_S = 20.0
Start = Callable[[Worker], Worker]


@pytest.fixture
def started() -> Iterator[Callable[[Worker], Worker]]:
    """Start workers for a test; each is stopped (then killed if stuck) afterwards."""
    workers: list[Worker] = []

    def start(worker: Worker) -> Worker:
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        if not worker.stop(timeout=10.0):
            worker.kill()


def _until(check: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_enqueue_run_and_wait(kind: str, make_app: Callable[..., Stem], started: Start) -> None:
    app = make_app(kind)

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    task_id = app.enqueue("add", {"x": 1, "y": 2})
    assert app.result(task_id).state is TaskState.QUEUED  # type: ignore[union-attr]
    started(app.worker(queues=["default"], concurrency=2))
    status = app.wait(task_id, timeout=WAIT_S)
    assert (status.state, status.result, status.attempt, status.error) == ("succeeded", 3, 0, None)
    assert status.meta["name"] == "add" and "worker" in status.meta
    # the result is written before the ack, so the ack may still be on its way
    assert _until(lambda: app.broker.inflight_count("default") == 0)
    assert app.broker.pending_count("default") == 0


def test_queued_is_written_before_the_message_is_published(started: Start) -> None:
    seen: list[tuple[str, int]] = []
    broker = stemlab.connect("memory://")

    class Recording(MemoryBackend):
        def _set(self, task_id: str, body: str, ttl: float, done: bool) -> None:
            seen.append((body.split('"state":"')[1].split('"')[0], broker.pending_count("q")))
            super()._set(task_id, body, ttl, done)

    app = Stem(broker, Recording())

    @app.task(queue="q")
    def noop() -> None:
        return None

    started(app.worker(queues="q"))
    for _ in range(20):
        app.wait(app.enqueue("noop"), timeout=WAIT_S)
    queued = [pending for state, pending in seen if state == "queued"]
    assert len(queued) == 20 and all(pending == 0 for pending in queued)
    broker.close()


def test_a_failing_task_is_retried_under_the_same_id(
    kind: str, make_app: Callable[..., Stem], started: Start
) -> None:
    app = make_app(kind)
    calls: list[int] = []

    @app.task(max_retries=3, retry_backoff=0.02)
    def flaky(n: int) -> str:
        calls.append(n)
        if len(calls) < 3:
            raise ValueError(f"boom {len(calls)}")
        return "ok"

    task_id = app.enqueue("flaky", {"n": 7})
    started(app.worker(concurrency=1))
    status = app.wait(task_id, timeout=WAIT_S)
    assert (status.state, status.attempt, status.result, status.error) == (
        "succeeded",
        2,
        "ok",
        None,
    )
    assert calls == [7, 7, 7]
    assert app.broker.list_dead_letters("default").entries == []


def test_exhausted_retries_are_dead_lettered_with_the_error(
    kind: str, make_app: Callable[..., Stem], started: Start
) -> None:
    app = make_app(kind)
    calls: list[int] = []

    @app.task(max_retries=2, retry_backoff=0.02)
    def broken() -> None:
        calls.append(1)
        raise RuntimeError("always broken")

    task_id = app.enqueue("broken")
    started(app.worker(concurrency=2))
    status = app.wait(task_id, timeout=WAIT_S)
    assert status.state is TaskState.FAILED and status.attempt == 2
    assert status.error is not None and "RuntimeError: always broken" in status.error
    assert _until(lambda: len(app.broker.list_dead_letters("default").entries) == 1)
    (entry,) = app.broker.list_dead_letters("default").entries
    assert entry.envelope.id == task_id and entry.reason == "max-retries-exhausted"
    assert "always broken" in entry.meta["error"]
    assert len(calls) == 3  # the first run and two retries, then never again


def test_an_unregistered_task_is_dead_lettered(
    kind: str, make_app: Callable[..., Stem], started: Start
) -> None:
    app = make_app(kind)
    task_id = app.enqueue("nobody.knows", {"a": 1})
    started(app.worker())
    status = app.wait(task_id, timeout=WAIT_S)
    assert status.state is TaskState.FAILED and "nobody.knows" in (status.error or "")
    assert _until(lambda: len(app.broker.list_dead_letters("default").entries) == 1)
    assert app.broker.list_dead_letters("default").entries[0].reason == "unregistered-task"


def test_a_message_redelivered_too_often_is_dead_lettered(
    kind: str, make_app: Callable[..., Stem], started: Start
) -> None:
    """Two runs that never ended (leases expired) and max_retries=1: the 3rd delivery is refused."""
    app = make_app(kind)
    ran: list[int] = []

    @app.task(max_retries=1)
    def deadly() -> None:
        ran.append(1)

    env = Envelope(name="deadly", max_retries=1, visibility_timeout=0.3)
    app.broker.publish(env)
    with app.broker.consume("default", prefetch=1) as crashed:
        for expected in (1, 2):  # a worker took it and died, twice
            d = crashed.get(timeout=WAIT_S)
            assert d is not None and d.delivery_count == expected
    started(app.worker())
    status = app.wait(env.id, timeout=WAIT_S)
    assert status.state is TaskState.FAILED and "delivered 3 times" in (status.error or "")
    assert _until(lambda: len(app.broker.list_dead_letters("default").entries) == 1)
    assert app.broker.list_dead_letters("default").entries[0].reason == "max-deliveries"
    assert ran == []


def test_leases_are_renewed_while_a_task_runs(
    kind: str, make_app: Callable[..., Stem], started: Start
) -> None:
    app = make_app(kind)
    runs: list[float] = []

    @app.task(visibility_timeout=0.4)
    def slow() -> str:
        runs.append(time.time())
        time.sleep(1.6)
        return "done"

    task_id = app.enqueue("slow")
    one, two = started(app.worker(concurrency=2)), started(app.worker(concurrency=2))
    status = app.wait(task_id, timeout=WAIT_S)
    assert status.result == "done" and len(runs) == 1
    assert one.stats["lease_lost"] == two.stats["lease_lost"] == 0


def test_one_worker_never_runs_a_task_twice_at_once(
    make_app: Callable[..., Stem], started: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With renewals off, the lease runs out mid-task and the message comes back to the same
    worker: the second run waits for the first to end."""
    monkeypatch.setattr(worker_module, "RENEW_TICK_S", 60.0)
    app = make_app("memory")
    active: list[int] = []
    peak: list[int] = []
    lock = threading.Lock()

    @app.task(visibility_timeout=0.2, max_retries=5)
    def long() -> None:
        with lock:
            active.append(1)
            peak.append(len(active))
        time.sleep(0.8)
        with lock:
            active.pop()

    task_id = app.enqueue("long")
    started(app.worker(concurrency=4))
    assert _until(lambda: len(peak) >= 2)
    assert app.wait(task_id, timeout=WAIT_S).state is TaskState.SUCCEEDED
    assert max(peak) == 1


def test_a_cancelled_task_is_not_run(make_app: Callable[..., Stem], started: Start) -> None:
    app = make_app("sqlite")
    ran: list[int] = []

    @app.task
    def job() -> None:
        ran.append(1)

    task_id = app.enqueue("job", countdown=0.3)
    assert app.cancel(task_id)
    started(app.worker())
    assert app.wait(task_id, timeout=WAIT_S).state is TaskState.CANCELLED
    assert _until(
        lambda: app.broker.delayed_count("default") + app.broker.pending_count("default") == 0
    )
    time.sleep(0.2)
    assert ran == [] and not app.cancel(task_id)


def test_stop_drains_running_tasks(kind: str, make_app: Callable[..., Stem]) -> None:
    app = make_app(kind)

    @app.task
    def nap(i: int) -> int:
        time.sleep(0.5)
        return i

    ids = [app.enqueue("nap", {"i": i}) for i in range(3)]
    worker = app.worker(concurrency=3).start()
    assert _until(lambda: all(app.result(t).state is TaskState.RUNNING for t in ids))  # type: ignore[union-attr]
    assert worker.stop(timeout=10.0)
    assert [app.result(t).result for t in ids] == [0, 1, 2]  # type: ignore[union-attr]
    assert app.broker.inflight_count("default") == 0
    assert app.backend.workers() == {}


def test_heartbeats_show_running_workers(
    kind: str, make_app: Callable[..., Stem], started: Start
) -> None:
    app = make_app(kind)
    worker = started(app.worker(queues=["a", "b"], concurrency=2))
    assert _until(lambda: worker.id in app.backend.workers())
    info = app.backend.workers()[worker.id]
    assert info["queues"] == ["a", "b"] and info["concurrency"] == 2


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_wait_works_from_another_process(
    kind: str, make_app: Callable[..., Stem], started: Start, tmp_path: Path
) -> None:
    app = make_app(kind)
    ns = app.backend.namespace

    @app.task
    def later() -> str:
        time.sleep(0.5)
        return "across"

    task_id = app.enqueue("later")
    code = textwrap.dedent(
        f"""
        import time, stemlab
        broker = stemlab.connect({broker_url(kind, tmp_path)!r}, namespace={ns!r})
        backend = stemlab.connect_backend({backend_url(kind, tmp_path)!r}, namespace={ns!r})
        app = stemlab.Stem(broker, backend)
        status = app.wait({task_id!r}, timeout=30)
        print(status.state.value, status.result, time.time())
        """
    )
    waiter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # the other process is waiting before the task runs
        started(app.worker())
        out, _ = waiter.communicate(timeout=60)
        finished = time.time()
    finally:
        if waiter.poll() is None:
            waiter.kill()
    state, result, woke = out.split()
    assert (state, result) == ("succeeded", "across")
    assert finished - float(woke) < 2.0


def test_backoff_is_exponential_capped_and_seeded() -> None:
    a, b = random.Random(3), random.Random(3)
    delays = [backoff(n, 0.5, a) for n in range(12)]
    assert delays == [backoff(n, 0.5, b) for n in range(12)]
    for n, d in enumerate(delays):
        ceiling = min(300.0, 0.5 * 2**n)
        assert 0.5 * ceiling <= d < ceiling
    assert backoff(10_000, 2.0, a) < 300.0


def test_task_options_are_checked_and_names_unique(make_app: Callable[..., Stem]) -> None:
    app = make_app("memory")

    @app.task(name="x.y", queue="q1", priority=3, max_retries=2)
    def f() -> None:
        return None

    assert app.tasks["x.y"].queue == "q1" and f() is None
    task_id = app.enqueue("x.y")
    with app.broker.consume("q1") as consumer:
        d = consumer.get(timeout=1.0)
    assert d is not None and d.envelope.id == task_id
    assert (d.envelope.priority, d.envelope.max_retries) == (3, 2)
    with pytest.raises(stemlab.ConfigError):
        app.task(name="x.y")(lambda: None)
    with pytest.raises(ValueError):
        app.task(priority=12)
    with pytest.raises(TimeoutError):
        app.wait(app.enqueue("x.y", queue="nobody-listens"), timeout=0.1)


def test_countdown_and_eta_delay_the_start(make_app: Callable[..., Stem], started: Start) -> None:
    app = make_app("sqlite")

    @app.task
    def stamp() -> float:
        return time.time()

    started(app.worker())
    sent = time.time()
    by_countdown = app.enqueue("stamp", countdown=0.6)
    by_eta = app.enqueue("stamp", eta=datetime.now(UTC) + timedelta(seconds=0.6))
    assert app.wait(by_countdown, timeout=WAIT_S).result >= sent + 0.6
    assert app.wait(by_eta, timeout=WAIT_S).result >= sent + 0.6
    with pytest.raises(ValueError):
        app.enqueue("stamp", eta=datetime.now())  # naive: ambiguous
    with pytest.raises(ValueError):
        app.enqueue("stamp", countdown=1, eta=datetime.now(UTC))
