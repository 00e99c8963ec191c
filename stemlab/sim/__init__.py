"""The simulator: the model played in simpy time (`simulate`, `sweep`, queueing theory).

`simulate(scenario, broker, seed)` drives the shared queue state machine in
simpy time with a broker's `BrokerProfile`; `sweep` runs parameter grids on
any `concurrent.futures.Executor`. The distributions and profiles it reads
are defined in `stemlab.model` and re-exported here, where users look for
them (`from stemlab.sim import Exponential`).
"""

from stemlab.model.distributions import (
    Constant,
    Distribution,
    Empirical,
    Exponential,
    LogNormal,
    distribution_from_dict,
)
from stemlab.model.profile import BrokerProfile, ProfileError, load_profile
from stemlab.sim.simulation import simulate
from stemlab.sim.sweeps import sweep

__all__ = [
    "BrokerProfile",
    "Constant",
    "Distribution",
    "Empirical",
    "Exponential",
    "LogNormal",
    "ProfileError",
    "distribution_from_dict",
    "load_profile",
    "simulate",
    "sweep",
]
