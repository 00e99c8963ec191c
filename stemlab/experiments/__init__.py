"""Scenarios, run results and the experiments over them (simulate, run_live, compare)."""

from stemlab.experiments.live import run_live
from stemlab.experiments.result import RunResult, TaskLedger, compare
from stemlab.experiments.scenario import Scenario, ScenarioError

__all__ = ["RunResult", "Scenario", "ScenarioError", "TaskLedger", "compare", "run_live"]
