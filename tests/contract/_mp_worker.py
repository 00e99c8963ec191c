"""Child process for tests/contract/test_multiprocess.py (run as a script, not collected).

usage:
  _mp_worker.py produce URL OPTIONS_JSON QUEUE PREFIX COUNT
  _mp_worker.py consume URL OPTIONS_JSON QUEUE OUT_FILE STOP_FILE PREFETCH
  _mp_worker.py hold    URL OPTIONS_JSON QUEUE OUT_FILE

`consume` acks every delivery and then appends "<id> <delivery_count>" to OUT_FILE,
until STOP_FILE exists. `hold` takes one delivery, records it, and never acks it
(the test SIGKILLs it).
"""

from __future__ import annotations

import json
import os
import sys
import time

import stemlab
from stemlab import Envelope


def _record(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def produce(broker: stemlab.Broker, queue: str, prefix: str, count: int) -> None:
    for i in range(count):
        broker.publish(Envelope(name="mp", id=f"{prefix}-{i}", queue=queue, args={"i": i}))


def consume(broker: stemlab.Broker, queue: str, out: str, stop: str, prefetch: int) -> None:
    with broker.consume(queue, prefetch=prefetch) as consumer:
        while not os.path.exists(stop):
            delivery = consumer.get(timeout=0.1)
            if delivery is not None:
                broker.ack(delivery)
                _record(out, f"{delivery.envelope.id} {delivery.delivery_count}")


def hold(broker: stemlab.Broker, queue: str, out: str) -> None:
    consumer = broker.consume(queue, prefetch=1)
    delivery = None
    while delivery is None:
        delivery = consumer.get(timeout=0.1)
    _record(out, f"{delivery.envelope.id} {delivery.delivery_count}")
    while True:  # hold the lease until SIGKILL
        time.sleep(1)


def main(argv: list[str]) -> None:
    role, url, options, queue, *rest = argv
    broker = stemlab.connect(url, **json.loads(options))
    try:
        if role == "produce":
            produce(broker, queue, rest[0], int(rest[1]))
        elif role == "consume":
            consume(broker, queue, rest[0], rest[1], int(rest[2]))
        elif role == "hold":
            hold(broker, queue, rest[0])
        else:
            raise SystemExit(f"unknown role {role!r}")
    finally:
        broker.close()


if __name__ == "__main__":
    main(sys.argv[1:])
