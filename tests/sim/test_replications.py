"""`simulate(..., replications=k)`, `Replications` and `compare` with confidence intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stemlab import Replications, RunResult, Scenario, compare, simulate
from stemlab.model.result import SUMMARY_KEYS
from stemlab.sim import Exponential

SC = Scenario(name="mm4", arrival_rate=3.0, tasks=600, service_time=Exponential(1.0), workers=4)


def test_one_replication_is_the_plain_run_result() -> None:
    one = simulate(SC, "ideal", seed=5, replications=1)
    plain = simulate(SC, "ideal", seed=5)
    assert isinstance(one, RunResult)
    pd.testing.assert_frame_equal(one.tasks, plain.tasks)
    assert list(compare([one]).columns) == ["kind", "broker", *SUMMARY_KEYS]


def test_replications_give_means_and_95_percent_intervals() -> None:
    reps = simulate(SC, "ideal", seed=5, replications=5, record_ops=False)
    assert isinstance(reps, Replications) and len(reps) == 5
    seeds = [r.tasks["enqueued_at"].iloc[1] for r in reps]
    assert len(set(seeds)) == 5  # independent arrivals per replication
    ci = reps.summary_ci()
    assert list(ci.index) == SUMMARY_KEYS
    assert list(ci.columns) == ["mean", "ci_low", "ci_high", "sd", "n"]
    values = np.array([r.summary()["e2e_p95"] for r in reps])
    half = 2.776 * values.std(ddof=1) / np.sqrt(5)  # t(0.975, 4)
    row = ci.loc["e2e_p95"]
    assert row["mean"] == pytest.approx(values.mean())
    assert row["ci_high"] - row["mean"] == pytest.approx(half)
    assert reps.summary()["e2e_p95"] == pytest.approx(values.mean())
    again = simulate(SC, "ideal", seed=5, replications=5, record_ops=False)
    assert isinstance(again, Replications)
    assert again.summary() == reps.summary()  # seeded


def test_compare_reports_intervals_for_replications() -> None:
    reps = simulate(SC, "ideal", seed=1, replications=3, record_ops=False)
    single = simulate(SC, "redis", seed=1, record_ops=False)
    table = compare([reps, single])
    assert table.loc[reps.label, "replications"] == 3
    assert table.loc[single.label, "replications"] == 1
    for key in SUMMARY_KEYS:
        assert f"{key}_ci_low" in table.columns and f"{key}_ci_high" in table.columns
    row = table.loc[reps.label]
    assert row["e2e_p95_ci_low"] <= row["e2e_p95"] <= row["e2e_p95_ci_high"]
    assert table.loc[single.label, "e2e_p95_ci_low"] == table.loc[single.label, "e2e_p95"]


def test_bad_replications_are_refused() -> None:
    with pytest.raises(ValueError, match="replications"):
        simulate(SC, "ideal", replications=0)
