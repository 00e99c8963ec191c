"""stemlab, measured exactly like the peers.

usage: bench_stemlab.py {redis|postgres|sqlite|amqp} {p1|p16|p1x2|p16x2}

The worker is one process (two for p1x2 and p16x2) running stemlab_worker.py (consume + ack
through the Broker contract, no runtime); the producer publishes one envelope per call.
Run it with a Python that has stemlab installed (STEMLAB_PY, default: this interpreter).
BENCH_STEMLAB_TAG, when set, is appended to the recorded config (e.g. "p1 base" for a run
of an older checkout put first on PYTHONPATH, see run_all.sh's STEMLAB_BASE).
"""

import os
import sys

import common

CONFIGS = {
    "p1": ("1", 1),
    "p16": ("16", 1),
    "p1x2": ("1", 2),
    "p16x2": ("16", 2),
}  # prefetch, worker processes
URLS = {
    "redis": os.environ.get("BENCH_STEMLAB_REDIS_URL", "redis://127.0.0.1:6379/2"),
    "postgres": os.environ.get("BENCH_STEMLAB_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    "amqp": os.environ.get("BENCH_STEMLAB_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    "sqlite": "sqlite:///" + os.path.join(common.WORKDIR, "stemlab-bench.db"),
}

# RabbitMQ confirms each publish once it is on disk (~150-400/s here), so enqueueing N takes
# up to ~30 s: more time for that backend's run (run_all.sh gives these jobs a longer timeout).
SLOW = {"amqp": {"drain_timeout": 60.0, "deadline": 140}}


def _worker_cmd(py, url, prefetch, procs):
    one = [py, os.path.join(common.HERE, "stemlab_worker.py"), url, prefetch]
    if procs == 1:
        return one
    line = " ".join(f"'{a}'" for a in one)
    return ["sh", "-c", " & ".join([line] * procs) + " & wait"]


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in URLS or sys.argv[2] not in CONFIGS:
        print(f"usage: {sys.argv[0]} {{{'|'.join(URLS)}}} {{{'|'.join(CONFIGS)}}}", file=sys.stderr)
        sys.exit(2)
    backend, cfg = sys.argv[1], sys.argv[2]
    os.makedirs(common.WORKDIR, exist_ok=True)
    import stemlab
    from stemlab import Envelope

    url = URLS[backend]
    py = os.environ.get("STEMLAB_PY", sys.executable)

    class P(common.Producer):
        def open(self):
            self.b = stemlab.connect(url, namespace="bench")

        def flush(self):
            self.b.purge("bench")

        def send(self, t):
            self.b.publish(Envelope(name="bench.noop", queue="bench", args={"t": t}))

        def close(self):
            self.b.close()

    common.run_bench(
        peer="stemlab",
        broker=backend,
        config=f"{cfg} {os.environ['BENCH_STEMLAB_TAG']}".strip()
        if os.environ.get("BENCH_STEMLAB_TAG")
        else cfg,
        producer=P(),
        version=f"stemlab {getattr(stemlab, '__version__', '?')}",
        worker_cmd=_worker_cmd(py, url, *CONFIGS[cfg]),
        **SLOW.get(backend, {}),
    )
