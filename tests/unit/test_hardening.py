"""Issue #13 outside the contract suite: URL secrets and the memory adapter's footprint."""

from __future__ import annotations

import gc
import tracemalloc
import uuid

import pytest

import stemlab
from stemlab import ConfigError, Envelope
from stemlab.core.state import QueueState
from tests.conftest import POSTGRES_URL, REDIS_URL, require_service

SECRET = "s3cr3t-pw"


def _with_password(url: str, password: str = SECRET) -> str:
    scheme, rest = url.split("://", 1)
    user, _, host = rest.rpartition("@")
    user = user.split(":", 1)[0]
    return f"{scheme}://{user}:{password}@{host}"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{SECRET}@127.0.0.1:notaport/test",
        f"postgresql://u:{SECRET}@127.0.0.1:99999/test",
        f"postgresql://u:{SECRET}@127.0.0.1:5432/test?bogus=1",
        f"postgresql://u:{SECRET}@127.0.0.1:5432/test?password={SECRET}&bogus=1",
        f"redis://:{SECRET}@127.0.0.1:6379/13x",
        f"redis://u:{SECRET}@127.0.0.1:port/1",
        f"redis://:{SECRET}@127.0.0.1:6379/1#frag",
        f"redis://:{SECRET}@127.0.0.1:6379/1?nope=1",
    ],
)
def test_a_bad_url_is_a_config_error_that_does_not_echo_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        stemlab.connect(url)
    assert SECRET not in str(caught.value)


def test_redis_settings_and_repr_keep_the_password_secret() -> None:
    url = _with_password(require_service("redis", REDIS_URL))
    broker = stemlab.connect(url, namespace="t" + uuid.uuid4().hex[:12])
    try:
        shown = " ".join([repr(broker.settings), str(broker.settings), repr(broker)])
        shown += " ".join(str(v) for v in vars(broker).values())
        assert SECRET not in shown
        assert broker.settings.password is not None
        assert broker.settings.password.reveal() == SECRET
    finally:
        broker.close()


def test_postgres_settings_store_key_and_repr_keep_the_password_secret() -> None:
    url = _with_password(require_service("postgres", POSTGRES_URL))
    broker = stemlab.connect(url, namespace="t" + uuid.uuid4().hex[:12])
    try:
        shown = " ".join([repr(broker.settings), repr(broker), repr(broker.store._key)])
        shown += " ".join(str(v) for v in vars(broker).values())
        assert SECRET not in shown
        broker.publish(Envelope(name="x", queue="q"))  # and it still connects with it
        assert broker.pending_count("q") == 1
        broker.purge("q")
    finally:
        broker.close()


def test_closed_memory_consumers_leave_nothing_behind() -> None:
    broker = stemlab.connect("memory://", namespace="t" + uuid.uuid4().hex[:12])
    state: QueueState = broker.store.state  # type: ignore[attr-defined]
    broker.publish(Envelope(name="x", queue="q"))

    def cycle(n: int) -> None:
        for i in range(n):
            with broker.consume("q", channels="ch", consumer=f"c{i}") as consumer:
                if i % 100 == 0:
                    d = consumer.get(timeout=1)
                    assert d is not None
                    broker.nack(d)

    cycle(100)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    cycle(10_000)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert state._held == {} and state._inbox == {} and state._subs == {}
    assert grown < 100_000, f"{grown} bytes kept after 10,000 consumers"
    broker.close()
