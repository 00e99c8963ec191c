"""saq (asyncio; Redis or PostgreSQL queue).  usage: bench_saq.py {redis|postgres} {c1|default}

c1      : settings["concurrency"] = 1                        -> "concurrency 1"
default : saq default concurrency 10, 1 worker process
Producer: `await queue.enqueue("noop", t_enq=t)` one job at a time.
"""

import asyncio
import os
import sys

import common

CONFIGS = {"c1": {"SAQ_CONCURRENCY": "1"}, "default": {}}
BACKENDS = ("redis", "postgres")

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in BACKENDS or sys.argv[2] not in CONFIGS:
        print(
            f"usage: {sys.argv[0]} {{{'|'.join(BACKENDS)}}} {{{'|'.join(CONFIGS)}}}",
            file=sys.stderr,
        )
        sys.exit(2)
    backend, cfg = sys.argv[1], sys.argv[2]
    os.environ["SAQ_BACKEND"] = backend
    import psycopg
    import redis
    import saq
    import saq_app

    class P(common.Producer):
        is_async = True

        def open(self):
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(saq_app.queue.connect())

        def close(self):
            self.loop.run_until_complete(saq_app.queue.disconnect())
            self.loop.close()

        def flush(self):
            if backend == "redis":
                redis.Redis.from_url(common.REDIS_URL).flushdb()
            else:
                with psycopg.connect(common.PG_DSN, autocommit=True) as c:
                    c.execute("TRUNCATE saq_jobs, saq_stats")

        async def asend(self, t):
            await saq_app.queue.enqueue("noop", t_enq=t)

    extra = (
        f"redis-py {redis.__version__}" if backend == "redis" else f"psycopg {psycopg.__version__}"
    )
    common.run_bench(
        peer="saq",
        broker=backend,
        config=cfg,
        producer=P(),
        version=f"saq {saq.__version__} / {extra}",
        worker_cmd=[f"{common.VBIN}/saq", "saq_app.settings"],
        worker_env=dict(CONFIGS[cfg], SAQ_BACKEND=backend),
    )
