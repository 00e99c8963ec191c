"""The stemlab error tree: every adapter translates its driver's errors into these.

The model's and calibration's errors live here too, so one `except StemlabError`
catches everything stemlab raises on purpose; the value errors keep `ValueError`
as a second base.
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "CalibrationError",
    "ConfigError",
    "EnvelopeError",
    "LeaseLost",
    "ProfileError",
    "ResultError",
    "ScenarioError",
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


class ScenarioError(StemlabError, ValueError):
    """An invalid scenario; the message names the offending field."""


class ProfileError(StemlabError, ValueError):
    """An invalid or missing broker profile; the message names the field or the known names."""


class CalibrationError(StemlabError):
    """The broker did not behave well enough to be measured (it lost or withheld messages)."""


class ResultError(StemlabError, ValueError):
    """A task status a result backend refuses: an unknown state, or a result that is not JSON."""
