"""Benchmark worker for stemlab: consume, record, ack, using only the Broker contract.

usage: stemlab_worker.py URL PREFETCH

SIGTERM (how the harness stops a worker) ends the loop through SystemExit, so the
consumer and broker close: a RabbitMQ consumer then deletes its empty lease slots.
"""

import signal
import sys

import common

import stemlab


def _stop(signum, frame):
    raise SystemExit(0)


signal.signal(signal.SIGTERM, _stop)
url, prefetch = sys.argv[1], int(sys.argv[2])
broker = stemlab.connect(url, namespace="bench")
try:
    with broker.consume("bench", prefetch=prefetch) as consumer:
        for delivery in consumer:
            common.record(delivery.envelope.args["t"])
            broker.ack(delivery)
finally:
    broker.close()
