"""matplotlib figures over run results and sweeps, one fixed colour per broker, latencies in ms.

Latency CDFs, queue depth, waits by priority, redeliveries, a metric against
a swept parameter, and the simulator's prediction error; replications are
drawn with 95 % confidence bands.
"""

from stemlab.viz.fidelity import prediction_errors
from stemlab.viz.plots import (
    Results,
    latency_cdf,
    queue_depth,
    redeliveries_over_time,
    wait_by_priority,
)
from stemlab.viz.style import BROKER_COLOURS, MillisecondFormatter, broker_colour, mean_ci
from stemlab.viz.sweeps import sweep_lines

__all__ = [
    "BROKER_COLOURS",
    "MillisecondFormatter",
    "Results",
    "broker_colour",
    "latency_cdf",
    "mean_ci",
    "prediction_errors",
    "queue_depth",
    "redeliveries_over_time",
    "sweep_lines",
    "wait_by_priority",
]
