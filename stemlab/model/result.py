"""RunResult: the same frames for simulated and live runs, and the ledger that fills them.

`.tasks` has one row per task, `.ops` one row per broker call; every time is
float seconds since the scenario started, so a simulated run and a live run
of one scenario compare row for row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from stemlab.model.stats import mean_ci

if TYPE_CHECKING:
    from stemlab.model.replications import Replications

__all__ = ["OP_COLUMNS", "SUMMARY_KEYS", "TASK_COLUMNS", "RunResult", "TaskLedger", "compare"]

TASK_COLUMNS = [
    "id",
    "priority",
    "enqueued_at",
    "first_delivered_at",
    "started_at",
    "finished_at",
    "acked_at",
    "deliveries",
    "outcome",
]
OP_COLUMNS = [
    "ts",
    "op",
    "queue",
    "task_id",
    "priority",
    "duration_s",
    "ok",
    "error",
    "consumer",
    "delivery_count",
]
SUMMARY_KEYS = [
    "tasks",
    "acked",
    "dead",
    "lost",
    "throughput",
    "wait_p50",
    "wait_p95",
    "wait_p99",
    "e2e_p50",
    "e2e_p95",
    "e2e_p99",
    "redeliveries",
    "duplicates",
]

_NAN = math.nan
# ledger row slots
_PRIO, _ENQ, _FIRST, _START, _FIN, _ACK, _DELIV, _OUT, _RUNNING = range(9)


class TaskLedger:
    """Per-task bookkeeping shared by `simulate` and `run_live` (not thread-safe).

    A start while another execution of the same task is running, or after the
    task already finished successfully, counts as a duplicate execution.
    """

    def __init__(self) -> None:
        self._rows: dict[str, list[Any]] = {}
        self.duplicates = 0

    def enqueued(self, task_id: str, priority: int, t: float) -> None:
        self._rows[task_id] = [priority, t, _NAN, _NAN, _NAN, _NAN, 0, "lost", 0]

    def delivered(self, task_id: str, t: float) -> None:
        row = self._rows[task_id]
        row[_DELIV] += 1
        if row[_FIRST] != row[_FIRST]:  # NaN: first delivery
            row[_FIRST] = t

    def started(self, task_id: str, t: float) -> bool:
        """Record an execution start; returns True when it is a duplicate execution."""
        row = self._rows[task_id]
        duplicate = row[_RUNNING] > 0 or row[_OUT] in ("acked", "done")
        if duplicate:
            self.duplicates += 1
        if row[_START] != row[_START]:
            row[_START] = t
        row[_RUNNING] += 1
        return bool(duplicate)

    def finished(self, task_id: str, t: float, *, success: bool = True) -> None:
        """An execution ended (successfully or by failing); the last one sets finished_at.

        Once the task is settled (acked or dead), a duplicate execution that ends
        later no longer moves finished_at: it did not make the task done.
        """
        row = self._rows[task_id]
        row[_RUNNING] = max(0, row[_RUNNING] - 1)
        if row[_OUT] not in ("acked", "dead"):
            row[_FIN] = t
        if success and row[_OUT] == "lost":
            row[_OUT] = "done"

    def abandoned(self, task_id: str) -> None:
        """An execution vanished mid-task (a crash): it never finishes."""
        row = self._rows[task_id]
        row[_RUNNING] = max(0, row[_RUNNING] - 1)

    def acked(self, task_id: str, t: float) -> None:
        row = self._rows[task_id]
        if row[_OUT] != "acked":
            row[_ACK] = t
        row[_OUT] = "acked"

    def dead(self, task_id: str, t: float) -> None:
        row = self._rows[task_id]
        if row[_OUT] != "acked":
            row[_OUT] = "dead"
            row[_ACK] = _NAN

    def outcome(self, task_id: str) -> str:
        return str(self._rows[task_id][_OUT])

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def tasks_frame(self) -> pd.DataFrame:
        """The `.tasks` frame; tasks neither acked nor dead are "lost"."""
        ids = list(self._rows)
        rows = list(self._rows.values())
        outcome = ["lost" if r[_OUT] == "done" else r[_OUT] for r in rows]
        frame = pd.DataFrame(
            {
                "id": ids,
                "priority": np.fromiter((r[_PRIO] for r in rows), dtype=np.int64, count=len(rows)),
                "enqueued_at": [r[_ENQ] for r in rows],
                "first_delivered_at": [r[_FIRST] for r in rows],
                "started_at": [r[_START] for r in rows],
                "finished_at": [r[_FIN] for r in rows],
                "acked_at": [r[_ACK] for r in rows],
                "deliveries": np.fromiter(
                    (r[_DELIV] for r in rows), dtype=np.int64, count=len(rows)
                ),
                "outcome": outcome,
            },
            columns=TASK_COLUMNS,
        )
        for col in TASK_COLUMNS[2:7]:
            frame[col] = frame[col].astype(float)
        return frame


def empty_ops() -> pd.DataFrame:
    """An `.ops` frame with the right columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in OP_COLUMNS})


def _pct(values: np.ndarray, q: float) -> float:
    values = values[~np.isnan(values)]
    return float(np.percentile(values, q)) if values.size else _NAN


@dataclass
class RunResult:
    """What one run (simulated or live) produced: `.tasks`, `.ops`, `.summary()`."""

    tasks: pd.DataFrame
    ops: pd.DataFrame
    label: str = "run"
    kind: str = "sim"  # "sim" or "live"
    broker: str = ""
    duplicates: int = 0
    duration_s: float = _NAN
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def timed_out(self) -> bool:
        """The run hit its deadline (simulated `until` or run_live's `deadline`) unfinished."""
        return bool(self.meta.get("timed_out", False))

    def summary(self) -> dict[str, float | int]:
        """Counts, throughput and latency percentiles (seconds), keys as in SUMMARY_KEYS."""
        t = self.tasks
        acked = t["outcome"] == "acked"
        wait = (t["started_at"] - t["enqueued_at"]).to_numpy(dtype=float)
        e2e = (t.loc[acked, "finished_at"] - t.loc[acked, "enqueued_at"]).to_numpy(dtype=float)
        n_acked = int(acked.sum())
        last = float(t.loc[acked, "acked_at"].max()) if n_acked else _NAN
        first = float(t["enqueued_at"].min()) if len(t) else _NAN
        span = last - first if n_acked else _NAN
        return {
            "tasks": len(t),
            "acked": n_acked,
            "dead": int((t["outcome"] == "dead").sum()),
            "lost": int((t["outcome"] == "lost").sum()),
            "throughput": n_acked / span if span and span > 0 else _NAN,
            "wait_p50": _pct(wait, 50),
            "wait_p95": _pct(wait, 95),
            "wait_p99": _pct(wait, 99),
            "e2e_p50": _pct(e2e, 50),
            "e2e_p95": _pct(e2e, 95),
            "e2e_p99": _pct(e2e, 99),
            "redeliveries": int((t["deliveries"] - 1).clip(lower=0).sum()),
            "duplicates": int(self.duplicates),
        }

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"RunResult({self.label!r}, kind={self.kind}, tasks={s['tasks']}, acked={s['acked']}, "
            f"lost={s['lost']}, throughput={s['throughput']:.1f}/s, e2e_p50={s['e2e_p50']:.4f}s)"
        )


def compare(
    results: Iterable[RunResult | Replications] | Mapping[str, RunResult | Replications],
) -> pd.DataFrame:
    """One row per run, the summary's columns side by side, indexed by label.

    Each item is a `RunResult` or a `Replications` (k seeded runs). When any
    is a `Replications`, the summary columns are means over its runs and the
    table gains `replications` and `<metric>_ci_low` / `<metric>_ci_high`
    (95 % Student t; a single run's bounds are its value); otherwise the
    columns are exactly as before.
    """
    if isinstance(results, Mapping):
        items = list(results.items())
    else:
        items = [(r.label, r) for r in results]
    replicated = any(not isinstance(r, RunResult) for _, r in items)
    rows = []
    for label, result in items:
        row: dict[str, Any] = {"run": label, "kind": result.kind, "broker": result.broker}
        row.update(result.summary())
        if replicated:
            runs = [result] if isinstance(result, RunResult) else list(result)
            row["replications"] = len(runs)
            summaries = [r.summary() for r in runs]
            for key in SUMMARY_KEYS:
                _, low, high, _, _ = mean_ci(float(s[key]) for s in summaries)
                row[f"{key}_ci_low"], row[f"{key}_ci_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")
