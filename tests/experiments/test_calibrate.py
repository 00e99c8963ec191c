"""calibrate(): quick calibration of every adapter, sane fitted values, JSON with provenance."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import stemlab
from stemlab import Broker, BrokerProfile, Scenario, calibrate, load_profile, simulate
from stemlab.calibration import PROFILE_VERSION, Plan, redact
from stemlab.calibration.fit import RECLAIM_CLAIM_TIME_S, fit_latency, fit_poll, fit_reclaim
from stemlab.calibration.measure import QUEUE, Measurements
from stemlab.model.profile import OPS
from stemlab.sim import Constant, Empirical, Exponential, LogNormal
from tests.experiments.conftest import CLEANUP, _url

QUICK_LIMIT_S = 15.0  # the bound for quick=True


Calibrated = tuple[str, BrokerProfile, float, Broker]


@pytest.fixture(scope="module", params=["memory", "sqlite", "redis", "postgres"])
def calibrated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Calibrated]:
    """(adapter, its quick profile, seconds taken, the broker) on a namespace of its own."""
    adapter = str(request.param)
    namespace = "cal" + uuid.uuid4().hex[:10]
    broker = stemlab.connect(_url(adapter, tmp_path_factory.mktemp(adapter)), namespace=namespace)
    try:
        start = time.monotonic()
        profile = calibrate(broker, quick=True, force=True)  # the load check: test_load_ramp
        yield adapter, profile, time.monotonic() - start, broker
    finally:
        broker.close()
        if adapter in CLEANUP:
            CLEANUP[adapter](namespace)


def test_quick_calibration_is_sane(calibrated: Calibrated) -> None:
    adapter, profile, took, broker = calibrated
    assert took < QUICK_LIMIT_S
    assert profile.name == adapter
    assert set(profile.latency) == set(OPS)
    for op, dist in profile.latency.items():
        assert 0 < dist.mean < 0.5, (op, dist.mean)  # a local call: well under half a second
    caps = broker.capabilities
    assert profile.priority_levels == caps.priority_levels
    assert profile.broadcast_scope == caps.broadcast_scope
    if caps.poll_interval is None:
        assert profile.pickup == "blocking" and profile.poll_interval is None
    else:  # the fitted interval is the declared one give or take the overshoot and noise
        assert profile.pickup == "polling"
        assert profile.poll_interval is not None
        assert 0.2 * caps.poll_interval <= profile.poll_interval <= 10 * caps.poll_interval
    # every adapter notices an expired lease when it next claims
    assert profile.reclaim_interval is None
    assert profile.meta["reclaim_fit"]["max"] <= RECLAIM_CLAIM_TIME_S
    idle = profile.meta["idle_pickup"]
    assert idle["n"] == Plan.quick().idle
    assert 0 < idle["p50"] <= idle["p95"] < 0.5
    assert broker.pending_count(QUEUE) == broker.inflight_count(QUEUE) == 0
    assert broker.list_dead_letters(QUEUE).entries == []
    # the load ramp: the host section, with measured costs and the machine's load
    host = profile.host
    assert host is not None and host.cores >= 1
    assert set(host.client_cpu) >= {"publish", "claim", "ack"}
    assert all(0 < host.client_cpu[op] < 0.05 for op in ("publish", "claim", "ack"))
    assert host.publish_unwatched is not None
    info = profile.meta["host_model"]
    assert info["rates_per_s"] and all(rate > 0 for rate in info["rates_per_s"].values())
    assert info["load_check"]["verdict"] in ("quiet", "busy", "forced")
    if adapter in ("redis", "postgres"):  # a server on this machine's loopback is found
        assert set(host.server_cpu) >= {"publish", "claim", "ack"}
    else:
        assert host.server_cpu == {}
    # what the live harness costs besides the calls, and how calls meet under load
    assert host.harness_cpu["producer"] > 0 and host.harness_cpu["worker"] >= 0
    assert host.work_overshoot is not None and 0 < host.work_overshoot.mean < 0.05
    assert host.ack_loaded is not None and host.handoff_cpu >= 0
    assert host.serial_backoff == (caps.lock_backoff or ())
    if caps.lock_backoff:  # the lock's hold comes from the probe publishes' collisions
        assert info["lock_collisions"]["probes"] > 20


def test_profile_round_trips_with_provenance(calibrated: Calibrated, tmp_path: Path) -> None:
    adapter, profile, _took, _broker = calibrated
    path = tmp_path / f"{adapter}.json"
    profile.save(path)
    data = json.loads(path.read_text())
    meta = data["meta"]
    assert meta["status"] == "calibrated" and meta["mode"] == "quick"
    assert meta["profile_version"] == PROFILE_VERSION
    assert meta["host"] and meta["cpus"] and meta["stemlab_version"] == stemlab.__version__
    assert meta["calibrated_at"].endswith("+00:00")
    assert meta["samples"]["publish"] == Plan.quick().idle
    assert set(meta["fits"]) == set(OPS)
    again = load_profile(path)
    assert again == profile
    assert again.to_json() == profile.to_json()


def test_calibrated_profile_drives_the_simulator(tmp_path: Path) -> None:
    profile = calibrate(f"sqlite:///{tmp_path / 'cal.db'}", quick=True, force=True)
    sc = Scenario(
        name="t", arrival_rate=100.0, tasks=200, service_time=Exponential(0.01), workers=3
    )
    s = simulate(sc, profile, seed=1).summary()
    assert s["acked"] == 200
    assert s["wait_p50"] > 0


def test_calibrating_from_a_url_leaves_nothing_behind(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cal.db'}"
    profile = calibrate(url, quick=True, force=True)
    assert profile.meta["broker"] == url
    with stemlab.connect(url, namespace="stemlab-calibrate") as broker:
        assert broker.pending_count(QUEUE) == 0
        assert broker.list_dead_letters(QUEUE).entries == []


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://me:secret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert redact("redis://:pw@host/0") == "redis://:***@host/0"
    assert redact("sqlite:///a.db") == "sqlite:///a.db"


# ------------------------------------------------------------------ fitting
def test_lognormal_data_gets_a_lognormal() -> None:
    rng = np.random.default_rng(0)
    truth = LogNormal(0.002, 0.4)
    dist, info = fit_latency(truth.sample_many(rng, 2000))
    assert isinstance(dist, LogNormal) and info["kind"] == "lognormal"
    assert dist.mean == pytest.approx(0.002, rel=0.05)
    assert dist.sigma == pytest.approx(0.4, rel=0.1)


def test_heavy_tailed_data_keeps_its_quantiles() -> None:
    rng = np.random.default_rng(0)
    body = rng.lognormal(math.log(0.0002), 0.1, 1900)
    stalls = rng.uniform(0.004, 0.008, 100)  # 5 % of calls stall (a checkpoint, a GC pause)
    samples = np.concatenate([body, stalls])
    dist, info = fit_latency(samples)
    assert isinstance(dist, Empirical) and info["kind"] == "empirical"
    assert len(dist.values) == 200
    assert dist.quantile(0.99) == pytest.approx(np.quantile(samples, 0.99), rel=0.1)
    assert dist.mean == pytest.approx(samples.mean(), rel=0.05)


def test_constant_data_gets_a_constant() -> None:
    dist, info = fit_latency(np.full(50, 0.001))
    assert dist == Constant(0.001) and info["kind"] == "constant"
    with pytest.raises(ValueError):
        fit_latency(np.array([]))


def _measurements(**arrays: np.ndarray) -> Measurements:
    empty = np.array([])
    fields = {
        name: arrays.get(name, empty)
        for name in (
            "publish",
            "ack",
            "idle_pickup",
            "after_publish",
            "claim",
            "extend",
            "nack",
            "dead_letter",
            "expiry_delay",
        )
    }
    return Measurements(**fields)


def test_poll_fit_inverts_the_simulators_pickup() -> None:
    # 4 listeners, claim 0.2 ms, poll 5 ms: mean wait after a publish (0.2 + 5) / 5 + 0.2 ms
    m = _measurements(after_publish=np.full(10, 0.00124), claim=np.full(10, 0.0002))
    poll, info = fit_poll(m, 0.005, 4)
    assert poll == pytest.approx(0.005, rel=1e-3)
    assert info["declared_s"] == 0.005
    noisy = _measurements(after_publish=np.full(10, 0.0001), claim=np.full(10, 0.0002))
    assert fit_poll(noisy, 0.005, 4)[0] == 0.005  # a non-positive estimate falls back


def test_reclaim_fit_tells_claim_time_from_a_sweep() -> None:
    quick = _measurements(expiry_delay=np.array([0.001, 0.003, 0.002]))
    assert fit_reclaim(quick, 0.0)[0] is None
    swept = _measurements(expiry_delay=np.array([0.4, 2.1, 4.6, 1.2]))
    period, info = fit_reclaim(swept, 0.0)
    assert period == pytest.approx(4.6)
    assert "sweep" in info["rule"]
