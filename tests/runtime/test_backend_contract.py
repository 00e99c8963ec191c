"""ONE contract suite for the result backends, run over memory, SQLite, Redis and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from stemlab.errors import BrokerUnavailable, ConfigError, ResultError, StemlabError
from stemlab.runtime import ResultBackend, TaskState, TaskStatus, connect_backend


def test_set_then_get_round_trips(backend: ResultBackend) -> None:
    assert backend.get("nope") is None
    status = TaskStatus("t1", TaskState.SUCCEEDED, attempt=2, result={"sum": 3, "xs": [1.5, None]})
    backend.set(status)
    got = backend.get("t1")
    assert got is not None
    assert (got.id, got.state, got.attempt, got.result) == ("t1", "succeeded", 2, status.result)
    assert got.error is None and "updated_at" in got.meta and got.done


def test_overwrite_replaces_the_record_and_clears_the_error(backend: ResultBackend) -> None:
    backend.set(TaskStatus("t", TaskState.RETRIED, attempt=0, error="ValueError: boom"))
    backend.set(TaskStatus("t", TaskState.SUCCEEDED, attempt=1, result=7))
    got = backend.get("t")
    assert got is not None and got.state is TaskState.SUCCEEDED and got.error is None
    assert got.result == 7


def test_ttl_expiry(backend: ResultBackend) -> None:
    backend.set(TaskStatus("short", TaskState.SUCCEEDED, result=1), ttl=0.3)
    backend.set(TaskStatus("long", TaskState.SUCCEEDED, result=2))
    assert backend.get("short") is not None
    time.sleep(0.6)
    assert backend.get("short") is None
    assert backend.get("long") is not None


def test_watch_returns_when_the_task_is_done(backend: ResultBackend) -> None:
    backend.set(TaskStatus("w", TaskState.RUNNING))

    def finish() -> None:
        time.sleep(0.3)
        backend.set(TaskStatus("w", TaskState.SUCCEEDED, result="ok"))

    thread = threading.Thread(target=finish)
    started = time.monotonic()
    thread.start()
    got = backend.watch("w", timeout=10.0)
    thread.join()
    assert got is not None and got.state is TaskState.SUCCEEDED and got.result == "ok"
    assert time.monotonic() - started < 3.0


def test_watch_times_out_with_the_latest_status(backend: ResultBackend) -> None:
    backend.set(TaskStatus("slow", TaskState.QUEUED))
    started = time.monotonic()
    got = backend.watch("slow", timeout=0.3)
    assert got is not None and got.state is TaskState.QUEUED
    assert 0.25 < time.monotonic() - started < 3.0
    assert backend.watch("never-written", timeout=0.1) is None


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_a_second_client_sees_writes(kind: str, open_backend: Callable[..., ResultBackend]) -> None:
    first, other = open_backend(kind), open_backend(kind)
    first.set(TaskStatus("x", TaskState.FAILED, error="E"))
    got = other.get("x")
    assert got is not None and got.state is TaskState.FAILED and got.error == "E"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "postgresql://postgres@127.0.0.1:1/test"])
def test_driver_errors_become_stemlab_errors(url: str) -> None:
    with pytest.raises(BrokerUnavailable) as info:
        backend = connect_backend(url)
        try:
            backend.get("x")
        finally:
            backend.close()
    assert info.value.__cause__ is not None


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        connect_backend("amqp://127.0.0.1/")


def test_groups_count_each_member_once(backend: ResultBackend) -> None:
    backend.group_init("g", 3)
    assert backend.group_get("g") == backend.group_get("g")
    state = backend.group_done("g", "a")
    assert (state.expected, state.done, state.complete) == (3, 1, False)
    backend.group_done("g", "a")
    backend.group_done("g", "b")
    assert not backend.chord_claim("g")  # not complete yet
    state = backend.group_done("g", "c")
    assert state.complete and state.done == 3 and not state.claimed
    assert backend.group_get("missing") is None
    with pytest.raises(ResultError):
        backend.group_done("missing", "a")


def test_chord_claim_has_a_single_claimant(backend: ResultBackend) -> None:
    backend.group_init("c", 2)
    backend.group_done("c", "a")
    backend.group_done("c", "b")
    wins: list[bool] = []
    lock = threading.Lock()

    def claim() -> None:
        won = backend.chord_claim("c")
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 7 + [True]
    state = backend.group_get("c")
    assert state is not None and state.claimed
    backend.group_init("c", 1)  # re-declaring resets the group
    state = backend.group_get("c")
    assert state is not None and (state.done, state.claimed) == (0, False)


def test_worker_heartbeats_expire(backend: ResultBackend) -> None:
    backend.heartbeat("w1", {"pid": 1, "queues": ["default"]}, ttl=0.4)
    backend.heartbeat("w2", {"pid": 2}, ttl=30.0)
    assert backend.workers() == {"w1": {"pid": 1, "queues": ["default"]}, "w2": {"pid": 2}}
    time.sleep(0.7)
    assert set(backend.workers()) == {"w2"}
    backend.forget_worker("w2")
    assert backend.workers() == {}


@pytest.mark.parametrize(
    "make",
    [
        lambda: TaskStatus("bad", TaskState.SUCCEEDED, result={1, 2}),
        lambda: TaskStatus("bad", TaskState.SUCCEEDED, result=float("nan")),
        lambda: TaskStatus("bad", "exploded"),  # type: ignore[arg-type]
        lambda: TaskStatus("", TaskState.QUEUED),
        lambda: TaskStatus("bad", TaskState.QUEUED, attempt=-1),
        lambda: TaskStatus("bad", TaskState.QUEUED, meta={"k": object()}),
    ],
)
def test_bad_statuses_are_refused_before_anything_is_stored(
    backend: ResultBackend, make: Callable[[], TaskStatus]
) -> None:
    with pytest.raises(ResultError) as info:
        backend.set(make())
    assert isinstance(info.value, ValueError) and str(info.value)
    assert backend.get("bad") is None


def test_bad_arguments_are_refused(backend: ResultBackend) -> None:
    with pytest.raises(ResultError):
        backend.set({"id": "x", "state": "queued"})  # type: ignore[arg-type]
    with pytest.raises(ResultError):
        backend.set(TaskStatus("x", TaskState.QUEUED), ttl=0)
    with pytest.raises(ResultError):
        backend.heartbeat("w", {"x": b"bytes"})  # type: ignore[dict-item]
    with pytest.raises(ResultError):
        backend.group_init("g", 0)
    assert backend.get("x") is None and backend.workers() == {}


def test_a_closed_backend_refuses_calls(open_backend: Callable[..., ResultBackend]) -> None:
    backend = open_backend("memory")
    backend.close()
    backend.close()
    with pytest.raises(StemlabError):
        backend.get("x")
