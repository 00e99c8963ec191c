"""A broker benchmark measured exactly like the peer benchmarks, for any broker URL.

    python -m stemlab.live.bench URL [--n 5000] [--rate 200] [--seconds 5] [--processes 1] [--json]

Method (the peers' `common.py`): every task is a no-op whose consumer appends
"<t_enq> <t_start>" to a log (one `os.write`); `t_enq` is `time.time()` taken
just before `publish`.
* enqueue/s: N publishes, one call per task, one producer, no consumer running.
* drain/s: consumer process(es) started on the pre-filled queue, at prefetch 1
  and 16: (N-1) / (last start - first start), start-up excluded.
* pickup p50/p99: a warmed-up consumer while tasks are published at `rate`/s
  for `seconds` s.
The namespace "bench" is purged before and after. `memory://` cannot cross
processes, so its consumer is a thread of this process (the output says so).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from stemlab.brokers import connect
from stemlab.core.broker import Broker
from stemlab.core.envelope import Envelope

__all__ = ["BenchResult", "main", "run"]

NAMESPACE = "bench"
QUEUE = "bench"
LINE = len(b"%.6f %.6f\n" % (time.time(), time.time()))  # fixed width until 2286
DRAIN_PREFETCH = (1, 16)
PICKUP_PREFETCH = 1


@dataclass
class BenchResult:
    """One run: throughput in tasks/s, pickup latency in ms."""

    url: str
    n: int
    processes: int
    consumer_kind: str
    enqueue_per_s: float | None = None
    drain_per_s: dict[str, float | None] = field(default_factory=dict)
    pickup_rate: float = 200.0
    pickup_seconds: float = 5.0
    pickup_prefetch: int = PICKUP_PREFETCH
    pickup_sent: int = 0
    pickup_seen: int = 0
    pickup_p50_ms: float | None = None
    pickup_p99_ms: float | None = None
    pickup_max_ms: float | None = None
    loadavg: tuple[float, float, float] | None = None
    cpus: int | None = None
    errors: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ consumer side
def _record(fd: int, t_enq: float) -> None:
    os.write(fd, b"%.6f %.6f\n" % (t_enq, time.time()))


def consume_loop(broker: Broker, log: str, prefetch: int, stop: Callable[[], bool]) -> None:
    """Receive, record "<t_enq> <t_start>", ack; until `stop()` says so."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        with broker.consume(QUEUE, prefetch=prefetch) as consumer:
            while not stop():
                delivery = consumer.get(timeout=0.1)
                if delivery is not None:
                    _record(fd, float(delivery.envelope.args["t"]))
                    broker.ack(delivery)
    finally:
        os.close(fd)


def _worker_main(url: str, log: str, prefetch: int) -> None:
    """Entry point of a consumer subprocess; SIGTERM ends it cleanly."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with connect(url, namespace=NAMESPACE) as broker:
        consume_loop(broker, log, prefetch, stopping.is_set)


class _Consumers:
    """`count` consumer processes (or threads, for memory://) writing to one log."""

    def __init__(self, url: str, log: str, prefetch: int, count: int, threads: bool) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self.t_spawn = time.time()
        for _ in range(count):
            if threads:
                thread = threading.Thread(target=self._thread, args=(url, log, prefetch))
                thread.start()
                self._threads.append(thread)
            else:
                cmd = [sys.executable, "-m", "stemlab.live.bench", url, "--worker-log", log]
                cmd += ["--prefetch", str(prefetch)]
                self._procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))

    def _thread(self, url: str, log: str, prefetch: int) -> None:
        with connect(url, namespace=NAMESPACE) as broker:
            consume_loop(broker, log, prefetch, self._stop.is_set)

    def alive(self) -> bool:
        return all(p.poll() is None for p in self._procs)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# ------------------------------------------------------------------- harness side
def _count(log: str) -> int:
    try:
        return os.stat(log).st_size // LINE
    except FileNotFoundError:
        return 0


def _wait_count(log: str, n: int, timeout: float, alive: Callable[[], bool]) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end and _count(log) < n and alive():
        time.sleep(0.02)
    return _count(log)


def _read(log: str) -> list[tuple[float, float]]:
    with open(log, "rb") as f:
        return [(float(a), float(b)) for a, b in (line.split() for line in f)]


def pct(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (the peers' `common.pct`)."""
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def _send(broker: Broker) -> None:
    broker.publish(Envelope(name="bench.noop", queue=QUEUE, args={"t": time.time()}))


def _purge(broker: Broker) -> None:
    broker.purge(QUEUE)
    broker.purge_dead_letters(QUEUE)


def _enqueue(broker: Broker, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        _send(broker)
    return n / (time.perf_counter() - start)


def _drain(broker: Broker, res: BenchResult, tmp: str, prefetch: int, threads: bool) -> None:
    _purge(broker)
    rate = _enqueue(broker, res.n)
    if res.enqueue_per_s is None:
        res.enqueue_per_s = rate
    log = os.path.join(tmp, f"drain-{prefetch}.log")
    workers = _Consumers(res.url, log, prefetch, res.processes, threads)
    try:
        seen = _wait_count(log, res.n, max(60.0, res.n / 100), workers.alive)
    finally:
        workers.stop()
    starts = sorted(b for _, b in _read(log)) if os.path.exists(log) else []
    if seen < res.n:
        res.errors.append(f"drain prefetch {prefetch}: only {seen}/{res.n} tasks started")
    speed = (len(starts) - 1) / (starts[-1] - starts[0]) if len(starts) > 1 else None
    res.drain_per_s[str(prefetch)] = speed


def _paced(broker: Broker, rate: float, seconds: float) -> int:
    n = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        _send(broker)
    return n


def _pickup(broker: Broker, res: BenchResult, tmp: str, threads: bool) -> None:
    _purge(broker)
    log = os.path.join(tmp, "pickup.log")
    workers = _Consumers(res.url, log, res.pickup_prefetch, res.processes, threads)
    try:
        warm, end = 0, time.monotonic() + 30
        while _count(log) == 0 and time.monotonic() < end and workers.alive():
            _send(broker)
            warm += 1
            _wait_count(log, 1, 0.25, workers.alive)
        if _count(log) == 0:
            res.errors.append("pickup: the consumer never started a task")
            return
        _wait_count(log, warm, 5.0, workers.alive)
        time.sleep(0.5)
        since = time.time()
        res.pickup_sent = _paced(broker, res.pickup_rate, res.pickup_seconds)
        _wait_count(log, warm + res.pickup_sent, 20.0, workers.alive)
    finally:
        workers.stop()
    lat = [(b - a) * 1000.0 for a, b in _read(log) if a >= since]
    res.pickup_seen = len(lat)
    res.pickup_p50_ms, res.pickup_p99_ms = pct(lat, 0.50), pct(lat, 0.99)
    res.pickup_max_ms = max(lat) if lat else None
    if len(lat) < res.pickup_sent:
        res.errors.append(f"pickup: only {len(lat)}/{res.pickup_sent} seen")


def run(
    url: str, *, n: int = 5000, rate: float = 200.0, seconds: float = 5.0, processes: int = 1
) -> BenchResult:
    """Run every measurement against `url` (namespace "bench") and return the figures."""
    threads = url.lower().startswith("memory:")
    kind = "thread in this process" if threads else "subprocess"
    res = BenchResult(url, n, processes, kind, pickup_rate=rate, pickup_seconds=seconds)
    res.loadavg, res.cpus = os.getloadavg(), os.cpu_count()
    tmp = tempfile.mkdtemp(prefix="stemlab-bench-")
    broker = connect(url, namespace=NAMESPACE)
    try:
        for prefetch in DRAIN_PREFETCH:
            _drain(broker, res, tmp, prefetch, threads)
        _pickup(broker, res, tmp, threads)
    finally:
        _purge(broker)
        broker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return res


# ------------------------------------------------------------------------ output
def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(res: BenchResult) -> str:
    """A small human-readable table of one run."""
    who = f"{res.processes} consumer {'thread' if 'thread' in res.consumer_kind else 'process'}"
    rows = [
        (f"stemlab.live.bench {res.url}", f"N={res.n}, {who}{'es' if res.processes > 1 else ''}"),
        ("consumer runs as", res.consumer_kind),
        ("enqueue/s (1 producer, 1 call/task)", _fmt(res.enqueue_per_s)),
    ]
    rows += [(f"drain/s, prefetch {k}", _fmt(v)) for k, v in res.drain_per_s.items()]
    pickup = f"{_fmt(res.pickup_p50_ms, 1)} / {_fmt(res.pickup_p99_ms, 1)}"
    rows.append(
        (f"pickup p50 / p99 ms ({res.pickup_rate:g}/s for {res.pickup_seconds:g} s)", pickup)
    )
    load = ", ".join(f"{x:.2f}" for x in res.loadavg or ())
    rows.append(("load average (1, 5, 15 min)", f"{load} on {res.cpus} CPUs"))
    rows += [("error", e) for e in res.errors]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stemlab.live.bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("url", help="broker URL, e.g. sqlite:///bench.db or redis://127.0.0.1:6379/2")
    p.add_argument("--n", type=int, default=5000, help="tasks per drain measurement")
    p.add_argument("--rate", type=float, default=200.0, help="publish rate of the pickup test")
    p.add_argument("--seconds", type=float, default=5.0, help="duration of the pickup test")
    p.add_argument("--processes", type=int, default=1, help="consumer processes")
    p.add_argument("--json", action="store_true", help="print one JSON record instead")
    p.add_argument("--worker-log", help=argparse.SUPPRESS)
    p.add_argument("--prefetch", type=int, default=1, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker_log:
        _worker_main(args.url, args.worker_log, args.prefetch)
        return 0
    if args.n < 2 or args.processes < 1 or args.rate <= 0 or args.seconds <= 0:
        raise SystemExit("need --n >= 2, --processes >= 1, --rate > 0, --seconds > 0")
    res = run(args.url, n=args.n, rate=args.rate, seconds=args.seconds, processes=args.processes)
    out: dict[str, Any] = asdict(res)
    print(json.dumps(out) if args.json else table(res), flush=True)
    return 1 if res.errors else 0


if __name__ == "__main__":
    sys.exit(main())
