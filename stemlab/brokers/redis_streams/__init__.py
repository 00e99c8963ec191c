"""`redis+streams://` and `rediss+streams://`: the Redis Streams adapter (the `redis` extra).

Stem's default transport held to stemlab's contract: one stream per queue and priority
level, one consumer group, per-delivery leases beside the pending entries list. URL and
options are those of `redis://` (password and db from the URL, `namespace=` prefixes every
key). The backend-native steps are the `.lua` files next to this module, each opening with
the keys it touches (the full layout is at the top of `_lib.lua`).
"""

from stemlab.brokers.redis_streams.broker import RedisStreamsBroker

__all__ = ["RedisStreamsBroker"]
