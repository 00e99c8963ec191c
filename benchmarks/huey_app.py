"""Huey app for the peer benchmark.  Storage picked by HUEY_BACKEND = redis | sqlite | postgres.

All storages use Huey's defaults: RedisHuey (blocking BRPOP dequeue), SqliteHuey (WAL,
synchronous=OFF unless fsync=True, consumer *polls* with 0.1 s initial delay, x1.15 backoff,
10 s max), PostgresHuey (SKIP LOCKED dequeue + LISTEN/NOTIFY wake-up, huey >= 3).
"""

import os

import common
from huey import PostgresHuey, RedisHuey, SqliteHuey

BACKEND = os.environ.get("HUEY_BACKEND", "redis")
if BACKEND == "redis":
    huey = RedisHuey("bench", url=common.REDIS_URL)
elif BACKEND == "sqlite":
    huey = SqliteHuey("bench", filename=os.path.join(common.WORKDIR, "huey.db"))
elif BACKEND == "postgres":
    huey = PostgresHuey("bench", dsn=common.PG_DSN)
else:
    raise SystemExit(f"unknown HUEY_BACKEND {BACKEND!r}")


@huey.task()
def noop(t_enq):
    common.record(t_enq)
