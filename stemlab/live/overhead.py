"""How much instrumentation costs: drain throughput of a bare vs an instrumented broker.

Run ``python -m stemlab.live.overhead [--url memory:// --messages 20000 --repeats 9]``.
Each repeat fills one broker per variant (same URL, own namespace) with the
same messages (not timed), then drains them all in interleaved blocks of
``--block`` get + ack calls, the order rotating every block, so every variant
meets the same machine load at the same moments; one warm-up block each is
not counted. Time is counted per second of this thread's CPU time (the figure
to trust on a shared machine: other processes do not inflate it) and of wall
time. A repeat's overhead is 1 - instrumented/bare rate over its whole drain;
the report gives medians and ranges over repeats and the load average.
``--breakdown`` adds two stripped wrappers that bound where the cost goes:
``forward`` (a Python frame per call, nothing read or stored) and ``timed``
(that plus the two clock reads per call, nothing stored).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from stemlab.brokers import connect
from stemlab.core.broker import Broker
from stemlab.core.envelope import Delivery, Envelope
from stemlab.instrument.broker import instrument

__all__ = [
    "VARIANTS",
    "DrainRate",
    "OverheadResult",
    "drain_rate",
    "main",
    "measure_overhead",
]

QUEUE = "bench"
_perf = time.perf_counter_ns


@dataclass(frozen=True)
class DrainRate:
    """Messages drained per second of wall time and per second of CPU time."""

    wall: float
    cpu: float


class _Getter(Protocol):
    def get(self, timeout: float | None = None) -> Delivery | None: ...

    def close(self) -> None: ...


class _Drainable(Protocol):
    """What the benchmark needs of a broker (a Broker, or a stripped wrapper of one)."""

    def publish_many(self, envelopes: Iterable[Envelope]) -> None: ...

    def consume(self, queues: str, *, prefetch: int = 1) -> Any: ...

    def ack(self, delivery: Delivery) -> None: ...

    def purge(self, queue: str) -> int: ...

    def close(self) -> None: ...


class _ForwardConsumer:
    def __init__(self, inner: _Getter, timed: bool) -> None:
        self._get = inner.get
        self._inner = inner
        self._timed = timed

    def get(self, timeout: float | None = None) -> Delivery | None:
        if self._timed:
            start = _perf()
            d = self._get(timeout)
            _ = _perf() - start
            return d
        return self._get(timeout)

    def close(self) -> None:
        self._inner.close()


class _Forward:
    """A stripped wrapper for the breakdown: forwards get and ack, optionally reading the clock."""

    def __init__(self, inner: Broker, timed: bool) -> None:
        self._inner = inner
        self._ack = inner.ack
        self._timed = timed

    def publish_many(self, envelopes: Iterable[Envelope]) -> None:
        self._inner.publish_many(envelopes)

    def consume(self, queues: str, *, prefetch: int = 1) -> _ForwardConsumer:
        return _ForwardConsumer(self._inner.consume(queues, prefetch=prefetch), self._timed)

    def ack(self, delivery: Delivery) -> None:
        if self._timed:
            start = _perf()
            self._ack(delivery)
            _ = _perf() - start
            return
        self._ack(delivery)

    def purge(self, queue: str) -> int:
        return self._inner.purge(queue)

    def close(self) -> None:
        self._inner.close()


# variant name -> how to wrap a freshly connected broker
VARIANTS: dict[str, Callable[[Broker], _Drainable]] = {
    "bare": lambda b: b,
    "instrumented": instrument,
    "forward": lambda b: _Forward(b, timed=False),
    "timed": lambda b: _Forward(b, timed=True),
}


def _open(url: str, variant: str) -> _Drainable:
    # memory://: a fresh store each time; a server: one fixed namespace per variant, purged
    fresh = url.startswith("memory:")
    namespace = "bench" + uuid.uuid4().hex[:10] if fresh else f"stemlab-bench-{variant}"
    broker = VARIANTS[variant](connect(url, namespace=namespace))
    broker.purge(QUEUE)
    return broker


def _fill(broker: _Drainable, messages: int) -> None:
    broker.publish_many(Envelope(name="bench", queue=QUEUE) for _ in range(messages))


def _drain_block(consumer: Any, broker: _Drainable, n: int) -> tuple[int, int]:
    """Get + ack `n` messages; (CPU ns, wall ns) the thread spent on it."""
    cpu, wall = time.thread_time_ns(), _perf()
    for _ in range(n):
        delivery = consumer.get(timeout=1.0)
        if delivery is None:
            raise RuntimeError("the queue ran dry during the benchmark")
        broker.ack(delivery)
    return time.thread_time_ns() - cpu, _perf() - wall


def drain_rate(broker: Broker, messages: int) -> DrainRate:
    """Fill `QUEUE` with `messages` envelopes, then time draining it with get + ack (one block)."""
    broker.purge(QUEUE)
    _fill(broker, messages)
    consumer = broker.consume(QUEUE, prefetch=1)
    gc.collect()
    cpu, wall = _drain_block(consumer, broker, messages)
    consumer.close()
    return DrainRate(messages * 1e9 / max(wall, 1), messages * 1e9 / max(cpu, 1))


def _round(url: str, variants: Sequence[str], messages: int, block: int) -> dict[str, DrainRate]:
    """One repeat: fill every variant, one warm-up block each, then interleaved timed blocks."""
    brokers = {v: _open(url, v) for v in variants}
    try:
        consumers = {}
        for v, b in brokers.items():
            _fill(b, messages + block)
            consumers[v] = b.consume(QUEUE, prefetch=1)
            _drain_block(consumers[v], b, block)  # warm-up, not counted
        cpu = dict.fromkeys(variants, 0)
        wall = dict.fromkeys(variants, 0)
        gc.collect()  # every variant starts from the same collector state
        done, turn = 0, 0
        while done < messages:
            n = min(block, messages - done)
            k = turn % len(variants)
            for v in [*variants[k:], *variants[:k]]:
                c, w = _drain_block(consumers[v], brokers[v], n)
                cpu[v] += c
                wall[v] += w
            done += n
            turn += 1
        for c in consumers.values():
            c.close()
        return {v: DrainRate(messages * 1e9 / wall[v], messages * 1e9 / cpu[v]) for v in variants}
    finally:
        for b in brokers.values():
            b.purge(QUEUE)
            b.close()


@dataclass(frozen=True)
class OverheadResult:
    """Drain rates per variant and repeat; medians, ranges and the paired overheads."""

    url: str
    messages: int
    repeats: int
    block: int
    runs: dict[str, list[DrainRate]]  # variant -> one rate per repeat
    load: tuple[float, float] = field(default=(0.0, 0.0))  # 1-min load average before, after

    def _median(self, variant: str) -> DrainRate:
        rates = self.runs[variant]
        return DrainRate(
            statistics.median(r.wall for r in rates), statistics.median(r.cpu for r in rates)
        )

    @property
    def bare(self) -> DrainRate:
        """Median bare drain rate over repeats."""
        return self._median("bare")

    @property
    def instrumented(self) -> DrainRate:
        """Median instrumented drain rate over repeats."""
        return self._median("instrumented")

    def overheads(self, variant: str = "instrumented", *, cpu: bool = True) -> list[float]:
        """Per repeat: 1 - variant/bare (CPU time by default), paired within the repeat."""
        pairs = zip(self.runs["bare"], self.runs[variant], strict=True)
        return [1 - (v.cpu / b.cpu if cpu else v.wall / b.wall) for b, v in pairs]

    @property
    def overhead_cpu(self) -> float:
        """Median over repeats of 1 - instrumented/bare, CPU time."""
        return statistics.median(self.overheads())

    @property
    def overhead_wall(self) -> float:
        """The same on wall time (noisier on a shared machine)."""
        return statistics.median(self.overheads(cpu=False))

    def table(self) -> str:
        """A plain-text report: rates and overheads, medians with [min, max] over repeats."""
        lines = [
            f"drain throughput, {self.url}, {self.messages} messages, blocks of {self.block}, "
            f"{self.repeats} repeats (median [min, max]); load average {self.load[0]:.2f} "
            f"before, {self.load[1]:.2f} after",
            f"{'':14}{'msg/s (cpu)':>28}{'msg/s (wall)':>28}{'overhead (cpu)':>28}"
            f"{'overhead (wall)':>28}",
        ]
        for v, rates in self.runs.items():
            cpu = [r.cpu for r in rates]
            wall = [r.wall for r in rates]
            row = f"{v:14}{_span(cpu, '{:,.0f}'):>28}{_span(wall, '{:,.0f}'):>28}"
            if v != "bare":
                row += f"{_span(self.overheads(v), '{:.1%}'):>28}"
                row += f"{_span(self.overheads(v, cpu=False), '{:.1%}'):>28}"
            lines.append(row)
        return "\n".join(lines)


def _span(values: list[float], fmt: str) -> str:
    median, low, high = statistics.median(values), min(values), max(values)
    return f"{fmt.format(median)} [{fmt.format(low)}, {fmt.format(high)}]"


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # not on every platform
        return float("nan")


def measure_overhead(
    url: str = "memory://",
    messages: int = 20_000,
    repeats: int = 9,
    *,
    block: int = 200,
    breakdown: bool = False,
) -> OverheadResult:
    """Drain bare and instrumented brokers in interleaved blocks, `repeats` times."""
    variants = ["bare", "instrumented"] + (["forward", "timed"] if breakdown else [])
    if messages < 1 or repeats < 1 or block < 1:
        raise ValueError("messages, repeats and block must be >= 1")
    before = _load()
    runs: dict[str, list[DrainRate]] = {v: [] for v in variants}
    for i in range(repeats):
        k = i % len(variants)  # who goes first also rotates between repeats
        for v, rate in _round(url, [*variants[k:], *variants[:k]], messages, block).items():
            runs[v].append(rate)
    return OverheadResult(url, messages, repeats, block, runs, (before, _load()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="memory://")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--block", type=int, default=200, help="get + ack calls per block")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the forward and timed wrappers"
    )
    args = parser.parse_args(argv)
    result = measure_overhead(
        args.url, args.messages, args.repeats, block=args.block, breakdown=args.breakdown
    )
    print(result.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
