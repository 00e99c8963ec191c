"""Which profile name a live broker goes by: the short name of its adapter.

Profiles in `data/profiles/` are named after the adapters ("memory", "sqlite",
"redis", "postgres", "sqs"), so naming a broker is model knowledge; it needs no
adapter imported, only the convention that adapters live in
`stemlab.brokers.<name>` ("_" in a package name reads "-": `redis_streams` is
"redis-streams").
"""

from __future__ import annotations

from stemlab.core.broker import Broker

__all__ = ["broker_name", "unwrap"]

_ADAPTERS = "stemlab.brokers."


def unwrap(broker: Broker) -> Broker:
    """The broker a wrapper (such as `InstrumentedBroker`, which exposes `.inner`) stands for."""
    seen = broker
    while isinstance(inner := getattr(seen, "inner", None), Broker) and inner is not seen:
        seen = inner
    return seen


def broker_name(broker: Broker) -> str:
    """The adapter's short name ("memory", "redis", "redis-streams", "sqs", ...), else its class.

    A wrapper is looked through, so an instrumented Redis broker is "redis".
    """
    cls = type(unwrap(broker))
    module = cls.__module__
    if module.startswith(_ADAPTERS):
        return module[len(_ADAPTERS) :].split(".")[0].replace("_", "-")
    return cls.__name__
