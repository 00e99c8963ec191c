"""Celery app for the peer benchmark (Redis broker, no result backend = Celery's default)."""

import common
from celery import Celery

app = Celery("bench", broker=common.REDIS_URL)
app.conf.broker_connection_retry_on_startup = True  # silences a deprecation warning only


@app.task(name="noop")
def noop(t_enq):
    common.record(t_enq)
