"""Experiments that combine the simulator, live runs and calibration: `validate`."""

from stemlab.experiments.validate import ValidationReport, fidelity_table, validate

__all__ = ["ValidationReport", "fidelity_table", "validate"]
