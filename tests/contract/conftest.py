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
from tests.conftest import AMQP_URL, POSTGRES_URL, REDIS_URL, require_service
from tests.sqs_server import sqs_url

Factory = Callable[..., Broker]
# injector(broker, queue, raw_bytes): write undecodable bytes straight into that
# broker's storage for `queue`, bypassing the contract (used by the "undecodable
# message is dead-lettered" test, which runs only over adapters listed here).
Injector = Callable[[Broker, str, bytes], None]


def memory_factory(namespace: str, tmp_path: Path, **options: Any) -> Broker:
    return stemlab.connect("memory://", namespace=namespace, **options)


def sqlite_factory(namespace: str, tmp_path: Path, **options: Any) -> Broker:
    return stemlab.connect(f"sqlite:///{tmp_path / 'contract.db'}", namespace=namespace, **options)


# Redis namespaces opened during the current test; their keys are deleted afterwards
# (SCAN MATCH "<ns>:*" then DEL: never FLUSHDB on the shared server).
_REDIS_NAMESPACES: set[str] = set()


def redis_factory(namespace: str, tmp_path: Path, **options: Any) -> Broker:
    url = require_service("redis", REDIS_URL)
    _REDIS_NAMESPACES.add(namespace)
    return stemlab.connect(url, namespace=namespace, **options)


def redis_streams_factory(namespace: str, tmp_path: Path, **options: Any) -> Broker:
    url = require_service("redis", REDIS_URL)
    _REDIS_NAMESPACES.add(namespace)
    return stemlab.connect(streams_url(url), namespace=namespace, **options)


def streams_url(url: str) -> str:
    """The Redis Streams adapter's URL for a `redis://` URL of the same server and db."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}+streams://{rest}"


def redis_injector(broker: Broker, queue: str, raw: bytes) -> None:
    """Store `raw` as a ready message of `queue` through the publish script."""
    broker.publish_raw(queue, raw)  # type: ignore[attr-defined]


def redis_url(namespace: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    url = require_service("redis", REDIS_URL)
    _REDIS_NAMESPACES.add(namespace)
    return url, {"namespace": namespace}


def redis_streams_url(namespace: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    url, options = redis_url(namespace, tmp_path)
    return streams_url(url), options


def delete_redis_namespace(url: str, namespace: str) -> int:
    """Delete every key of one namespace; returns how many were deleted."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _clean_redis_namespaces() -> Iterator[None]:
    yield
    if _REDIS_NAMESPACES:
        for ns in sorted(_REDIS_NAMESPACES):
            delete_redis_namespace(REDIS_URL, ns)
        _REDIS_NAMESPACES.clear()


# Postgres namespaces opened during the current test; their rows are deleted
# afterwards (DELETE ... WHERE ns = <namespace>: other people's rows are never touched).
_POSTGRES_NAMESPACES: set[str] = set()


def postgres_factory(namespace: str, tmp_path: Path, **options: Any) -> Broker:
    url = require_service("postgres", POSTGRES_URL)
    _POSTGRES_NAMESPACES.add(namespace)
    return stemlab.connect(url, namespace=namespace, **options)


def postgres_injector(broker: Broker, queue: str, raw: bytes) -> None:
    """Insert `raw` as a ready row of `queue` straight into the messages table."""
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO stemlab.queue_messages (ns, queue, priority, available_at, body)"
            " VALUES (%s, %s, 0, now(), %s)",
            (broker.namespace, queue, raw),  # type: ignore[attr-defined]
        )


def postgres_url(namespace: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    _POSTGRES_NAMESPACES.add(namespace)
    return require_service("postgres", POSTGRES_URL), {"namespace": namespace}


@pytest.fixture(autouse=True)
def _clean_postgres_namespaces() -> Iterator[None]:
    yield
    if _POSTGRES_NAMESPACES:
        from stemlab.brokers.postgres.maintenance import delete_namespaces

        delete_namespaces(POSTGRES_URL, sorted(_POSTGRES_NAMESPACES))
        _POSTGRES_NAMESPACES.clear()


# RabbitMQ namespaces opened during the current test; every queue and exchange this
# process declared in them is deleted afterwards (the adapter remembers its names).
_AMQP_NAMESPACES: set[str] = set()


def amqp_factory(namespace: str, tmp_path: Path, **options: Any) -> Broker:
    url = require_service("amqp", AMQP_URL)
    _AMQP_NAMESPACES.add(namespace)
    return stemlab.connect(url, namespace=namespace, **options)


def amqp_injector(broker: Broker, queue: str, raw: bytes) -> None:
    """Store `raw` as a ready message of `queue`, bypassing the envelope codec."""
    broker.publish_raw(queue, raw)  # type: ignore[attr-defined]


# Namespaces handed to child processes: what they declared is found by listing the
# server's queues (rabbitmqctl, when installed) and keeping the namespace's prefix.
_AMQP_SHARED: set[str] = set()


def amqp_url(namespace: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    _AMQP_NAMESPACES.add(namespace)
    _AMQP_SHARED.add(namespace)
    return require_service("amqp", AMQP_URL), {"namespace": namespace}


def _listed_queues(namespaces: set[str]) -> set[tuple[str, str]]:
    import shutil
    import subprocess

    if not namespaces or shutil.which("rabbitmqctl") is None:
        return set()
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, timeout=60
    ).stdout
    return {("queue", n) for n in out.split() if n.split(".", 1)[0] in namespaces}


def delete_amqp_namespaces(url: str, namespaces: list[str]) -> None:
    """Delete every queue and exchange declared in `namespaces` (see `_AMQP_SHARED`)."""
    import pika

    from stemlab.brokers.amqp.link import declared

    found = {n for ns in namespaces for n in declared(ns)}
    names = sorted(found | _listed_queues(_AMQP_SHARED & set(namespaces)))
    if not names:
        return
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        ch = conn.channel()
        for kind, name in names:
            if kind == "queue":
                ch.queue_delete(name)
            else:
                ch.exchange_delete(name)
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def _clean_amqp_namespaces() -> Iterator[None]:
    yield
    if _AMQP_NAMESPACES:
        delete_amqp_namespaces(AMQP_URL, sorted(_AMQP_NAMESPACES))
        _AMQP_NAMESPACES.clear()
        _AMQP_SHARED.clear()


# SQS namespaces opened during the current test; their SQS queues are deleted afterwards
# (only queues whose names start with the namespace's prefix).
_SQS_NAMESPACES: set[str] = set()


def sqs_factory(namespace: str, tmp_path: Path, **options: Any) -> Broker:
    _SQS_NAMESPACES.add(namespace)
    return stemlab.connect(sqs_url(), namespace=namespace, **options)


def sqs_url_for(namespace: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    _SQS_NAMESPACES.add(namespace)
    return sqs_url(), {"namespace": namespace}


def sqs_injector(broker: Broker, queue: str, raw: bytes) -> None:
    """Send `raw` as a ready message of `queue` straight to its priority-0 SQS queue."""
    link = broker.link  # type: ignore[attr-defined]
    url = link.level_url(broker.namespace, queue, 0)  # type: ignore[attr-defined]
    link.call("send_message", QueueUrl=url, MessageBody=raw.decode("utf-8", "replace"))


@pytest.fixture(autouse=True)
def _clean_sqs_namespaces() -> Iterator[None]:
    yield
    if _SQS_NAMESPACES:
        from tests.sqs_server import delete_namespace

        for ns in sorted(_SQS_NAMESPACES):
            delete_namespace(sqs_url(), ns)
        _SQS_NAMESPACES.clear()


ADAPTERS: dict[str, Factory] = {
    "memory": memory_factory,
    "sqlite": sqlite_factory,
    "redis": redis_factory,
    "redis-streams": redis_streams_factory,
    "postgres": postgres_factory,
    "amqp": amqp_factory,
    "sqs": sqs_factory,
}


def sqlite_injector(broker: Broker, queue: str, raw: bytes) -> None:
    """Insert `raw` as a ready row of `queue` straight into the SQLite file."""
    import sqlite3
    import time

    conn = sqlite3.connect(broker.path)  # type: ignore[attr-defined]
    try:
        with conn:
            conn.execute(
                "INSERT INTO stem_messages (ns, queue, priority, avail_at, payload)"
                " VALUES (?, ?, 0, ?, ?)",
                (broker.namespace, queue, time.time(), raw),  # type: ignore[attr-defined]
            )
    finally:
        conn.close()


# adapter name -> injector; the memory adapter stores Envelope objects, so it has none.
INJECTORS: dict[str, Injector] = {
    "sqlite": sqlite_injector,
    "redis": redis_injector,
    "redis-streams": redis_injector,
    "postgres": postgres_injector,
    "amqp": amqp_injector,
    "sqs": sqs_injector,
}

# adapter name -> url_for(namespace, tmp_path) -> (url, options): how a child process
# (tests/contract/test_multiprocess.py) opens the same store; adapters without an entry
# are skipped there.
UrlFactory = Callable[[str, Path], tuple[str, dict[str, Any]]]


def sqlite_url(namespace: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    return f"sqlite:///{tmp_path / 'contract.db'}", {"namespace": namespace}


ADAPTER_URLS: dict[str, UrlFactory] = {
    "sqlite": sqlite_url,
    "redis": redis_url,
    "redis-streams": redis_streams_url,
    "postgres": postgres_url,
    "amqp": amqp_url,
    "sqs": sqs_url_for,
}


INSTRUMENTED = "+instrumented"


def _instrumented_factory(factory: Factory) -> Factory:
    def make(namespace: str, tmp_path: Path, **options: Any) -> Broker:
        return stemlab.instrument(factory(namespace, tmp_path, **options))

    return make


def _instrumented_injector(injector: Injector) -> Injector:
    def inject(broker: Broker, queue: str, raw: bytes) -> None:
        injector(getattr(broker, "inner", broker), queue, raw)

    return inject


def adapter_names() -> list[str]:
    """Every adapter in ADAPTERS plus its instrumented twin "<name>+instrumented".

    Run at collection time, so entries added anywhere in this module get a twin
    (in ADAPTERS, INJECTORS and ADAPTER_URLS alike).
    """
    for name in [n for n in ADAPTERS if not n.endswith(INSTRUMENTED)]:
        ADAPTERS.setdefault(name + INSTRUMENTED, _instrumented_factory(ADAPTERS[name]))
        if name in INJECTORS:
            INJECTORS.setdefault(name + INSTRUMENTED, _instrumented_injector(INJECTORS[name]))
        if name in ADAPTER_URLS:  # child processes open the same store, bare
            ADAPTER_URLS.setdefault(name + INSTRUMENTED, ADAPTER_URLS[name])
    return sorted(ADAPTERS)


def pytest_configure(config: pytest.Config) -> None:
    adapter_names()  # add the twins before test modules read ADAPTERS / INJECTORS


def _parametrizes_adapter(metafunc: pytest.Metafunc) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        names = names.split(",") if isinstance(names, str) else names
        if "adapter" in [n.strip() for n in names]:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "adapter" in metafunc.fixturenames and not _parametrizes_adapter(metafunc):
        metafunc.parametrize("adapter", adapter_names(), indirect=True)


@pytest.fixture
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def make_broker(adapter: str, namespace: str, tmp_path: Path) -> Iterator[Callable[..., Broker]]:
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
