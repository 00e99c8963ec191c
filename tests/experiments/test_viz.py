"""stemlab.viz: every plot returns a matplotlib Figure, for one run, several, or none."""

from __future__ import annotations

import io
import uuid

import matplotlib
import pytest

matplotlib.use("Agg")

from matplotlib.figure import Figure

import stemlab
from stemlab import RunResult, Scenario, run_live, viz
from stemlab.model.result import TaskLedger, empty_ops
from stemlab.sim import Constant

PLOTS = [viz.latency_cdf, viz.queue_depth, viz.wait_by_priority, viz.redeliveries_over_time]


@pytest.fixture(scope="module")
def runs() -> list[RunResult]:
    sc = Scenario(
        name="viz",
        arrival_rate=300.0,
        tasks=120,
        service_time=Constant(0.01),
        workers=2,
        priority_weights={0: 1.0, 5: 1.0, 9: 1.0},
        crash_probability=0.05,
        visibility_timeout=0.2,
    )
    out = []
    for label in ("first", "second"):
        broker = stemlab.connect("memory://", namespace="viz" + uuid.uuid4().hex[:8])
        out.append(run_live(sc, broker, seed=len(out), progress=False, label=label))
        broker.close()
    return out


@pytest.mark.parametrize("plot", PLOTS, ids=lambda p: p.__name__)
def test_plots_return_figures(plot: object, runs: list[RunResult]) -> None:
    for arg in (runs[0], runs, {"a": runs[0], "b": runs[1]}):
        fig = plot(arg)  # type: ignore[operator]
        assert isinstance(fig, Figure)
        ax = fig.axes[0]
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        assert ax.lines, "one line (or more) per run"
        fig.savefig(io.BytesIO(), format="png")


def test_one_line_per_run_with_its_label(runs: list[RunResult]) -> None:
    fig = viz.latency_cdf(runs)
    assert [line.get_label() for line in fig.axes[0].lines] == ["first", "second"]
    fig = viz.queue_depth(runs, in_system=True)
    assert len(fig.axes[0].lines) == 4
    fig = viz.latency_cdf(runs, metric="wait", log=False)
    assert fig.axes[0].get_xscale() == "linear"
    with pytest.raises(ValueError):
        viz.latency_cdf(runs, metric="nope")


def test_wait_by_priority_has_a_point_per_priority(runs: list[RunResult]) -> None:
    fig = viz.wait_by_priority(runs[0])
    p50 = fig.axes[0].lines[0]
    assert list(p50.get_xdata()) == [0, 5, 9]


def test_redeliveries_count_matches_the_summary(runs: list[RunResult]) -> None:
    fig = viz.redeliveries_over_time(runs[0])
    y = fig.axes[0].lines[0].get_ydata()
    assert y[-1] == runs[0].summary()["redeliveries"]


@pytest.mark.parametrize("plot", PLOTS, ids=lambda p: p.__name__)
def test_empty_results_still_give_a_figure(plot: object) -> None:
    empty = RunResult(tasks=TaskLedger().tasks_frame(), ops=empty_ops(), label="empty")
    fig = plot([empty])  # type: ignore[operator]
    assert isinstance(fig, Figure)
    assert not fig.axes[0].lines
