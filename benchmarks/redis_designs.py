"""The two Redis designs side by side: sorted sets (`redis://`) and streams (`redis+streams://`).

    python benchmarks/redis_designs.py [--json out.json] [--consumers 1,16,100]

Starts its OWN redis-server (no persistence, a free port, a temporary directory; killed
by its PID at the end), so the server's own counters (INFO cpu, commandstats) belong to
this run alone. For each design it measures:
* memory per queued message: 10,000 published, MEMORY USAGE over the namespace's keys;
* reclaim latency: a lease of 0.2 s left to expire, time from expiry to redelivery to
  another client's waiting consumer (20 samples);
* at C consumers (threads of this process, each its own consumer): the server CPU an idle
  C costs per second, drain of 3,000 pre-filled messages (client-bound: one Python
  process), and server CPU per message drained.
Pickup and drain across processes come from `python -m stemlab.live.bench URL` on the
same server (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from typing import Any

import redis

import stemlab
from stemlab import Broker, Envelope

DESIGNS = ("redis", "redis+streams")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnServer:
    """A throwaway redis-server of this run."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="stemlab-redis-designs-")
        self.port = _free_port()
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir"]
        cmd += [self.dir, "--save", "", "--appendonly", "no", "--maxclients", "2000"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)

    def cpu(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def memory(self, ns: str) -> int:
        keys = list(self.client.scan_iter(match=f"{ns}:*", count=1000))
        return sum(self.client.memory_usage(k, samples=0) or 0 for k in keys)

    def stop(self) -> None:
        self.client.close()
        os.kill(self.proc.pid, signal.SIGTERM)  # only the server this script started
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _env(i: int = 0, **kw: Any) -> Envelope:
    return Envelope(name="noop", queue="q", args={"i": i}, **kw)


def memory_per_message(url: str, server: OwnServer, n: int = 10_000) -> float:
    with stemlab.connect(url, namespace="mem") as b:
        base = server.memory("mem")
        for i in range(0, n, 500):
            b.publish_many([_env(j) for j in range(i, i + 500)])
        used = server.memory("mem") - base
        b.purge("q")
    return used / n


def reclaim_latency(url: str, samples: int = 20) -> list[float]:
    out: list[float] = []
    with (
        stemlab.connect(url, namespace="reclaim") as a,
        stemlab.connect(url, namespace="reclaim") as b,
    ):
        for i in range(samples):
            a.publish(_env(i, visibility_timeout=0.2))
            with a.consume("q") as dying:
                d1 = dying.get(timeout=2)
            assert d1 is not None and d1.lease_expires_at is not None
            with b.consume("q") as rescuer:
                d2 = rescuer.get(timeout=5)
                late = time.time() - d1.lease_expires_at.timestamp()
            assert d2 is not None
            b.ack(d2)
            out.append(late * 1000)
    return out


def at_consumers(url: str, server: OwnServer, c: int, n: int = 3000) -> dict[str, float]:
    """Idle server cost of c consumers, then drain n messages with them."""
    broker: Broker = stemlab.connect(url, namespace=f"c{c}")
    done = threading.Event()
    acked = [0]
    lock = threading.Lock()
    go = threading.Event()

    def work() -> None:
        with broker.consume("q") as consumer:
            go.wait()
            while not done.is_set():
                d = consumer.get(timeout=0.2)
                if d is not None:
                    broker.ack(d)
                    with lock:
                        acked[0] += 1
                        if acked[0] >= n:
                            done.set()

    threads = [threading.Thread(target=work) for _ in range(c)]
    for t in threads:
        t.start()
    go.set()
    time.sleep(1.0)
    cpu0, t0 = server.cpu(), time.monotonic()
    time.sleep(3.0)
    idle = (server.cpu() - cpu0) / (time.monotonic() - t0)
    cpu1 = server.cpu()
    start = time.monotonic()
    for i in range(0, n, 500):
        broker.publish_many([_env(j) for j in range(i, i + 500)])
    done.wait(120)
    elapsed = time.monotonic() - start
    cpu2 = server.cpu()
    for t in threads:
        t.join()
    broker.close()
    return {
        "idle_server_cpu_ms_per_s": idle * 1000,
        "drain_per_s": acked[0] / elapsed,
        "server_cpu_us_per_msg": (cpu2 - cpu1) * 1e6 / max(1, acked[0]),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--consumers", default="1,16,100")
    args = p.parse_args()
    server = OwnServer()
    results: dict[str, Any] = {"loadavg": os.getloadavg(), "cpus": os.cpu_count()}
    try:
        base = f"127.0.0.1:{server.port}/0"
        for design in DESIGNS:
            url = f"{design}://{base}"
            r: dict[str, Any] = {"bytes_per_queued_message": memory_per_message(url, server)}
            lat = reclaim_latency(url)
            r["reclaim_ms"] = {"p50": statistics.median(lat), "max": max(lat)}
            for c in (int(x) for x in args.consumers.split(",")):
                r[f"consumers_{c}"] = at_consumers(url, server, c)
            results[design] = r
            print(design, json.dumps(r), flush=True)
    finally:
        server.stop()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
