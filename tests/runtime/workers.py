"""Start and stop `stemlab worker` subprocesses for tests; every one is killed by PID at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.runtime.fault_app:app"


class WorkerProcesses:
    """The `stemlab worker` processes one test started."""

    def __init__(self, url: str, namespace: str, out: Path, log_dir: Path) -> None:
        self.url, self.namespace, self.out, self.log_dir = url, namespace, out, log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str, concurrency: int = 4) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=str(ROOT), STEMLAB_FAULT_OUT=str(self.out))
        env["MPLBACKEND"] = "Agg"
        log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
        cmd = [sys.executable, "-m", "stemlab.cli", "worker", self.url, "--app", APP]
        cmd += ["--namespace", self.namespace, "--concurrency", str(concurrency), *extra]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))
