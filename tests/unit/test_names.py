"""broker_name: the profile name of a live broker, looking through instrumentation."""

from __future__ import annotations

from pathlib import Path

import stemlab
from stemlab.model.names import broker_name, unwrap


def test_adapters_are_named_after_their_profiles(tmp_path: Path) -> None:
    with stemlab.connect("memory://") as memory:
        assert broker_name(memory) == "memory"
        wrapped = stemlab.instrument(memory)
        assert broker_name(wrapped) == "memory"
        assert unwrap(wrapped) is memory
    with stemlab.connect(f"sqlite:///{tmp_path / 'n.db'}") as sqlite:
        assert broker_name(stemlab.instrument(sqlite)) == "sqlite"


def test_an_underscore_in_the_adapter_package_reads_as_a_dash() -> None:
    from stemlab.brokers.redis_streams import RedisStreamsBroker

    broker = RedisStreamsBroker("redis+streams://127.0.0.1:6399/0", namespace="names")
    assert broker_name(broker) == "redis-streams"
    assert broker_name(stemlab.instrument(broker)) == "redis-streams"
    broker.close()
