"""saq settings for the peer benchmark.

SAQ_BACKEND = redis | postgres, SAQ_CONCURRENCY (saq default 10).
"""

import os

import common
from saq import Queue

BACKEND = os.environ.get("SAQ_BACKEND", "redis")
queue = Queue.from_url(common.REDIS_URL if BACKEND == "redis" else common.PG_DSN)


async def noop(ctx, *, t_enq):
    common.record(t_enq)


settings = {
    "queue": queue,
    "functions": [noop],
    "concurrency": int(os.environ.get("SAQ_CONCURRENCY", "10")),
}
