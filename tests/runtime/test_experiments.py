"""The user's own task in experiments: run_live(app=, task=) and calibration.measure_task."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import stemlab
from stemlab import Scenario, run_live, simulate
from stemlab.calibration import measure_task
from stemlab.errors import CalibrationError, ConfigError
from stemlab.sim import Constant, Exponential


def _app() -> tuple[stemlab.Stem, list[int]]:
    app = stemlab.Stem("memory://")
    calls: list[int] = []
    lock = threading.Lock()

    @app.task
    def resize(i: int, ms: float = 2.0) -> int:
        time.sleep(ms / 1000)
        with lock:
            calls.append(i)
        if i < 0:
            raise ValueError("negative")
        return i

    return app, calls


def test_run_live_runs_the_registered_task_as_the_service(tmp_path: Path) -> None:
    app, calls = _app()
    sc = Scenario(
        name="own", arrival_rate=200.0, tasks=80, service_time=Exponential(0.002), workers=3
    )
    url = f"sqlite:///{tmp_path / 'live.db'}"
    with stemlab.connect(url) as broker:
        real = run_live(
            sc,
            broker,
            app=app,
            task="resize",
            task_args=lambda i: {"i": i, "ms": 3},
            progress=False,
        )
        synthetic = run_live(sc, broker, seed=1, progress=False)
    assert sorted(calls) == list(range(80))
    summary = real.summary()
    assert (summary["acked"], summary["lost"], summary["dead"]) == (80, 0, 0)
    assert list(real.tasks.columns) == list(synthetic.tasks.columns)
    assert list(real.ops.columns) == list(synthetic.ops.columns)
    service = (real.tasks["finished_at"] - real.tasks["started_at"]).to_numpy()
    assert service.min() >= 0.0029  # the real 3 ms task, not the synthetic draw


def test_a_raising_task_takes_the_fail_path(tmp_path: Path) -> None:
    app, _ = _app()
    sc = Scenario(name="own", arrival_rate=100.0, tasks=10, service_time=Constant(0.001), workers=2)
    with stemlab.connect(f"sqlite:///{tmp_path / 'f.db'}") as broker:
        res = run_live(
            sc, broker, app=app, task="resize", task_args={"i": -1}, progress=False, deadline=30
        )
    assert res.summary()["dead"] == 10
    assert res.meta["failures"] >= 10 and "negative" in res.meta["errors"][0]


def test_run_live_refuses_a_half_or_unknown_task() -> None:
    app, _ = _app()
    sc = Scenario(tasks=1)
    with pytest.raises(ConfigError):
        run_live(sc, "memory://", task="resize")
    with pytest.raises(ConfigError):
        run_live(sc, "memory://", app=app, task="nope")


def test_measure_task_fits_the_real_service_time() -> None:
    app, calls = _app()
    info: dict[str, object] = {}
    dist = measure_task(app, "resize", {"i": 1, "ms": 2.0}, n=60, warmup=3, info=info)
    assert len(calls) == 63
    assert 0.0019 < dist.mean < 0.012
    assert info["kind"] in ("constant", "lognormal", "empirical") and info["samples"] == 60
    sc = Scenario(name="mine", arrival_rate=300.0, tasks=500, service_time=dist, workers=2)
    for broker in ("sqlite", "redis", "postgres"):
        assert simulate(sc, broker=broker, seed=0).summary()["acked"] == 500
    with pytest.raises(CalibrationError):
        measure_task(app, "resize", {"i": -1}, n=3)
    with pytest.raises(ConfigError):
        measure_task(app, "missing")
