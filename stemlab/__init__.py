"""stemlab: choose and understand task-queue brokers.

One Broker contract with in-memory, SQLite, Redis and Postgres adapters,
instrumentation around every adapter, and a simpy simulator of each broker.
"""

from stemlab import errors
from stemlab._version import __version__
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
from stemlab.experiments import ValidationReport, validate
from stemlab.instrument import InstrumentedBroker, instrument
from stemlab.live import run_live
from stemlab.model import BrokerProfile, RunResult, Scenario, compare, load_profile
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
