"""Queueing-theory reference values that the `ideal` broker must reproduce.

Erlang C gives the M/M/c probability of waiting and mean wait; Cobham's
formula gives per-class mean waits under non-preemptive priority (M/M/c,
one service rate for every class). Used by the tests, the benchmark and
the docs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["erlang_c", "mmc_mean_wait", "priority_mean_waits"]


def erlang_c(servers: int, offered: float) -> float:
    """P(wait > 0) in M/M/c with `servers` and offered load `offered` = lambda / mu (< servers)."""
    if servers < 1:
        raise ValueError("servers must be >= 1")
    if not 0 <= offered < servers:
        raise ValueError(f"offered load must be in [0, servers), got {offered}")
    term, total = 1.0, 1.0  # a^k / k!, summed for k < c
    for k in range(1, servers):
        term *= offered / k
        total += term
    last = term * offered / servers  # a^c / c!
    tail = last * servers / (servers - offered)
    return tail / (total + tail)


def mmc_mean_wait(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time in queue (before service starts) of M/M/c, in the rates' time unit."""
    offered = arrival_rate / service_rate
    return erlang_c(servers, offered) / (servers * service_rate - arrival_rate)


def priority_mean_waits(
    arrival_rates: Mapping[int, float], service_rate: float, servers: int
) -> dict[int, float]:
    """Mean wait per priority class, non-preemptive, higher number served first (Cobham)."""
    total = sum(arrival_rates.values())
    base = erlang_c(servers, total / service_rate) / (servers * service_rate)
    waits: dict[int, float] = {}
    above = 0.0  # load share of classes strictly above the current one
    for prio in sorted(arrival_rates, reverse=True):
        share = arrival_rates[prio] / (servers * service_rate)
        waits[prio] = base / ((1 - above) * (1 - above - share))
        above += share
    if not math.isfinite(sum(waits.values())) or above >= 1:
        raise ValueError("the total load must be below 1 per server")
    return waits
