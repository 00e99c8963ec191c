"""stemlab: choose and understand task-queue brokers.

One Broker contract with in-memory, SQLite, Redis and Postgres adapters,
instrumentation around every adapter, and a simpy simulator of each broker.
"""

from stemlab import errors
from stemlab.brokers import connect
from stemlab.calibration import calibrate
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
from stemlab.experiments import RunResult, Scenario, compare, run_live
from stemlab.experiments.validate import ValidationReport, validate
from stemlab.instrument import InstrumentedBroker, instrument
from stemlab.sim import BrokerProfile, load_profile, simulate, sweep

__version__ = "0.1.0"

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
    "RunResult",
    "Scenario",
    "StemlabError",
    "SystemClock",
    "ValidationReport",
    "__version__",
    "calibrate",
    "compare",
    "connect",
    "errors",
    "instrument",
    "load_profile",
    "run_live",
    "simulate",
    "sweep",
    "validate",
]
