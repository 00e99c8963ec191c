"""Issue #12: the shared host (client lock, serialisation point, cores) in the simulator.

A profile's optional `host` section makes calls queue for the resources the
load ramp measured. Without it nothing changes; with it, a serial point or
the cores cap throughput at the rate queueing theory gives for them.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from stemlab import Scenario, simulate
from stemlab.errors import ProfileError
from stemlab.model.host import HostModel
from stemlab.model.profile import BrokerProfile
from stemlab.sim import Constant, Exponential, load_profile

BUSY = Scenario(
    name="busy", arrival_rate=5000.0, tasks=3000, service_time=Constant(0.0001), workers=8
)


def _with(host: HostModel, base: str = "ideal") -> BrokerProfile:
    return load_profile(base).with_overrides(host=host)


def test_old_profiles_load_and_save_without_a_host_section() -> None:
    profile = load_profile("redis")
    assert profile.host is None
    assert "host" not in profile.to_dict()


def test_host_section_round_trips_through_json() -> None:
    host = HostModel(
        cores=2,
        client_cpu={"publish": 4e-5, "claim": 9e-5, "ack": 4e-5},
        server_cpu={"claim": 5e-5},
        serial={"claim": 5e-5},
        publish_unwatched=Exponential(1e-4),
        listeners=4,
    )
    profile = _with(host, "redis")
    again = BrokerProfile.from_json(profile.to_json())
    assert again == profile
    assert again.host is not None and again.host.client_cpu["nack"] == 4e-5  # ack's


@pytest.mark.parametrize(
    "bad",
    [
        {"cores": 0},
        {"cores": 2, "serial": {"claim": -1}},
        {"cores": 2, "client_cpu": {"fly": 1e-3}},
        {"cores": 2, "speed": 1},
        {"client_cpu": {}},
    ],
)
def test_bad_host_sections_are_refused(bad: dict) -> None:
    data = load_profile("ideal").to_dict() | {"host": bad}
    with pytest.raises(ProfileError):
        BrokerProfile.from_json(json.dumps(data))


@pytest.mark.parametrize("base", ["ideal", "redis", "sqlite"])
def test_a_free_host_changes_nothing(base: str) -> None:
    """Zero costs and no second publish law: the same frames as without the section."""
    plain = simulate(BUSY, base, seed=3)
    hosted = simulate(BUSY, _with(HostModel(cores=2), base), seed=3)
    pd.testing.assert_frame_equal(plain.tasks, hosted.tasks)
    pd.testing.assert_frame_equal(plain.ops, hosted.ops)


def test_a_serial_point_caps_throughput_at_its_rate() -> None:
    """Each task holds the point 1 ms (claim) + 0.25 ms (ack): at most 800 tasks/s."""
    host = HostModel(cores=8, serial={"claim": 0.001, "ack": 0.00025})
    run = simulate(BUSY, _with(host), seed=0, record_ops=False).summary()
    free = simulate(BUSY, "ideal", seed=0, record_ops=False).summary()
    assert free["throughput"] > 3000
    assert run["throughput"] == pytest.approx(800, rel=0.05)


def test_the_client_lock_serialises_client_cpu_even_with_many_cores() -> None:
    host = HostModel(cores=8, client_cpu={"publish": 2e-4, "claim": 5e-4, "ack": 3e-4})
    run = simulate(BUSY, _with(host), seed=0, record_ops=False).summary()
    assert run["throughput"] == pytest.approx(1000, rel=0.05)  # 1 ms of client CPU per task


def test_server_cpu_runs_in_parallel_on_the_cores() -> None:
    """2 ms of server CPU per task and no serial point: 2 cores give 1000/s, 4 give 2000/s."""
    for cores, rate in ((2, 1000), (4, 2000)):
        host = HostModel(cores=cores, server_cpu={"claim": 0.001, "ack": 0.001})
        run = simulate(BUSY, _with(host), seed=0, record_ops=False).summary()
        assert run["throughput"] == pytest.approx(rate, rel=0.05), cores


def test_light_load_predictions_hardly_move() -> None:
    """Calls rarely meet at load 0.3, so the host model adds almost nothing to the latency."""
    light = Scenario(
        name="light", arrival_rate=60.0, tasks=1500, service_time=Exponential(0.02), workers=4
    )
    host = HostModel(
        cores=2, client_cpu={"publish": 5e-5, "claim": 1e-4, "ack": 5e-5}, serial={"claim": 5e-5}
    )
    plain = simulate(light, "redis", seed=1).summary()
    hosted = simulate(light, _with(host, "redis"), seed=1).summary()
    assert hosted["e2e_p50"] == pytest.approx(plain["e2e_p50"], rel=0.02)
    assert hosted["throughput"] == pytest.approx(plain["throughput"], rel=0.01)


def test_publish_follows_the_number_of_idle_consumers() -> None:
    """Watched publish (idle consumers to wake) costs 1 ms, unwatched 0.1 ms: at light load
    publishes cost about the watched law, in overload about the unwatched one."""
    base = load_profile("ideal").with_overrides(latency={"publish": Constant(0.001)})
    host = HostModel(cores=2, publish_unwatched=Constant(0.0001), listeners=4)
    profile = base.with_overrides(host=host)
    light = Scenario(name="l", arrival_rate=20.0, tasks=300, service_time=Constant(0.01), workers=4)
    heavy = Scenario(
        name="h", arrival_rate=2000.0, tasks=3000, service_time=Constant(0.01), workers=4
    )

    assert _mean_duration(light, profile, "publish") == pytest.approx(0.001, rel=0.05)
    assert _mean_duration(heavy, profile, "publish") < 0.0002


def _mean_duration(sc: Scenario, profile: BrokerProfile, op: str) -> float:
    ops = simulate(sc, profile, seed=0).ops
    return float(ops.loc[ops["op"] == op, "duration_s"].mean())


# ------------------------------------------------------------------ the live harness's costs
def test_new_host_fields_round_trip_and_bad_ones_are_refused() -> None:
    host = HostModel(
        cores=2,
        harness_cpu={"producer": 2e-5, "worker": 3e-5},
        work_overshoot=Constant(1e-4),
        serial_backoff=(0.001, 0.002),
        ack_loaded=Constant(2e-4),
        handoff_cpu=3e-5,
    )
    again = BrokerProfile.from_json(_with(host, "redis").to_json())
    assert again.host == host
    for bad in (
        {"cores": 2, "harness_cpu": {"consumer": 1e-5}},
        {"cores": 2, "serial_backoff": [0.001, -1]},
        {"cores": 2, "handoff_cpu": -1e-6},
        {"cores": 2, "ack_loaded": {"kind": "nope"}},
    ):
        data = load_profile("ideal").to_dict() | {"host": bad}
        with pytest.raises(ProfileError):
            BrokerProfile.from_json(json.dumps(data))


def test_harness_cpu_holds_the_client_lock() -> None:
    """1 ms of the worker's own CPU per task, under the one client lock: at most 1000/s."""
    run = simulate(BUSY, _with(HostModel(cores=8, harness_cpu={"worker": 0.001})), seed=0)
    assert run.summary()["throughput"] == pytest.approx(1000, rel=0.05)


def test_work_overshoot_lengthens_every_execution() -> None:
    sc = Scenario(name="o", arrival_rate=50.0, tasks=200, service_time=Constant(0.01), workers=4)
    host = HostModel(cores=2, work_overshoot=Constant(0.002))
    tasks = simulate(sc, _with(host), seed=0).tasks
    assert (tasks["finished_at"] - tasks["started_at"]).to_numpy() == pytest.approx(0.012)
    plain = simulate(sc, "ideal", seed=0).tasks
    assert (plain["finished_at"] - plain["started_at"]).to_numpy() == pytest.approx(0.01)


def _backoff_run(backoff: tuple[float, ...], sc: Scenario) -> pd.DataFrame:
    host = HostModel(
        cores=8,
        client_cpu={"publish": 2e-4, "claim": 2e-4, "ack": 2e-4},
        serial={"publish": 1.5e-4, "claim": 1.5e-4, "ack": 1.5e-4},
        serial_backoff=backoff,
    )
    return simulate(sc, _with(host), seed=0).ops


def test_a_backoff_lock_makes_colliding_calls_sleep() -> None:
    """Found taken, a call sleeps its backoff (1 ms first) instead of queueing for the lock;
    FIFO waits are at most a hold or two."""
    sc = Scenario(name="b", arrival_rate=800.0, tasks=1500, service_time=Constant(1e-3), workers=1)
    backoff = _backoff_run((0.001, 0.002), sc)
    fifo = _backoff_run((), sc)
    slept = (backoff["duration_s"] >= 0.001).mean()
    assert 0.02 < slept < 0.5
    assert (fifo["duration_s"] >= 0.001).mean() < slept / 10


def test_one_thread_never_collides_with_its_own_lock_hold() -> None:
    """Once the producer is done, the one slot is alone with the lock: none of its acks
    sleeps, though each call's hold outlasts its drawn latency (the ideal profile's 0)."""
    sc = Scenario(name="s", arrival_rate=1e6, tasks=40, service_time=Constant(1e-3), workers=1)
    ops = _backoff_run((0.001,), sc)
    produced = ops.loc[ops["op"] == "publish", "ts"].max()
    acks = ops[(ops["op"] == "ack") & (ops["ts"] > produced + 0.002)]
    assert len(acks) > 20 and acks["duration_s"].max() < 0.001


def test_ack_draws_the_loaded_law_while_work_waits() -> None:
    base = load_profile("ideal").with_overrides(latency={"ack": Constant(0.002)})
    profile = base.with_overrides(host=HostModel(cores=2, ack_loaded=Constant(0.0002)))
    light = Scenario(name="l", arrival_rate=20.0, tasks=200, service_time=Constant(0.01), workers=4)
    heavy = Scenario(
        name="h", arrival_rate=2000.0, tasks=2000, service_time=Constant(0.001), workers=1
    )

    # nothing waits: the idle law; then a backlog nearly all the time
    assert _mean_duration(light, profile, "ack") == pytest.approx(0.002, rel=0.01)
    assert _mean_duration(heavy, profile, "ack") < 0.0003


def test_a_handoff_makes_contended_client_cpu_dearer() -> None:
    host = HostModel(cores=8, client_cpu={"publish": 2e-4, "claim": 2e-4, "ack": 2e-4})
    plain = simulate(BUSY, _with(host), seed=0, record_ops=False).summary()["throughput"]
    dear = replace(host, handoff_cpu=2e-4)
    costly = simulate(BUSY, _with(dear), seed=0, record_ops=False).summary()["throughput"]
    assert costly < 0.85 * plain
