"""A local SQS-compatible server for the tests: moto's SQS service on a free port.

`sqs_url()` returns `STEMLAB_SQS_URL` when it is set (a server someone else runs);
otherwise it starts this file as a script (`python tests/sqs_server.py PORT`) once per
test process, on 127.0.0.1, and stops that one process (by its PID) when the test
process exits. The URL carries dummy credentials (moto accepts any; no cloud is ever
contacted). Needs only `moto[server]` (the `dev` extra).

The script serves moto's SQS Flask app itself rather than `python -m moto.server`:

- one request at a time (a lock): moto's queues are plain lists that concurrent
  requests corrupt. Two concurrent `DeleteMessage`s each rebuild the list without
  their own message and the last write wins, bringing the other one back (it was
  then delivered again ~30 s later, after its ack);
- HTTP/1.1 keep-alive with TCP_NODELAY (werkzeug's server closes every connection,
  so each call cost a TCP connect and a new server thread), no request log, and no
  per-request search for the service (moto's dispatcher lists its modules on disk);
- `_quicken_moto`: moto reads the clock by building datetimes, and `ReceiveMessage`
  re-reads every queue attribute (three scans of the whole queue) for each message it
  returns, just to check the retention period; every call was O(depth) with a large
  constant (a 10-message receive from a 1,000-deep queue took over 2 s on the shared
  2-core machine). The replacements read the same values directly (`time.time()`
  once per scan, the queue's own retention period), cache two pure lookups (a name
  conversion, a class's method names) and draw receipt handles in one call: same
  answers, same errors, less work. `STEMLAB_SQS_STOCK_MOTO=1` leaves moto as it is.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["delete_namespace", "sqs_url"]

START_TIMEOUT = 60.0  # seconds for the server to listen (imports are slow on a loaded machine)
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
            proc.wait(5)


def _start() -> str:
    """Start the server (a fresh port per try: another process may take the first)."""
    problems: list[str] = []
    for _ in range(3):
        port = _free_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the server stops
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
            except OSError:
                time.sleep(0.1)
                continue
            atexit.register(_stop, proc)
            return f"sqs://testing:testing@127.0.0.1:{port}?region=us-east-1"
        _stop(proc)
        log.seek(0)
        problems.append(log.read()[-1000:].decode(errors="replace") or "(no output)")
        log.close()
    raise RuntimeError("moto's SQS server did not start:\n" + "\n---\n".join(problems))


def sqs_url() -> str:
    """The `sqs://` URL of the test server (started on first use)."""
    global _url
    given = os.environ.get("STEMLAB_SQS_URL")
    if given:
        return given
    with _lock:
        if _url is None:
            _url = _start()
        return _url


def delete_namespace(url: str, namespace: str) -> int:
    """Delete the SQS queues of one namespace (names start with its prefix); how many."""
    import re

    from stemlab.brokers.sqs.client import Link
    from stemlab.brokers.sqs.settings import namespace_prefix, parse_url

    if not isinstance(namespace, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", namespace):
        return 0  # a namespace the broker refused has no queues
    link = Link(parse_url(url, namespace="cleanup"))  # no broker: no connect-time probe
    try:
        reply = link.call("list_queues", QueueNamePrefix=namespace_prefix(namespace))
        urls = [str(u) for u in reply.get("QueueUrls", [])]
        for queue_url in urls:
            link.call("delete_queue", QueueUrl=queue_url)
        return len(urls)
    finally:
        link.close()


# ------------------------------------------------------------ the server process
def _quicken_moto() -> None:
    """Replace moto's per-message and per-request slow paths by equivalents (module
    docstring): same values, same errors, less work."""
    import functools
    import string

    import moto.core.responses as core_responses
    import moto.core.utils as core_utils
    import moto.sqs.models as sqs_models
    from moto.moto_api._internal import mock_random

    slow_unix_time = core_utils.unix_time
    slow_members = core_utils.method_names_from_class

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(slow_unix_time(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    def retention_ok(self: Any, queue_name: str, message: Any) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > time.time())

    @functools.cache
    def class_members(clazz: type) -> list[str]:
        return list(slow_members(clazz))

    def method_names(clazz: Any) -> list[str]:
        return list(class_members(clazz)) if isinstance(clazz, type) else slow_members(clazz)

    def receipt_handle() -> str:
        return "".join(mock_random.choices(string.ascii_lowercase, k=185))

    replacements: dict[str, Any] = {
        "unix_time": unix_time,
        "unix_time_millis": unix_time_millis,
        "camelcase_to_underscores": functools.cache(core_utils.camelcase_to_underscores),
        "method_names_from_class": method_names,
        "generate_receipt_handle": receipt_handle,
    }
    for module in (core_utils, core_responses, sqs_models):
        for name, fast in replacements.items():
            if hasattr(module, name):
                setattr(module, name, fast)
    backend = sqs_models.SQSBackend
    backend.is_message_valid_based_on_retention_period = retention_ok  # type: ignore[method-assign]
    _scan_once(sqs_models.Queue, sqs_models.Message)


def _scan_once(queue: Any, message: Any) -> None:
    """moto's visibility checks, reading the clock once per scan instead of per message."""

    def visible(self: Any) -> bool:
        return bool(time.time() * 1000.0 > self.visible_at)

    def delayed(self: Any) -> bool:
        return bool(time.time() * 1000.0 < self.delayed_until)

    def ready(self: Any) -> list[Any]:
        now = time.time() * 1000.0
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def count_delayed(self: Any) -> int:
        now = time.time() * 1000.0
        return sum(1 for m in self._messages if now < m.delayed_until)

    def count_hidden(self: Any) -> int:
        now = time.time() * 1000.0
        return sum(1 for m in self._messages if not now > m.visible_at)

    message.visible = property(visible)
    message.delayed = property(delayed)
    queue.messages = property(ready)
    queue.approximate_number_of_messages_delayed = property(count_delayed)
    queue.approximate_number_of_messages_not_visible = property(count_hidden)


def serve(port: int) -> None:
    """Serve moto's SQS on 127.0.0.1:`port` until killed (module docstring)."""
    import io
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import unquote

    from moto.moto_server.werkzeug_app import create_backend_app

    if os.environ.get("STEMLAB_SQS_STOCK_MOTO") != "1":
        try:
            _quicken_moto()
        except (ImportError, AttributeError) as exc:  # another moto layout: serve it as is
            print(f"sqs_server: moto left unchanged ({exc!r})", file=sys.stderr)
    app = create_backend_app("sqs")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        """One keep-alive connection: each request through moto's WSGI app, one at a time."""

        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path, _, query = self.path.partition("?")
            environ: dict[str, Any] = {
                "REQUEST_METHOD": self.command,
                "SCRIPT_NAME": "",
                "PATH_INFO": unquote(path),
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": str(port),
                "SERVER_PROTOCOL": self.request_version,
                "REMOTE_ADDR": self.client_address[0],
                "wsgi.version": (1, 0),
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(body),
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": True,
                "wsgi.multiprocess": False,
                "wsgi.run_once": False,
            }
            for name, value in self.headers.items():
                key = "HTTP_" + name.upper().replace("-", "_")
                if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                    environ[key] = value
            started: list[Any] = []

            def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
                started[:] = [status, headers]

            with lock:  # moto's queues are not thread-safe (module docstring)
                reply = b"".join(app(environ, start_response))
            status, headers = started
            code, _, reason = status.partition(" ")
            self.send_response(int(code), reason)
            for name, value in headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_PUT = do_DELETE = do_HEAD = do_POST

        def log_message(self, format: str, *args: Any) -> None:
            """No request log (it costs time and nobody reads it)."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    parent = os.getppid()

    def orphaned() -> None:  # the test process died without atexit (e.g. SIGKILL): stop too
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
