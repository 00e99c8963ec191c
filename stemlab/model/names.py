"""Which profile name a live broker goes by: the short name of its adapter.

Profiles in `data/profiles/` are named after the adapters ("memory", "sqlite",
"redis", "postgres", "rabbitmq", "sqs"), so naming a broker is model knowledge; it needs no
adapter imported, only the convention that adapters live in
`stemlab.brokers.<name>` ("_" in a package name reads "-": `redis_streams` is
"redis-streams").
"""

from __future__ import annotations

from stemlab.core.broker import Broker

__all__ = ["broker_name", "unwrap"]

_ADAPTERS = "stemlab.brokers."
# adapter packages named after their protocol go by the server's name
_SERVER_NAMES = {"amqp": "rabbitmq"}


def unwrap(broker: Broker) -> Broker:
    """The broker a wrapper (such as `InstrumentedBroker`, which exposes `.inner`) stands for."""
    seen = broker
    while isinstance(inner := getattr(seen, "inner", None), Broker) and inner is not seen:
        seen = inner
    return seen


def broker_name(broker: Broker) -> str:
    """The adapter's short name ("memory", "redis", "redis-streams", "rabbitmq", "sqs", ...).

    Else its class name. A wrapper is looked through, so an instrumented Redis broker is "redis".
    """
    cls = type(unwrap(broker))
    module = cls.__module__
    if module.startswith(_ADAPTERS):
        name = module[len(_ADAPTERS) :].split(".")[0].replace("_", "-")
        return _SERVER_NAMES.get(name, name)
    return cls.__name__
