"""Issue #12 D: the idle-consumer wake-up delay that calibration measures is now modelled.

Calibration stores quantiles of (idle pickup after publish - median claim) in
`profile.meta["wakeup"]`; a blocking broker's idle consumer now gets its
delivery one wake-up delay (drawn from those quantiles) plus one claim latency
after the grant. Before, the measurement was stored and ignored.
"""

from __future__ import annotations

import numpy as np
import pytest

from stemlab import Scenario, simulate
from stemlab.sim import Constant, load_profile
from stemlab.sim.broker import wakeup_distribution

LIGHT = Scenario(
    name="light", arrival_rate=5.0, tasks=2_000, service_time=Constant(0.01), workers=4
)


@pytest.mark.parametrize("name", ["memory", "redis", "postgres"])
def test_the_stored_quantiles_become_a_distribution(name: str) -> None:
    profile = load_profile(name)
    info = profile.meta["wakeup"]
    dist = wakeup_distribution(profile)
    assert dist is not None
    draws = dist.sample_many(np.random.default_rng(0), 20_000)
    assert draws.min() >= 0 and draws.max() <= info["max"]
    assert np.percentile(draws, 50) == pytest.approx(info["p50"], rel=0.1)


def test_no_measurement_no_delay() -> None:
    assert wakeup_distribution(load_profile("ideal")) is None
    assert wakeup_distribution(load_profile("sqlite")) is None  # polling: no wake-up


def test_an_idle_consumer_waits_one_wake_up_longer() -> None:
    """At light load nearly every task goes to an idle consumer: the mean wait grows by the
    mean of the wake-up law (within 10 %; same seed, so the same claims and arrivals)."""
    redis = load_profile("redis")
    without = redis.with_overrides(meta={k: v for k, v in redis.meta.items() if k != "wakeup"})
    dist = wakeup_distribution(redis)
    assert dist is not None

    def mean_wait(profile: object) -> float:
        t = simulate(LIGHT, profile, seed=3, record_ops=False).tasks  # type: ignore[arg-type]
        return float((t["started_at"] - t["enqueued_at"]).mean())

    extra = mean_wait(redis) - mean_wait(without)
    assert extra == pytest.approx(dist.mean, rel=0.1)
