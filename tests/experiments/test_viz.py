"""stemlab.viz: every plot returns a matplotlib Figure, for one run, several, or none."""

from __future__ import annotations

import io
import uuid

import matplotlib
import pytest

matplotlib.use("Agg")

from dataclasses import replace

from matplotlib.collections import PolyCollection
from matplotlib.colors import same_color
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import stemlab
from stemlab import RunResult, Scenario, run_live, simulate, sweep, viz
from stemlab.model.result import TaskLedger, empty_ops
from stemlab.sim import Constant, Exponential

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
        assert ax.lines or ax.containers, "one line or bar group (or more) per run"
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


def test_wait_by_priority_has_a_bar_per_priority(runs: list[RunResult]) -> None:
    fig = viz.wait_by_priority(runs[0])
    ax = fig.axes[0]
    assert all(isinstance(c, BarContainer) for c in ax.containers)
    assert [c.get_label() for c in ax.containers] == ["first p95", "first p50"]
    assert all(len(c.patches) == 3 for c in ax.containers)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "5", "9"]
    waits = runs[0].tasks
    p50_ms = 1000 * (waits["started_at"] - waits["enqueued_at"])[waits["priority"] == 9].median()
    assert ax.containers[1].patches[2].get_height() == pytest.approx(p50_ms)
    assert isinstance(ax.yaxis.get_major_formatter(), viz.MillisecondFormatter)


def test_redeliveries_count_matches_the_summary(runs: list[RunResult]) -> None:
    fig = viz.redeliveries_over_time(runs[0])
    y = fig.axes[0].lines[0].get_ydata()
    assert y[-1] == runs[0].summary()["redeliveries"]


@pytest.mark.parametrize("plot", PLOTS, ids=lambda p: p.__name__)
def test_empty_results_still_give_a_figure(plot: object) -> None:
    empty = RunResult(tasks=TaskLedger().tasks_frame(), ops=empty_ops(), label="empty")
    fig = plot([empty])  # type: ignore[operator]
    assert isinstance(fig, Figure)
    assert not fig.axes[0].lines and not fig.axes[0].containers


# --- figures fit for reading: colours, milliseconds, zeros, counts, bands -------------


def _sims(broker: str, seeds: range, **changes: object) -> list[RunResult]:
    sc = Scenario(
        name="bands",
        arrival_rate=150.0,
        tasks=150,
        service_time=Exponential(0.01),
        workers=2,
        priority_weights={0: 1.0, 9: 1.0},
        crash_probability=0.05,
        visibility_timeout=0.1,
    )
    return [simulate(replace(sc, **changes), broker=broker, seed=s) for s in seeds]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def replicated() -> dict[str, list[RunResult]]:
    return {b: _sims(b, range(3)) for b in ("ideal", "sqlite", "redis")}


def test_every_broker_has_its_fixed_colour(replicated: dict[str, list[RunResult]]) -> None:
    assert set(viz.BROKER_COLOURS) >= {"ideal", "memory", "sqlite", "redis", "postgres"}
    known = list(viz.BROKER_COLOURS.values())
    assert len(set(known)) == len(known), "no two brokers share a colour"
    for name in ("redis-streams", "rabbitmq", "sqs", "kafka", "my-broker"):
        assert viz.broker_colour(name) == viz.broker_colour(name.upper())
    assert viz.broker_colour("postgresql") == viz.BROKER_COLOURS["postgres"]
    single = {b: runs[0] for b, runs in replicated.items()}
    for plot in (viz.latency_cdf, viz.queue_depth, viz.redeliveries_over_time):
        ax = plot(single).axes[0]
        for line, broker in zip(ax.lines, single, strict=True):
            assert same_color(line.get_color(), viz.BROKER_COLOURS[broker]), (plot, broker)
    ax = viz.wait_by_priority(single).axes[0]
    colours = [c.patches[0].get_facecolor()[:3] for c in ax.containers]
    expected = [viz.BROKER_COLOURS[b] for b in single for _ in ("p95", "p50")]
    assert all(same_color(c, e) for c, e in zip(colours, expected, strict=True))


def test_the_same_broker_twice_keeps_its_colour_and_changes_style(runs: list[RunResult]) -> None:
    ax = viz.latency_cdf(runs).axes[0]
    first, second = ax.lines
    assert same_color(first.get_color(), viz.BROKER_COLOURS["memory"])
    assert same_color(second.get_color(), first.get_color())
    assert first.get_linestyle() != second.get_linestyle()


def test_latencies_are_drawn_in_milliseconds(runs: list[RunResult]) -> None:
    ax = viz.latency_cdf(runs[0]).axes[0]
    assert "(ms" in ax.get_xlabel()
    assert isinstance(ax.xaxis.get_major_formatter(), viz.MillisecondFormatter)
    t = runs[0].tasks
    done = t[t["outcome"] == "acked"]
    slowest_ms = 1000 * float((done["finished_at"] - done["enqueued_at"]).max())
    assert float(ax.lines[0].get_xdata().max()) == pytest.approx(slowest_ms)
    fmt = viz.MillisecondFormatter()
    assert [fmt(v) for v in (0, 0.05, 1, 250, 1500, 2.5)] == [
        "0",
        "0.05",
        "1",
        "250",
        "1,500",
        "2.5",
    ]


def test_zero_latencies_get_a_symlog_axis_with_a_stated_floor(
    replicated: dict[str, list[RunResult]],
) -> None:
    ideal = replicated["ideal"][0]
    assert ((ideal.tasks["started_at"] - ideal.tasks["enqueued_at"]) == 0).any()
    ax = viz.latency_cdf(ideal, metric="wait").axes[0]
    assert ax.get_xscale() == "symlog"
    assert "linear below" in ax.get_xlabel()
    ax = viz.latency_cdf(replicated["sqlite"][0], metric="e2e").axes[0]
    assert ax.get_xscale() == "log"


def test_counts_have_integer_ticks(runs: list[RunResult]) -> None:
    for plot in (viz.queue_depth, viz.redeliveries_over_time):
        locator = plot(runs).axes[0].yaxis.get_major_locator()
        assert isinstance(locator, MaxNLocator)
        assert all(float(v).is_integer() for v in locator.tick_values(0, 7.3))


def test_replications_are_drawn_with_confidence_bands(
    replicated: dict[str, list[RunResult]],
) -> None:
    for plot in (viz.latency_cdf, viz.queue_depth, viz.redeliveries_over_time):
        ax = plot(replicated).axes[0]
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == 3, plot.__name__
        for band, broker in zip(bands, replicated, strict=True):
            assert same_color(band.get_facecolor()[0][:3], viz.BROKER_COLOURS[broker])
        assert "(n=3)" in str(ax.lines[0].get_label())
    ax = viz.wait_by_priority(replicated).axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 6 and all(c.errorbar is not None for c in bars)


def test_mean_ci_is_a_student_t_interval() -> None:
    mean, lo, hi = viz.mean_ci([[1.0], [2.0], [3.0]])
    assert mean[0] == pytest.approx(2.0)
    assert hi[0] - mean[0] == pytest.approx(4.303 * 1.0 / 3**0.5, rel=1e-3)
    mean, lo, hi = viz.mean_ci([[5.0]])
    assert lo[0] == hi[0] == 5.0


def test_sweep_lines_one_line_per_broker_with_bands_and_target() -> None:
    sc = Scenario(name="s", arrival_rate=100.0, tasks=200, service_time=Exponential(0.01))
    frame = sweep(sc, {"workers": [1, 2, 4], "broker": ["redis", "postgres"]}, seeds=(1, 2))
    ax = viz.sweep_lines(frame, "workers", "e2e_p95", target=0.25).axes[0]
    lines = [line for line in ax.lines if line.get_label().startswith(("redis", "postgres"))]
    assert [line.get_label() for line in lines] == ["redis (n=2)", "postgres (n=2)"]
    assert same_color(lines[0].get_color(), viz.BROKER_COLOURS["redis"])
    assert list(lines[0].get_xdata()) == [1, 2, 4]
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 2
    assert any(line.get_label() == "target 250" for line in ax.lines)
    assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator)
    assert "(ms" in ax.get_ylabel()
    with pytest.raises(ValueError, match="no column"):
        viz.sweep_lines(frame, "nope")


def test_prediction_errors_one_bar_per_broker_and_metric() -> None:
    from stemlab import ValidationReport, load_profile

    sc = Scenario(name="v", arrival_rate=100.0, tasks=150, service_time=Exponential(0.01))
    reports = [
        ValidationReport(
            sc,
            broker,
            load_profile(broker),
            live=[simulate(sc, broker="memory", seed=s) for s in (1, 2)],
            sim=[simulate(sc, broker=broker, seed=s) for s in (1, 2)],
        )
        for broker in ("sqlite", "redis")
    ]
    ax = viz.prediction_errors(reports, metrics=["e2e_p50", "e2e_p95"]).axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [c.get_label() for c in bars] == ["sqlite (2 rep.)", "redis (2 rep.)"]
    assert same_color(bars[1].patches[0].get_facecolor()[:3], viz.BROKER_COLOURS["redis"])
    expected = reports[0].frame.at["e2e_p95", "rel_error"] * 100
    assert bars[0].patches[1].get_height() == pytest.approx(expected)
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 2  # the targets
