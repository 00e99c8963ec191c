"""arq worker settings for the peer benchmark.  ARQ_MAX_JOBS picks max_jobs (arq default 10)."""

import os

import common
from arq.connections import RedisSettings


async def noop(ctx, t_enq):
    common.record(t_enq)


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(common.REDIS_URL)
    max_jobs = int(os.environ.get("ARQ_MAX_JOBS", "10"))
