"""`stemlab.connect`: scheme table, errors naming the supported schemes, lazy drivers."""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import Any

import pytest

import stemlab
from stemlab import ConfigError
from stemlab.brokers import SCHEMES, connect
from stemlab.brokers.memory import MemoryBroker
from tests.contract.support import env


def _ns() -> str:
    return "u" + uuid.uuid4().hex[:12]


def test_memory_url_opens_a_memory_broker() -> None:
    with connect("memory://", namespace=_ns(), default_visibility_timeout=7.0) as broker:
        assert isinstance(broker, MemoryBroker)
        assert broker.default_visibility_timeout == 7.0
        assert broker.capabilities.priority_levels == 10
    assert broker.closed


def test_scheme_is_case_insensitive() -> None:
    with stemlab.connect("MEMORY://", namespace=_ns()) as broker:
        assert isinstance(broker, MemoryBroker)


def test_memory_brokers_of_one_namespace_share_a_store() -> None:
    ns = _ns()
    with (
        connect("memory://", namespace=ns) as a,
        connect("memory://", namespace=ns) as b,
        connect("memory://", namespace=ns + "x") as c,
    ):
        a.publish(env())
        assert b.pending_count("q") == 1
        assert c.pending_count("q") == 0
        a.purge("q")


@pytest.mark.parametrize("url", ["nosuch://host/x", "amqpx://guest@localhost", "http://x"])
def test_unknown_scheme_names_the_supported_ones(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        connect(url)
    message = str(info.value)
    for scheme in SCHEMES:
        assert f"{scheme}://" in message, message


@pytest.mark.parametrize(
    "url", ["", "memory", "sqlite:/x.db", "just words", "memory://[::1", "sqlite://[x", 42, None]
)
def test_malformed_url_is_a_config_error_naming_schemes(url: object) -> None:
    with pytest.raises(ConfigError) as info:
        connect(url)  # type: ignore[arg-type]
    message = str(info.value)
    for scheme in SCHEMES:
        assert f"{scheme}://" in message, message


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SCHEMES, "fakedb", ("nonexistent_driver_for_stemlab_tests", "X", "fakedb"))
    with pytest.raises(ConfigError) as info:
        connect("fakedb://localhost")
    assert "stemlab[fakedb]" in str(info.value)


def test_import_stemlab_needs_no_optional_driver() -> None:
    code = (
        "import sys\n"
        "for m in ('redis', 'psycopg', 'psycopg_pool', 'hiredis', 'pika', 'aio_pika'):\n"
        "    sys.modules[m] = None\n"
        "import stemlab\n"
        "b = stemlab.connect('memory://')\n"
        "b.close()\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ----------------------------------------------------------- options (one ConfigError)
@pytest.mark.parametrize(
    "url, options",
    [
        ("memory://", {"bogus": 1}),  # was a TypeError
        ("memory://", {"namespace": ""}),  # was a ValueError
        ("memory://", {"namespace": "a:b"}),
        ("memory://", {"namespace": 7}),
        ("memory://", {"default_visibility_timeout": "soon"}),
        ("memory://", {"default_visibility_timeout": float("inf")}),
        ("memory://", {"clock": "yesterday"}),
        ("memory://host", {}),
        ("memory:///path", {}),
        ("memory://?bogus=1", {}),
        ("memory://?default_visibility_timeout=x", {}),
        ("redis://127.0.0.1:6379/abc", {}),  # silently used db 0
        ("redis://127.0.0.1:6379/-1", {}),
        ("redis://127.0.0.1:6379/1/2", {}),
        ("redis://127.0.0.1:6379/14?foo=bar", {}),  # a 60-line traceback at first use
        ("redis://127.0.0.1:6379/14?socket_timeout=soon", {}),
        ("redis://127.0.0.1:6379/14?retry_timeout=1&retry_timeout=2", {}),
        ("redis://127.0.0.1:99999/0", {}),
        ("redis://127.0.0.1:6379/0#frag", {}),
        ("redis://127.0.0.1:6379/0", {"socket_timeout": 0}),
        ("postgresql://postgres@127.0.0.1/test?foo=bar", {}),
        ("postgresql://postgres@127.0.0.1/test", {"retries": -1}),
        ("postgresql://postgres@127.0.0.1/test", {"vacuum_threshold": 1.5}),
    ],
)
def test_bad_option_or_url_part_is_one_config_error_line(url: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        connect(url, **options)
    message = str(info.value)
    assert "\n" not in message and message, message


def test_options_in_the_url_and_keywords_go_through_one_rule() -> None:
    ns = _ns()
    with connect(f"memory://?namespace={ns}&default_visibility_timeout=4") as broker:
        assert (broker.namespace, broker.default_visibility_timeout) == (ns, 4.0)  # type: ignore[attr-defined]
    with connect(f"memory://?namespace={ns}", namespace=ns + "k") as broker:
        assert broker.namespace == ns + "k"  # type: ignore[attr-defined]  # keywords win


def test_redis_database_comes_from_the_path() -> None:
    pytest.importorskip("redis")
    from stemlab.brokers.redis.settings import parse_url

    assert parse_url("redis://127.0.0.1:6379/14").db == 14
    assert parse_url("redis://127.0.0.1:6379").db == 0
    assert parse_url("redis://127.0.0.1:6379/").db == 0
    settings = parse_url("redis://:pw@127.0.0.1:6379/3?retry_timeout=0&socket_timeout=2.5")
    assert (settings.db, settings.retry_timeout, settings.socket_timeout) == (3, 0.0, 2.5)
    assert "?" not in settings.url
