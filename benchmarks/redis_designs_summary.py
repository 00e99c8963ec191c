"""Medians per design of `redis_designs_bench.sh` output (JSON lines of stemlab.live.bench)."""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from typing import Any


def main(path: str) -> int:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("{"):
                record = json.loads(line)
                runs[record["url"].split("://")[0]].append(record)
    print("design          runs  drain p1/s  drain p16/s  pickup p50 ms  pickup p99 ms  load1")
    for design, rs in runs.items():

        def med(get: Any, rs: list[dict[str, Any]] = rs) -> float:
            return statistics.median(get(r) for r in rs)

        print(
            f"{design:<15} {len(rs):>4} {med(lambda r: r['drain_per_s']['1']):>11,.0f}"
            f" {med(lambda r: r['drain_per_s']['16']):>12,.0f}"
            f" {med(lambda r: r['pickup_p50_ms']):>14.2f}"
            f" {med(lambda r: r['pickup_p99_ms']):>14.2f}"
            f" {med(lambda r: r['loadavg'][0]):>6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
