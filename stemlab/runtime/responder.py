"""The worker side of control: one thread subscribed to the namespace's control channel.

It answers each command meant for its worker on the command's reply channel.
A command it cannot parse is logged and acked, and the worker keeps working:
a bad message from one operator must never stop a fleet.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from stemlab.core.broker import Consumer
from stemlab.core.envelope import Delivery
from stemlab.errors import StemlabError
from stemlab.runtime.protocol import CONTROL_CHANNEL, Command, parse_command, reply_envelope

if TYPE_CHECKING:
    from stemlab.runtime.worker import Worker

__all__ = ["Responder"]

log = logging.getLogger("stemlab.runtime")

GET_S = 0.2  # how long one get() blocks before the loop checks for a stop


class Responder:
    """Subscribes a worker to the control channel and answers its commands."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.disabled = False  # the broker has no broadcast: nothing to listen to
        self._consumer: Consumer | None = None

    def subscribe(self) -> None:
        """Open the control consumer (before the first heartbeat says the worker is alive)."""
        if self.worker.app.broker.capabilities.broadcast_scope is None:
            if not self.disabled:
                log.warning("worker %s: the broker has no broadcast: no control", self.worker.id)
            self.disabled = True
            return
        name = f"{self.worker.id}-control"
        self._consumer = self.worker.app.broker.consume(channels=[CONTROL_CHANNEL], consumer=name)

    def run(self, stopped: threading.Event) -> None:
        """Answer commands until `stopped` is set (the worker halted or finished draining)."""
        while not stopped.is_set() and not self.disabled:
            try:
                if self._consumer is None:
                    self.subscribe()
                    continue
                d = self._consumer.get(timeout=GET_S)
                if d is not None and stopped.is_set():  # drained meanwhile: no longer here
                    with contextlib.suppress(StemlabError):
                        self.worker.app.broker.ack(d)
                    break
                if d is not None:
                    self._on_delivery(d)
            except Exception as exc:  # the broker failed: log, back off, resubscribe
                log.warning("worker %s: control channel: %s", self.worker.id, exc)
                self.close()
                stopped.wait(0.5)
        self.close()

    def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                self._consumer.close()
            self._consumer = None

    def _on_delivery(self, d: Delivery) -> None:
        with contextlib.suppress(StemlabError):
            self.worker.app.broker.ack(d)  # a broadcast has no lease: ack only releases it
        try:
            cmd = parse_command(d.envelope)
        except ValueError as exc:
            log.warning("worker %s: ignored a malformed control command: %s", self.worker.id, exc)
            return
        if not cmd.meant_for(self.worker.id):
            return
        try:
            reply, error = self._answer(cmd), None
        except Exception as exc:
            reply, error = {}, f"{type(exc).__name__}: {exc}"
            log.warning("worker %s: control %s failed: %s", self.worker.id, cmd.command, error)
        try:
            env = reply_envelope(cmd, self.worker.id, reply, error)
            self.worker.app.broker.broadcast(cmd.reply_to, env)
        except (StemlabError, ValueError) as exc:
            log.warning("worker %s: cannot reply to %s: %s", self.worker.id, cmd.command, exc)

    def _answer(self, cmd: Command) -> dict[str, Any]:
        w = self.worker
        log.info("worker %s: control command %s %s", w.id, cmd.command, cmd.args)
        if cmd.command == "ping":
            return w.describe()
        if cmd.command == "stats":
            return {"tasks": w.task_report(), **w.describe()}
        if cmd.command == "shutdown":
            in_flight = w.request_shutdown()
            return {"in_flight": in_flight, "draining": True}
        if cmd.command == "revoke":
            task_id = str(cmd.args["task_id"])
            return {"task_id": task_id, "running": w.is_running(task_id)}
        queue = str(cmd.args["queue"])
        paused = w.pause(queue) if cmd.command == "pause" else w.resume(queue)
        return {"queue": queue, "paused": paused, "queues": list(w.queues)}
