"""The stemlab error tree: every adapter translates its driver's errors into these."""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "EnvelopeError",
    "LeaseLost",
    "StemlabError",
]


class StemlabError(Exception):
    """Base of every error stemlab raises on purpose."""


class ConfigError(StemlabError):
    """A bad URL, an unknown scheme, a missing optional extra or a bad option."""


class EnvelopeError(StemlabError, ValueError):
    """An envelope that is invalid, or bytes that do not decode into one."""


class LeaseLost(StemlabError):
    """A stale receipt: the delivery was settled already or handed to someone else."""


class BrokerUnavailable(StemlabError):
    """The service could not be reached, after the adapter's bounded retries."""
