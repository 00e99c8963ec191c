"""How much instrumentation costs: drain throughput of a bare vs an instrumented broker.

Run ``python -m stemlab.live.overhead [--url memory:// --messages 20000 --repeats 9]``.
Each repeat fills a fresh namespace with the same messages (not timed) and
times one consumer draining it (``get`` + ``ack``), bare and instrumented
back to back (in alternating order). Throughput is counted both per second
of wall time and per second of this thread's CPU time; the CPU figure is
the one to trust on a busy machine, since other processes do not inflate it.
The overhead is the median over repeats of 1 - instrumented/bare.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import uuid
from dataclasses import dataclass

from stemlab.brokers import connect
from stemlab.core.broker import Broker
from stemlab.core.envelope import Envelope
from stemlab.instrument.broker import instrument

__all__ = ["DrainRate", "OverheadResult", "drain_rate", "main", "measure_overhead"]

QUEUE = "bench"


@dataclass(frozen=True)
class DrainRate:
    """Messages drained per second of wall time and per second of CPU time."""

    wall: float
    cpu: float


@dataclass(frozen=True)
class OverheadResult:
    """Median drain rates (messages/s) of both variants and the median paired overhead."""

    url: str
    messages: int
    repeats: int
    bare: DrainRate
    instrumented: DrainRate
    overhead_cpu: float  # median of 1 - instrumented/bare over repeats, CPU time
    overhead_wall: float  # the same on wall time (noisier)

    def table(self) -> str:
        return "\n".join(
            [
                f"drain throughput, {self.url}, {self.messages} messages, median of {self.repeats}",
                f"{'':14}{'msg/s (cpu)':>14}{'msg/s (wall)':>14}",
                f"{'bare':14}{self.bare.cpu:14,.0f}{self.bare.wall:14,.0f}",
                f"{'instrumented':14}{self.instrumented.cpu:14,.0f}{self.instrumented.wall:14,.0f}",
                f"{'overhead':14}{self.overhead_cpu:14.1%}{self.overhead_wall:14.1%}",
            ]
        )


def drain_rate(broker: Broker, messages: int) -> DrainRate:
    """Fill `QUEUE` with `messages` envelopes, then time draining it with get + ack."""
    broker.purge(QUEUE)
    broker.publish_many(Envelope(name="bench", queue=QUEUE) for _ in range(messages))
    consumer = broker.consume(QUEUE, prefetch=1)
    gc.collect()  # start both variants from the same collector state
    done = 0
    wall, cpu = time.perf_counter(), time.thread_time()
    while done < messages:
        delivery = consumer.get(timeout=1.0)
        if delivery is None:
            raise RuntimeError(f"the queue ran dry after {done} of {messages} messages")
        broker.ack(delivery)
        done += 1
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    consumer.close()
    return DrainRate(messages / wall, messages / max(cpu, 1e-9))


def _one(url: str, messages: int, wrapped: bool) -> DrainRate:
    # memory://: a fresh store each time; a server: one fixed namespace, purged after each drain
    fresh = url.startswith("memory:")
    broker = connect(url, namespace="bench" + uuid.uuid4().hex[:10] if fresh else "stemlab-bench")
    if wrapped:
        broker = instrument(broker)
    try:
        return drain_rate(broker, messages)
    finally:
        broker.purge(QUEUE)
        broker.close()


def measure_overhead(
    url: str = "memory://", messages: int = 20_000, repeats: int = 9
) -> OverheadResult:
    """Drain bare and instrumented back to back `repeats` times; compare medians."""
    bare: list[DrainRate] = []
    inst: list[DrainRate] = []
    for i in range(repeats):
        for wrapped in (False, True) if i % 2 == 0 else (True, False):
            (inst if wrapped else bare).append(_one(url, messages, wrapped))

    def med(rates: list[DrainRate]) -> DrainRate:
        return DrainRate(
            statistics.median(r.wall for r in rates), statistics.median(r.cpu for r in rates)
        )

    return OverheadResult(
        url,
        messages,
        repeats,
        med(bare),
        med(inst),
        statistics.median(1 - i.cpu / b.cpu for b, i in zip(bare, inst, strict=True)),
        statistics.median(1 - i.wall / b.wall for b, i in zip(bare, inst, strict=True)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="memory://")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    print(measure_overhead(args.url, args.messages, args.repeats).table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
