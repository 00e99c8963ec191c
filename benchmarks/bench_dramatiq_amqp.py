"""Dramatiq + RabbitmqBroker.  usage: bench_dramatiq_amqp.py {p1t1|p1|default}

p1t1    : dramatiq --processes 1 --threads 1                      -> "concurrency 1"
p1      : dramatiq --processes 1 (default 8 threads)              -> one worker process
default : dramatiq defaults: --processes = CPU count (2), --threads 8
The queue is `bench_dramatiq` on $BENCH_AMQP_URL (default vhost "/"), purged before each phase.
"""

import common
import dramatiq
import pika
from dramatiq_amqp_app import broker, noop

CONFIGS = {
    "p1t1": ["--processes", "1", "--threads", "1"],
    "p1": ["--processes", "1"],
    "default": [],
}


class P(common.Producer):
    def flush(self):
        broker.flush_all()

    def send(self, t):
        noop.send(t)

    def close(self):
        broker.close()


if __name__ == "__main__":
    cfg = common.cli_config(CONFIGS)
    common.run_bench(
        peer="dramatiq",
        broker="rabbitmq",
        config=cfg,
        producer=P(),
        version=f"dramatiq {dramatiq.__version__} / pika {pika.__version__}",
        worker_cmd=[f"{common.VBIN}/dramatiq", "dramatiq_amqp_app"] + CONFIGS[cfg],
    )
