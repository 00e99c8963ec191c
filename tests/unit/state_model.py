"""A reference model of QueueState for the property test: small enough to trust by reading.

Live messages are ready, delayed or leased; ready order is a counter bumped
whenever a message becomes ready; dead-letter ids are kept per queue in the
order they died. `tick` releases due delayed messages, then expired leases,
in the same order as the real heaps ((due, publish order), (expiry, token)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stemlab import Envelope
from stemlab.core.clock import to_epoch

QUEUES = ("a", "b")


@dataclass
class ModelMsg:
    """One live message as the model sees it."""

    envelope: Envelope
    pub: int
    state: str = "ready"
    due: float = 0.0
    seq: int = 0
    token: int | None = None
    consumer: str | None = None
    expires: float = 0.0
    deliveries: int = 0


@dataclass
class Model:
    """Live messages, dead-letter ids per queue, and the ids settled for good."""

    live: dict[str, ModelMsg] = field(default_factory=dict)
    dead: dict[str, list[str]] = field(default_factory=lambda: {q: [] for q in QUEUES})
    acked: set[str] = field(default_factory=set)
    purged: set[str] = field(default_factory=set)
    seq: int = 0
    pub: int = 0

    def ready(self, m: ModelMsg) -> None:
        self.seq += 1
        m.state, m.seq, m.consumer = "ready", self.seq, None

    def tick(self, now: float) -> None:
        due = sorted(
            (m for m in self.live.values() if m.state == "delayed" and m.due <= now),
            key=lambda m: (m.due, m.pub),
        )
        for m in due:
            self.ready(m)
        expired = sorted(
            (m for m in self.live.values() if m.state == "leased" and m.expires <= now),
            key=lambda m: (m.expires, m.token),
        )
        for m in expired:
            self.ready(m)

    def add(self, envelope: Envelope, now: float) -> None:
        self.pub += 1
        m = ModelMsg(envelope, self.pub)
        self.live[envelope.id] = m
        due = to_epoch(envelope.not_before) if envelope.not_before else None
        if due is not None and due > now:
            m.state, m.due = "delayed", due
        else:
            self.ready(m)

    def best(self, queues: tuple[str, ...]) -> ModelMsg | None:
        ready = [m for m in self.live.values() if m.state == "ready" and m.envelope.queue in queues]
        return min(ready, key=lambda m: (-m.envelope.priority, m.seq), default=None)

    def owner(self, token: int) -> ModelMsg | None:
        return next((m for m in self.live.values() if m.token == token), None)

    def held(self, consumer: str) -> int:
        return sum(m.state == "leased" and m.consumer == consumer for m in self.live.values())

    def count(self, queue: str, state: str) -> int:
        return sum(m.envelope.queue == queue and m.state == state for m in self.live.values())
