"""Brokers for live-run tests: every adapter that has landed, each in a fresh namespace."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import stemlab
from stemlab import Broker
from tests.conftest import POSTGRES_URL, REDIS_URL, require_service

LIVE_ADAPTERS = ["memory", "sqlite", "redis", "postgres"]


def _drop_redis(namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _drop_postgres(namespace: str) -> None:
    from stemlab.brokers.postgres.maintenance import delete_namespaces

    delete_namespaces(POSTGRES_URL, [namespace])


def _url(adapter: str, tmp_path: Path) -> str:
    if adapter == "memory":
        return "memory://"
    if adapter == "sqlite":
        return f"sqlite:///{tmp_path / 'live.db'}"
    if adapter == "redis":
        return require_service("redis", REDIS_URL)
    return require_service("postgres", POSTGRES_URL)


CLEANUP: dict[str, Callable[[str], None]] = {"redis": _drop_redis, "postgres": _drop_postgres}


@pytest.fixture(params=LIVE_ADAPTERS)
def live_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """An open broker of each adapter, on a namespace of its own, removed afterwards."""
    adapter = str(request.param)
    namespace = "live" + uuid.uuid4().hex[:10]
    broker = stemlab.connect(_url(adapter, tmp_path), namespace=namespace)
    yield broker
    if not broker.closed:
        broker.purge("scenario")
        broker.purge_dead_letters("scenario")
        broker.close()
    if adapter in CLEANUP:
        CLEANUP[adapter](namespace)


@pytest.fixture
def memory_broker() -> Iterator[Broker]:
    broker = stemlab.connect("memory://", namespace="live" + uuid.uuid4().hex[:10])
    yield broker
    broker.close()
