"""Where a stemlab drain spends its time: round trips per task and a cProfile of the loop.

usage: profile_drain.py URL PREFETCH [N] [--top K]

Publishes N envelopes (publish_many), then drains them in this process with the same
consume + ack loop as stemlab_worker.py, twice: once plain (tasks/s) and once with the
drain (not the publish) under cProfile. Prints tasks/s, store calls per task (Redis:
script/command calls on a link; Postgres: statements executed; SQLite: write
transactions) and the K functions with the most own time. The load average is printed
with it: the machine may be shared.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time

import stemlab
from stemlab import Envelope

STORE_CALLS = {  # (file name ending, function name) counted as one store call each
    ("redis/link.py", "eval"),
    ("redis/link.py", "execute"),
    ("redis/link.py", "eval_many"),
    ("psycopg/cursor.py", "execute"),
    ("sqlite/connection.py", "write"),
}


def drain(url: str, prefetch: int, n: int, profiler: cProfile.Profile | None = None) -> float:
    """Publish n, drain them with one consumer; seconds from first get to last ack.

    `profiler` is enabled for the drain only (not the publish).
    """
    broker = stemlab.connect(url, namespace="profile")
    try:
        broker.purge("prof")
        broker.publish_many(
            Envelope(name="bench.noop", queue="prof", args={"t": time.time()}) for _ in range(n)
        )
        done = 0
        with broker.consume("prof", prefetch=prefetch) as consumer:
            if profiler is not None:
                profiler.enable()
            start = time.perf_counter()
            while done < n:
                delivery = consumer.get(timeout=5)
                if delivery is None:
                    raise SystemExit(f"only {done} of {n} came back")
                broker.ack(delivery)
                done += 1
            elapsed = time.perf_counter() - start
            if profiler is not None:
                profiler.disable()
            return elapsed
    finally:
        broker.close()


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    url, prefetch = argv[0], int(argv[1])
    n = int(argv[2]) if len(argv) > 2 and not argv[2].startswith("--") else 5000
    top = int(argv[argv.index("--top") + 1]) if "--top" in argv else 15
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    plain = drain(url, prefetch, n)
    profiler = cProfile.Profile()
    profiled = drain(url, prefetch, n, profiler)
    stats = pstats.Stats(profiler)
    calls = 0
    for (path, _line, func), (_cc, nc, _tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if any(path.endswith(end) and func == name for end, name in STORE_CALLS):
            calls += nc // 2 if func == "write" else nc  # a generator: entered and resumed
    print(f"{url} prefetch {prefetch} N={n} load {' '.join(load)}")
    print(f"drain {n / plain:,.0f} tasks/s plain, {n / profiled:,.0f} under cProfile")
    print(f"store calls per task (drain only, profiled run): {calls / n:.2f}")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())


if __name__ == "__main__":
    main(sys.argv[1:])
