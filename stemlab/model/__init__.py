"""The model: what a run is, independent of how it is played (simulated or live).

Scenarios, duration distributions, the workload drawn from a seed, the worker
protocol (queue, task name, polling, retries), the ledger and frames every
run produces, and broker profiles (the data the simulator reads, with the
optional host model of what each call costs the machine). Nothing
here runs a simulation, starts a thread or opens a broker.
"""

from stemlab.errors import ProfileError, ScenarioError
from stemlab.model.distributions import (
    Constant,
    Distribution,
    Empirical,
    Exponential,
    LogNormal,
    distribution_from_dict,
)
from stemlab.model.host import HostModel
from stemlab.model.names import broker_name
from stemlab.model.profile import BrokerProfile, load_profile
from stemlab.model.replications import Replications
from stemlab.model.result import RunResult, TaskLedger, compare
from stemlab.model.scenario import Scenario

__all__ = [
    "BrokerProfile",
    "Constant",
    "Distribution",
    "Empirical",
    "Exponential",
    "HostModel",
    "LogNormal",
    "ProfileError",
    "Replications",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "TaskLedger",
    "broker_name",
    "compare",
    "distribution_from_dict",
    "load_profile",
]
