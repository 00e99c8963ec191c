"""The server-bound ceiling of a stemlab drain: the same claim + ack work, no Python decoding.

usage: ceiling.py {redis|postgres|sqlite} {p1|p16|p1x2|p16x2}

Publishes N (5,000) envelopes to stemlab's bench store (namespace "ceiling"), then drains
them issuing exactly the store calls a steady stemlab drain makes at that prefetch (ack with
read-ahead: ack_claim.lua / ack_claim.sql / the ack + reserve transaction; at prefetch 16,
plain acks until the buffer is empty), but with no consumer machinery and no envelope
decoding:

- Redis and Postgres: one client pipelines the calls of CONSUMERS independent consumer
  names per round trip (EVALSHA pipeline / psycopg pipeline mode), so the server is the
  bound, not the client's round trips.
- SQLite: the same transactions (ack + reserve, then the hand-out write) in a tight loop.

The "x2" configurations are the same as their one-process ones (one client is the
ceiling). Appends one JSON line (peer "ceiling") to the harness's results like the other
scripts: drain/s is N / wall time of the drain.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import common

import stemlab
from stemlab import Envelope

CONSUMERS = 16
N = 5000
URLS = {
    "redis": os.environ.get("BENCH_STEMLAB_REDIS_URL", "redis://127.0.0.1:6379/2"),
    "postgres": os.environ.get("BENCH_STEMLAB_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "sqlite": "sqlite:///" + os.path.join(common.WORKDIR, "stemlab-ceiling.db"),
}
QUEUE = "ceil"


def _fill(broker: Any) -> None:
    broker.purge(QUEUE)
    broker.publish_many(
        Envelope(name="bench.noop", queue=QUEUE, args={"t": time.time()}) for _ in range(N)
    )


def redis_drain(broker: Any, prefetch: int) -> int:
    """Pipelined ack_claim.lua / ack.lua calls of CONSUMERS consumers; returns tasks acked."""
    import redis

    from stemlab.brokers.redis.settings import MAX_IDLE_MS
    from stemlab.brokers.redis.store import SCRIPTS

    client = redis.Redis.from_url(URLS["redis"])
    for s in SCRIPTS.values():
        client.script_load(s.source)
    prefix, lease = broker.prefix, broker.settings.default_lease_ms
    names = [f"ceil{i}" for i in range(CONSUMERS)]
    held: dict[str, list[tuple[bytes, bytes]]] = {n: [] for n in names}
    registered = dict.fromkeys(names, "0")

    def claim_args(name: str) -> list[Any]:
        return [name, prefetch, prefetch, lease, MAX_IDLE_MS, 1000, name, registered[name], QUEUE]

    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.evalsha(SCRIPTS["claim"].sha, 0, prefix, *claim_args(name))
    replies, acked = pipe.execute(), 0
    while True:
        calls: list[tuple[str, int]] = []  # (consumer, index of its ack_claim in the pipeline)
        queued = 0
        for name, reply in zip(names, replies, strict=True):
            if isinstance(reply, list):
                registered[name] = "1" if reply[3] else "0"
                held[name].extend((reply[i + 1], reply[i + 2]) for i in range(4, len(reply), 6))
        pipe = client.pipeline(transaction=False)
        for name in names:
            leases = held[name]
            if not leases:
                continue
            while len(leases) > 1:  # buffer not empty yet: plain acks
                mid, token = leases.pop()
                pipe.evalsha(SCRIPTS["ack"].sha, 0, prefix, "0", QUEUE, mid, token)
                acked, queued = acked + 1, queued + 1
            mid, token = leases.pop()
            args = [prefix, "0", QUEUE, mid, token, *claim_args(name)]
            pipe.evalsha(SCRIPTS["ack_claim"].sha, 0, *args)
            acked += 1
            calls.append((name, queued))
            queued += 1
        if not calls:
            return acked
        out = pipe.execute()
        by_name = {name: out[i] for name, i in calls}
        replies = [by_name.get(n) for n in names]


def postgres_drain(broker: Any, prefetch: int) -> int:
    """Pipelined ack_claim.sql / ack.sql statements of CONSUMERS consumers (psycopg pipeline)."""
    from stemlab.brokers.postgres import _sql
    from stemlab.brokers.postgres._connection import connect

    conn = connect(broker.settings, "ceiling", generic_plans=True)
    ns, vt = broker.store.ns, broker.settings.default_visibility_timeout
    names = [f"ceil{i}" for i in range(CONSUMERS)]
    held: dict[str, list[tuple[int, int]]] = {n: [] for n in names}

    def params(name: str, **extra: Any) -> dict[str, Any]:
        p = {"ns": ns, "consumer": name, "prefetch": prefetch, "queue": QUEUE, "visibility": vt}
        return {**p, **extra}

    cursors = []
    with conn.pipeline():
        for name in names:
            cur = conn.cursor()
            cur.execute(_sql.query("claim"), params(name), binary=True)
            cursors.append((name, cur))
    acked = 0
    while True:
        for name, cur in cursors:
            rows = cur.fetchall()
            held[name].extend((r[0], r[1]) for r in rows[:-1])
        cursors = []
        with conn.pipeline():
            for name in names:
                leases = held[name]
                if not leases:
                    continue
                while len(leases) > 1:
                    row_id, token = leases.pop()
                    conn.execute(_sql.query("ack"), {"id": row_id, "token": token, "ns": ns})
                    acked += 1
                row_id, token = leases.pop()
                cur = conn.cursor()
                p = params(name, id=row_id, token=token)
                cur.execute(_sql.query("ack_claim"), p, binary=True)
                cursors.append((name, cur))
                acked += 1
        if not cursors:
            conn.close()
            return acked


def sqlite_drain(broker: Any, prefetch: int) -> int:
    """The SQLite consumer's transactions in a tight loop, on one connection."""
    from stemlab.brokers.sqlite.connection import write

    store = broker.store
    conn = store.open_connection()
    buffered: list[tuple[int, int]] = []
    acked = 0
    last: tuple[int, int] | None = None
    while True:
        with write(conn):
            if last is not None:
                store.ack_row(conn, *last)
                acked += 1
            if not buffered:
                now = time.time()
                want = prefetch - store.held(conn, "ceil", now)
                chosen = store.candidates(conn, (QUEUE,), now, want)
                rows = store.reserve(conn, "ceil", now, [c[0] for c in chosen]) if chosen else []
                buffered = [(r[0], r[1]) for r in reversed(rows)]
        if not buffered:
            conn.close()
            return acked
        last = buffered.pop()
        with write(conn):  # the hand-out write of the next delivery
            store.hand_out(conn, *last)


DRAINS = {"redis": redis_drain, "postgres": postgres_drain, "sqlite": sqlite_drain}
CONFIGS = {"p1": 1, "p16": 16, "p1x2": 1, "p16x2": 16}

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in URLS or sys.argv[2] not in CONFIGS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    backend, cfg = sys.argv[1], sys.argv[2]
    os.makedirs(common.WORKDIR, exist_ok=True)
    b = stemlab.connect(URLS[backend], namespace="ceiling")
    res: dict[str, Any] = {
        "peer": "ceiling",
        "broker": backend,
        "version": f"stemlab {getattr(stemlab, '__version__', '?')}",
        "config": cfg,
        "n": N,
        "note": "same claim+ack store calls, pipelined / tight loop, no decoding",
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rep": os.environ.get("BENCH_REP", "?"),
        "cmd": f"ceiling.py {backend} {cfg}",
        "error": None,
    }
    try:
        _fill(b)
        start = time.perf_counter()
        done = DRAINS[backend](b, CONFIGS[cfg])
        res["drain_per_s"] = done / (time.perf_counter() - start)
        if done != N:
            res["error"] = f"acked {done} of {N}"
    finally:
        b.purge(QUEUE)
        b.close()
    common.emit(res)
    print(f"ceiling {backend} {cfg}: {res.get('drain_per_s', 0):,.0f} tasks/s", res["error"] or "")
