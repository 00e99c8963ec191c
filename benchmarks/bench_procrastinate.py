"""Procrastinate (PostgreSQL, psycopg 3).  usage: bench_procrastinate.py {c1|c4|c1-syncdefer}

c1           : `procrastinate worker` with its default --concurrency 1; producer uses
               `await task.defer_async(...)` one job at a time
               -> "concurrency 1" = "default"
c4           : worker --concurrency 4
c1-syncdefer : as c1, but the producer uses the synchronous `task.defer(...)` API
Jobs are kept in procrastinate_jobs after success (procrastinate's default, delete_jobs=never);
the table is truncated before each phase.  Database: BENCH_PG_DSN (default peers_bench).
"""

import asyncio
import os
import subprocess

import common
import procrastinate
import psycopg
from procrastinate_app import app, noop

CONFIGS = {"c1": [], "c4": ["--concurrency", "4"], "c1-syncdefer": []}


def ensure_schema():
    with psycopg.connect(common.PG_DSN, autocommit=True) as c:
        have = c.execute("select to_regclass('procrastinate_jobs')").fetchone()[0]
    if not have:
        subprocess.run(
            [f"{common.VBIN}/procrastinate", "--app=procrastinate_app.app", "schema", "--apply"],
            check=True,
            cwd=common.HERE,
            env=dict(os.environ, PYTHONPATH=common.HERE),
        )


def truncate():
    with psycopg.connect(common.PG_DSN, autocommit=True) as c:
        c.execute("TRUNCATE procrastinate_jobs, procrastinate_events RESTART IDENTITY CASCADE")


class AsyncP(common.Producer):
    is_async = True

    def open(self):
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(app.open_async())

    def close(self):
        self.loop.run_until_complete(app.close_async())
        self.loop.close()

    def flush(self):
        truncate()

    async def asend(self, t):
        await noop.defer_async(t_enq=t)


class SyncP(common.Producer):
    def open(self):
        app.open()

    def close(self):
        app.close()

    def flush(self):
        truncate()

    def send(self, t):
        noop.defer(t_enq=t)


if __name__ == "__main__":
    cfg = common.cli_config(CONFIGS)
    ensure_schema()
    common.run_bench(
        peer="procrastinate",
        broker="postgres",
        config=cfg,
        producer=SyncP() if cfg.endswith("syncdefer") else AsyncP(),
        version=f"procrastinate {procrastinate.__version__} / psycopg {psycopg.__version__}",
        worker_cmd=[f"{common.VBIN}/procrastinate", "--app=procrastinate_app.app", "worker"]
        + CONFIGS[cfg],
    )
