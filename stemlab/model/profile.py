"""BrokerProfile: what the simulator needs to know about one broker, as JSON.

A profile holds per-operation latency distributions (publish, claim, ack,
extend; nack and dead_letter default to ack's), the pickup model (a blocking
or notifying broker hands a ready message to a waiting consumer at once; a
polling one is asked every `poll_interval`), how expired leases are found (at
claim time, or by a sweep every `reclaim_interval` seconds), the number of
priority levels and the broadcast scope, and optionally (`host`) what each call
costs the machine: client and server CPU, the broker's serialisation and the
cores (`stemlab.model.host`; without it the simulator ignores contention,
exactly as before). Profiles ship in `data/profiles/`
(installed with the package; see `stemlab.model.shipped`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from stemlab.core.records import Capabilities
from stemlab.errors import ProfileError
from stemlab.model.distributions import Constant, Distribution, distribution_from_dict
from stemlab.model.host import HostModel
from stemlab.model.shipped import shipped_dir, shipped_file, shipped_names

__all__ = [
    "BROKER_NAMES",
    "OPS",
    "BrokerProfile",
    "ProfileError",
    "load_profile",
    "profiles_dir",
]

# Operations with a latency distribution; the first four are required.
OPS = ("publish", "claim", "ack", "extend", "nack", "dead_letter")
BROKER_NAMES = ("ideal", "memory", "sqlite", "redis", "redis-streams", "postgres", "rabbitmq")
PICKUPS = ("blocking", "polling")
_SCOPES = ("process", "host", "cluster", None)


def _opt_positive(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(f"{name} must be seconds (a number) or null, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ProfileError(f"{name} must be > 0 seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class BrokerProfile:
    """Latency, pickup and reclaim model of one broker, read by `simulate`."""

    name: str
    latency: dict[str, Distribution] = field(default_factory=dict)
    pickup: str = "blocking"  # "blocking" (push / notify) or "polling"
    poll_interval: float | None = None  # seconds between polls of an idle consumer
    reclaim_interval: float | None = None  # None: expiry found at claim time; else sweep period
    priority_levels: int = 10
    broadcast_scope: str | None = "process"
    meta: dict[str, Any] = field(default_factory=dict)
    host: HostModel | None = None  # contention model; None: calls never queue for the host

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ProfileError("name must be a non-empty string")
        latency = dict(self.latency)
        for op in OPS[:4]:
            latency.setdefault(op, Constant(0.0))
        for op in OPS[4:]:
            latency.setdefault(op, latency["ack"])
        for op, dist in latency.items():
            if op not in OPS:
                raise ProfileError(f"unknown latency operation {op!r} (known: {list(OPS)})")
            if not isinstance(dist, Distribution):
                raise ProfileError(f"latency[{op!r}] must be a Distribution")
        object.__setattr__(self, "latency", latency)
        if self.pickup not in PICKUPS:
            raise ProfileError(f"pickup must be one of {PICKUPS}, got {self.pickup!r}")
        poll = _opt_positive("poll_interval", self.poll_interval)
        if self.pickup == "polling" and poll is None:
            raise ProfileError("a polling profile needs a poll_interval")
        object.__setattr__(self, "poll_interval", poll)
        sweep = _opt_positive("reclaim_interval", self.reclaim_interval)
        object.__setattr__(self, "reclaim_interval", sweep)
        levels = self.priority_levels
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 10:
            raise ProfileError(f"priority_levels must be an int in 1..10, got {levels!r}")
        if self.broadcast_scope not in _SCOPES:
            raise ProfileError(f"broadcast_scope must be one of {_SCOPES}")
        if self.host is not None and not isinstance(self.host, HostModel):
            raise ProfileError("host must be a HostModel or None")

    # ------------------------------------------------------------ derived
    @property
    def reclaim_delay(self) -> float:
        """The longest an expired lease goes unnoticed (as in `Capabilities`)."""
        return self.reclaim_interval or 0.0

    @property
    def zero_latency(self) -> bool:
        """True when every operation is free (the `ideal` broker)."""
        return all(isinstance(d, Constant) and d.value == 0 for d in self.latency.values())

    def with_overrides(self, **changes: Any) -> BrokerProfile:
        """A copy with some fields replaced; `latency` entries merge into the current ones."""
        if "latency" in changes:
            merged = dict(self.latency)
            merged.update(changes["latency"])
            changes["latency"] = merged
        return replace(self, **changes)

    def capabilities(self) -> Capabilities:
        """The `Capabilities` this profile stands for (delivery-related fields)."""
        return Capabilities(
            priority_levels=self.priority_levels,
            broadcast_scope=self.broadcast_scope,  # type: ignore[arg-type]
            poll_interval=self.poll_interval if self.pickup == "polling" else None,
            reclaim_delay=self.reclaim_delay,
        )

    @classmethod
    def from_capabilities(
        cls, name: str, caps: Capabilities, latency: dict[str, Distribution], **extra: Any
    ) -> BrokerProfile:
        """Build a profile from an adapter's declared capabilities and measured latencies."""
        return cls(
            name=name,
            latency=latency,
            pickup="polling" if caps.poll_interval else "blocking",
            poll_interval=caps.poll_interval,
            reclaim_interval=caps.reclaim_delay or None,
            priority_levels=caps.priority_levels,
            broadcast_scope=caps.broadcast_scope,
            **extra,
        )

    @classmethod
    def ideal(cls) -> BrokerProfile:
        """Zero latency, push pickup, expiry found at claim time: queueing theory holds."""
        meta = {"description": "zero-latency broker with the shared semantics (Erlang C holds)"}
        return cls(name="ideal", meta=meta)

    # -------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        host = self.host
        data = asdict(replace(self, host=None))
        data["latency"] = {op: dist.to_dict() for op, dist in self.latency.items()}
        del data["host"]  # a profile without the host model is written exactly as before
        if host is not None:
            data["host"] = host.to_dict()
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> BrokerProfile:
        if not isinstance(data, dict):
            raise ProfileError("a profile must be a JSON object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ProfileError(f"unknown profile fields: {sorted(unknown)}")
        kwargs = dict(data)
        try:
            kwargs["latency"] = {
                op: distribution_from_dict(d) for op, d in (data.get("latency") or {}).items()
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise ProfileError(f"bad latency distribution: {exc}") from exc
        host = data.get("host")
        kwargs["host"] = HostModel.from_dict(host) if host is not None else None
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> BrokerProfile:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProfileError(f"profile is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load_file(cls, path: str | Path) -> BrokerProfile:
        return cls.from_json(Path(path).read_text())


def profiles_dir() -> Traversable:
    """Where shipped profiles live: `$STEMLAB_PROFILES`, else the installed `data/profiles`."""
    return shipped_dir("profiles")


def load_profile(name: str | Path | BrokerProfile) -> BrokerProfile:
    """A profile by broker name ("redis", ...), by JSON file path, or passed through."""
    if isinstance(name, BrokerProfile):
        return name
    path = Path(name)
    if path.suffix == ".json" or path.is_file():
        return BrokerProfile.load_file(path)
    shipped = shipped_file("profiles", str(name))
    if shipped is not None:
        return BrokerProfile.from_json(shipped.read_text(encoding="utf-8"))
    if name == "ideal":
        return BrokerProfile.ideal()
    known = sorted({*shipped_names("profiles"), "ideal"})  # "ideal" is built in
    raise ProfileError(f"no broker profile {name!r} (known: {known}; or pass a .json path)")
