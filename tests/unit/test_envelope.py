"""Envelope and Delivery: defaults, validation, JSON round trip, ids."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from stemlab import Delivery, Envelope, EnvelopeError
from stemlab.core.codec import dumps, loads, new_id

NAIVE = datetime(2030, 1, 1)
TOKYO = timezone(timedelta(hours=9))


def full_envelope() -> Envelope:
    return Envelope(
        name="reports.build",
        args={"n": 3, "f": 0.5, "s": "é✓", "l": [1, None, True], "d": {"x": {}}},
        queue="reports:high.v1-x_y",
        priority=7,
        not_before=datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=TOKYO),
        visibility_timeout=12.5,
        attempt=3,
        max_retries=5,
        headers={"trace": "abc", "tenant": "t1"},
        meta={"origin": "test", "tags": ["a"]},
        enqueued_at=datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    )


def test_defaults() -> None:
    before = datetime.now(UTC)
    e = Envelope(name="t")
    after = datetime.now(UTC)
    assert (e.args, e.queue, e.priority, e.not_before) == ({}, "default", 0, None)
    assert (e.visibility_timeout, e.attempt, e.max_retries) == (None, 0, 0)
    assert (e.headers, e.meta) == ({}, {})
    assert before <= e.enqueued_at <= after and e.enqueued_at.tzinfo is not None
    assert uuid.UUID(e.id).version == 7


def test_json_round_trips_every_field() -> None:
    e = full_envelope()
    text = e.to_json()
    assert isinstance(text, str)
    back = Envelope.from_json(text)
    assert back == e
    for f in dataclasses.fields(Envelope):
        assert getattr(back, f.name) == getattr(e, f.name), f.name
    assert back.not_before is not None and back.not_before.utcoffset() == timedelta(hours=9)
    assert Envelope.from_json(text.encode()) == e
    assert Envelope.from_dict(e.to_dict()) == e


def test_round_trip_of_defaults_and_none() -> None:
    e = Envelope(name="t")
    assert Envelope.from_json(e.to_json()) == e


def test_to_dict_is_plain_json() -> None:
    data = full_envelope().to_dict()
    assert loads(dumps(data)) == data
    assert isinstance(data["not_before"], str) and isinstance(data["enqueued_at"], str)


def test_ids_are_unique_and_time_ordered() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids[:10])
    assert Envelope(name="a").id != Envelope(name="a").id


def test_id_is_kept_by_replace() -> None:
    e = Envelope(name="t")
    retried = dataclasses.replace(e, attempt=1)
    assert retried.id == e.id and retried.attempt == 1


def test_visibility_timeout_accepts_timedelta() -> None:
    e = Envelope(name="t", visibility_timeout=timedelta(seconds=1.5))
    assert e.visibility_timeout == 1.5 and isinstance(e.visibility_timeout, float)
    assert Envelope(name="t", visibility_timeout=2).visibility_timeout == 2.0


def test_frozen_and_unhashable() -> None:
    e = Envelope(name="t")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(e)


@pytest.mark.parametrize(
    "fields",
    [
        {"name": ""},
        {"name": 5},
        {"id": ""},
        {"args": [1]},
        {"args": {"o": object()}},
        {"args": {"nan": float("nan")}},
        {"args": {"inf": float("inf")}},
        {"args": {"b": b"bytes"}},
        {"meta": {"s": {1, 2}}},
        {"meta": "x"},
        {"headers": {"h": 1}},
        {"headers": {1: "v"}},
        {"queue": ""},
        {"queue": "a b"},
        {"queue": "a/b"},
        {"queue": "x" * 201},
        {"priority": 10},
        {"priority": -1},
        {"priority": True},
        {"priority": 1.0},
        {"priority": "1"},
        {"not_before": NAIVE},
        {"not_before": "2030-01-01T00:00:00+00:00"},
        {"enqueued_at": NAIVE},
        {"visibility_timeout": 0},
        {"visibility_timeout": -1.0},
        {"visibility_timeout": "5"},
        {"visibility_timeout": True},
        {"attempt": -1},
        {"attempt": 1.0},
        {"max_retries": -1},
        {"max_retries": False},
    ],
    ids=repr,
)
def test_invalid_fields_raise_envelope_error(fields: dict[str, object]) -> None:
    kwargs: dict[str, object] = {"name": "t", **fields}
    with pytest.raises(EnvelopeError) as info:
        Envelope(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_queue_name_limits() -> None:
    assert Envelope(name="t", queue="x" * 200).queue == "x" * 200
    assert Envelope(name="t", queue="A-z_0.9:x").queue == "A-z_0.9:x"
    assert Envelope(name="t", priority=9).priority == 9
    assert Envelope(name="t", priority=0).priority == 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        b"\xff\xfe",
        "[]",
        "42",
        '{"queue": "q"}',
        '{"name": "t", "surprise": 1}',
        '{"name": "t", "priority": 12}',
        '{"name": "t", "not_before": "yesterday"}',
        '{"name": "t", "not_before": "2030-01-01T00:00:00"}',
        '{"name": "t", "not_before": 1700000000}',
        '{"name": "t", "enqueued_at": "2030-01-01T00:00:00"}',
        '{"name": "t", "args": {"x": NaN}}',
    ],
)
def test_from_json_refuses_garbage(text: str | bytes) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_json(text)


def test_from_json_without_enqueued_at_fills_it_in() -> None:
    e = Envelope.from_json('{"name": "t"}')
    assert e.enqueued_at.tzinfo is not None and e.name == "t"


def test_codec_is_strict_json() -> None:
    assert dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    with pytest.raises(ValueError):
        dumps({"x": float("nan")})
    with pytest.raises(EnvelopeError):
        loads("{")


def test_delivery_fields() -> None:
    e = Envelope(name="t")
    expires = datetime.now(UTC)
    d = Delivery(e, "r1", "q", expires, 1)
    assert (d.envelope, d.receipt, d.queue, d.lease_expires_at, d.delivery_count) == (
        e,
        "r1",
        "q",
        expires,
        1,
    )
    assert d.channel is None
    b = Delivery(e, "r2", e.queue, None, 1, channel="ch")
    assert b.channel == "ch" and b.lease_expires_at is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.receipt = "x"  # type: ignore[misc]
