"""ScenarioExplorer driven headlessly: debounced re-simulation, the figures it draws, a live run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from stemlab.widgets import ScenarioExplorer
from stemlab.widgets.explorer import LOADS


@pytest.fixture
def explorer() -> Iterator[ScenarioExplorer]:
    ex = ScenarioExplorer(brokers=("ideal", "redis"), tasks=300, debounce=0.2)
    yield ex
    ex.close()


def _png(out: object) -> bool:
    outputs = out.outputs  # type: ignore[attr-defined]
    return len(outputs) == 1 and "image/png" in outputs[0]["data"]


def test_first_draw_has_every_figure_and_the_summary(explorer: ScenarioExplorer) -> None:
    assert explorer.wait_idle()
    assert explorer.simulations == 1
    for out in (explorer.cdf_out, explorer.prio_out, explorer.depth_out, explorer.load_out):
        assert _png(out)
    summary = explorer.summary_out.outputs[0]["data"]["text/plain"]
    assert "ideal" in summary and "redis" in summary and "wait_p95" in summary
    assert set(explorer.results) == {"ideal", "redis"}
    assert len(explorer.load_points) == 2 * len(LOADS)
    assert (explorer.summary["lost"] == 0).all()
    assert explorer.progress.value == explorer.progress.max
    assert "simulated 2 brokers" in explorer.message.text


def test_slider_changes_are_debounced_into_one_run(explorer: ScenarioExplorer) -> None:
    assert explorer.wait_idle()
    before = explorer.simulations
    old_wait = explorer.summary.loc["redis", "wait_p95"]
    explorer.workers.value = 2  # load 0.5 -> 1.0: waits grow
    explorer.crash_rate.value = 0.05
    explorer.visibility.value = 1.0
    explorer.replications.value = 2
    assert "waiting" in explorer.message.text
    assert explorer.wait_idle()
    assert explorer.simulations == before + 1
    sc = explorer.scenario()
    assert (sc.workers, sc.crash_probability, sc.visibility_timeout) == (2, 0.05, 1.0)
    assert explorer.summary.loc["redis", "wait_p95"] > old_wait
    assert explorer.summary.loc["redis", "redeliveries"] > 0  # crashed tasks were redelivered
    assert len(explorer.results["redis"].tasks) == 2 * 300  # replications pooled for the plots


def test_scenario_follows_every_control(explorer: ScenarioExplorer) -> None:
    explorer.distribution.value = "constant"
    explorer.service_ms.value = 20.0
    explorer.prefetch.value = 4
    explorer.renewal.value = True
    explorer.high_share.value = 0.0
    sc = explorer.scenario()
    assert sc.service_time.kind == "constant" and sc.service_time.mean == pytest.approx(0.02)
    assert sc.prefetch == 4 and sc.lease_renewal and sc.priority_weights == {0: 1.0}


def test_run_live_overlays_measured_on_predicted(explorer: ScenarioExplorer) -> None:
    explorer.live_tasks = 60
    explorer.live_button.click()
    assert explorer.wait_idle()
    assert set(explorer.live_results) == {"predicted memory", "measured memory"}
    assert explorer.live_results["measured memory"].summary()["acked"] == 60
    assert _png(explorer.live_out)
    assert "60/60 acked" in explorer.live_message.text
    assert not explorer.live_button.disabled


def test_run_live_on_sqlite_and_a_bad_url(explorer: ScenarioExplorer, tmp_path: Path) -> None:
    explorer.live_tasks = 30
    explorer.live_url.value = f"sqlite:///{tmp_path / 'live.db'}"
    explorer.live_button.click()
    assert explorer.wait_idle()
    assert "measured sqlite" in explorer.live_results
    explorer.live_url.value = "nosuch://x"
    explorer.live_button.click()
    assert explorer.wait_idle()
    assert explorer.live_message.kind == "error"
    assert "unknown URL scheme" in explorer.live_message.text


def test_close_stops_the_worker() -> None:
    ex = ScenarioExplorer(brokers=("ideal",))
    assert "stemlab-explorer" in {t.name for t in threading.enumerate()}
    ex.close()
    assert not ex._worker.alive
    assert "stemlab-explorer" not in {t.name for t in threading.enumerate()}
