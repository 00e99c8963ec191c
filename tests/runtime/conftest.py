"""Result backend factories the runtime tests run over: unique namespaces, cleaned up after."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stemlab.runtime import ResultBackend, connect_backend
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
