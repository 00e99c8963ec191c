"""RQ (Redis).  usage: bench_rq.py {worker|simple|pool2}

worker : `rq worker` with the default rq.Worker (forks a work-horse per job)
         -> "concurrency 1" and "default"
simple : `rq worker -w rq.worker.SimpleWorker` (runs jobs in the worker process, no fork)
pool2  : `rq worker-pool -n 2` (2 default workers; worker-pool's own default is -n 1);
         N=1000, e2e 20/s
Default logging (INFO: two log lines per job) is kept and written to a file.
"""

import common
import redis
import rq
from rq import Queue
from rq_app import noop

CONFIGS = {
    "worker": ["worker"],
    "simple": ["worker", "-w", "rq.worker.SimpleWorker"],
    "pool2": ["worker-pool", "-n", "2"],
}
# The forking workers manage only a few dozen jobs/s on this box: smaller N, lighter e2e rate.
N = {"worker": 500, "simple": 5000, "pool2": 1000}
RATE = {"worker": 20.0, "simple": 200.0, "pool2": 20.0}


class P(common.Producer):
    def open(self):
        self.r = redis.Redis.from_url(common.REDIS_URL)
        self.q = Queue("default", connection=self.r)

    def flush(self):
        self.r.flushdb()

    def send(self, t):
        self.q.enqueue(noop, t)


if __name__ == "__main__":
    cfg = common.cli_config(CONFIGS)
    common.run_bench(
        peer="rq",
        broker="redis",
        config=cfg,
        producer=P(),
        n=N[cfg],
        e2e_rate=RATE[cfg],
        version=f"rq {rq.__version__} / redis-py {redis.__version__}",
        worker_cmd=[f"{common.VBIN}/rq"] + CONFIGS[cfg] + ["--url", common.REDIS_URL],
    )
