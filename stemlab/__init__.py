"""stemlab: choose and understand task-queue brokers.

One Broker contract with in-memory, SQLite, Redis and Postgres adapters,
instrumentation around every adapter, and a simpy simulator of each broker.
"""

from stemlab import errors
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

__version__ = "0.1.0"

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "Capabilities",
    "ConfigError",
    "Consumer",
    "DeadLetterEntry",
    "DeadLetterPage",
    "Delivery",
    "Envelope",
    "EnvelopeError",
    "LeaseLost",
    "ManualClock",
    "QueueState",
    "ReplayResult",
    "StemlabError",
    "SystemClock",
    "__version__",
    "connect",
    "errors",
]
