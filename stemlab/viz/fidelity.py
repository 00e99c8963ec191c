"""How wrong the simulator was: the relative prediction error per metric, one bar per broker."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from stemlab.experiments.validate import TARGETS, ValidationReport
from stemlab.viz.style import broker_colour

__all__ = ["prediction_errors"]

_METRICS = ("wait_p50", "e2e_p50", "e2e_p95", "e2e_p99", "throughput")


def prediction_errors(
    reports: Sequence[ValidationReport], metrics: Sequence[str] = _METRICS
) -> Figure:
    """Relative error of the prediction (predicted / measured - 1, in %) per metric and broker.

    Bars of one metric stand side by side, one per report, in the broker's
    colour, with the paired spread over replications (± sd) as error bars
    when there are several; the metric's target (e.g. ±20 % for e2e p95) is
    shaded. Positive means the simulator predicted more than was measured.
    """
    fig = Figure(figsize=(8.0, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.set_title("prediction error (simulated vs live)")
    ax.grid(True, axis="y", alpha=0.3)
    x = np.arange(len(metrics))
    width = 0.8 / max(len(reports), 1)
    for k, report in enumerate(reports):
        frame = report.frame.reindex(list(metrics))
        error = frame["rel_error"].to_numpy(dtype=float) * 100
        spread = frame["rel_error_sd"].to_numpy(dtype=float) * 100
        ax.bar(
            x + (k - (len(reports) - 1) / 2) * width,
            np.nan_to_num(error),
            width * 0.9,
            yerr=np.nan_to_num(spread) if len(report.live) > 1 else None,
            capsize=2,
            color=broker_colour(report.broker),
            label=f"{report.broker} ({len(report.live)} rep.)",
        )
    for i, metric in enumerate(metrics):
        target = TARGETS.get(metric)
        if target is not None:
            ax.fill_between(
                [i - 0.45, i + 0.45], -target * 100, target * 100, color="0.5", alpha=0.15, lw=0
            )
    ax.axhline(0, color="0.2", lw=0.8)
    ax.set_xticks(x, [m.replace("_", " ") for m in metrics])
    ax.set_ylabel("predicted / measured - 1 (%)")
    if reports:
        ax.legend(fontsize="small")
    ax.text(
        0.99,
        0.01,
        "grey: the target (where one is set)",
        ha="right",
        va="bottom",
        fontsize="x-small",
        transform=ax.transAxes,
    )
    return fig
