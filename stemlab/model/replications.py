"""Replications: k seeded runs of one configuration, summarised as means with 95 % intervals.

One run of a queueing simulation is one sample of a noisy process; a
percentile from it says nothing about how sure it is. `simulate(...,
replications=k)` returns a `Replications`: `.summary()` has the same keys as
`RunResult.summary()` (the mean over the runs, so code written for one run
keeps working) and `.summary_ci()` gives, per metric, the mean and the two
sided 95 % Student-t interval of that mean. `compare` accepts it beside plain
`RunResult`s and adds `<metric>_ci_low` / `<metric>_ci_high` columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from stemlab.model.result import SUMMARY_KEYS, RunResult
from stemlab.model.stats import mean_ci, t95

__all__ = ["CI_COLUMNS", "Replications", "mean_ci", "t95"]

CI_COLUMNS = ["mean", "ci_low", "ci_high", "sd", "n"]


@dataclass
class Replications:
    """k runs of one configuration (one label); a sequence of `RunResult`s with a summary."""

    runs: list[RunResult]
    label: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.runs = list(self.runs)
        if not self.runs or not all(isinstance(r, RunResult) for r in self.runs):
            raise ValueError("Replications needs at least one RunResult")
        if not self.label:
            self.label = self.runs[0].label

    # -------------------------------------------------------------- a sequence
    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self) -> Iterator[RunResult]:
        return iter(self.runs)

    def __getitem__(self, i: int) -> RunResult:
        return self.runs[i]

    @property
    def kind(self) -> str:
        return self.runs[0].kind

    @property
    def broker(self) -> str:
        return self.runs[0].broker

    @property
    def timed_out(self) -> bool:
        """Any replication hit its deadline unfinished."""
        return any(r.timed_out for r in self.runs)

    # -------------------------------------------------------------- summaries
    def summaries(self) -> pd.DataFrame:
        """One row per replication, the summary keys as columns."""
        return pd.DataFrame([r.summary() for r in self.runs], columns=SUMMARY_KEYS)

    def summary(self) -> dict[str, float | int]:
        """`RunResult.summary()`'s keys, each the mean over the replications."""
        table = self.summaries()
        return {k: float(table[k].mean()) for k in SUMMARY_KEYS}

    def summary_ci(self) -> pd.DataFrame:
        """Per metric (index): mean, ci_low, ci_high (95 % Student t), sd, n."""
        table = self.summaries()
        rows = {k: mean_ci(table[k].to_numpy(dtype=float)) for k in SUMMARY_KEYS}
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=CI_COLUMNS)
        frame.index.name = "metric"
        return frame

    def __repr__(self) -> str:
        s = self.summary_ci()
        thr, e2e = s.loc["throughput"], s.loc["e2e_p95"]
        return (
            f"Replications({self.label!r}, k={len(self)}, throughput={thr['mean']:.1f}/s "
            f"[{thr['ci_low']:.1f}, {thr['ci_high']:.1f}], e2e_p95={e2e['mean']:.4f}s "
            f"[{e2e['ci_low']:.4f}, {e2e['ci_high']:.4f}])"
        )


def as_runs(result: RunResult | Replications | Sequence[RunResult]) -> list[RunResult]:
    """The runs behind one result of any accepted shape."""
    if isinstance(result, RunResult):
        return [result]
    return list(result)
