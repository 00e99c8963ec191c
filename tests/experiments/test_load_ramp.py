"""Issue #12: the load ramp's fit (serialisation from throughput vs concurrency) and the
load check (warn when the machine is busy, refuse an unexplained load unless forced)."""

from __future__ import annotations

import warnings

import pytest

from stemlab.calibration import (
    BusyMachineError,
    BusyMachineWarning,
    _check_load,
)
from stemlab.calibration.procfs import machine_busy, server_tree
from stemlab.calibration.ramp import RampResult, fit_host
from stemlab.sim import Constant


def _result(rates: dict[int, float], server: dict[str, float] | None, procs: int | None):
    return RampResult(
        client_cpu={"publish": 1e-4, "claim": 2e-4, "ack": 1e-4},
        server_cpu=server,
        wall={"publish": 3e-4, "claim": 6e-4, "ack": 3e-4},
        rates=rates,
        server_processes=procs,
        own_cores=0.5,
        server_cores=0.3 if server else None,
        busy_cores=1.0,
        wall_s=3.0,
    )


def test_rates_that_reach_the_cpu_cap_need_no_serial_point() -> None:
    # client CPU per cycle 0.4 ms: the client lock allows 2500 cycles/s
    model, info = fit_host(_result({1: 900.0, 2: 1800.0, 4: 2400.0}, None, None), 2, None, 4)
    assert model.serial == {} and model.server_cpu == {}
    assert info["cpu_cap_per_s"] == pytest.approx(2500.0)
    assert model.client_cpu["claim"] == 2e-4


def test_a_plateau_below_the_cpu_cap_is_fitted_as_a_serial_point() -> None:
    model, info = fit_host(_result({1: 800.0, 2: 1000.0, 4: 1000.0}, None, None), 2, None, 4)
    # 1 / 1000 s per cycle, split by the time each call spends outside the client
    assert sum(model.serial[op] for op in ("publish", "claim", "ack")) == pytest.approx(1e-3)
    assert model.serial["claim"] > model.serial["publish"]
    assert "plateau" in info["serialisation"]


def test_one_busy_server_process_makes_its_cpu_serial() -> None:
    server = {"publish": 5e-5, "claim": 6e-5, "ack": 4e-5}
    model, _ = fit_host(_result({1: 900.0, 4: 2400.0}, server, 1), 2, Constant(1e-4), 4)
    assert model.serial == pytest.approx(server | {"nack": 4e-5, "dead_letter": 4e-5})
    assert model.publish_unwatched == Constant(1e-4)
    many, _ = fit_host(_result({1: 900.0, 4: 2400.0}, server, 5), 2, None, 4)
    assert many.serial == {}  # e.g. one Postgres backend per connection


def test_load_check_quiet_busy_refused_and_forced() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _check_load(0.1, 2, [0.5], force=False)["verdict"] == "quiet"
    with pytest.warns(BusyMachineWarning):
        assert _check_load(0.8, 2, [1.0], force=False)["verdict"] == "busy"
    with pytest.warns(BusyMachineWarning):  # a load average above the cores is busy too
        assert _check_load(0.1, 2, [3.5], force=False)["verdict"] == "busy"
    with pytest.raises(BusyMachineError, match="force=True"):
        _check_load(1.5, 2, [6.0], force=False)
    with pytest.warns(BusyMachineWarning):
        assert _check_load(1.5, 2, [6.0], force=True)["verdict"] == "forced"


def test_procfs_sees_the_machine_and_no_server_for_in_process_brokers() -> None:
    busy = machine_busy()
    assert busy is None or busy > 0
    assert server_tree("memory://") is None
    assert server_tree("sqlite:///x.db") is None
    assert server_tree("redis://example.invalid:6379/0") is None  # not this machine


def test_a_rate_that_falls_with_more_threads_fits_no_serial_point() -> None:
    """Interference (another program took the CPU), not a plateau: nothing is fitted."""
    model, info = fit_host(_result({1: 800.0, 2: 300.0, 4: 900.0}, None, None), 2, None, 4)
    assert model.serial == {}
    assert "interference" in info["serialisation"]


def test_a_backoff_lock_takes_its_holds_from_the_probe_collisions() -> None:
    """A fifth of the probe publishes slept while the drain cycled 500 times a second: the
    lock is held 0.4 ms per get + ack, split by wall time, and publish in proportion."""
    result = _result({1: 800.0, 2: 300.0, 4: 200.0}, None, None)
    result.lock = {"probe_slept": 0.2, "probes": 200, "drain_rate": 500.0}
    model, info = fit_host(result, 2, None, 4, backoff=(0.001, 0.002))
    assert model.serial_backoff == (0.001, 0.002)
    assert model.serial["claim"] + model.serial["ack"] == pytest.approx(4e-4)
    assert model.serial["claim"] == pytest.approx(2 * model.serial["ack"], rel=1e-3)  # 6:3
    assert model.serial["publish"] == pytest.approx(model.serial["ack"], rel=1e-3)  # 3:3
    assert "lock_backoff" in info["serialisation"]  # a falling rate is the lock, not noise


def test_the_handoff_is_the_extra_cpu_per_call_of_two_busy_threads() -> None:
    result = _result({1: 800.0, 2: 1000.0}, None, None)
    result.cycle_cpu = {1: 3e-4, 2: 6e-4}
    model, _ = fit_host(result, 2, None, 4)
    assert model.handoff_cpu == pytest.approx(1e-4)  # 0.3 ms more per cycle of 3 calls
    result.cycle_cpu = {1: 3e-4, 2: 2e-4}
    assert fit_host(result, 2, None, 4)[0].handoff_cpu == 0.0
