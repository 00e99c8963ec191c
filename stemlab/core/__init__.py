"""The contract's building blocks: envelope, broker ABC, records, state machine, clock."""

from stemlab.core.broker import Broker, Consumer
from stemlab.core.clock import Clock, ManualClock, SystemClock
from stemlab.core.envelope import Delivery, Envelope
from stemlab.core.records import Capabilities, DeadLetterEntry, DeadLetterPage, ReplayResult
from stemlab.core.state import Lease, QueueState

__all__ = [
    "Broker",
    "Capabilities",
    "Clock",
    "Consumer",
    "DeadLetterEntry",
    "DeadLetterPage",
    "Delivery",
    "Envelope",
    "Lease",
    "ManualClock",
    "QueueState",
    "ReplayResult",
    "SystemClock",
]
