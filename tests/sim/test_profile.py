"""BrokerProfile: validation, JSON round trip, the shipped profiles and load_profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stemlab.core.records import Capabilities
from stemlab.model.profile import BROKER_NAMES, profiles_dir
from stemlab.sim import BrokerProfile, Constant, Exponential, LogNormal, ProfileError, load_profile


def test_every_shipped_profile_loads_and_round_trips() -> None:
    for name in BROKER_NAMES:
        profile = load_profile(name)
        assert profile.name == name
        again = BrokerProfile.from_json(profile.to_json())
        assert again == profile
        assert (profiles_dir() / f"{name}.json").is_file()


def test_measured_profiles_carry_their_provenance() -> None:
    for name in ("memory", "sqlite", "redis", "redis-streams", "postgres"):
        meta = load_profile(name).meta
        assert meta["status"] == "calibrated"  # by stemlab.calibrate (docs/fidelity.md)
        assert meta["calibrated_at"] and meta["host"] and meta["samples"]["claim"] > 0


def test_shipped_profiles_match_the_adapters_pickup_models() -> None:
    assert load_profile("ideal").zero_latency
    assert load_profile("sqlite").pickup == "polling"
    # fitted effective interval: the adapter's 5 ms plus sleep overshoot and noise
    assert 0.004 <= (load_profile("sqlite").poll_interval or 0) <= 0.01
    for name in ("memory", "redis", "redis-streams", "postgres"):
        assert load_profile(name).pickup == "blocking"
    for name in BROKER_NAMES:
        assert load_profile(name).reclaim_delay == 0.0
        assert load_profile(name).priority_levels == 10


def test_latency_defaults_fill_missing_operations() -> None:
    profile = BrokerProfile("x", latency={"ack": Constant(0.002)})
    assert profile.latency["publish"] == Constant(0.0)
    assert profile.latency["nack"] == Constant(0.002)
    assert profile.latency["dead_letter"] == Constant(0.002)


def test_invalid_profiles_name_the_field() -> None:
    with pytest.raises(ProfileError, match="poll_interval"):
        BrokerProfile("x", pickup="polling")
    with pytest.raises(ProfileError, match="pickup"):
        BrokerProfile("x", pickup="carrier-pigeon")
    with pytest.raises(ProfileError, match="latency operation"):
        BrokerProfile("x", latency={"fetch": Constant(0.0)})
    with pytest.raises(ProfileError, match="priority_levels"):
        BrokerProfile("x", priority_levels=11)
    with pytest.raises(ProfileError, match="reclaim_interval"):
        BrokerProfile("x", reclaim_interval=-1.0)
    with pytest.raises(ProfileError, match="unknown profile fields"):
        BrokerProfile.from_dict({"name": "x", "colour": "red"})
    with pytest.raises(ProfileError, match="no broker profile"):
        load_profile("nonesuch")


def test_load_profile_accepts_a_path_and_an_object(tmp_path: Path) -> None:
    profile = BrokerProfile(
        "custom",
        latency={"publish": LogNormal(0.001, 0.3), "claim": Exponential(0.002)},
        pickup="polling",
        poll_interval=0.1,
        reclaim_interval=5.0,
        priority_levels=3,
        broadcast_scope=None,
    )
    path = tmp_path / "custom.json"
    profile.save(path)
    assert json.loads(path.read_text())["pickup"] == "polling"
    assert load_profile(path) == profile
    assert load_profile(str(path)) == profile
    assert load_profile(profile) is profile


def test_overrides_merge_latencies() -> None:
    redis = load_profile("redis")
    faster = redis.with_overrides(latency={"claim": Constant(0.0)}, poll_interval=None)
    assert faster.latency["claim"] == Constant(0.0)
    assert faster.latency["publish"] == redis.latency["publish"]


def test_capabilities_both_ways() -> None:
    caps = Capabilities(broadcast_scope="host", poll_interval=0.25, reclaim_delay=10.0)
    profile = BrokerProfile.from_capabilities("p", caps, {"claim": Constant(0.001)})
    assert profile.pickup == "polling"
    assert profile.reclaim_interval == 10.0
    assert profile.capabilities() == Capabilities(
        broadcast_scope="host", poll_interval=0.25, reclaim_delay=10.0
    )
