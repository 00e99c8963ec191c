"""The simulator: duration distributions, broker profiles, `simulate` and `sweep`.

`simulate(scenario, broker, seed)` drives the shared queue state machine in
simpy time with a broker's `BrokerProfile`; `sweep` runs parameter grids on
any `concurrent.futures.Executor`.

`simulate` and `sweep` are loaded on first use: `stemlab.experiments.scenario`
imports the distributions from this package while `stemlab.experiments` is
still loading, and the simulator itself needs `stemlab.experiments`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stemlab.sim.distributions import (
    Constant,
    Distribution,
    Empirical,
    Exponential,
    LogNormal,
    distribution_from_dict,
)
from stemlab.sim.profile import BrokerProfile, ProfileError, load_profile

if TYPE_CHECKING:
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

_LAZY = {"simulate": "stemlab.sim.simulation", "sweep": "stemlab.sim.sweeps"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stemlab.sim' has no attribute {name!r}")
