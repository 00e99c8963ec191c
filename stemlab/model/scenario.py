"""Scenario: one workload, run the same way in the simulator and on a real broker."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from stemlab.errors import ScenarioError
from stemlab.model.distributions import Distribution, Exponential, distribution_from_dict

__all__ = ["REDELIVERY_SERVICE", "Scenario", "ScenarioError"]

REDELIVERY_SERVICE = ("same", "fresh")  # service time of a redelivered message


def _check_number(name: str, value: Any, *, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{name} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        bound = ">" if strict else ">="
        raise ScenarioError(f"{name} must be {bound} {minimum}, got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScenarioError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


@dataclass
class Scenario:
    """A workload: Poisson arrivals, a service-time distribution, workers and failure modes.

    `max_deliveries` (None = unlimited, the default, so existing scenarios keep
    their numbers): a worker that receives delivery number `max_deliveries + 1`
    of a message dead-letters it with reason "max-deliveries" instead of
    executing it (like SQS's maxReceiveCount), so work that always outlives its
    lease ends. `redelivery_service`: "same" (default) makes a redelivered
    message take the service time its first execution drew (the task is the
    same work); "fresh" draws a new one (the optimistic older model).
    """

    name: str = "scenario"
    arrival_rate: float = 9.0
    tasks: int = 20_000
    service_time: Distribution = field(default_factory=lambda: Exponential(1.0))
    workers: int = 10
    prefetch: int = 1
    priority_weights: dict[int, float] = field(default_factory=lambda: {0: 1.0})
    visibility_timeout: float = 30.0
    lease_renewal: bool = False
    failure_probability: float = 0.0
    crash_probability: float = 0.0
    delay: Distribution | None = None
    max_deliveries: int | None = None
    redelivery_service: str = "same"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse impossible workloads with a message naming the field."""
        if not isinstance(self.name, str) or not self.name:
            raise ScenarioError("name must be a non-empty string")
        self.arrival_rate = _check_number("arrival_rate", self.arrival_rate, minimum=0, strict=True)
        _check_int("tasks", self.tasks, 1)
        _check_int("workers", self.workers, 1)
        _check_int("prefetch", self.prefetch, 1)
        if not isinstance(self.service_time, Distribution):
            raise ScenarioError("service_time must be a Distribution (Constant, Exponential, ...)")
        if self.delay is not None and not isinstance(self.delay, Distribution):
            raise ScenarioError("delay must be a Distribution or None")
        self.visibility_timeout = _check_number(
            "visibility_timeout", self.visibility_timeout, minimum=0, strict=True
        )
        if not isinstance(self.lease_renewal, bool):
            raise ScenarioError("lease_renewal must be True or False")
        for prob in ("failure_probability", "crash_probability"):
            value = _check_number(prob, getattr(self, prob), minimum=0, strict=False)
            if value >= 1:
                raise ScenarioError(f"{prob} must be < 1, got {value}")
            setattr(self, prob, value)
        if self.failure_probability + self.crash_probability >= 1:
            raise ScenarioError("failure_probability + crash_probability must be < 1")
        self.priority_weights = self._check_weights(self.priority_weights)
        if self.max_deliveries is not None:
            _check_int("max_deliveries", self.max_deliveries, 1)
        if self.redelivery_service not in REDELIVERY_SERVICE:
            raise ScenarioError(
                f"redelivery_service must be one of {REDELIVERY_SERVICE}, "
                f"got {self.redelivery_service!r}"
            )

    @staticmethod
    def _check_weights(weights: Any) -> dict[int, float]:
        if not isinstance(weights, dict) or not weights:
            raise ScenarioError("priority_weights must be a non-empty dict {priority: weight}")
        out: dict[int, float] = {}
        for key, weight in weights.items():
            try:
                if isinstance(key, bool) or not isinstance(key, int | str):
                    raise TypeError(key)  # 1.5 or True would silently become a priority
                prio = int(key)
            except (TypeError, ValueError):
                raise ScenarioError(f"priority_weights key {key!r} is not a priority") from None
            if not 0 <= prio <= 9:
                raise ScenarioError(f"priority_weights key {prio} is outside 0..9")
            out[prio] = _check_number(f"priority_weights[{prio}]", weight, minimum=0, strict=False)
        if not sum(out.values()) > 0:
            raise ScenarioError("priority_weights must sum to a positive number")
        return out

    @property
    def load(self) -> float:
        """Offered load per task slot (rho = lambda * E[S] / c)."""
        return self.arrival_rate * self.service_time.mean / self.workers

    def priority_shares(self) -> dict[int, float]:
        """Normalised priority weights."""
        total = sum(self.priority_weights.values())
        return {p: w / total for p, w in sorted(self.priority_weights.items())}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["service_time"] = self.service_time.to_dict()
        data["delay"] = None if self.delay is None else self.delay.to_dict()
        data["priority_weights"] = {str(k): v for k, v in self.priority_weights.items()}
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> Scenario:
        if not isinstance(data, dict):
            raise ScenarioError("a scenario must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ScenarioError(f"unknown scenario fields: {sorted(unknown)}")
        kwargs = dict(data)
        for name in ("service_time", "delay"):
            if data.get(name) is None:
                continue
            try:
                kwargs[name] = distribution_from_dict(data[name])
            except (ValueError, KeyError, TypeError) as exc:
                raise ScenarioError(f"{name} is not a valid distribution: {exc}") from exc
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ScenarioError(f"scenario is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load_file(cls, path: str | Path) -> Scenario:
        return cls.from_json(Path(path).read_text())
