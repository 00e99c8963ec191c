"""WorkersPanel: the live workers table and the control buttons, driven headlessly."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import stemlab
from stemlab.runtime import Stem, Worker
from stemlab.widgets import BrokerPlayground, WorkersPanel


def _until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_the_panel_lists_workers_and_commands_them(tmp_path: Path) -> None:
    url, ns = f"sqlite:///{tmp_path / 'jobs.db'}", f"w{uuid.uuid4().hex[:10]}"
    broker, backend = stemlab.connect(url, namespace=ns), stemlab.connect_backend(url, namespace=ns)
    app = Stem(broker, backend)
    worker = Worker(app, ["default", "mail"], heartbeat_s=0.2).start()
    panel = WorkersPanel(url, refresh_interval=0.2, namespace=ns)
    try:
        assert _until(lambda: panel.wait_idle() and worker.id in panel.workers)
        assert worker.id in panel.workers_out.outputs[0]["data"]["text/plain"]
        assert worker.id in panel.target.options

        panel.ping_button.click()
        assert panel.wait_idle()
        assert list(panel.last["worker"]) == [worker.id]
        assert (
            "1 answered, 0 silent" in panel.message.text and "this host only" in panel.message.text
        )

        panel.queue.value = "mail"
        panel.pause_button.click()
        assert panel.wait_idle() and worker.paused == {"mail"}
        panel.resume_button.click()
        assert panel.wait_idle() and worker.paused == set()

        panel.task_id.value = "no spaces allowed"
        panel.revoke_button.click()
        assert panel.wait_idle() and panel.message.kind == "error"
        assert "malformed task id" in panel.message.text

        panel.target.value = worker.id
        panel.shutdown_button.click()
        assert panel.wait_idle() and list(panel.last["draining"]) == [True]
        assert _until(lambda: not worker.alive and panel.wait_idle() and not panel.workers)
    finally:
        panel.close()
        worker.stop(timeout=5.0)
        backend.close()
        broker.close()


@pytest.mark.parametrize("workers", [True, False])
def test_the_playground_shows_the_panel(tmp_path: Path, workers: bool) -> None:
    playground = BrokerPlayground(f"sqlite:///{tmp_path / 'p.db'}", workers=workers)
    try:
        assert (playground.workers_panel is not None) is workers
        assert (playground.workers_panel in playground.children) is workers
        assert playground.wait_idle()
    finally:
        playground.close()
