"""A local SQS-compatible server for the tests: moto's server on a free port.

`sqs_url()` returns `STEMLAB_SQS_URL` when it is set (a server someone else runs);
otherwise it starts `python -m moto.server` on 127.0.0.1 once per test process and
stops that one process (by its PID) when the process exits. The URL carries dummy
credentials; moto accepts any.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import threading
import time

__all__ = ["sqs_url"]

_lock = threading.Lock()
_url: str | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def sqs_url() -> str:
    """The `sqs://` URL of the test server (started on first use)."""
    global _url
    given = os.environ.get("STEMLAB_SQS_URL")
    if given:
        return given
    with _lock:
        if _url is None:
            port = _free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            atexit.register(_stop, proc)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    if proc.poll() is not None:
                        raise RuntimeError("moto server exited at start") from None
                    time.sleep(0.1)
            else:
                _stop(proc)
                raise RuntimeError("moto server did not start within 30 s")
            _url = f"sqs://testing:testing@127.0.0.1:{port}?region=us-east-1"
        return _url


def delete_namespace(url: str, namespace: str) -> int:
    """Delete the SQS queues of one namespace (names start with its prefix); how many."""
    import re

    import stemlab
    from stemlab.brokers.sqs.settings import namespace_prefix

    if not isinstance(namespace, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", namespace):
        return 0  # a namespace the broker refused has no queues
    broker = stemlab.connect(url, namespace="cleanup")
    try:
        link = broker.link  # type: ignore[attr-defined]
        reply = link.call("list_queues", QueueNamePrefix=namespace_prefix(namespace))
        urls = [str(u) for u in reply.get("QueueUrls", [])]
        for queue_url in urls:
            link.call("delete_queue", QueueUrl=queue_url)
        return len(urls)
    finally:
        broker.close()
