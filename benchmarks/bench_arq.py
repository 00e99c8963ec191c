"""arq (Redis, asyncio).  usage: bench_arq.py {j1|default}

j1      : WorkerSettings.max_jobs = 1                               -> "concurrency 1"
default : arq defaults (max_jobs=10, poll_delay=0.5 s, queue_read_limit=max(5*max_jobs,100))
Producer: `await pool.enqueue_job("noop", t)` one job at a time.
Results are kept (arq default 3600 s).
"""

import asyncio

import arq
import common
import redis
from arq import create_pool
from arq.connections import RedisSettings

CONFIGS = {"j1": {"ARQ_MAX_JOBS": "1"}, "default": {}}


class P(common.Producer):
    is_async = True

    def open(self):
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(
            create_pool(RedisSettings.from_dsn(common.REDIS_URL))
        )

    def close(self):
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()

    def flush(self):
        self.loop.run_until_complete(self.pool.flushdb())

    async def asend(self, t):
        await self.pool.enqueue_job("noop", t)


if __name__ == "__main__":
    cfg = common.cli_config(CONFIGS)
    common.run_bench(
        peer="arq",
        broker="redis",
        config=cfg,
        producer=P(),
        version=f"arq {arq.VERSION} / redis-py {redis.__version__}",
        worker_cmd=[f"{common.VBIN}/arq", "arq_app.WorkerSettings"],
        worker_env=CONFIGS[cfg],
    )
