"""`stemlab lab` in a real browser: publish five tasks through the form, consume and ack one.

Starts the server as a subprocess on a SQLite file in tmp_path, drives the page
with Playwright and Debian's chromium (never `playwright install`: no browser
is downloaded), and checks the counts both on the page and on the broker
itself. The server is always stopped by its PID.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import stemlab
from tests.conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api")

QUEUE = "playground"
PAGE_TIMEOUT_MS = 60_000  # Voila starts a kernel per page: slow on two busy cores


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"stemlab lab exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"stemlab lab did not listen on {port} within {timeout} s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (Voila then shuts its kernels down), SIGKILL if it lingers; by PID only."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_publish_consume_ack_in_the_browser(tmp_path: Path) -> None:
    chromium = _chromium()
    started = time.monotonic()
    db = tmp_path / "lab.db"
    url = f"sqlite:///{db}"
    port = _free_port()
    log = tmp_path / "lab.log"
    cmd = [sys.executable, "-m", "stemlab.cli", "lab", "--port", str(port), "--no-browser"]
    env = dict(os.environ, MPLBACKEND="Agg", STEMLAB_PLAYGROUND_URL=url)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(proc, port, log, 60)
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 1000})
                _drive(page, port, db, tmp_path)
            finally:
                browser.close()
    finally:
        _stop(proc)
    assert proc.returncode is not None
    assert time.monotonic() - started < 90


def _drive(page: object, port: int, db: Path, tmp_path: Path) -> None:
    expect = playwright_api.expect
    page.set_default_timeout(20_000)  # type: ignore[attr-defined]
    page.goto(f"http://127.0.0.1:{port}/", timeout=PAGE_TIMEOUT_MS)  # type: ignore[attr-defined]
    loc = page.locator(".stemlab-playground").locator  # type: ignore[attr-defined]
    counts = loc(".stemlab-counts")
    counts.wait_for(timeout=PAGE_TIMEOUT_MS)
    expect(counts).to_have_text(re.compile(r"pending 0 · in flight 0"))

    count_box = loc(".stemlab-count input")
    count_box.fill("5")
    count_box.press("Enter")  # a text widget syncs its value on Enter or blur
    loc(".stemlab-publish-button").click()
    expect(counts).to_have_text(re.compile(r"pending 5 · in flight 0 · delayed 0 · dead 0"))
    expect(loc(".stemlab-message")).to_contain_text("published 5")

    loc(".stemlab-consume-button").click()
    expect(loc(".stemlab-held")).to_have_count(1)
    expect(counts).to_have_text(re.compile(r"pending 4 · in flight 1"))
    with stemlab.connect(f"sqlite:///{db}") as broker:
        assert (broker.pending_count(QUEUE), broker.inflight_count(QUEUE)) == (4, 1)

    loc(".stemlab-held .stemlab-ack").click()
    expect(loc(".stemlab-held")).to_have_count(0)
    expect(counts).to_have_text(re.compile(r"pending 4 · in flight 0 · delayed 0 · dead 0"))
    expect(loc(".stemlab-log-out")).to_contain_text("ack")
    with stemlab.connect(f"sqlite:///{db}") as broker:
        assert (broker.pending_count(QUEUE), broker.inflight_count(QUEUE)) == (4, 0)

    shot = tmp_path / "lab.png"
    page.screenshot(path=str(shot), full_page=True)  # type: ignore[attr-defined]
    assert shot.stat().st_size > 10_000
