"""`redis://` and `rediss://`: the Redis adapter (needs the `redis` extra: redis-py + hiredis).

Password and db come from the URL (`redis://:secret@host:6379/2`); `namespace=` prefixes
every key. The backend-native steps are the `.lua` files next to this module, each
opening with the keys it touches (the full layout is at the top of `_lib.lua`).
"""

from stemlab.brokers.redis.broker import RedisBroker

__all__ = ["RedisBroker"]
