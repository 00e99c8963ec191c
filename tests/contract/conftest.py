"""The adapter factories the ONE contract suite runs over.

Each factory takes (namespace, tmp_path, **options) and returns an open
Broker; options are the contract's (e.g. default_visibility_timeout). Every
test gets a fresh namespace, and `make_broker` opens further brokers on the
same store (a second client) or on another namespace (isolation tests).
Adapters plug in by adding one entry to ADAPTERS.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import stemlab
from stemlab import Broker

Factory = Callable[..., Broker]


def memory_factory(namespace: str, tmp_path: Path, **options: Any) -> Broker:
    return stemlab.connect("memory://", namespace=namespace, **options)


def sqlite_factory(namespace: str, tmp_path: Path, **options: Any) -> Broker:
    return stemlab.connect(f"sqlite:///{tmp_path / 'contract.db'}", namespace=namespace, **options)


ADAPTERS: dict[str, Factory] = {
    "memory": memory_factory,
    "sqlite": sqlite_factory,
}


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def make_broker(
    adapter: str, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., Broker]]:
    """make_broker(namespace=None, **options): open a broker of the adapter under test."""
    opened: list[Broker] = []

    def make(ns: str | None = None, **options: Any) -> Broker:
        broker = ADAPTERS[adapter](ns or namespace, tmp_path, **options)
        opened.append(broker)
        return broker

    yield make
    for broker in opened:
        if not broker.closed:
            for q in ("default", "q", "q2", "other"):
                try:
                    broker.purge(q)
                    broker.purge_dead_letters(q)
                except Exception:
                    pass
        broker.close()


@pytest.fixture
def broker(make_broker: Callable[..., Broker]) -> Broker:
    """A broker with a short default lease (2 s) so expiry tests stay quick."""
    return make_broker(default_visibility_timeout=2.0)
