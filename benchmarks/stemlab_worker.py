"""Benchmark worker for stemlab: consume, record, ack, using only the Broker contract.

usage: stemlab_worker.py URL PREFETCH
"""

import sys

import common

import stemlab

url, prefetch = sys.argv[1], int(sys.argv[2])
broker = stemlab.connect(url, namespace="bench")
with broker.consume("bench", prefetch=prefetch) as consumer:
    for delivery in consumer:
        common.record(delivery.envelope.args["t"])
        broker.ack(delivery)
