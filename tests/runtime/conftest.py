"""Result backend factories the runtime tests run over: unique namespaces, cleaned up after."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import stemlab
from stemlab.runtime import ResultBackend, Stem, connect_backend
from tests.conftest import POSTGRES_URL, REDIS_URL, require_service

BACKENDS = ["memory", "sqlite", "redis", "postgres"]


def backend_url(kind: str, tmp_path: Path) -> str:
    """The URL of one store for a test (skips, or fails, when its service is absent)."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'results.db'}"
    if kind == "redis":
        return require_service("redis", REDIS_URL)
    return require_service("postgres", POSTGRES_URL)


@pytest.fixture
def open_backend(tmp_path: Path) -> Iterator[Callable[[str], ResultBackend]]:
    """Open backends on a fresh namespace; every one is cleared and closed afterwards."""
    opened: list[ResultBackend] = []
    namespace = f"t{uuid.uuid4().hex[:12]}"

    def factory(kind: str, **options: object) -> ResultBackend:
        backend = connect_backend(backend_url(kind, tmp_path), namespace=namespace, **options)
        opened.append(backend)
        return backend

    yield factory
    for backend in opened:
        if not backend.closed:
            backend.clear()
            backend.close()


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, open_backend: Callable[..., ResultBackend]
) -> ResultBackend:
    return open_backend(request.param)


def broker_url(kind: str, tmp_path: Path) -> str:
    """The broker URL of a stack (SQLite shares one file with its result backend)."""
    return backend_url(kind, tmp_path).replace("results.db", "jobs.db")


def clean_namespace(kind: str, namespace: str) -> None:
    """Delete a broker namespace's data (and the result backend's) on a shared server."""
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
        finally:
            client.close()
    elif kind == "postgres":
        from stemlab.brokers.postgres.maintenance import delete_namespaces

        delete_namespaces(POSTGRES_URL, [namespace])


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Stem]]:
    """Apps on one store kind (broker and results), fresh namespace, all closed and cleaned."""
    made: list[tuple[str, str, Stem]] = []

    def factory(kind: str, namespace: str | None = None) -> Stem:
        ns = namespace or f"t{uuid.uuid4().hex[:12]}"
        broker = stemlab.connect(broker_url(kind, tmp_path), namespace=ns)
        backend = connect_backend(backend_url(kind, tmp_path), namespace=ns)
        app = Stem(broker, backend)
        made.append((kind, ns, app))
        return app

    yield factory
    for kind, ns, app in made:
        with contextlib.suppress(Exception):
            app.backend.clear()
        app.backend.close()
        app.broker.close()
        clean_namespace(kind, ns)


@pytest.fixture(params=BACKENDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
