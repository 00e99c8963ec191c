"""`redis+streams://` and `rediss+streams://`: the full contract on Redis Streams.

Each queue is one stream per priority level read through one consumer group, with a
per-delivery lease deadline in a sorted set beside the group's pending entries list and
a fencing token per delivery; delayed messages wait in a sorted set and are appended to
their stream by the claim script once due; broadcasts are a capped stream per channel
that each subscriber reads from the tail it saw when it subscribed. Key layout and the
reasons are at the top of `_lib.lua` and in docs/redis.md.

The broker is the sorted-set adapter's (`RedisBroker`) with another store and consumer:
URL, options, connections, publishing (same arguments), settling (same fenced-script
protocol), counts and dead letters are inherited, the scripts they run are this package's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from stemlab.brokers.redis.broker import RedisBroker
from stemlab.brokers.redis.link import Arg
from stemlab.brokers.redis.settings import envelope_json, parse_url
from stemlab.brokers.redis_streams.consumer import StreamConsumer
from stemlab.brokers.redis_streams.store import StreamStore
from stemlab.core.broker import Consumer
from stemlab.core.envelope import Envelope
from stemlab.core.receipts import INT, TEXT, Receipts, store_id
from stemlab.core.records import Capabilities
from stemlab.errors import ConfigError

__all__ = ["RedisStreamsBroker"]

SCHEMES = {"redis+streams": "redis", "rediss+streams": "rediss"}
BROADCAST_KEEP = 10_000  # broadcasts kept per channel stream (approximate MAXLEN trim)
BROADCAST_TTL_MS = 86_400_000  # a channel's stream is dropped a day after its last broadcast


def plain_url(url: str) -> str:
    """`redis+streams://...` -> `redis://...` (the sorted-set adapter parses the rest)."""
    scheme, sep, rest = url.partition("://")
    base = SCHEMES.get(scheme.lower())
    if not sep or base is None:
        raise ConfigError(f"not a redis+streams:// or rediss+streams:// URL: {url!r}")
    return f"{base}://{rest}"


def streams_url(url: str) -> str:
    """`redis://...` -> `redis+streams://...` (how this adapter's URL is shown)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}+streams://{rest}"


class RedisStreamsBroker(RedisBroker):
    """The contract on Redis Streams; options as for `redis://` (see RedisBroker)."""

    def __init__(self, url: str = "redis+streams://127.0.0.1:6379/0", **options: Any) -> None:
        settings = parse_url(plain_url(url), **options)
        self.store = StreamStore(settings)  # connects with the plain redis:// URL
        self.settings = replace(settings, url=streams_url(settings.url))  # as shown to users
        self.namespace = self.settings.namespace
        self.default_visibility_timeout = float(self.settings.default_visibility_timeout)
        self.prefix = self.settings.prefix
        self._connect, self.where = self.store.connect, self.store.where
        self.receipts = Receipts(
            store_id("redis+streams", self.where),
            self.namespace,
            {"q": (TEXT, INT), "b": (TEXT,)},
        )
        self._caps = Capabilities(
            priority_levels=10,
            delayed=True,
            broadcast_scope="cluster",
            durable=True,
            cross_process=True,
            poll_interval=None,
            reclaim_delay=0.0,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStreamsBroker:
        return cls(url, **options)

    def _broadcast(self, channel: str, envelope: Envelope) -> None:
        args: list[Arg] = [
            self.prefix,
            channel,
            envelope_json(envelope),
            BROADCAST_KEEP,
            BROADCAST_TTL_MS,
        ]
        self._eval("broadcast", args)

    def _consume(
        self, queues: tuple[str, ...], channels: tuple[str, ...], prefetch: int, consumer: str
    ) -> Consumer:
        return StreamConsumer(self, queues, channels, prefetch, consumer)
