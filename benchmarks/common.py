"""Shared, stdlib-only helpers for the peer benchmarks.

Measurement model (identical for every peer):

* Every benchmark task is a no-op that receives one float argument, ``t_enq``
  (``time.time()`` taken by the producer immediately *before* the enqueue call),
  and appends one fixed-width line ``"<t_enq> <t_start>\\n"`` to the file named by
  the ``BENCH_LOG`` environment variable (O_APPEND, one ``os.write`` per task, a
  few microseconds).  Nothing else is done in the task, and no result is waited for.
* enqueue throughput  = N / wall time of a loop that enqueues N tasks one call at
  a time from a single producer process (the worker is not running yet).
* drain throughput    = (N-1) / (last task start - first task start) for one worker
  (process tree) started on the pre-filled queue.  Worker start-up is excluded
  (reported separately as ``drain_wall_s``, spawn -> last task start).
* end-to-end latency  = t_start - t_enq for tasks sent at a fixed rate (default
  200/s for 5 s) to an already running, warmed-up worker.
"""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("PEERS_VENV", os.path.join(HERE, ".peers-venv"))
VBIN = os.path.join(VENV, "bin")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/1")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/peers_bench")
WORKDIR = os.environ.get("BENCH_TMP", os.path.join(tempfile.gettempdir(), "stemlab-peers-bench"))
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(HERE, "results", "raw.jsonl"))
LINE = len(b"%.6f %.6f\n" % (time.time(), time.time()))  # 36 bytes until year 2286

# --------------------------------------------------------------------------- task side
_fd = None
_pid = None


def record(t_enq):
    """Called from inside the benchmark task: append '<t_enq> <t_start>' to BENCH_LOG."""
    global _fd, _pid
    now = time.time()
    pid = os.getpid()
    if _fd is None or _pid != pid:  # (re)open after fork
        _fd = os.open(os.environ["BENCH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _pid = pid
    os.write(_fd, b"%.6f %.6f\n" % (float(t_enq), now))


# --------------------------------------------------------------------------- harness side
class BenchTimeout(BaseException):
    pass


def _alarm(signum, frame):
    raise BenchTimeout("hard per-invocation deadline reached")


def set_deadline(seconds):
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(seconds))


def fresh_log(tag):
    os.makedirs(WORKDIR, exist_ok=True)
    p = os.path.join(WORKDIR, tag + ".log")
    if os.path.exists(p):
        os.remove(p)
    open(p, "wb").close()
    return p


def count(path):
    try:
        return os.stat(path).st_size // LINE
    except FileNotFoundError:
        return 0


def wait_count(path, n, timeout, proc=None, poll=0.05):
    """Sleep-poll the file size until n records exist (cheap: one stat per poll)."""
    end = time.time() + timeout
    while time.time() < end:
        c = count(path)
        if c >= n:
            return c
        if proc is not None and getattr(proc, "poll", lambda: None)() is not None:
            time.sleep(0.2)
            return count(path)
        time.sleep(poll)
    return count(path)


def read_log(path):
    out = []
    with open(path, "rb") as f:
        for line in f:
            a, b = line.split()
            out.append((float(a), float(b)))
    return out


class Worker:
    """Spawn a worker command in its own session; stop it by signalling that process group."""

    def __init__(self, cmd, log, tag, env=None, cwd=HERE):
        self.cmd = cmd
        e = dict(os.environ)
        e["BENCH_LOG"] = log
        e["PYTHONPATH"] = HERE + os.pathsep + e.get("PYTHONPATH", "")
        e["PATH"] = VBIN + os.pathsep + e.get("PATH", "")
        e["PYTHONUNBUFFERED"] = "1"
        if env:
            e.update(env)
        self.out_path = os.path.join(WORKDIR, tag + ".worker.out")
        self.out = open(self.out_path, "wb")  # noqa: SIM115 (closed by stop())
        self.t_spawn = time.time()
        self.proc = subprocess.Popen(
            cmd,
            env=e,
            cwd=cwd,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self, sig=signal.SIGTERM, grace=10.0):
        p = self.proc
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(grace)
        # make sure nothing of this group survives (children of prefork pools etc.)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)
        self.out.close()

    def tail(self, n=15):
        try:
            with open(self.out_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except Exception:
            return ""


def pct(values, q):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# ---- producer loops -------------------------------------------------------------------
def sync_enqueue_n(send, n):
    t0 = time.perf_counter()
    for _ in range(n):
        send(time.time())
    return time.perf_counter() - t0


def sync_paced(send, rate, secs):
    n = int(rate * secs)
    t0 = time.perf_counter()
    for i in range(n):
        target = t0 + i / rate
        d = target - time.perf_counter()
        if d > 0:
            time.sleep(d)
        send(time.time())
    return n, time.perf_counter() - t0


async def async_enqueue_n(send, n):
    t0 = time.perf_counter()
    for _ in range(n):
        await send(time.time())
    return time.perf_counter() - t0


async def async_paced(send, rate, secs):
    n = int(rate * secs)
    t0 = time.perf_counter()
    for i in range(n):
        target = t0 + i / rate
        d = target - time.perf_counter()
        if d > 0:
            await asyncio.sleep(d)
        await send(time.time())
    return n, time.perf_counter() - t0


class Producer:
    """Adapter: subclasses implement flush(), send(t) (sync) or asend(t) (async)."""

    is_async = False

    def open(self):
        pass

    def close(self):
        pass

    def flush(self):
        raise NotImplementedError

    # sync API
    def send(self, t):
        raise NotImplementedError

    # drivers
    def enqueue_n(self, n):
        if self.is_async:
            return self.loop.run_until_complete(async_enqueue_n(self.asend, n))
        return sync_enqueue_n(self.send, n)

    def paced(self, rate, secs):
        if self.is_async:
            return self.loop.run_until_complete(async_paced(self.asend, rate, secs))
        return sync_paced(self.send, rate, secs)

    def one(self):
        if self.is_async:
            return self.loop.run_until_complete(self.asend(time.time()))
        return self.send(time.time())


def run_bench(
    *,
    peer,
    broker,
    version,
    config,
    producer,
    worker_cmd=None,
    n=5000,
    worker_env=None,
    e2e_rate=200.0,
    e2e_secs=5.0,
    drain_timeout=30.0,
    deadline=58,
    note="",
    skip_e2e=False,
    skip_drain=False,
    worker_factory=None,
):
    """One invocation = one repetition of (enqueue, drain, e2e) for one worker config.

    worker_factory(log, tag) may replace the subprocess worker (in-process peers); it must return an
    object with t_spawn, proc (None allowed), stop() and tail().
    """
    if worker_factory is None:

        def worker_factory(log, tag):
            return Worker(worker_cmd, log, tag, env=worker_env)

    set_deadline(deadline)
    tag = f"{peer}-{broker}-{config}".replace("/", "_").replace(" ", "_")
    res = dict(
        peer=peer,
        broker=broker,
        version=version,
        config=config,
        n=n,
        note=note,
        ts=time.strftime("%Y-%m-%dT%H:%M:%S"),
        rep=os.environ.get("BENCH_REP", "?"),
        cmd=" ".join(worker_cmd or ["(in-process)"]),
        error=None,
    )
    w = None
    try:
        producer.open()
        # ---------------- enqueue + drain
        if not skip_drain:
            producer.flush()
            log = fresh_log(tag + "-drain")
            el = producer.enqueue_n(n)
            res["enqueue_per_s"] = n / el
            w = worker_factory(log, tag + "-drain")
            c = wait_count(log, n, drain_timeout, proc=w.proc)
            if c < n:
                res["error"] = (
                    f"drain: only {c}/{n} tasks started within {drain_timeout}s; "
                    f"worker tail: {w.tail()}"
                )
            recs = read_log(log)
            starts = sorted(b for _, b in recs)
            res["drain_seen"] = len(recs)
            if len(starts) > 1:
                res["drain_per_s"] = (len(starts) - 1) / (starts[-1] - starts[0])
                res["drain_wall_s"] = starts[-1] - w.t_spawn
                res["worker_first_task_s"] = starts[0] - w.t_spawn
            w.stop()
            w = None
        # ---------------- end-to-end latency at a fixed light rate
        if not skip_e2e:
            producer.flush()
            log = fresh_log(tag + "-e2e")
            w = worker_factory(log, tag + "-e2e")
            # warm-up: poke until the worker has run one task
            warm = 0
            t_end = time.time() + 20
            while count(log) == 0 and time.time() < t_end:
                producer.one()
                warm += 1
                wait_count(log, 1, 0.25)
            if count(log) == 0:
                raise RuntimeError(f"e2e: worker never started a task; tail: {w.tail()}")
            wait_count(log, warm, 5)
            time.sleep(0.5)
            since = time.time()
            sent, el = producer.paced(e2e_rate, e2e_secs)
            res["e2e_rate_target"] = e2e_rate
            res["e2e_rate_achieved"] = sent / el
            c = wait_count(log, warm + sent, 20)
            recs = [(a, b) for a, b in read_log(log) if a >= since]
            lat = [(b - a) * 1000.0 for a, b in recs]
            res["e2e_sent"] = sent
            res["e2e_seen"] = len(lat)
            if lat:
                res["e2e_p50_ms"] = pct(lat, 0.50)
                res["e2e_p99_ms"] = pct(lat, 0.99)
                res["e2e_max_ms"] = max(lat)
            if len(lat) < sent:
                res["error"] = (res["error"] or "") + f" e2e: only {len(lat)}/{sent} seen"
            w.stop()
            w = None
    except BenchTimeout as e:
        res["error"] = (res["error"] or "") + f" TIMEOUT: {e}"
    except Exception as e:  # record and go on; the report lists errors
        res["error"] = (res["error"] or "") + f" {type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
        if w is not None:
            res["worker_tail"] = w.tail()
            w.stop()
        with contextlib.suppress(Exception):
            producer.close()
    emit(res)
    return res


def emit(res):
    if "loadavg" not in res:  # the 1-minute load average when the run ended (shared machine)
        try:
            with open("/proc/loadavg") as f:
                res["loadavg"] = float(f.read().split()[0])
        except OSError:
            res["loadavg"] = None
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(res) + "\n")
    keys = [
        "peer",
        "broker",
        "config",
        "n",
        "enqueue_per_s",
        "drain_per_s",
        "worker_first_task_s",
        "e2e_p50_ms",
        "e2e_p99_ms",
        "e2e_rate_achieved",
        "error",
    ]
    print(" ".join(f"{k}={_fmt(res.get(k))}" for k in keys if k in res), flush=True)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def cli_config(choices):
    """Parse `script.py CONFIG`; print choices and exit when missing."""
    if len(sys.argv) < 2 or sys.argv[1] not in choices:
        print(f"usage: {sys.argv[0]} CONFIG   (one of: {', '.join(choices)})", file=sys.stderr)
        sys.exit(2)
    return sys.argv[1]
