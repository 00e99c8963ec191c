"""WorkersPanel: the live workers of a broker namespace, and buttons that command them.

The table is the result backend's heartbeats (`backend.workers()`), re-read
every `refresh_interval` seconds; the buttons send `app.control` commands
(ping, stats, shutdown, pause, resume, revoke) and show the answer: who
answered, who was expected but silent, and who the broker's broadcast cannot
reach. Every call runs on the panel's own thread (`stemlab.widgets._worker`),
so a slow service never blocks the kernel; `BrokerPlayground` shows one.
"""

from __future__ import annotations

import time
from typing import Any

import ipywidgets as w

from stemlab.brokers import connect
from stemlab.core.broker import Broker
from stemlab.runtime import ResultBackend, Stem, connect_backend
from stemlab.runtime.backends.memory import MemoryBackend
from stemlab.widgets._ui import MessageLine, html_table, plain_table, show_html
from stemlab.widgets._worker import Worker

__all__ = ["WorkersPanel"]

_BOX = w.Layout(width="220px")
_ALL = "all workers"
HEADER = ("worker", "host", "pid", "queues", "paused", "slots", "running", "age s")


class WorkersPanel(w.VBox):
    """Live workers (heartbeats) and control buttons for one broker namespace.

    `broker_or_url`: an open Broker (left open) or a URL (opened here with
    `options`, closed by `close()`). `backend`: the result backend holding the
    heartbeats, a URL or None: the broker's own store with the same namespace
    (an in-process memory backend for `memory://`, which sees this process only).
    """

    def __init__(
        self,
        broker_or_url: Broker | str,
        backend: ResultBackend | str | None = None,
        *,
        refresh_interval: float = 1.0,
        **options: Any,
    ) -> None:
        self._owned: list[Broker | ResultBackend] = []
        if isinstance(broker_or_url, str):
            broker = connect(broker_or_url, **options)
            self._owned.append(broker)
        elif isinstance(broker_or_url, Broker):
            broker = broker_or_url
        else:
            raise TypeError(f"expected a Broker or a URL, got {type(broker_or_url).__name__}")
        namespace = str(options.get("namespace", "stem"))
        if backend is None:
            url = broker_or_url if isinstance(broker_or_url, str) else "memory://"
            backend = MemoryBackend(namespace) if url.startswith("memory") else url
        if isinstance(backend, str):
            backend = connect_backend(backend, namespace=namespace)
            self._owned.append(backend)
        self.app = Stem(broker, backend)
        self.workers: dict[str, dict[str, Any]] = {}
        self.last: Any = None  # the last command's DataFrame
        self._build()
        super().__init__(children=self._layout())
        for name, value in vars(self).items():  # stemlab-workers-<name>: no clash in a playground
            if isinstance(value, w.DOMWidget) and not name.startswith("_"):
                value.add_class("stemlab-workers-" + name.replace("_", "-"))
        self.add_class("stemlab-workers-panel")
        self._worker = Worker(
            "stemlab-workers-panel",
            tick=self._refresh,
            interval=refresh_interval,
            on_stop=self._release,
        )

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        scope = self.app.broker.capabilities.broadcast_scope
        self.title = w.HTML(f"<b>Workers</b> · broadcast reaches: {scope or 'nothing'}")
        self.target = w.Dropdown(options=[_ALL], value=_ALL, description="to", layout=_BOX)
        self.timeout = w.BoundedFloatText(
            value=1.0, min=0.1, max=60.0, description="timeout s", layout=_BOX
        )
        self.queue = w.Text(value="default", description="queue", layout=_BOX)
        self.task_id = w.Text(value="", description="task id", placeholder="id to revoke")
        self.ping_button = w.Button(description="Ping", button_style="info")
        self.stats_button = w.Button(description="Stats")
        self.pause_button = w.Button(description="Pause queue", button_style="warning")
        self.resume_button = w.Button(description="Resume queue", button_style="success")
        self.revoke_button = w.Button(description="Revoke", button_style="warning")
        self.shutdown_button = w.Button(description="Shutdown", button_style="danger")
        self.workers_out = w.Output()
        self.reply_out = w.Output()
        self.message = MessageLine()
        self._on(self.ping_button, lambda: self._send("ping"))
        self._on(self.stats_button, lambda: self._send("stats"))
        self._on(self.shutdown_button, lambda: self._send("shutdown"))
        self._on(self.pause_button, lambda: self._send("pause", queue=self.queue.value.strip()))
        self._on(self.resume_button, lambda: self._send("resume", queue=self.queue.value.strip()))
        self._on(self.revoke_button, lambda: self._send("revoke", task_id=self.task_id.value))

    def _layout(self) -> list[w.Widget]:
        return [
            self.title,
            self.workers_out,
            w.HBox([self.target, self.timeout, self.ping_button, self.stats_button]),
            w.HBox([self.queue, self.pause_button, self.resume_button]),
            w.HBox([self.task_id, self.revoke_button, self.shutdown_button]),
            self.message,
            self.reply_out,
        ]

    def _on(self, button: w.Button, action: Any) -> None:
        button.on_click(lambda _b: self._worker.submit(action))

    # ----------------------------------------------------------------- public
    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every queued click has been handled and the table refreshed."""
        return self._worker.wait_idle(timeout)

    def close(self) -> None:
        """Stop the refresh thread and close what the panel opened."""
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()
        super().close()

    # ---------------------------------------------------------------- actions
    def _send(self, command: str, **args: str) -> None:
        """Send one command (on the panel's thread); the answer or the error is shown."""
        target = self.target.value
        workers = None if target == _ALL else [target]
        timeout = float(self.timeout.value)
        self.message.say(f"{command}: waiting up to {timeout:g} s for replies", "busy")
        try:
            control = self.app.control
            if command == "revoke":
                df = control.revoke(args["task_id"].strip(), timeout, workers=workers)
            else:
                df = control.send(command, args, timeout=timeout, workers=workers)
        except Exception as exc:  # every failure is the message line, never a traceback
            self.message.error(exc)
            return
        self.last = df
        attrs = df.attrs
        summary = (
            f"{command}: {len(attrs['answered'])} answered, {len(attrs['silent'])} silent, "
            f"{len(attrs['unreachable'])} unreachable"
        )
        note = f" ({attrs['note']})" if attrs.get("note") else ""
        self.message.say(summary + note, "error" if attrs["silent"] else "info")
        rows = df.astype(object).where(df.notna(), "").values.tolist()
        header = [str(c) for c in df.columns]
        show_html(
            self.reply_out,
            html_table(header, rows, "no worker answered"),
            plain_table(header, rows, "no worker answered"),
        )

    def _refresh(self) -> None:
        try:
            self.workers = self.app.backend.workers()
        except Exception as exc:
            self.message.error(exc)
            return
        now = time.time()
        rows = [
            (
                wid,
                info.get("host", ""),
                info.get("pid", ""),
                ",".join(info.get("queues", [])),
                ",".join(info.get("paused", [])),
                info.get("concurrency", ""),
                info.get("running", ""),
                f"{now - float(info.get('started_at', now)):.0f}",
            )
            for wid, info in sorted(self.workers.items())
        ]
        empty = "no live worker (start one: stemlab worker URL --app module:app)"
        show_html(
            self.workers_out, html_table(HEADER, rows, empty), plain_table(HEADER, rows, empty)
        )
        options = [_ALL, *sorted(self.workers)]
        if list(self.target.options) != options:
            keep = self.target.value if self.target.value in options else _ALL
            self.target.options = options
            self.target.value = keep

    def _release(self) -> None:
        for item in reversed(self._owned):
            item.close()
        self._owned.clear()
