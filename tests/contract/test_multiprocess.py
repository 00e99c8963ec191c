"""Contract across processes: many producers and consumers on one store, and a crash.

Runs over every adapter whose `capabilities.cross_process` is True and that has
an entry in `ADAPTER_URLS` (how a child process opens the same store). Children
are plain subprocesses running `_mp_worker.py`; consumers record every acked
envelope id to their own file and the test compares the files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stemlab import Broker, Envelope
from tests.contract.conftest import ADAPTER_URLS, INSTRUMENTED
from tests.contract.support import MARGIN, redelivery_wait

# Children open the bare store, so the instrumented twins add nothing here.
CROSS_PROCESS = sorted(n for n in ADAPTER_URLS if not n.endswith(INSTRUMENTED))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("adapter", CROSS_PROCESS, indirect=True),
]

WORKER = Path(__file__).with_name("_mp_worker.py")
QUEUE = "q"
PRODUCERS, CONSUMERS, PER_PRODUCER = 3, 3, 1000
DEADLINE = 120.0  # safety net for the whole 3x3 exchange; fast adapters finish early
Spawn = Callable[..., subprocess.Popen[bytes]]


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def cluster(
    adapter: str, namespace: str, tmp_path: Path, make_broker: Callable[..., Broker]
) -> Iterator[tuple[Broker, Spawn]]:
    """(a broker in this process, spawn(role, *args)) on the adapter's shared store."""
    broker = make_broker()
    assert broker.capabilities.cross_process, f"{adapter} has a URL for children but says not"
    url, options = ADAPTER_URLS[adapter](namespace, tmp_path)
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(role: str, *args: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, str(WORKER), role, url, json.dumps(options), QUEUE, *args]
        log = open(tmp_path / f"{role}-{len(procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        procs.append(proc)
        return proc

    yield broker, spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in tmp_path.glob("*.log"))


def test_three_producers_three_consumers_lose_and_double_nothing(
    cluster: tuple[Broker, Spawn], tmp_path: Path
) -> None:
    broker, spawn = cluster
    stop = tmp_path / "stop"
    outs = [tmp_path / f"acked-{c}.txt" for c in range(CONSUMERS)]
    consumers = [
        spawn("consume", str(out), str(stop), str(4 * c + 1)) for c, out in enumerate(outs)
    ]
    producers = [spawn("produce", f"p{p}", str(PER_PRODUCER)) for p in range(PRODUCERS)]
    total = PRODUCERS * PER_PRODUCER

    def all_acked() -> bool:
        return sum(len(_lines(out)) for out in outs) >= total

    finished = _wait_for(all_acked, DEADLINE)
    for proc in producers:
        proc.wait(timeout=MARGIN)
    time.sleep(0.3)  # a duplicate would show up now
    stop.touch()
    for proc in consumers:
        proc.wait(timeout=10)
    assert finished, f"only {sum(len(_lines(o)) for o in outs)}/{total} acked\n{_logs(tmp_path)}"
    assert all(p.returncode == 0 for p in producers + consumers), _logs(tmp_path)

    acked = Counter(line.split()[0] for out in outs for line in _lines(out))
    expected = {f"p{p}-{i}" for p in range(PRODUCERS) for i in range(PER_PRODUCER)}
    assert set(acked) == expected, f"lost: {sorted(expected - set(acked))[:10]}"
    doubled = [task for task, n in acked.items() if n > 1]
    assert not doubled, f"acked more than once: {doubled[:10]}"
    assert (broker.pending_count(QUEUE), broker.inflight_count(QUEUE)) == (0, 0)


def test_sigkilled_consumer_message_is_redelivered_to_another(
    cluster: tuple[Broker, Spawn], tmp_path: Path
) -> None:
    broker, spawn = cluster
    lease = 1.0
    sent = Envelope(name="mp", id="doomed", queue=QUEUE, visibility_timeout=lease)
    broker.publish(sent)
    held, acked, stop = tmp_path / "held.txt", tmp_path / "acked.txt", tmp_path / "stop"
    holder = spawn("hold", str(held))
    assert _wait_for(lambda: bool(_lines(held)), DEADLINE), _logs(tmp_path)
    assert _lines(held) == ["doomed 1"]
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    assert broker.inflight_count(QUEUE) == 1
    survivor = spawn("consume", str(acked), str(stop), "1")
    wait = redelivery_wait(broker, lease) + 10.0  # + the survivor's start-up
    assert _wait_for(lambda: bool(_lines(acked)), wait), _logs(tmp_path)
    stop.touch()
    survivor.wait(timeout=10)
    assert _lines(acked) == ["doomed 2"]
    assert (broker.pending_count(QUEUE), broker.inflight_count(QUEUE)) == (0, 0)
