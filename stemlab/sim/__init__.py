"""The simulator's public pieces: duration distributions (the simpy model lands here too)."""

from stemlab.sim.distributions import (
    Constant,
    Distribution,
    Empirical,
    Exponential,
    LogNormal,
    distribution_from_dict,
)

__all__ = [
    "Constant",
    "Distribution",
    "Empirical",
    "Exponential",
    "LogNormal",
    "distribution_from_dict",
]
