"""Celery + Redis broker.  usage: bench_celery.py {solo|prefork|threads}

solo    : -P solo (one task at a time in the main process)          -> "concurrency 1"
prefork : celery's default pool, default concurrency (= CPU count = 2) -> "default"
threads : -P threads, default concurrency (= CPU count = 2)
Worker runs with default log level (WARNING), gossip/mingle/heartbeat on (defaults).
"""

import celery
import common
import kombu
import redis
from celery_app import noop

CONFIGS = {
    "solo": ["-P", "solo"],
    "prefork": [],
    "threads": ["-P", "threads"],
}


class P(common.Producer):
    def open(self):
        self.r = redis.Redis.from_url(common.REDIS_URL)

    def flush(self):
        self.r.flushdb()

    def send(self, t):
        noop.delay(t)


if __name__ == "__main__":
    cfg = common.cli_config(CONFIGS)
    common.run_bench(
        peer="celery",
        broker="redis",
        config=cfg,
        producer=P(),
        version=(
            f"celery {celery.__version__} / kombu {kombu.__version__}"
            f" / redis-py {redis.__version__}"
        ),
        worker_cmd=[f"{common.VBIN}/celery", "-A", "celery_app", "worker"] + CONFIGS[cfg],
    )
