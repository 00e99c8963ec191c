"""Huey.  usage: bench_huey.py {redis|sqlite|postgres} {default|p2}

default : huey_consumer defaults: 1 worker, thread worker type      -> "concurrency 1" = "default"
p2      : huey_consumer -k process -w 2  (one worker process per core)
"""

import os
import sys

import common

CONFIGS = {"default": [], "p2": ["-k", "process", "-w", "2"]}
BACKENDS = ("redis", "sqlite", "postgres")

if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in BACKENDS or sys.argv[2] not in CONFIGS:
        print(
            f"usage: {sys.argv[0]} {{{'|'.join(BACKENDS)}}} {{{'|'.join(CONFIGS)}}}",
            file=sys.stderr,
        )
        sys.exit(2)
    backend, cfg = sys.argv[1], sys.argv[2]
    os.environ["HUEY_BACKEND"] = backend
    import huey as huey_pkg
    import huey_app

    class P(common.Producer):
        def flush(self):
            huey_app.huey.flush()

        def send(self, t):
            huey_app.noop(t)

    extra = {
        "redis": "redis-py " + __import__("redis").__version__,
        "sqlite": "sqlite " + __import__("sqlite3").sqlite_version,
        "postgres": "psycopg " + __import__("psycopg").__version__,
    }[backend]
    common.run_bench(
        peer="huey",
        broker=backend,
        config=cfg,
        producer=P(),
        version=f"huey {huey_pkg.__version__} / {extra}",
        worker_cmd=[f"{common.VBIN}/huey_consumer", "huey_app.huey"] + CONFIGS[cfg],
        worker_env={"HUEY_BACKEND": backend},
    )
