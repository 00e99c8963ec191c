"""Contract: the limits (core/limits.py, docs/contract.md "Limits") on every adapter.

Values past a limit are refused before anything is written (`ValueError`,
`EnvelopeError` for envelopes, `ConfigError` for options), and values at a limit
are honoured. Each test here failed on the code before issue #13.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stemlab import Broker, ConfigError, Envelope, EnvelopeError, LeaseLost, StemlabError
from stemlab.core.limits import MAX_COUNT, MAX_DURATION, MAX_INSTANT, MIN_LEASE
from tests.contract.conftest import ADAPTER_URLS, INJECTORS
from tests.contract.support import (
    counts,
    delivery_wait,
    env,
    nothing,
    redelivery_wait,
    take,
    wait_until,
)

MakeBroker = Callable[..., Broker]
LEASE = 0.3

TOO_LONG: list[Any] = [
    1e12,
    math.inf,
    math.nan,
    MAX_DURATION + 1,
    timedelta(days=10**6),
    timedelta.max,
]
TOO_SHORT: list[Any] = [0, -1, 5e-5, MIN_LEASE / 2, timedelta(microseconds=40), -math.inf]


# ------------------------------------------------------------------- durations
@pytest.mark.parametrize("by", TOO_LONG + TOO_SHORT, ids=repr)
def test_extend_lease_out_of_range_is_refused_and_the_lease_still_expires(
    broker: Broker, by: Any
) -> None:
    broker.publish(env(visibility_timeout=LEASE))
    with broker.consume("q") as first:
        d = take(first, delivery_wait(broker))
        with pytest.raises(ValueError):
            broker.extend_lease(d, by)
        assert counts(broker) == (0, 1, 0, 0)
    with broker.consume("q") as second:  # nothing was written: the lease ran out on time
        again = take(second, redelivery_wait(broker, LEASE))
    assert again.delivery_count == 2
    broker.ack(again)


def test_extend_lease_at_the_limits_is_honoured(broker: Broker) -> None:
    broker.publish(env())
    with broker.consume("q") as consumer:
        d = take(consumer, delivery_wait(broker))
        expiry = broker.extend_lease(d, MAX_DURATION)
        year = datetime.now(UTC) + timedelta(seconds=MAX_DURATION)
        assert abs((expiry - year).total_seconds()) < 60
        broker.extend_lease(d, MIN_LEASE)
        broker.extend_lease(d, timedelta(seconds=MAX_DURATION))
        broker.ack(d)
    assert counts(broker) == (0, 0, 0, 0)


@pytest.mark.parametrize("vt", TOO_LONG + TOO_SHORT, ids=repr)
def test_envelope_lease_out_of_range_is_an_envelope_error(vt: Any) -> None:
    with pytest.raises(EnvelopeError):
        Envelope(name="x", visibility_timeout=vt)


@pytest.mark.parametrize("vt", [1e12, math.inf, MAX_DURATION * 2, 5e-5, MIN_LEASE / 2])
def test_default_visibility_timeout_out_of_range_is_a_config_error(
    make_broker: MakeBroker, vt: float
) -> None:
    with pytest.raises(ConfigError):
        make_broker(default_visibility_timeout=vt)


def test_a_lease_of_the_minimum_is_delivered_and_redelivered(make_broker: MakeBroker) -> None:
    broker = make_broker(default_visibility_timeout=MIN_LEASE)
    broker.publish_many([env("a"), env("b", visibility_timeout=MIN_LEASE)])
    seen: list[tuple[str, int]] = []
    with broker.consume("q") as consumer:
        while len(seen) < 4:
            d = take(consumer, redelivery_wait(broker, MIN_LEASE))
            seen.append((d.envelope.name, d.delivery_count))
            if d.delivery_count >= 2:
                try:
                    broker.ack(d)
                except LeaseLost:  # expired again meanwhile: it comes back once more
                    continue
    assert {n for n, c in seen if c >= 2} == {"a", "b"}


@pytest.mark.parametrize("delay", [1e12, math.inf, MAX_DURATION + 1, -1.0, timedelta.max])
def test_replay_with_an_out_of_range_delay_keeps_the_dead_letters(
    broker: Broker, delay: Any
) -> None:
    broker.publish(env("dead"))
    with broker.consume("q") as consumer:
        broker.dead_letter(take(consumer, delivery_wait(broker)), reason="x")
    with pytest.raises(ValueError):
        broker.replay_dead_letters("q", delay=delay)
    assert counts(broker) == (0, 0, 0, 1)
    result = broker.replay_dead_letters("q", delay=MAX_DURATION)
    assert [e.envelope.name for e in result.entries] == ["dead"]
    assert counts(broker) == (0, 0, 1, 0)


@pytest.mark.parametrize(
    "when",
    [
        datetime(9999, 12, 31, tzinfo=UTC),
        MAX_INSTANT + timedelta(seconds=1),
        datetime(1, 1, 2, tzinfo=UTC),
        datetime(1969, 12, 31, tzinfo=UTC),
    ],
    ids=str,
)
def test_not_before_outside_the_instant_range_is_an_envelope_error(when: datetime) -> None:
    with pytest.raises(EnvelopeError):
        Envelope(name="x", not_before=when)


def test_not_before_at_the_end_of_the_range_is_stored_as_delayed(broker: Broker) -> None:
    broker.publish(env("late", not_before=MAX_INSTANT))
    broker.publish(env("early", not_before=datetime(1970, 1, 1, tzinfo=UTC)))
    assert counts(broker) == (1, 0, 1, 0)
    with broker.consume("q") as consumer:
        d = take(consumer, delivery_wait(broker))
        assert d.envelope.name == "early"
        broker.ack(d)
        nothing(consumer)


# ------------------------------------------------------------- purged read-ahead
def _read_ahead(broker: Broker, n: int = 40, prefetch: int = 8) -> tuple[Any, Any]:
    broker.publish_many([env(f"m{i}") for i in range(n)])
    consumer = broker.consume("q", prefetch=prefetch)
    first = take(consumer, delivery_wait(broker))
    return consumer, first


def test_a_purge_by_another_broker_object_drops_the_read_ahead(make_broker: MakeBroker) -> None:
    broker, other = make_broker(), make_broker()
    consumer, first = _read_ahead(broker)
    with consumer:
        assert other.purge("q") == 40
        nothing(consumer)
        with pytest.raises(LeaseLost):
            broker.ack(first)
    assert counts(broker) == (0, 0, 0, 0)


def test_a_purge_by_another_process_drops_the_read_ahead(
    adapter: str, namespace: str, tmp_path: Path, make_broker: MakeBroker
) -> None:
    if adapter not in ADAPTER_URLS:
        pytest.skip("in-process adapter")
    url, options = ADAPTER_URLS[adapter](namespace, tmp_path)
    broker = make_broker()
    consumer, first = _read_ahead(broker)
    with consumer:
        code = f"import stemlab; stemlab.connect({url!r}, **{options!r}).purge('q')"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        time.sleep(0.2)  # the store's purge notice travels to this consumer meanwhile
        nothing(consumer)
        with pytest.raises(LeaseLost):
            broker.ack(first)
    assert counts(broker) == (0, 0, 0, 0)


def test_a_purge_by_the_same_broker_drops_the_read_ahead(broker: Broker) -> None:
    consumer, _ = _read_ahead(broker)
    with consumer:
        broker.purge("q")
        broker.publish(env("after"))
        d = take(consumer, delivery_wait(broker))
        assert d.envelope.name == "after"
        broker.ack(d)
        nothing(consumer)


# ------------------------------------------------------------------ publish_many
def test_publish_many_stores_nothing_when_one_envelope_no_longer_encodes(
    broker: Broker,
) -> None:
    batch = [env(f"m{i}") for i in range(600)]
    batch[550].args["bad"] = object()  # dicts stay mutable after construction
    with pytest.raises(EnvelopeError):
        broker.publish_many(batch)
    for bad in (math.nan, _nested(150), "\ud800", (1, 2)):
        batch[550].args["bad"] = bad
        with pytest.raises(EnvelopeError):
            broker.publish_many(batch)
    batch[550].args["bad"] = math.nan
    batch[549].headers["h"] = 1  # type: ignore[assignment]
    with pytest.raises(EnvelopeError):
        broker.publish_many(batch)
    del batch[549].headers["h"]
    with pytest.raises(EnvelopeError):
        broker.publish(batch[550])
    assert counts(broker) == (0, 0, 0, 0)
    del batch[550].args["bad"]
    broker.publish_many(batch)
    assert counts(broker) == (600, 0, 0, 0)


def test_the_stored_message_is_a_copy_of_the_callers_envelope(broker: Broker) -> None:
    sent = env("x", args={"items": [1, 2], "k": "v"}, meta={"m": 1})
    broker.publish_many([sent])
    broker.publish(sent, queue="q2")
    sent.args["items"].append(3)
    sent.args["k"] = "changed"
    sent.meta["m"] = 2
    for queue in ("q", "q2"):
        with broker.consume(queue) as consumer:
            d = take(consumer, delivery_wait(broker))
            assert d.envelope.args == {"items": [1, 2], "k": "v"}
            assert d.envelope.meta == {"m": 1}
            broker.ack(d)


# --------------------------------------------------------------------- prefetch
def test_extending_an_expired_lease_keeps_the_prefetch_cap(make_broker: MakeBroker) -> None:
    broker = make_broker(default_visibility_timeout=5.0)
    broker.publish_many([env("a", visibility_timeout=LEASE), env("b")])
    with broker.consume("q", prefetch=1) as consumer:
        a = take(consumer, delivery_wait(broker))
        b = take(consumer, redelivery_wait(broker, LEASE))  # a's slot came back with expiry
        assert (a.envelope.name, b.envelope.name) == ("a", "b")
        try:
            broker.extend_lease(a, 30)
        except LeaseLost:
            pass  # refused: its consumer's one slot is b's
        else:
            raise AssertionError("a prefetch-1 consumer would now hold two leases")
        broker.ack(b)
        again = take(consumer, delivery_wait(broker))
        assert (again.envelope.name, again.delivery_count) == ("a", 2)
        broker.ack(again)


# ------------------------------------------------------------------ decode depth
def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [101, 5000, 100_000])
def test_deeply_nested_args_are_an_envelope_error(depth: int) -> None:
    with pytest.raises(EnvelopeError):
        Envelope(name="x", args={"a": _nested(depth)})
    with pytest.raises(EnvelopeError):
        Envelope.from_json('{"name":"x","args":{"a":' + "[" * depth + "]" * depth + "}}")


@pytest.mark.parametrize("depth", [101, 5000, 200_000])
def test_stored_payloads_nested_too_deeply_are_dead_lettered_as_undecodable(
    adapter: str, make_broker: MakeBroker, depth: int
) -> None:
    if adapter not in INJECTORS:
        pytest.skip("the memory adapter stores Envelope objects: nothing to inject")
    broker = make_broker(default_visibility_timeout=5.0)
    raw = '{"name":"deep","args":{"a":' + "[" * depth + "]" * depth + "}}"
    INJECTORS[adapter](broker, "q", raw.encode())
    broker.publish(env("good"))
    with broker.consume("q") as consumer:
        d = take(consumer, delivery_wait(broker) + 1.0)
        assert d.envelope.name == "good"
        broker.ack(d)
        nothing(consumer)
    (entry,) = broker.list_dead_letters("q").entries
    assert entry.reason == "undecodable"
    assert counts(broker) == (0, 0, 0, 1)


def test_args_nested_to_the_limit_are_delivered(broker: Broker) -> None:
    broker.publish(env("deep", args={"a": _nested(99)}))
    with broker.consume("q") as consumer:
        d = take(consumer, delivery_wait(broker))
        assert d.envelope.args == {"a": _nested(99)}
        broker.ack(d)


# ------------------------------------------------------------------ identifiers
BAD_IDS = ["a\x00b", "\x00", "tab\there", "x" * 201, "\ud800", "", "line\n"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_identifiers_a_store_cannot_keep_are_refused_up_front(broker: Broker, bad: str) -> None:
    with pytest.raises(EnvelopeError):
        Envelope(name="x", id=bad)
    with pytest.raises(ValueError):
        broker.consume("q", consumer=bad)
    with pytest.raises(ValueError):
        broker.get_dead_letter("q", bad)
    assert counts(broker) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "fields",
    [
        {"args": {"s": "\ud800"}},
        {"args": {"\udfff": 1}},
        {"meta": {"s": "a\udc80b"}},
        {"name": "n\ud800"},
        {"headers": {"h": "\ud800"}},
        {"headers": {"\ud800": "h"}},
    ],
    ids=repr,
)
def test_text_utf8_cannot_encode_is_an_envelope_error(fields: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError):
        Envelope(**{"name": "x", **fields})


def test_nul_and_odd_unicode_in_args_and_ids_round_trip(broker: Broker) -> None:
    odd = "a\x00b\u2028\U0001f600\ufeff\\u0000\"'"
    sent = env("n\x00ame", id="id-\u00e9\U0001f600-\\u0000", args={odd: odd}, meta={"m": odd})
    broker.publish(sent)
    with broker.consume("q", consumer="c-\u00e9\U0001f600") as consumer:
        d = take(consumer, delivery_wait(broker))
        assert d.envelope == sent
        broker.dead_letter(d, reason="r\u00e9\U0001f600", meta={"k": odd})
    entry = broker.get_dead_letter("q", sent.id)
    assert entry is not None and entry.envelope == sent and entry.meta == {"k": odd}


@pytest.mark.parametrize("reason", ["a\x00b", "\ud800"], ids=repr)
def test_a_reason_a_store_cannot_keep_is_refused(broker: Broker, reason: str) -> None:
    broker.publish(env())
    with broker.consume("q") as consumer:
        d = take(consumer, delivery_wait(broker))
        with pytest.raises(ValueError):
            broker.dead_letter(d, reason=reason)
        broker.ack(d)


# ------------------------------------------------------------------ dead letters
def test_a_dead_letter_is_filed_under_the_stored_envelopes_id(broker: Broker) -> None:
    sent = env("real")
    broker.publish(sent)
    with broker.consume("q") as consumer:
        d = take(consumer, delivery_wait(broker))
        swapped = replace(d, envelope=env("impostor"))
        broker.dead_letter(swapped, reason="x")
    entry = broker.get_dead_letter("q", sent.id)
    assert entry is not None, "the dead letter must be found under the message's own id"
    assert entry.envelope.name == "real"


# ------------------------------------------------------------------------ close
@pytest.mark.parametrize("tracked", [True, False], ids=["tracked", "untracked"])
def test_close_from_another_thread_ends_a_blocked_get_quietly(
    broker: Broker, tracked: bool
) -> None:
    """Untracked, `close()` drops the store's connections under a running `get`."""
    broker.publish_many([env(f"m{i}") for i in range(50)])
    channels = "ch" if broker.capabilities.broadcast_scope is not None else ()
    consumer = broker.consume("q", channels=channels, prefetch=4)
    if not tracked:
        broker.untrack(consumer)
    outcome: list[Any] = []

    def blocked() -> None:
        try:
            while (d := consumer.get(timeout=10)) is not None:
                with contextlib.suppress(StemlabError):
                    broker.ack(d)
            outcome.append(None)
        except StemlabError as exc:
            outcome.append(exc)
        except BaseException as exc:  # the point: nothing else escapes
            outcome.append(("raw", exc))

    thread = threading.Thread(target=blocked)
    thread.start()
    time.sleep(0.05)
    broker.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert outcome[0] is None or isinstance(outcome[0], StemlabError), outcome


# ------------------------------------------------------------- counts and limits
@pytest.mark.parametrize("value", [2**63, 2**64, MAX_COUNT + 1, 10**30, -1, True, 1.0])
def test_limits_and_offsets_out_of_range_are_value_errors(broker: Broker, value: Any) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: broker.list_dead_letters("q", limit=value),
        lambda: broker.list_dead_letters("q", offset=value),
        lambda: broker.replay_dead_letters("q", limit=value),
        lambda: broker.purge_dead_letters("q", limit=value),
        lambda: broker.consume("q", prefetch=value),
    ]
    for call in calls:
        with pytest.raises(ValueError):
            call()


def test_limits_and_offsets_at_the_maximum_are_honoured(broker: Broker) -> None:
    broker.publish(env())
    with broker.consume("q", prefetch=MAX_COUNT) as consumer:
        broker.dead_letter(take(consumer, delivery_wait(broker)), reason="x")
    page = broker.list_dead_letters("q", limit=MAX_COUNT, offset=MAX_COUNT)
    assert page.entries == [] and page.next_offset is None
    assert len(broker.list_dead_letters("q", limit=MAX_COUNT).entries) == 1
    assert broker.replay_dead_letters("q", limit=MAX_COUNT, dry_run=True).entries
    assert broker.purge_dead_letters("q", limit=MAX_COUNT) == 1


@pytest.mark.parametrize("field", [2**63, 2**64, -(2**63) - 1, 10**40])
def test_receipts_with_out_of_range_numbers_are_lease_lost(broker: Broker, field: int) -> None:
    broker.publish(env())
    with broker.consume("q") as consumer:
        d = take(consumer, delivery_wait(broker))
        parts = d.receipt.split("|")
        for i in range(3, len(parts)):
            if parts[i].lstrip("-").isdigit():
                forged = "|".join([*parts[:i], str(field), *parts[i + 1 :]])
                for settle in (broker.ack, broker.nack, lambda x: broker.extend_lease(x, 5)):
                    with pytest.raises(LeaseLost):
                        settle(replace(d, receipt=forged))
        broker.ack(d)
    assert wait_until(lambda: counts(broker) == (0, 0, 0, 0), 2)
