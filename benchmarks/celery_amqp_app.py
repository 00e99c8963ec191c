"""Celery app for the peer benchmark on RabbitMQ (py-amqp transport, no result backend)."""

import common
from celery import Celery

app = Celery("bench_amqp", broker=common.AMQP_URL)
app.conf.broker_connection_retry_on_startup = True  # silences a deprecation warning only
app.conf.task_default_queue = "bench_celery"


@app.task(name="noop")
def noop(t_enq):
    common.record(t_enq)
