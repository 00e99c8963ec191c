"""stemlab: choose and understand task-queue brokers.

One Broker contract with in-memory, SQLite, Redis and Postgres adapters,
instrumentation around every adapter, and a simpy simulator of each broker.

`import stemlab` stays light: the contract, the adapters and instrumentation
load at once, while the names that need numpy, pandas or simpy (scenarios,
profiles, `simulate`, `run_live`, `calibrate`, `validate`...) and the task
runtime (`Stem`, `Worker`, result backends) load on first use through a module
`__getattr__` (PEP 562). That is for import time only;
the packages themselves import each other in layers (see pyproject.toml).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stemlab import errors
from stemlab._version import __version__
from stemlab.brokers import connect
from stemlab.core import (
    Broker,
    Capabilities,
    Consumer,
    DeadLetterEntry,
    DeadLetterPage,
    Delivery,
    Envelope,
    ManualClock,
    QueueState,
    ReplayResult,
    SystemClock,
)
from stemlab.errors import BrokerUnavailable, ConfigError, EnvelopeError, LeaseLost, StemlabError
from stemlab.instrument import InstrumentedBroker, instrument

if TYPE_CHECKING:
    from stemlab.calibration import calibrate, measure_task
    from stemlab.experiments import ValidationReport, plan, validate
    from stemlab.live import run_live
    from stemlab.model import (
        BrokerProfile,
        Replications,
        RunResult,
        Scenario,
        compare,
        load_profile,
    )
    from stemlab.runtime import (
        ResultBackend,
        Stem,
        TaskState,
        TaskStatus,
        Worker,
        connect_backend,
    )
    from stemlab.sim import simulate, sweep

__all__ = [
    "Broker",
    "BrokerProfile",
    "BrokerUnavailable",
    "Capabilities",
    "ConfigError",
    "Consumer",
    "DeadLetterEntry",
    "DeadLetterPage",
    "Delivery",
    "Envelope",
    "EnvelopeError",
    "InstrumentedBroker",
    "LeaseLost",
    "ManualClock",
    "QueueState",
    "ReplayResult",
    "Replications",
    "ResultBackend",
    "RunResult",
    "Scenario",
    "Stem",
    "StemlabError",
    "SystemClock",
    "TaskState",
    "TaskStatus",
    "ValidationReport",
    "Worker",
    "__version__",
    "calibrate",
    "compare",
    "connect",
    "connect_backend",
    "errors",
    "instrument",
    "load_profile",
    "measure_task",
    "plan",
    "run_live",
    "simulate",
    "sweep",
    "validate",
]

# public name -> the module that defines it, imported on first access
_LAZY = {
    "BrokerProfile": "stemlab.model",
    "Replications": "stemlab.model",
    "RunResult": "stemlab.model",
    "Scenario": "stemlab.model",
    "compare": "stemlab.model",
    "load_profile": "stemlab.model",
    "simulate": "stemlab.sim",
    "sweep": "stemlab.sim",
    "run_live": "stemlab.live",
    "calibrate": "stemlab.calibration",
    "measure_task": "stemlab.calibration",
    "ValidationReport": "stemlab.experiments",
    "validate": "stemlab.experiments",
    "Stem": "stemlab.runtime",
    "TaskStatus": "stemlab.runtime",
    "TaskState": "stemlab.runtime",
    "ResultBackend": "stemlab.runtime",
    "connect_backend": "stemlab.runtime",
    "Worker": "stemlab.runtime",
    "plan": "stemlab.experiments",
}


def __getattr__(name: str) -> Any:
    """Load a heavy public name on first use and keep it (later lookups cost nothing)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'stemlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Every public name, loaded or not (so completion and `dir(stemlab)` show them)."""
    return sorted(set(globals()) | set(__all__))
