"""BrokerPlayground: publish, consume and settle by hand on any broker, and watch what happens.

Every broker call runs on the widget's own worker thread (`stemlab.widgets._worker`):
a click queues an action and returns, and the same thread refreshes the counts,
the lease countdowns, the dead letters and the event log every `refresh_interval`
seconds. `close()` stops that thread, closes the consumer it opened and, when the
playground opened the broker from a URL, the broker. Only the public Broker API is
used, so it works on every adapter; two playgrounds on one URL share the queue.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import ipywidgets as w

from stemlab.brokers import connect
from stemlab.core.broker import Broker, Consumer
from stemlab.core.envelope import Delivery, Envelope, validate_queue_name
from stemlab.errors import LeaseLost
from stemlab.instrument import instrument
from stemlab.model.names import broker_name
from stemlab.runtime import ResultBackend
from stemlab.widgets._ui import (
    MessageLine,
    describe_error,
    html_table,
    plain_table,
    show_html,
    tag_controls,
)
from stemlab.widgets._worker import Worker
from stemlab.widgets.workers import WorkersPanel

__all__ = ["BrokerPlayground"]

_NARROW = w.Layout(width="auto")
_BOX = w.Layout(width="220px")
_WIDE = {"description_width": "initial"}
SETTLE_ACTIONS = ("ack", "nack", "requeue", "extend", "dead-letter")


def _now() -> datetime:
    return datetime.now(UTC)


def _short(task_id: str | None) -> str:
    return "" if task_id is None else task_id[-8:]  # ids are time-ordered: the tail differs


@dataclass(eq=False)
class HeldDelivery:
    """A delivery this playground holds un-settled: its row of buttons and its lease expiry."""

    delivery: Delivery
    consumer: Consumer
    expires: datetime | None
    label: w.HTML = field(default_factory=w.HTML)
    buttons: dict[str, w.Button] = field(default_factory=dict)
    row: w.HBox = field(default_factory=w.HBox)

    def describe(self, now: datetime) -> str:
        env = self.delivery.envelope
        if self.expires is None:
            lease = "no lease"
        else:
            left = (self.expires - now).total_seconds()
            lease = f"lease {left:5.1f} s left" if left > 0 else "lease EXPIRED (redelivered)"
        return (
            f"{env.name} {_short(env.id)} · priority {env.priority} · "
            f"delivery #{self.delivery.delivery_count} · {lease}"
        )


class BrokerPlayground(w.VBox):
    """Publish, consume, ack/nack/extend/dead-letter by hand, with live counts and an event log.

    `broker_or_url` is an open Broker (left open by `close()`) or a URL opened
    here with `connect(url, **options)` (closed by `close()`). The broker is
    wrapped with `stemlab.instrument`, and the last `log_size` calls made through
    it are shown; counting (every refresh) goes to the unwrapped broker, so the
    log holds what you did. Errors become the message line, never a traceback.
    With `workers=True` a `WorkersPanel` (live workers and control buttons) is
    shown at the bottom; `backend` is where it reads heartbeats (default: the
    broker's URL, with the same namespace).
    """

    def __init__(
        self,
        broker_or_url: Broker | str,
        *,
        queue: str = "playground",
        refresh_interval: float = 0.5,
        log_size: int = 15,
        dead_page: int = 20,
        workers: bool = True,
        backend: ResultBackend | str | None = None,
        **options: Any,
    ) -> None:
        if isinstance(broker_or_url, str):
            raw = connect(broker_or_url, **options)
            self._owns_broker = True
        elif isinstance(broker_or_url, Broker):
            raw = broker_or_url
            self._owns_broker = False
        else:
            raise TypeError(f"expected a Broker or a URL, got {type(broker_or_url).__name__}")
        self.broker = instrument(raw)
        self._counter: Broker = self.broker.inner  # counting is not logged
        self.log_size = log_size
        self.dead_page = dead_page
        self.counts: dict[str, int | str] = {}
        self.held: list[HeldDelivery] = []
        self._consumer: Consumer | None = None
        self._consumer_key: tuple[str, int] | None = None
        self._log_len = -1
        self._dead_seen: tuple[Any, ...] | None = None
        self._tick_error = ""
        self._build(queue)
        self.workers_panel: WorkersPanel | None = None
        if workers:
            if backend is None and isinstance(broker_or_url, str):
                backend = None if broker_or_url.lower().startswith("memory") else broker_or_url
            ns = {"namespace": options["namespace"]} if "namespace" in options else {}
            self.workers_panel = WorkersPanel(raw, backend, refresh_interval=1.0, **ns)
        super().__init__(children=self._layout())
        tag_controls(self)
        self.add_class("stemlab-playground")
        self._worker = Worker(
            f"stemlab-playground-{broker_name(raw)}",
            tick=self._refresh,
            interval=refresh_interval,
            on_stop=self._release,
        )

    # ------------------------------------------------------------------ layout
    def _build(self, queue: str) -> None:
        self.title = w.HTML(f"<b>Broker playground</b> · {type(self._counter).__name__}")
        self.queue = w.Text(value=queue, description="queue", layout=_BOX)
        self.task_name = w.Text(value="demo.task", description="task", layout=_BOX)
        self.priority = w.IntSlider(value=0, min=0, max=9, description="priority")
        self.delay = w.BoundedFloatText(
            value=0.0, min=0.0, max=86_400.0, description="delay s", layout=_BOX
        )
        self.count = w.BoundedIntText(value=1, min=1, max=100, description="count", layout=_BOX)
        self.visibility = w.BoundedFloatText(
            value=0.0,
            min=0.0,
            max=86_400.0,
            description="lease s",
            layout=_BOX,
            tooltip="0: broker default",
        )
        self.args = w.Textarea(value='{"n": 1}', description="args", placeholder="a JSON object")
        self.args_error = w.HTML()
        self.publish_button = w.Button(description="Publish", button_style="primary")
        self.prefetch = w.BoundedIntText(
            value=1, min=1, max=100, description="prefetch", layout=_BOX
        )
        self.consume_button = w.Button(description="Consume", button_style="info")
        self.extend_by = w.BoundedFloatText(
            value=30.0, min=0.1, max=86_400.0, description="extend s", layout=_BOX
        )
        self.reason = w.Text(value="manual", description="DLQ reason", style=_WIDE)
        self.purge_button = w.Button(description="Purge queue", button_style="warning")
        self.counts_label = w.HTML()
        self.deliveries_box = w.VBox()
        self.dead_out = w.Output()
        self.replay_button = w.Button(description="Replay dead letters")
        self.purge_dead_button = w.Button(description="Purge dead letters", button_style="danger")
        self.log_out = w.Output()
        self.message = MessageLine()

        self.args.observe(lambda _change: self._parse_args(), names="value")
        self._on(self.publish_button, self._publish)
        self._on(self.consume_button, self._consume)
        self._on(self.purge_button, self._purge)
        self._on(self.replay_button, self._replay)
        self._on(self.purge_dead_button, self._purge_dead)

    def _layout(self) -> list[w.Widget]:
        def heading(text: str) -> w.HTML:
            return w.HTML(f"<h4 style='margin:8px 0 2px 0'>{text}</h4>")

        return [
            self.title,
            self.counts_label,
            self.message,
            heading("Publish"),
            w.HBox([self.queue, self.task_name, self.priority]),
            w.HBox([self.delay, self.count, self.visibility]),
            w.HBox([self.args, w.VBox([self.publish_button, self.args_error])]),
            heading("Consume"),
            w.HBox([self.prefetch, self.consume_button, self.extend_by, self.reason]),
            self.deliveries_box,
            heading("Dead letters"),
            w.HBox([self.replay_button, self.purge_dead_button, self.purge_button]),
            self.dead_out,
            heading("Event log (instrumented calls, newest last)"),
            self.log_out,
            *([heading("Workers"), self.workers_panel] if self.workers_panel is not None else []),
        ]

    def _on(self, button: w.Button, action: Any) -> None:
        button.on_click(lambda _b: self._worker.submit(action))

    # ----------------------------------------------------------------- public
    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every queued click has been handled and the view refreshed."""
        return self._worker.wait_idle(timeout)

    def close(self) -> None:
        """Stop the refresh thread, close the consumer (and the broker if opened here)."""
        panel = getattr(self, "workers_panel", None)
        if panel is not None:
            panel.close()  # before the broker it uses is closed
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()
        super().close()

    # ---------------------------------------------------------------- actions
    def _parse_args(self) -> dict[str, Any] | None:
        """The args JSON as a dict, or None with the parse error shown under the box."""
        text = self.args.value.strip() or "{}"
        try:
            value = json.loads(text)
        except ValueError as exc:
            self.args_error.value = f"<span style='color:#b71c1c'>not JSON: {exc}</span>"
            return None
        if not isinstance(value, dict):
            self.args_error.value = "<span style='color:#b71c1c'>args must be a JSON object</span>"
            return None
        self.args_error.value = ""
        return value

    def _guarded(self, action: Any) -> None:
        try:
            action()
        except Exception as exc:  # every failure is a message, never a traceback
            self.message.error(exc)

    def _publish(self) -> None:
        args = self._parse_args()
        if args is None:
            self.message.error("args is not a JSON object: nothing published")
            return

        def publish() -> None:
            delay = float(self.delay.value)
            not_before = _now() + timedelta(seconds=delay) if delay > 0 else None
            envelopes = [
                Envelope(
                    name=self.task_name.value.strip(),
                    args=args,
                    queue=self.queue.value.strip(),
                    priority=int(self.priority.value),
                    not_before=not_before,
                    visibility_timeout=float(self.visibility.value) or None,
                )
                for _ in range(int(self.count.value))
            ]
            for envelope in envelopes:
                self.broker.publish(envelope)
            due = f", due in {delay:g} s" if not_before else ""
            self.message.say(
                f"published {len(envelopes)} x {envelopes[0].name} to "
                f"{envelopes[0].queue} (priority {envelopes[0].priority}{due})"
            )

        self._guarded(publish)

    def _consumer_for(self, queue: str, prefetch: int) -> Consumer:
        if self._consumer is None or self._consumer_key != (queue, prefetch):
            if self._consumer is not None:
                self._consumer.close()  # what it handed out stays leased and listed
            self._consumer = self.broker.consume(queue, prefetch=prefetch)
            self._consumer_key = (queue, prefetch)
        return self._consumer

    def _consume(self) -> None:
        def consume() -> None:
            queue = validate_queue_name(self.queue.value.strip())
            prefetch = int(self.prefetch.value)
            consumer = self._consumer_for(queue, prefetch)
            want = prefetch - sum(1 for h in self.held if h.consumer is consumer)
            if want <= 0:
                self.message.error(
                    f"holding {prefetch} un-settled deliveries (prefetch={prefetch}): "
                    "settle one, or raise the prefetch"
                )
                return
            got = []
            for i in range(want):
                delivery = consumer.get(timeout=0.5 if i == 0 else 0.05)
                if delivery is None:
                    break
                got.append(self._hold(delivery, consumer))
            if got:
                self.held.extend(got)
                self._show_held()
                names = ", ".join(_short(h.delivery.envelope.id) for h in got)
                self.message.say(f"received {len(got)} from {queue}: {names}")
            else:
                self.message.say(f"nothing ready on {queue}", "busy")

        self._guarded(consume)

    def _hold(self, delivery: Delivery, consumer: Consumer) -> HeldDelivery:
        held = HeldDelivery(delivery, consumer, delivery.lease_expires_at)
        for action in SETTLE_ACTIONS:
            button = w.Button(description=action, layout=_NARROW)
            button.add_class(f"stemlab-{action}")
            button.on_click(lambda _b, a=action: self._worker.submit(lambda: self._settle(held, a)))
            held.buttons[action] = button
        held.label.value = held.describe(_now())
        held.row.children = [held.label, *held.buttons.values()]
        held.row.add_class("stemlab-held")
        return held

    def _settle(self, held: HeldDelivery, action: str) -> None:
        delivery = held.delivery
        short = _short(delivery.envelope.id)
        try:
            if action == "extend":
                held.expires = self.broker.extend_lease(delivery, by=float(self.extend_by.value))
                held.label.value = held.describe(_now())
                self.message.say(f"extended the lease of {short} by {self.extend_by.value:g} s")
                return
            if action == "ack":
                self.broker.ack(delivery)
                done = "acked"
            elif action == "nack":
                self.broker.nack(delivery, requeue=False)
                done = "nacked: dead-lettered with reason 'nack'"
            elif action == "requeue":
                self.broker.nack(delivery, requeue=True)
                done = "requeued: ready again at the tail of its priority"
            else:
                reason = self.reason.value.strip() or None
                self.broker.dead_letter(delivery, reason=reason)
                done = f"dead-lettered with reason {reason!r}"
        except LeaseLost as exc:
            self._drop(held)  # the receipt is stale for good: the row can only mislead
            self.message.error(exc)
            return
        except Exception as exc:
            self.message.error(exc)
            return
        self._drop(held)
        self.message.say(f"{short} {done}")

    def _drop(self, held: HeldDelivery) -> None:
        if held in self.held:
            self.held.remove(held)
        self._show_held()

    def _show_held(self) -> None:
        self.deliveries_box.children = [h.row for h in self.held]

    def _purge(self) -> None:
        def purge() -> None:
            queue = self.queue.value.strip()
            removed = self.broker.purge(queue)
            self.message.say(f"purged {removed} messages from {queue} (dead letters kept)")

        self._guarded(purge)

    def _replay(self) -> None:
        def replay() -> None:
            queue = self.queue.value.strip()
            result = self.broker.replay_dead_letters(queue, limit=self.dead_page)
            self.message.say(f"replayed {result.count} dead letters to {queue}, oldest first")

        self._guarded(replay)

    def _purge_dead(self) -> None:
        def purge_dead() -> None:
            queue = self.queue.value.strip()
            removed = self.broker.purge_dead_letters(queue)
            self.message.say(f"deleted {removed} dead letters of {queue}")

        self._guarded(purge_dead)

    # ---------------------------------------------------------------- refresh
    def _refresh(self) -> None:
        """Counts, lease countdowns, dead letters and the log; runs on the worker thread."""
        now = _now()
        for held in self.held:
            held.label.value = held.describe(now)
        try:
            self._refresh_counts()
        except Exception as exc:  # shown where the counts go: the message line keeps the last click
            text = describe_error(exc)
            if text != self._tick_error:
                self._tick_error = text
                self.counts_label.value = (
                    f"<span style='color:#b71c1c'>counts unavailable: {html.escape(text)}</span>"
                )
        else:
            self._tick_error = ""
        self._refresh_log()

    def _refresh_counts(self) -> None:
        queue = validate_queue_name(self.queue.value.strip())
        b = self._counter
        page = b.list_dead_letters(queue, limit=self.dead_page)
        more = page.next_offset is not None
        self.counts = {
            "pending": b.pending_count(queue),
            "inflight": b.inflight_count(queue),
            "delayed": b.delayed_count(queue),
            "dead": f"{len(page.entries)}+" if more else len(page.entries),
        }
        c = self.counts
        self.counts_label.value = (
            f"<b>{queue}</b>: <span class='stemlab-counts'>pending {c['pending']} · "
            f"in flight {c['inflight']} · delayed {c['delayed']} · dead {c['dead']}</span>"
        )
        seen = tuple((e.envelope.id, e.reason, e.dead_at) for e in page.entries)
        if seen != self._dead_seen:
            self._dead_seen = seen
            header = ["dead at", "task", "id", "priority", "attempt", "reason"]
            rows = [
                (
                    e.dead_at.astimezone().strftime("%H:%M:%S"),
                    e.envelope.name,
                    _short(e.envelope.id),
                    e.envelope.priority,
                    e.envelope.attempt,
                    e.reason or "",
                )
                for e in page.entries
            ]
            empty = f"no dead letters on {queue}"
            show_html(
                self.dead_out, html_table(header, rows, empty), plain_table(header, rows, empty)
            )

    def _refresh_log(self) -> None:
        recorder = self.broker.recorder
        if len(recorder) == self._log_len:
            return
        self._log_len = len(recorder)
        records = recorder.records(max(0, self._log_len - self.log_size))
        header = ["time", "op", "queue", "task", "prio", "ms", "result"]
        rows = [
            (
                datetime.fromtimestamp(r.ts).strftime("%H:%M:%S.%f")[:-3],
                r.op,
                r.queue or "",
                _short(r.task_id),
                "" if r.priority is None else r.priority,
                f"{r.duration_s * 1000:.2f}",
                "ok" if r.ok else f"{r.error}",
            )
            for r in records
        ]
        empty = "no calls yet"
        show_html(self.log_out, html_table(header, rows, empty), plain_table(header, rows, empty))

    def _release(self) -> None:
        """On the worker thread, last: close the consumer, and the broker if it is ours."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._owns_broker:
            self.broker.close()
