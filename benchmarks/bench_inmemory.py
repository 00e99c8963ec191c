"""In-process ("in-memory broker") peers: producer and worker share one Python process
(and the GIL).

usage: bench_inmemory.py {dramatiq-stub-t1|dramatiq-stub|huey-memory}

dramatiq-stub-t1 : dramatiq StubBroker + dramatiq.Worker(worker_threads=1)        -> "concurrency 1"
dramatiq-stub    : dramatiq StubBroker + dramatiq.Worker() default 8 threads
huey-memory      : huey MemoryHuey + in-process consumer (huey default: 1 thread worker; the
                   memory storage is non-blocking, so the consumer polls: 0.1 s initial delay,
                   x1.15 backoff)
These are what a user would reach for as an in-memory/test broker; both libraries document them as
test helpers rather than production brokers.
"""

import os
import time

import common

CONFIGS = ("dramatiq-stub-t1", "dramatiq-stub", "huey-memory")


class InprocWorker:
    def __init__(self, log, start, stop):
        os.environ["BENCH_LOG"] = log
        common._fd = None  # record() re-opens the new log
        self.proc = None
        self._stop = stop
        self.t_spawn = time.time()
        start()

    def stop(self):
        self._stop()

    def tail(self):
        return ""


if __name__ == "__main__":
    cfg = common.cli_config(CONFIGS)
    if cfg.startswith("dramatiq"):
        import dramatiq
        from dramatiq.brokers.stub import StubBroker

        broker = StubBroker()
        dramatiq.set_broker(broker)

        @dramatiq.actor
        def noop(t_enq):
            common.record(t_enq)

        threads = 1 if cfg.endswith("t1") else 8

        def factory(log, tag):
            holder = {}

            def start():
                holder["w"] = dramatiq.Worker(broker, worker_threads=threads)
                holder["w"].start()

            def stop():
                holder["w"].stop()
                # a stopped Worker leaves its _WorkerMiddleware on the broker; drop it so the next
                # phase's Worker is the only one attached
                broker.middleware[:] = [
                    m for m in broker.middleware if type(m).__name__ != "_WorkerMiddleware"
                ]

            return InprocWorker(log, start, stop)

        class P(common.Producer):
            def flush(self):
                broker.flush_all()

            def send(self, t):
                noop.send(t)

        version = f"dramatiq {dramatiq.__version__} StubBroker"
    else:
        import huey as huey_pkg
        from huey import MemoryHuey

        huey = MemoryHuey("mem")

        @huey.task()
        def noop(t_enq):
            common.record(t_enq)

        def factory(log, tag):
            holder = {}

            def start():
                holder["c"] = huey.create_consumer(workers=1, worker_type="thread", periodic=False)
                holder["c"].start()

            return InprocWorker(log, start, lambda: holder["c"].stop(graceful=True))

        class P(common.Producer):
            def flush(self):
                huey.flush()

            def send(self, t):
                noop(t)

        version = f"huey {huey_pkg.__version__} MemoryHuey"

    common.run_bench(
        peer=cfg.split("-")[0],
        broker="in-process memory",
        config=cfg,
        producer=P(),
        version=version,
        worker_factory=factory,
    )
