"""ScenarioExplorer: move sliders, see every broker's predicted latencies redrawn; then measure one.

Slider changes only stamp the time; the explorer's worker thread re-simulates
once nothing has moved for `debounce` seconds (so dragging a slider costs one
run, not fifty), shows progress, and redraws four figures. "Run live" plays a
small copy of the scenario on a real broker URL on a second thread and overlays
the measured latencies on the simulator's prediction for that broker. `close()`
stops the worker and waits briefly for a live run (which ends by its deadline).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import ipywidgets as w
import pandas as pd

from stemlab.brokers import connect
from stemlab.live import run_live
from stemlab.model import Constant, Exponential, LogNormal, RunResult, Scenario, compare
from stemlab.model.names import broker_name
from stemlab.model.result import empty_ops
from stemlab.model.shipped import shipped_names
from stemlab.sim import simulate
from stemlab.viz import latency_cdf, queue_depth, wait_by_priority
from stemlab.widgets._ui import (
    MessageLine,
    html_table,
    plain_table,
    show_figure,
    show_html,
    tag_controls,
)
from stemlab.widgets._worker import Worker
from stemlab.widgets.plots import throughput_vs_load

__all__ = ["LOADS", "ScenarioExplorer"]

LOADS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.2)  # offered loads of the throughput/wait sweep
_LOAD_TASKS = 300  # tasks per sweep point: enough for a p95, quick to simulate
_STYLE = {"description_width": "140px"}
_SLIDER = w.Layout(width="380px")
_SUMMARY = ["throughput", "wait_p50", "wait_p95", "e2e_p50", "e2e_p95", "redeliveries", "lost"]


def _merge(label: str, runs: Sequence[RunResult]) -> RunResult:
    """Replications pooled into one result (their tasks stacked) for CDFs and percentiles."""
    tasks = pd.concat([r.tasks for r in runs], ignore_index=True)
    first = runs[0]
    return RunResult(
        tasks=tasks, ops=empty_ops(), label=label, kind=first.kind, broker=first.broker
    )


def _cell(column: str, value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        if column.startswith(("wait", "e2e")):
            return f"{value * 1000:.1f} ms"
        return f"{value:.1f}" if column == "throughput" else f"{value:g}"
    return str(value)


class ScenarioExplorer(w.VBox):
    """Sliders for a scenario; the brokers' simulated latencies, waits, depth and load curves.

    `brokers` are profile names simulated on every change (`tasks` each, the
    slider's start value; `seed` and the next ones for replications). `live_urls` maps a
    label to a broker URL offered by "run live" (the URL box also takes any
    URL). Live runs use at most `live_tasks` tasks and `deadline` seconds.
    """

    def __init__(
        self,
        brokers: Sequence[str] = ("ideal", "sqlite", "redis", "postgres"),
        *,
        live_urls: Mapping[str, str] | None = None,
        tasks: int = 600,
        seed: int = 0,
        debounce: float = 0.4,
        live_tasks: int = 200,
        deadline: float = 30.0,
    ) -> None:
        if not brokers:
            raise ValueError("brokers must name at least one profile")
        self.brokers = tuple(brokers)
        self.seed = seed
        self.debounce = debounce
        self.live_tasks = live_tasks
        self.deadline = deadline
        self.results: dict[str, RunResult] = {}
        self.load_points = pd.DataFrame()
        self.summary = pd.DataFrame()  # per broker: the replications' summaries averaged
        self.live_results: dict[str, RunResult] = {}
        self.simulations = 0  # completed redraws (tests and scripts wait on it)
        self._dirty_at: float | None = time.monotonic() - debounce  # draw once at start
        self._live_thread: threading.Thread | None = None
        self._closing = False
        self._build(dict(live_urls or {"memory": "memory://"}), tasks)
        super().__init__(children=self._layout())
        tag_controls(self)
        self.add_class("stemlab-explorer")
        self._worker = Worker("stemlab-explorer", tick=self._maybe_simulate, interval=0.1)

    # ------------------------------------------------------------------ layout
    def _build(self, live_urls: dict[str, str], tasks: int) -> None:
        def slider(cls: Any, **kw: Any) -> Any:
            widget = cls(style=_STYLE, layout=_SLIDER, continuous_update=False, **kw)
            widget.observe(self._changed, names="value")
            return widget

        self.arrival_rate = slider(
            w.FloatLogSlider, value=200.0, base=10, min=0.5, max=3.5, description="arrivals /s"
        )
        self.workers = slider(w.IntSlider, value=4, min=1, max=32, description="workers")
        self.distribution = w.Dropdown(
            options=["exponential", "constant", "lognormal"],
            description="service time",
            style=_STYLE,
        )
        self.distribution.observe(self._changed, names="value")
        self.service_ms = slider(
            w.FloatLogSlider, value=10.0, base=10, min=0, max=3, description="mean service ms"
        )
        self.prefetch = slider(w.IntSlider, value=1, min=1, max=16, description="prefetch")
        self.visibility = slider(
            w.FloatLogSlider, value=30.0, base=10, min=-1.5, max=1.5, description="lease s"
        )
        self.renewal = w.Checkbox(value=False, description="renew leases", style=_STYLE)
        self.renewal.observe(self._changed, names="value")
        self.high_share = slider(
            w.FloatSlider, value=0.2, min=0.0, max=1.0, step=0.05, description="priority-9 share"
        )
        self.crash_rate = slider(
            w.FloatSlider, value=0.0, min=0.0, max=0.2, step=0.005, description="crash rate"
        )
        self.replications = slider(w.IntSlider, value=1, min=1, max=5, description="replications")
        self.tasks = slider(
            w.IntSlider, value=tasks, min=100, max=3000, step=100, description="tasks"
        )
        self.progress = w.IntProgress(value=0, min=0, max=1, description="simulating")
        self.message = MessageLine()
        self.summary_out = w.Output()
        self.cdf_out, self.prio_out, self.depth_out, self.load_out = (w.Output() for _ in range(4))
        self.live_choice = w.Dropdown(options=list(live_urls.items()), description="live broker")
        self.live_url = w.Text(value=next(iter(live_urls.values()), ""), description="URL")
        self.live_choice.observe(lambda ch: setattr(self.live_url, "value", ch["new"]), "value")
        self.live_button = w.Button(description="Run live", button_style="primary")
        self.live_button.on_click(lambda _b: self.run_live())
        self.live_message = MessageLine()
        self.live_out = w.Output()

    def _layout(self) -> list[w.Widget]:
        controls = w.HBox(
            [
                w.VBox([self.arrival_rate, self.workers, self.distribution, self.service_ms]),
                w.VBox([self.prefetch, self.visibility, self.renewal, self.high_share]),
                w.VBox([self.crash_rate, self.replications, self.tasks, self.progress]),
            ]
        )
        figures = w.GridBox(
            [self.cdf_out, self.prio_out, self.depth_out, self.load_out],
            layout=w.Layout(grid_template_columns="repeat(2, 50%)"),
        )
        live = w.HBox([self.live_choice, self.live_url, self.live_button])
        return [
            w.HTML("<b>Scenario explorer</b> · simulated on " + ", ".join(self.brokers)),
            controls,
            self.message,
            self.summary_out,
            figures,
            w.HTML("<h4 style='margin:8px 0 2px 0'>Measure it</h4>"),
            live,
            self.live_message,
            self.live_out,
        ]

    # ----------------------------------------------------------------- public
    def scenario(self) -> Scenario:
        """The scenario the controls describe now (raises ScenarioError for impossible ones)."""
        mean = float(self.service_ms.value) / 1000.0
        kind = self.distribution.value
        service = (
            Constant(mean) if kind == "constant" else LogNormal(mean, 1.0) if kind == "lognormal"
            else Exponential(mean)
        )  # fmt: skip
        share = float(self.high_share.value)
        weights = {p: s for p, s in ((0, 1.0 - share), (9, share)) if s > 0}
        return Scenario(
            name="explorer",
            arrival_rate=float(self.arrival_rate.value),
            tasks=int(self.tasks.value),
            service_time=service,
            workers=int(self.workers.value),
            prefetch=int(self.prefetch.value),
            priority_weights=weights,
            visibility_timeout=float(self.visibility.value),
            lease_renewal=bool(self.renewal.value),
            crash_probability=float(self.crash_rate.value),
        )

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Simulate now if anything changed, and wait for it (and for a running live run)."""
        self._worker.submit(self._simulate_if_dirty)
        ok = self._worker.wait_idle(timeout)
        thread = self._live_thread
        if thread is not None:
            thread.join(timeout)
            ok = ok and not thread.is_alive()
        return ok

    def run_live(self) -> None:
        """Start a live run of the current scenario on the URL box's broker (in the background)."""
        if self._live_thread is not None and self._live_thread.is_alive():
            self.live_message.error("a live run is already going; wait for it to finish")
            return
        try:
            scenario = self.scenario()
        except Exception as exc:
            self.live_message.error(exc)
            return
        url = self.live_url.value.strip()
        self._live_thread = threading.Thread(
            target=self._live, args=(scenario, url), name="stemlab-explorer-live", daemon=True
        )
        self._live_thread.start()

    def close(self) -> None:
        """Stop re-simulating; give a live run a moment to end (it stops at its deadline)."""
        self._closing = True
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()
        thread = getattr(self, "_live_thread", None)
        if thread is not None:
            thread.join(timeout=2.0)
        super().close()

    # -------------------------------------------------------------- simulate
    def _changed(self, _change: Any = None) -> None:
        self._dirty_at = time.monotonic()
        self.message.say("waiting for the sliders to settle...", "busy")

    def _maybe_simulate(self) -> None:
        dirty = self._dirty_at
        if dirty is not None and time.monotonic() - dirty >= self.debounce:
            self._simulate_if_dirty()

    def _simulate_if_dirty(self) -> None:
        if self._dirty_at is None:
            return
        self._dirty_at = None
        try:
            scenario = self.scenario()
        except Exception as exc:
            self.message.error(exc)
            return
        try:
            self._simulate(scenario)
        except Exception as exc:
            self.message.error(exc)

    def _simulate(self, sc: Scenario) -> None:
        started = time.perf_counter()
        reps = int(self.replications.value)
        self.progress.max = len(self.brokers) * (reps + len(LOADS))
        self.progress.value = 0
        results: dict[str, RunResult] = {}
        first: dict[str, RunResult] = {}
        per_run: list[pd.DataFrame] = []
        for broker in self.brokers:
            runs = []
            for k in range(reps):
                runs.append(simulate(sc, broker=broker, seed=self.seed + k, record_ops=False))
                self.progress.value += 1
            results[broker] = _merge(broker, runs)
            first[broker] = replace(runs[0], label=broker)
            # replications overlap in time: average their summaries, pool only for the plots
            per_run.append(compare(runs).mean(numeric_only=True).to_frame(broker).T)
        rows = []
        capacity = sc.workers / sc.service_time.mean
        for broker in self.brokers:
            for load in LOADS:
                point = replace(sc, arrival_rate=load * capacity, tasks=min(sc.tasks, _LOAD_TASKS))
                summary = simulate(point, broker=broker, seed=self.seed, record_ops=False).summary()
                rows.append({"broker": broker, "load": load, **summary})
                self.progress.value += 1
        self.results, self.load_points = results, pd.DataFrame(rows)
        self.summary = pd.concat(per_run)
        self._draw(sc, results, first)
        self.simulations += 1
        self.message.say(
            f"simulated {len(self.brokers)} brokers x {reps} replication(s) of {sc.tasks} tasks "
            f"+ {len(LOADS)} loads at load {sc.load:.2f} in {time.perf_counter() - started:.1f} s"
        )

    def _draw(
        self, sc: Scenario, pooled: dict[str, RunResult], first: dict[str, RunResult]
    ) -> None:
        show_figure(self.cdf_out, latency_cdf(pooled, metric="e2e"), "end-to-end latency CDF")
        show_figure(self.prio_out, wait_by_priority(pooled), "wait by priority")
        show_figure(self.depth_out, queue_depth(first), "queue depth (first replication)")
        show_figure(self.load_out, throughput_vs_load(self.load_points, sc.load), "against load")
        table = self.summary
        header = ["broker", *_SUMMARY]
        rows = [[label, *(_cell(c, table.at[label, c]) for c in _SUMMARY)] for label in table.index]
        show_html(self.summary_out, html_table(header, rows, ""), plain_table(header, rows, ""))

    # ------------------------------------------------------------------ live
    def _live(self, sc: Scenario, url: str) -> None:
        """On the live thread: run a small copy of `sc` on `url`, simulate the same, overlay."""
        tasks = max(20, min(self.live_tasks, sc.tasks, int(sc.arrival_rate * 3)))
        small = replace(sc, tasks=tasks, name="explorer-live")
        self.live_button.disabled = True
        self.live_message.say(f"running {tasks} tasks live on {url} ...", "busy")
        try:
            broker = connect(url)
            try:
                name = broker_name(broker)
                measured = run_live(
                    small, broker, seed=self.seed, progress=False, label=f"measured {name}",
                    deadline=tasks / sc.arrival_rate + self.deadline,
                )  # fmt: skip
            finally:
                broker.close()
            profile = name if name in shipped_names("profiles") else "ideal"
            predicted = simulate(
                small, broker=profile, seed=self.seed, label=f"predicted {profile}"
            )
        except Exception as exc:
            if not self._closing:
                self.live_message.error(exc)
            return
        finally:
            self.live_button.disabled = False
        if self._closing:
            return
        self.live_results = {predicted.label: predicted, measured.label: measured}
        show_figure(self.live_out, latency_cdf(self.live_results), "measured vs predicted")
        m, p = measured.summary(), predicted.summary()
        self.live_message.say(
            f"{url}: {m['acked']}/{tasks} acked, lost {m['lost']}; e2e p50 measured "
            f"{m['e2e_p50'] * 1000:.1f} ms vs predicted {p['e2e_p50'] * 1000:.1f} ms "
            f"({profile} profile)"
        )
