"""The app the `stemlab worker` subprocess tests run (importable as tests.runtime.fault_app).

`record` appends "<i> <pid>" to the file named by STEMLAB_FAULT_OUT, one short
O_APPEND write per run, so every execution of every task leaves one line.
"""

from __future__ import annotations

import os
import time

import stemlab

app = stemlab.Stem("memory://")  # the tasks only: `stemlab worker URL` says where they run


@app.task(max_retries=3, visibility_timeout=2.0)
def record(i: int, sleep: float = 0.0) -> int:
    time.sleep(sleep)
    fd = os.open(os.environ["STEMLAB_FAULT_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return i


@app.task(visibility_timeout=5.0)
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(max_retries=1, visibility_timeout=0.5)
def suicide() -> None:
    os._exit(3)  # kills the worker process mid-task, every time
