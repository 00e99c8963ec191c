"""'Physical limit' anchors for a single Python client on this machine.

usage: raw_limits.py {redis|pg|sqlite|mem}   (one repetition of every measurement in that section)

redis  : redis-py: XADD one-at-a-time, then XREADGROUP COUNT 1 + XACK one-at-a-time;
         the same pipelined in batches of 100 (pipeline of 100 XADD; XREADGROUP COUNT 100 + one
         XACK of the 100 ids); LPUSH / RPOP one-at-a-time for comparison.
pg     : psycopg 3 on loopback TCP: INSERT one row per transaction (autocommit), then consume with
         one transaction per task: SELECT ... ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1;
         DELETE ... WHERE id; COMMIT.  Also: single-statement DELETE ... WHERE id=(SELECT ... SKIP
         LOCKED) RETURNING; both with synchronous_commit on (server default) and off; and one
         producer + one consumer process running at the same time.
sqlite : sqlite3 (WAL) file in BENCH_TMP: INSERT per transaction; consume with BEGIN IMMEDIATE;
         SELECT ... ORDER BY id LIMIT 1; DELETE; COMMIT.  synchronous=FULL (SQLite default) and
         NORMAL; the single-statement DELETE ... RETURNING variant; concurrent producer + consumer
         processes.
mem    : in-process hand-off anchors: queue.Queue between two threads, asyncio.Queue between two
         tasks.
Every figure is operations (tasks) per second; results go to results/raw_limits.jsonl.
"""

import asyncio
import json
import multiprocessing as mp
import os
import queue
import sqlite3
import sys
import threading
import time

import common

OUT = os.path.join(common.HERE, "results", "raw_limits.jsonl")
REP = os.environ.get("BENCH_REP", "?")
PAYLOAD = json.dumps({"task": "noop", "args": [1764431234.123456], "kwargs": {}})


def emit(section, name, n, secs, **extra):
    rec = dict(
        section=section,
        name=name,
        n=n,
        secs=secs,
        per_s=n / secs,
        rep=REP,
        ts=time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    )
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"{section:7s} {name:60s} n={n:<7d} {n / secs:12.0f} /s", flush=True)


# --------------------------------------------------------------------------- redis
def bench_redis(n=20000, batch=100):
    import redis

    r = redis.Redis.from_url(common.REDIS_URL)
    ver = f"redis-py {redis.__version__}, hiredis parser: {redis.utils.HIREDIS_AVAILABLE}"
    r.flushdb()
    s, g = "raw:s", "g"
    r.xgroup_create(s, g, id="0", mkstream=True)
    fields = {"d": PAYLOAD}
    t0 = time.perf_counter()
    for _ in range(n):
        r.xadd(s, fields)
    emit("redis", "XADD, one call per task", n, time.perf_counter() - t0, version=ver)
    t0 = time.perf_counter()
    got = 0
    while got < n:
        resp = r.xreadgroup(g, "c1", {s: ">"}, count=1)
        for _, entries in resp:
            for eid, _f in entries:
                r.xack(s, g, eid)
                got += 1
    emit(
        "redis",
        "XREADGROUP COUNT 1 + XACK, one task at a time",
        n,
        time.perf_counter() - t0,
        version=ver,
    )
    r.flushdb()
    r.xgroup_create(s, g, id="0", mkstream=True)
    t0 = time.perf_counter()
    for _i in range(0, n, batch):
        p = r.pipeline(transaction=False)
        for _ in range(batch):
            p.xadd(s, fields)
        p.execute()
    emit("redis", f"XADD pipelined, batches of {batch}", n, time.perf_counter() - t0, version=ver)
    t0 = time.perf_counter()
    got = 0
    while got < n:
        resp = r.xreadgroup(g, "c1", {s: ">"}, count=batch)
        for _, entries in resp:
            ids = [eid for eid, _f in entries]
            r.xack(s, g, *ids)
            got += len(ids)
    emit(
        "redis",
        f"XREADGROUP COUNT {batch} + one XACK per batch",
        n,
        time.perf_counter() - t0,
        version=ver,
    )
    r.flushdb()
    t0 = time.perf_counter()
    for _ in range(n):
        r.lpush("raw:l", PAYLOAD)
    emit("redis", "LPUSH, one call per task", n, time.perf_counter() - t0, version=ver)
    t0 = time.perf_counter()
    for _ in range(n):
        r.rpop("raw:l")
    emit("redis", "RPOP, one call per task", n, time.perf_counter() - t0, version=ver)
    r.flushdb()


# --------------------------------------------------------------------------- postgres
PG_DDL = (
    "DROP TABLE IF EXISTS rawq; "
    "CREATE TABLE rawq (id bigserial PRIMARY KEY, payload jsonb NOT NULL, "
    "created timestamptz NOT NULL DEFAULT now())"
)
PG_INS = "INSERT INTO rawq (payload) VALUES (%s)"
PG_SEL = "SELECT id, payload FROM rawq ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1"
PG_DEL = "DELETE FROM rawq WHERE id = %s"
PG_DEL1 = (
    "DELETE FROM rawq WHERE id = (SELECT id FROM rawq ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) "
    "RETURNING id, payload"
)


def _pg(sync_commit):
    import psycopg

    c = psycopg.connect(common.PG_DSN, autocommit=True)
    c.execute(f"SET synchronous_commit = {'on' if sync_commit else 'off'}")
    return c


def pg_produce(n, sync_commit=True):
    c = _pg(sync_commit)
    for _ in range(n):
        c.execute(PG_INS, (PAYLOAD,))  # autocommit: one transaction per task
    c.close()


def pg_consume(n, sync_commit=True, one_stmt=False, idle_timeout=10.0):
    c = _pg(sync_commit)
    got = 0
    last = time.time()
    while got < n:
        if one_stmt:
            with c.transaction():
                row = c.execute(PG_DEL1).fetchone()
        else:
            with c.transaction():
                row = c.execute(PG_SEL).fetchone()
                if row is not None:
                    c.execute(PG_DEL, (row[0],))
        if row is None:
            if time.time() - last > idle_timeout:
                break
            continue
        last = time.time()
        got += 1
    c.close()
    return got


def _timed(fn, *a, **k):
    t0 = time.perf_counter()
    fn(*a, **k)
    return time.perf_counter() - t0


def _concurrent(produce, consume, n, **kw):
    """One producer process and one consumer process at the same time.

    Returns the wall time to consume n.
    """
    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    pp = ctx.Process(target=produce, args=(n,), kwargs=kw.get("pkw", {}))
    cp = ctx.Process(target=consume, args=(n,), kwargs=kw.get("ckw", {}))
    cp.start()
    pp.start()
    pp.join(60)
    cp.join(60)
    return time.perf_counter() - t0


def bench_pg(n=5000):
    import psycopg

    server = psycopg.connect(common.PG_DSN).info.server_version
    ver = f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), server {server}"
    setup = psycopg.connect(common.PG_DSN, autocommit=True)
    for sc in (True, False):
        tag = f"synchronous_commit={'on' if sc else 'off'}"
        setup.execute(PG_DDL)
        emit("pg", f"INSERT, one txn per task [{tag}]", n, _timed(pg_produce, n, sc), version=ver)
        emit(
            "pg",
            f"SELECT..SKIP LOCKED LIMIT 1 + DELETE, one txn per task [{tag}]",
            n,
            _timed(pg_consume, n, sc),
            version=ver,
        )
        setup.execute(PG_DDL)
        pg_produce(n, sc)
        emit(
            "pg",
            f"DELETE..(SELECT..SKIP LOCKED) RETURNING, one txn per task [{tag}]",
            n,
            _timed(pg_consume, n, sc, True),
            version=ver,
        )
        setup.execute(PG_DDL)
        emit(
            "pg",
            f"1 producer + 1 consumer process concurrently (INSERT / SELECT+DELETE) [{tag}]",
            n,
            _concurrent(
                pg_produce, pg_consume, n, pkw={"sync_commit": sc}, ckw={"sync_commit": sc}
            ),
            version=ver,
        )
    setup.execute("DROP TABLE IF EXISTS rawq")
    setup.close()


# --------------------------------------------------------------------------- sqlite
SQ_PATH = os.path.join(common.WORKDIR, "raw_sqlite.db")
SQ_DDL = (
    "CREATE TABLE IF NOT EXISTS rawq "
    "(id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL, created REAL NOT NULL)"
)


def _sq(sync):
    c = sqlite3.connect(SQ_PATH, isolation_level=None, timeout=30)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute(f"PRAGMA synchronous={sync}")
    c.execute("PRAGMA busy_timeout=30000")
    return c


def sq_reset():
    for suf in ("", "-wal", "-shm"):
        if os.path.exists(SQ_PATH + suf):
            os.remove(SQ_PATH + suf)
    c = _sq("FULL")
    c.execute(SQ_DDL)
    c.close()


def sq_produce(n, sync="FULL"):
    c = _sq(sync)
    for _ in range(n):
        c.execute(
            "INSERT INTO rawq (payload, created) VALUES (?, ?)", (PAYLOAD, time.time())
        )  # autocommit
    c.close()


def sq_consume(n, sync="FULL", one_stmt=False, idle_timeout=10.0):
    c = _sq(sync)
    got = 0
    last = time.time()
    while got < n:
        c.execute("BEGIN IMMEDIATE")
        if one_stmt:
            row = c.execute(
                "DELETE FROM rawq WHERE id = (SELECT id FROM rawq ORDER BY id LIMIT 1) "
                "RETURNING id, payload"
            ).fetchone()
        else:
            row = c.execute("SELECT id, payload FROM rawq ORDER BY id LIMIT 1").fetchone()
            if row is not None:
                c.execute("DELETE FROM rawq WHERE id = ?", (row[0],))
        c.execute("COMMIT")
        if row is None:
            if time.time() - last > idle_timeout:
                break
            continue
        last = time.time()
        got += 1
    c.close()
    return got


def bench_sqlite(n=5000):
    ver = f"sqlite {sqlite3.sqlite_version} (python sqlite3), file on {SQ_PATH}"
    for sync in ("FULL", "NORMAL"):
        tag = f"WAL, synchronous={sync}"
        sq_reset()
        emit(
            "sqlite",
            f"INSERT, one txn per task [{tag}]",
            n,
            _timed(sq_produce, n, sync),
            version=ver,
        )
        emit(
            "sqlite",
            f"BEGIN IMMEDIATE; SELECT LIMIT 1; DELETE; COMMIT per task [{tag}]",
            n,
            _timed(sq_consume, n, sync),
            version=ver,
        )
        sq_reset()
        sq_produce(n, sync)
        emit(
            "sqlite",
            f"DELETE..RETURNING, one txn per task [{tag}]",
            n,
            _timed(sq_consume, n, sync, True),
            version=ver,
        )
        sq_reset()
        emit(
            "sqlite",
            f"1 producer + 1 consumer process concurrently [{tag}]",
            n,
            _concurrent(sq_produce, sq_consume, n, pkw={"sync": sync}, ckw={"sync": sync}),
            version=ver,
        )


# --------------------------------------------------------------------------- in-memory
def bench_mem(n=200000):
    q = queue.Queue()

    def consumer():
        for _ in range(n):
            q.get()

    t0 = time.perf_counter()
    th = threading.Thread(target=consumer)
    th.start()
    for i in range(n):
        q.put(i)
    th.join()
    emit(
        "mem",
        "queue.Queue put -> get, producer thread + consumer thread",
        n,
        time.perf_counter() - t0,
        version=sys.version.split()[0],
    )

    async def amain():
        aq = asyncio.Queue()

        async def cons():
            for _ in range(n):
                await aq.get()

        async def prod():
            for i in range(n):
                await aq.put(i)
                if i % 100 == 0:
                    await asyncio.sleep(0)

        t0 = time.perf_counter()
        await asyncio.gather(cons(), prod())
        return time.perf_counter() - t0

    emit(
        "mem",
        "asyncio.Queue put -> get, producer task + consumer task",
        n,
        asyncio.run(amain()),
        version=sys.version.split()[0],
    )


if __name__ == "__main__":
    sections = {"redis": bench_redis, "pg": bench_pg, "sqlite": bench_sqlite, "mem": bench_mem}
    if len(sys.argv) < 2 or sys.argv[1] not in sections:
        print(f"usage: {sys.argv[0]} {{{'|'.join(sections)}}}", file=sys.stderr)
        sys.exit(2)
    common.set_deadline(58)
    sections[sys.argv[1]]()
