"""Dramatiq + RedisBroker.  usage: bench_dramatiq.py {p1t1|default}

p1t1    : dramatiq --processes 1 --threads 1                      -> "concurrency 1"
default : dramatiq defaults: --processes = CPU count (2), --threads 8
"""

import common
import dramatiq
import redis
from dramatiq_app import noop

CONFIGS = {
    "p1t1": ["--processes", "1", "--threads", "1"],
    "default": [],
}


class P(common.Producer):
    def open(self):
        self.r = redis.Redis.from_url(common.REDIS_URL)

    def flush(self):
        self.r.flushdb()

    def send(self, t):
        noop.send(t)


if __name__ == "__main__":
    cfg = common.cli_config(CONFIGS)
    common.run_bench(
        peer="dramatiq",
        broker="redis",
        config=cfg,
        producer=P(),
        version=f"dramatiq {dramatiq.__version__} / redis-py {redis.__version__}",
        worker_cmd=[f"{common.VBIN}/dramatiq", "dramatiq_app"] + CONFIGS[cfg],
    )
