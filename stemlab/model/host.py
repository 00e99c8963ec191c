"""HostModel: what a broker call costs the machine, so the simulator saturates where it really does.

A profile's latency laws say how long one call takes on a quiet machine.
Near saturation calls also queue for shared things, and this section of a
profile (optional: without it the simulator behaves exactly as before)
names them, each measured by `calibrate`'s load ramp:

* `client_cpu[op]`: CPU seconds the calling Python process spends per call.
  It runs under the client's one interpreter lock (the live harness's
  producer and worker slots are threads of one process) and on a core.
* `server_cpu[op]`: CPU seconds the broker's server processes spend per
  call (0 for an in-process broker, whose work is in `client_cpu`); it needs
  a core.
* `serial[op]`: seconds per call during which the broker admits no other
  call (SQLite's single writer, Redis's single command thread).
* `cores`: the host's cores, shared by the client and the server.
* `publish_unwatched`: the publish law with no idle consumer to wake; the
  profile's own publish law was measured with `listeners` idle consumers,
  and the simulator interpolates between the two by how many are idle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from stemlab.errors import ProfileError
from stemlab.model.distributions import Distribution, distribution_from_dict

__all__ = ["HOST_OPS", "HostModel"]

# Calls with a cost; nack and dead_letter fall back to ack's, as in the latency laws.
HOST_OPS = ("publish", "claim", "ack", "extend", "nack", "dead_letter")


def _costs(name: str, value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ProfileError(f"host.{name} must be an object of seconds per operation")
    out: dict[str, float] = {}
    for op, cost in value.items():
        if op not in HOST_OPS:
            raise ProfileError(f"host.{name}: unknown operation {op!r} (known: {list(HOST_OPS)})")
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            raise ProfileError(f"host.{name}[{op!r}] must be seconds, got {cost!r}")
        if not math.isfinite(cost) or cost < 0:
            raise ProfileError(f"host.{name}[{op!r}] must be >= 0 seconds, got {cost!r}")
        out[op] = float(cost)
    for op in ("nack", "dead_letter"):
        if "ack" in out:
            out.setdefault(op, out["ack"])
    return out


@dataclass(frozen=True)
class HostModel:
    """Per-call CPU and serialisation costs and the host's cores (see the module doc)."""

    cores: int
    client_cpu: dict[str, float] = field(default_factory=dict)
    server_cpu: dict[str, float] = field(default_factory=dict)
    serial: dict[str, float] = field(default_factory=dict)
    publish_unwatched: Distribution | None = None
    listeners: int = 4

    def __post_init__(self) -> None:
        cores = self.cores
        if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
            raise ProfileError(f"host.cores must be an int >= 1, got {cores!r}")
        for name in ("client_cpu", "server_cpu", "serial"):
            object.__setattr__(self, name, _costs(name, getattr(self, name)))
        if self.publish_unwatched is not None and not isinstance(
            self.publish_unwatched, Distribution
        ):
            raise ProfileError("host.publish_unwatched must be a Distribution or null")
        listeners = self.listeners
        if isinstance(listeners, bool) or not isinstance(listeners, int) or listeners < 1:
            raise ProfileError(f"host.listeners must be an int >= 1, got {listeners!r}")

    def cost(self, op: str) -> tuple[float, float, float]:
        """(client CPU, server CPU, serial hold) of one `op` call, in seconds."""
        return (
            self.client_cpu.get(op, 0.0),
            self.server_cpu.get(op, 0.0),
            self.serial.get(op, 0.0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "cores": self.cores,
            "client_cpu": dict(self.client_cpu),
            "server_cpu": dict(self.server_cpu),
            "serial": dict(self.serial),
            "publish_unwatched": (
                self.publish_unwatched.to_dict() if self.publish_unwatched is not None else None
            ),
            "listeners": self.listeners,
        }

    @classmethod
    def from_dict(cls, data: Any) -> HostModel:
        if not isinstance(data, dict):
            raise ProfileError("host must be an object or null")
        unknown = set(data) - {
            "cores",
            "client_cpu",
            "server_cpu",
            "serial",
            "publish_unwatched",
            "listeners",
        }
        if unknown:
            raise ProfileError(f"unknown host fields: {sorted(unknown)}")
        if "cores" not in data:
            raise ProfileError("host.cores is required")
        kwargs = dict(data)
        law = data.get("publish_unwatched")
        try:
            kwargs["publish_unwatched"] = distribution_from_dict(law) if law else None
        except (ValueError, KeyError, TypeError) as exc:
            raise ProfileError(f"bad host.publish_unwatched: {exc}") from exc
        return cls(**kwargs)
