"""Fixtures for the widget tests: one store per adapter under a fresh namespace, cleaned up after.

The widgets are driven headlessly (set `.value`, call `.click()`, then
`wait_idle()`), and what they did is checked on the broker itself through a
second, independent connection to the same store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import stemlab
from stemlab import Broker
from tests.conftest import POSTGRES_URL, REDIS_URL, require_service

pytest.importorskip("ipywidgets")

from stemlab.widgets import BrokerPlayground

ADAPTERS = ["memory", "sqlite", "redis", "postgres"]


@dataclass
class Store:
    """Where a test's playgrounds live: adapter name, URL and connect options (the namespace)."""

    adapter: str
    url: str
    options: dict[str, Any]
    shared: Broker | None = None  # memory:// is per process object: playgrounds share this one
    opened: list[Broker] = field(default_factory=list)

    def connect(self) -> Broker:
        """A second, independent client of the same store (the memory broker itself for memory)."""
        if self.shared is not None:
            return self.shared
        broker = stemlab.connect(self.url, **self.options)
        self.opened.append(broker)
        return broker


def _url(adapter: str, tmp_path: Path) -> str:
    if adapter == "memory":
        return "memory://"
    if adapter == "sqlite":
        return f"sqlite:///{tmp_path / 'playground.db'}"
    if adapter == "redis":
        return require_service("redis", REDIS_URL)
    return require_service("postgres", POSTGRES_URL)


def _cleanup(store: Store) -> None:
    namespace = store.options["namespace"]
    if store.adapter == "redis":
        from tests.contract.conftest import delete_redis_namespace

        delete_redis_namespace(store.url, namespace)
    elif store.adapter == "postgres":
        from stemlab.brokers.postgres.maintenance import delete_namespaces

        delete_namespaces(store.url, [namespace])


def make_store(adapter: str, tmp_path: Path) -> Iterator[Store]:
    store = Store(adapter, _url(adapter, tmp_path), {"namespace": "w" + uuid.uuid4().hex[:12]})
    if adapter == "memory":
        store.shared = stemlab.connect(store.url, **store.options)
    try:
        yield store
    finally:
        for broker in store.opened:
            broker.close()
        if store.shared is not None:
            store.shared.close()
        _cleanup(store)


@pytest.fixture(params=ADAPTERS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from make_store(str(request.param), tmp_path)


@pytest.fixture
def make_playground(store: Store) -> Iterator[Callable[..., BrokerPlayground]]:
    """make_playground(**kw): a playground on the test's store, closed after the test."""
    made: list[BrokerPlayground] = []

    def make(**kwargs: Any) -> BrokerPlayground:
        kwargs.setdefault("refresh_interval", 0.2)
        if store.shared is not None:
            pg = BrokerPlayground(store.shared, **kwargs)
        else:
            pg = BrokerPlayground(store.url, **store.options, **kwargs)
        made.append(pg)
        return pg

    yield make
    for pg in made:
        pg.close()
