"""Issue #14's tables from one interleaved run: stemlab beside the best peer and the ceiling.

usage: rtt_table.py [results/raw.jsonl]

For each store and number of worker processes: stemlab's drain at prefetch 1 and 16
(median [min-max] of the repetitions), the same before the change when the run had
STEMLAB_BASE ("<config> base" rows), the fastest peer with as many worker processes (by
median drain), the ratio of the medians, pickup p50 of both, the server-bound ceiling
(ceiling.py) and stemlab's drain as a fraction of it, and the 1-minute load average
recorded after each run (median [min-max]).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections import defaultdict
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
# store -> processes -> peer configs with that many worker processes
PEERS = {
    "redis": {
        1: [("huey", "default"), ("celery", "solo"), ("dramatiq", "p1t1")],
        2: [("huey", "p2"), ("dramatiq", "default"), ("celery", "prefork")],
    },
    "sqlite": {1: [("huey", "default")], 2: [("huey", "p2")]},
    "postgres": {
        1: [("huey", "default"), ("procrastinate", "c1")],
        2: [("huey", "p2")],
    },
}
CONFIGS = {1: ("p1", "p16"), 2: ("p1x2", "p16x2")}


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _cell(values: list[float], fmt: str = "{:,.0f}") -> str:
    if not values:
        return "n/a"
    m = statistics.median(values)
    if len(values) == 1:
        return fmt.format(m) + " (1 run)"
    return f"{fmt.format(m)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main(path: str) -> None:
    rows: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                if not r.get("error"):
                    rows[(r["peer"], r["broker"], r["config"])].append(r)

    def vals(key: tuple[str, str, str], field: str) -> list[float]:
        return [r[field] for r in rows.get(key, []) if r.get(field) is not None]

    print(
        "| store | procs | prefetch | stemlab drain/s | before (base) | best peer | peer drain/s "
        "| x best peer | pickup p50 ms stemlab / peer | ceiling drain/s | of ceiling | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for store, by_procs in PEERS.items():
        for procs, peers in by_procs.items():
            best = max(peers, key=lambda p: _med(vals((p[0], store, p[1]), "drain_per_s")) or -1.0)
            peer_key = (best[0], store, best[1])
            peer_drain = _med(vals(peer_key, "drain_per_s"))
            for cfg in CONFIGS[procs]:
                key = ("stemlab", store, cfg)
                drain = _med(vals(key, "drain_per_s"))
                ceiling_cfg = cfg.removesuffix("x2")
                ceiling = _med(vals(("ceiling", store, ceiling_cfg), "drain_per_s"))
                ratio = f"{drain / peer_drain:.2f}x" if drain and peer_drain else "n/a"
                share = f"{drain / ceiling:.0%}" if drain and ceiling else "n/a"
                p50 = _cell(vals(key, "e2e_p50_ms"), "{:.2f}")
                peer_p50 = _cell(vals(peer_key, "e2e_p50_ms"), "{:.2f}")
                loads = vals(key, "loadavg") + vals(peer_key, "loadavg")
                ceiling_cell = _cell(vals(("ceiling", store, ceiling_cfg), "drain_per_s"))
                print(
                    f"| {store} | {procs} | {cfg.removesuffix('x2')[1:]} "
                    f"| {_cell(vals(key, 'drain_per_s'))} "
                    f"| {_cell(vals(('stemlab', store, cfg + ' base'), 'drain_per_s'))} "
                    f"| {best[0]} {best[1]} | {_cell(vals(peer_key, 'drain_per_s'))} | {ratio} "
                    f"| {p50} / {peer_p50} | {ceiling_cell} "
                    f"| {share} | {_cell(loads, '{:.1f}')} |"
                )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results", "raw.jsonl"))
