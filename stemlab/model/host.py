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
* `handoff_cpu`: client CPU seconds a call adds when it has to wait for the
  client lock (the interpreter lock's handoff: a futex sleep and wake, a
  context switch), from the load ramp's one- and two-thread steps.
* `serial_backoff`: how a call waits for a taken serialisation point: empty,
  in order (a FIFO queue); else it sleeps these seconds before each retry,
  the last repeated (SQLite's busy handler, declared by the adapter).
* `cores`: the host's cores, shared by the client and the server.
* `publish_unwatched`: the publish law with no idle consumer to wake; the
  profile's own publish law was measured with `listeners` idle consumers,
  and the simulator interpolates between the two by how many are idle.
* `ack_loaded`: the ack law while work is waiting (the ack can claim the
  consumer's next message in the same call, and no idle consumer is woken
  meanwhile); the profile's own ack law was measured with idle consumers
  and an empty queue, and the simulator uses this one when the queue holds
  a ready message.
* `harness_cpu[side]`: CPU seconds the live harness itself spends per task
  outside any broker call, on the `producer` side (building and recording
  the task) and the `worker` side (recording the delivery, drawing the plan,
  recording the end): work under the same interpreter lock as the calls.
* `work_overshoot`: how much longer than asked a live worker's work lasts
  (it sleeps for the drawn service time and wakes late), a law in seconds.

The last two describe `run_live`'s own process, not the broker; they are
what a 1 ms task pays besides its broker calls (about a sixth of its cycle
on a quiet 2-core machine), so broker-bound predictions need them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from stemlab.errors import ProfileError
from stemlab.model.distributions import Distribution, distribution_from_dict

__all__ = ["HARNESS_SIDES", "HOST_OPS", "HostModel"]

# Calls with a cost; nack and dead_letter fall back to ack's, as in the latency laws.
HOST_OPS = ("publish", "claim", "ack", "extend", "nack", "dead_letter")
# Where the live harness spends CPU per task outside the broker calls.
HARNESS_SIDES = ("producer", "worker")
_LAWS = ("publish_unwatched", "work_overshoot", "ack_loaded")  # optional Distributions


def _costs(name: str, value: Any, known: tuple[str, ...] = HOST_OPS) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ProfileError(f"host.{name} must be an object of seconds per key")
    out: dict[str, float] = {}
    for op, cost in value.items():
        if op not in known:
            raise ProfileError(f"host.{name}: unknown key {op!r} (known: {list(known)})")
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
    harness_cpu: dict[str, float] = field(default_factory=dict)
    work_overshoot: Distribution | None = None
    serial_backoff: tuple[float, ...] = ()
    ack_loaded: Distribution | None = None
    handoff_cpu: float = 0.0

    def __post_init__(self) -> None:
        cores = self.cores
        if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
            raise ProfileError(f"host.cores must be an int >= 1, got {cores!r}")
        for name in ("client_cpu", "server_cpu", "serial"):
            object.__setattr__(self, name, _costs(name, getattr(self, name)))
        harness = _costs("harness_cpu", self.harness_cpu, HARNESS_SIDES)
        object.__setattr__(self, "harness_cpu", harness)
        handoff = self.handoff_cpu
        if isinstance(handoff, bool) or not isinstance(handoff, int | float) or not handoff >= 0:
            raise ProfileError(f"host.handoff_cpu must be seconds >= 0, got {handoff!r}")
        object.__setattr__(self, "handoff_cpu", float(handoff))
        backoff = self.serial_backoff
        if not isinstance(backoff, tuple | list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in backoff
        ):
            raise ProfileError(f"host.serial_backoff must be seconds > 0, got {backoff!r}")
        object.__setattr__(self, "serial_backoff", tuple(float(x) for x in backoff))
        for name in _LAWS:
            law = getattr(self, name)
            if law is not None and not isinstance(law, Distribution):
                raise ProfileError(f"host.{name} must be a Distribution or null")
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
            "harness_cpu": dict(self.harness_cpu),
            "serial_backoff": list(self.serial_backoff),
            "ack_loaded": self.ack_loaded.to_dict() if self.ack_loaded is not None else None,
            "handoff_cpu": self.handoff_cpu,
            "work_overshoot": (
                self.work_overshoot.to_dict() if self.work_overshoot is not None else None
            ),
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
            "harness_cpu",
            "work_overshoot",
            "serial_backoff",
            "ack_loaded",
            "handoff_cpu",
        }
        if unknown:
            raise ProfileError(f"unknown host fields: {sorted(unknown)}")
        if "cores" not in data:
            raise ProfileError("host.cores is required")
        kwargs = dict(data)
        for name in _LAWS:
            law = data.get(name)
            try:
                kwargs[name] = distribution_from_dict(law) if law else None
            except (ValueError, KeyError, TypeError) as exc:
                raise ProfileError(f"bad host.{name}: {exc}") from exc
        return cls(**kwargs)
