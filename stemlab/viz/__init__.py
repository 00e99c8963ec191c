"""matplotlib plots over run results: latency CDFs, queue depth, waits by priority, redeliveries."""

from stemlab.viz.plots import latency_cdf, queue_depth, redeliveries_over_time, wait_by_priority

__all__ = ["latency_cdf", "queue_depth", "redeliveries_over_time", "wait_by_priority"]
