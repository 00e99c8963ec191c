"""The URL scheme table and `connect`: adapters are imported only when asked for."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from stemlab.core.broker import Broker
from stemlab.errors import ConfigError

__all__ = ["SCHEMES", "connect"]

# scheme -> (module, class, the extra that brings its driver or None)
SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("stemlab.brokers.memory", "MemoryBroker", None),
    "sqlite": ("stemlab.brokers.sqlite", "SQLiteBroker", None),
    "redis": ("stemlab.brokers.redis", "RedisBroker", "redis"),
    "rediss": ("stemlab.brokers.redis", "RedisBroker", "redis"),
    "redis+streams": ("stemlab.brokers.redis_streams", "RedisStreamsBroker", "redis"),
    "rediss+streams": ("stemlab.brokers.redis_streams", "RedisStreamsBroker", "redis"),
    "postgresql": ("stemlab.brokers.postgres", "PostgresBroker", "postgres"),
    "postgres": ("stemlab.brokers.postgres", "PostgresBroker", "postgres"),
    "amqp": ("stemlab.brokers.amqp", "AmqpBroker", "amqp"),
    "amqps": ("stemlab.brokers.amqp", "AmqpBroker", "amqp"),
    "sqs": ("stemlab.brokers.sqs", "SQSBroker", "sqs"),
    "sqss": ("stemlab.brokers.sqs", "SQSBroker", "sqs"),
}


def _supported() -> str:
    return ", ".join(f"{s}://" for s in SCHEMES)


def connect(url: str, **options: Any) -> Broker:
    """Open the adapter that `url`'s scheme names, e.g. ``connect("sqlite:///jobs.db")``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"not a broker URL: {url!r}; supported schemes: {_supported()}")
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ConfigError(
            f"malformed broker URL {url!r}: {exc}; supported schemes: {_supported()}"
        ) from exc
    entry = SCHEMES.get(scheme)
    if entry is None:
        raise ConfigError(f"unknown URL scheme {scheme + '://'!r}; supported: {_supported()}")
    module_name, class_name, extra = entry
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is None or (exc.name or "").startswith("stemlab"):
            raise
        raise ConfigError(
            f"{scheme}:// needs the {exc.name!r} driver: pip install 'stemlab[{extra}]'"
        ) from exc
    cls = getattr(module, class_name)
    broker: Broker = cls.from_url(url, **options)
    return broker
