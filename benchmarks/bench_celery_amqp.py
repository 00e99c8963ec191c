"""Celery + RabbitMQ (amqp://, py-amqp).  usage: bench_celery_amqp.py {solo|prefork|threads}

solo    : -P solo (one task at a time in the main process)          -> "concurrency 1"
prefork : celery's default pool, default concurrency (= CPU count = 2) -> two worker processes
threads : -P threads, default concurrency (= CPU count = 2), one process
The queue is `bench_celery` on $BENCH_AMQP_URL (default vhost "/"), purged before each phase.
Worker runs with default log level (WARNING), gossip/mingle/heartbeat on (defaults).
"""

import amqp
import celery
import common
import kombu
from celery_amqp_app import app, noop

CONFIGS = {
    "solo": ["-P", "solo"],
    "prefork": [],
    "threads": ["-P", "threads"],
}


class P(common.Producer):
    def flush(self):
        with app.connection_for_write() as conn:
            conn.default_channel.queue_declare("bench_celery", durable=True, auto_delete=False)
            conn.default_channel.queue_purge("bench_celery")

    def send(self, t):
        noop.delay(t)


if __name__ == "__main__":
    cfg = common.cli_config(CONFIGS)
    common.run_bench(
        peer="celery",
        broker="rabbitmq",
        config=cfg,
        producer=P(),
        version=(
            f"celery {celery.__version__} / kombu {kombu.__version__} / py-amqp {amqp.__version__}"
        ),
        worker_cmd=[f"{common.VBIN}/celery", "-A", "celery_amqp_app", "worker"] + CONFIGS[cfg],
    )
