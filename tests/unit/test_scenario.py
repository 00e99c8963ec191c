"""Scenario: DESIGN's fields, JSON round trip, refusals naming the field; distributions."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stemlab import Scenario
from stemlab.model.scenario import ScenarioError
from stemlab.sim import Constant, Empirical, Exponential, LogNormal

SCENARIOS = Path(__file__).resolve().parents[2] / "data" / "scenarios"

DESIGN_FIELDS = [
    "name",
    "arrival_rate",
    "tasks",
    "service_time",
    "workers",
    "prefetch",
    "priority_weights",
    "visibility_timeout",
    "lease_renewal",
    "failure_probability",
    "crash_probability",
    "delay",
    "max_deliveries",
    "redelivery_service",
]


def full() -> Scenario:
    return Scenario(
        name="full",
        arrival_rate=12.5,
        tasks=321,
        service_time=LogNormal(0.2, 0.8),
        workers=3,
        prefetch=4,
        priority_weights={0: 1.0, 5: 2.0, 9: 0.5},
        visibility_timeout=1.5,
        lease_renewal=True,
        failure_probability=0.1,
        crash_probability=0.05,
        delay=Empirical([0.0, 0.5, 1.0]),
        max_deliveries=5,
        redelivery_service="fresh",
    )


def test_fields_are_exactly_designs() -> None:
    assert [f.name for f in dataclasses.fields(Scenario)] == DESIGN_FIELDS


def test_design_example_constructs() -> None:
    sc = Scenario(
        name="mmc",
        arrival_rate=9.0,
        tasks=20_000,
        service_time=Exponential(1.0),
        workers=10,
        prefetch=1,
        priority_weights={0: 1.0},
        visibility_timeout=30.0,
        lease_renewal=False,
        failure_probability=0.0,
        crash_probability=0.0,
        delay=None,
    )
    assert sc.load == pytest.approx(0.9)


@pytest.mark.parametrize(
    "dist", [Constant(0.25), Exponential(0.5), LogNormal(0.3, 1.2), Empirical([0.1, 0.2, 0.4])]
)
def test_json_round_trip_every_distribution(dist: Any) -> None:
    sc = dataclasses.replace(full(), service_time=dist, delay=dist)
    back = Scenario.from_json(sc.to_json())
    assert back == sc
    assert back.to_dict() == sc.to_dict()
    assert json.loads(sc.to_json())["priority_weights"] == {"0": 1.0, "5": 2.0, "9": 0.5}


def test_save_and_load_file(tmp_path: Path) -> None:
    sc = full()
    sc.save(tmp_path / "s.json")
    assert Scenario.load_file(tmp_path / "s.json") == sc


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"arrival_rate": -1.0}, "arrival_rate"),
        ({"arrival_rate": 0.0}, "arrival_rate"),
        ({"arrival_rate": float("nan")}, "arrival_rate"),
        ({"tasks": 0}, "tasks"),
        ({"workers": 0}, "workers"),
        ({"prefetch": 0}, "prefetch"),
        ({"visibility_timeout": -2.0}, "visibility_timeout"),
        ({"failure_probability": -0.1}, "failure_probability"),
        ({"crash_probability": 1.0}, "crash_probability"),
        ({"failure_probability": 0.6, "crash_probability": 0.5}, "crash_probability"),
        ({"priority_weights": {0: 0.0, 1: 0.0}}, "priority_weights"),
        ({"priority_weights": {0: -1.0, 1: 2.0}}, "priority_weights[0]"),
        ({"priority_weights": {10: 1.0}}, "priority_weights"),
        ({"priority_weights": {-1: 1.0}}, "priority_weights"),
        ({"priority_weights": {1.5: 1.0}}, "priority_weights"),
        ({"priority_weights": {}}, "priority_weights"),
        ({"service_time": 1.0}, "service_time"),
        ({"delay": "soon"}, "delay"),
        ({"lease_renewal": "yes"}, "lease_renewal"),
        ({"name": ""}, "name"),
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"max_deliveries": 2.5}, "max_deliveries"),
        ({"redelivery_service": "new"}, "redelivery_service"),
    ],
)
def test_invalid_scenarios_are_refused_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    base = full()
    kwargs = {f.name: getattr(base, f.name) for f in dataclasses.fields(Scenario)}
    with pytest.raises(ScenarioError, match=re.escape(field)):
        Scenario(**(kwargs | changes))


def test_scenario_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Scenario(arrival_rate=-3.0)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"service_time": {"kind": "constant", "value": -1}}, "service_time"),
        ({"delay": {"kind": "weibull"}}, "delay"),
        ({"tasks": "100"}, "tasks"),
        ({"priority_weights": {"x": 1}}, "priority_weights"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_json_is_refused_naming_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ScenarioError, match=field):
        Scenario.from_dict({**full().to_dict(), **data})


def test_not_json_is_refused() -> None:
    with pytest.raises(ScenarioError, match="JSON"):
        Scenario.from_json("{nope")


def test_shipped_scenarios_load_and_round_trip() -> None:
    files = sorted(SCENARIOS.glob("*.json"))
    assert len(files) >= 4
    for path in files:
        sc = Scenario.load_file(path)
        assert sc.name == path.stem
        assert Scenario.from_json(sc.to_json()) == sc
    names = {p.stem for p in files}
    assert {"light-mmc", "priority-contention", "crashy", "short-lease"} <= names


# ------------------------------------------------------------- distributions


@pytest.mark.parametrize(
    ("dist", "mean"),
    [
        (Constant(0.3), 0.3),
        (Exponential(0.5), 0.5),
        (LogNormal(0.2, 0.7), 0.2),
        (Empirical([0.1, 0.2, 0.6]), 0.3),
    ],
)
def test_distribution_mean_and_samples(dist: Any, mean: float) -> None:
    assert dist.mean == pytest.approx(mean)
    rng = np.random.default_rng(7)
    one = dist.sample(rng)
    assert isinstance(one, float) and one >= 0
    many = dist.sample_many(np.random.default_rng(7), 40_000)
    assert many.min() >= 0
    assert float(many.mean()) == pytest.approx(mean, rel=0.05)


def test_samples_are_reproducible_from_a_seed() -> None:
    dist = LogNormal(0.2, 1.0)
    a = [dist.sample(np.random.default_rng(3)) for _ in range(3)]
    b = [dist.sample(np.random.default_rng(3)) for _ in range(3)]
    assert a == b


@pytest.mark.parametrize(
    "make",
    [
        lambda: Constant(-1.0),
        lambda: Exponential(0.0),
        lambda: LogNormal(-0.1),
        lambda: LogNormal(0.1, -1.0),
        lambda: Empirical([]),
        lambda: Empirical([0.1, -0.2]),
    ],
)
def test_invalid_distributions_are_refused(make: Any) -> None:
    with pytest.raises(ValueError):
        make()
