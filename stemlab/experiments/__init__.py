"""Experiments that combine the simulator, live runs and calibration: `validate`, `plan`."""

from stemlab.experiments.plan import CapacityPlan, plan
from stemlab.experiments.validate import ValidationReport, fidelity_table, validate

__all__ = ["CapacityPlan", "ValidationReport", "fidelity_table", "plan", "validate"]
