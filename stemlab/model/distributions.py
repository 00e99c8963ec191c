"""Duration distributions for scenarios and profiles: `.mean`, `.sample(rng)`, JSON round trip.

Every draw takes an explicit `numpy.random.Generator`, so runs are reproducible
from a seed and never touch global random state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Constant",
    "Distribution",
    "Empirical",
    "Exponential",
    "LogNormal",
    "distribution_from_dict",
]


class Distribution:
    """Base of the duration distributions (seconds, never negative)."""

    kind: str = ""

    @property
    def mean(self) -> float:
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> float:
        """One draw."""
        return float(self.sample_many(rng, 1)[0])

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` draws at once (much faster than `n` calls to `sample`)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError


def _positive(value: float, what: str, *, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not math.isfinite(value) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{what} must be finite and {bound}, got {value}")
    return value


@dataclass(frozen=True)
class Constant(Distribution):
    """Always `value` seconds."""

    value: float
    kind = "constant"

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _positive(self.value, "Constant.value", allow_zero=True))

    @property
    def mean(self) -> float:
        return self.value

    def sample(self, rng: np.random.Generator) -> float:
        return self.value

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class Exponential(Distribution):
    """Exponential with the given mean (seconds): memoryless, the M in M/M/c."""

    mean_s: float
    kind = "exponential"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean_s", _positive(self.mean_s, "Exponential.mean"))

    @property
    def mean(self) -> float:
        return self.mean_s

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.exponential(self.mean_s))

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(self.mean_s, n)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mean": self.mean_s}


@dataclass(frozen=True)
class LogNormal(Distribution):
    """Log-normal with the given mean (seconds) and log-space sigma: a long right tail."""

    mean_s: float
    sigma: float = 0.5
    kind = "lognormal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean_s", _positive(self.mean_s, "LogNormal.mean"))
        object.__setattr__(self, "sigma", _positive(self.sigma, "LogNormal.sigma", allow_zero=True))

    @property
    def mean(self) -> float:
        return self.mean_s

    @property
    def mu(self) -> float:
        return math.log(self.mean_s) - self.sigma**2 / 2

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.lognormal(self.mu, self.sigma))

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.lognormal(self.mu, self.sigma, n)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mean": self.mean_s, "sigma": self.sigma}


@dataclass(frozen=True)
class Empirical(Distribution):
    """Resamples measured values (seconds) uniformly: what a calibration recorded."""

    values: tuple[float, ...] = field(default=())
    kind = "empirical"

    def __init__(self, values: Sequence[float]) -> None:
        data = tuple(_positive(v, "Empirical value", allow_zero=True) for v in values)
        if not data:
            raise ValueError("Empirical needs at least one value")
        object.__setattr__(self, "values", data)
        object.__setattr__(self, "_array", np.asarray(data, dtype=float))

    @property
    def mean(self) -> float:
        return float(np.mean(self._array))  # type: ignore[attr-defined]

    def sample(self, rng: np.random.Generator) -> float:
        return float(self.values[int(rng.integers(len(self.values)))])

    def sample_many(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(self._array, n)  # type: ignore[attr-defined]

    def quantile(self, q: float) -> float:
        return float(np.quantile(self._array, q))  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "values": list(self.values)}


_KINDS: dict[str, type[Distribution]] = {
    "constant": Constant,
    "exponential": Exponential,
    "lognormal": LogNormal,
    "empirical": Empirical,
}


def distribution_from_dict(data: Any) -> Distribution:
    """Rebuild a distribution from `to_dict()` output; unknown kinds raise ValueError."""
    if isinstance(data, int | float) and not isinstance(data, bool):
        return Constant(float(data))
    if not isinstance(data, dict) or data.get("kind") not in _KINDS:
        raise ValueError(f"not a distribution: {data!r} (kinds: {sorted(_KINDS)})")
    kind = data["kind"]
    if kind == "constant":
        return Constant(data["value"])
    if kind == "exponential":
        return Exponential(data["mean"])
    if kind == "lognormal":
        return LogNormal(data["mean"], data.get("sigma", 0.5))
    return Empirical(data["values"])
