"""InstrumentedBroker: one flat record per call, failures recorded and re-raised, cheap."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pandas as pd
import pytest

import stemlab
from stemlab import Broker, Envelope, InstrumentedBroker, LeaseLost, instrument
from stemlab.instrument import OP_COLUMNS, op_stats
from stemlab.live.overhead import measure_overhead
from stemlab.model.result import OP_COLUMNS as RESULT_OP_COLUMNS


@pytest.fixture
def ib() -> Iterator[InstrumentedBroker]:
    broker = instrument(stemlab.connect("memory://", namespace="i" + uuid.uuid4().hex[:10]))
    yield broker
    broker.close()


def test_instrumented_broker_is_a_broker(ib: InstrumentedBroker) -> None:
    assert isinstance(ib, Broker)
    assert instrument(ib) is ib
    assert ib.capabilities == ib.inner.capabilities
    assert ib.namespace == ib.inner.namespace  # other attributes come from the wrapped broker
    with pytest.raises(TypeError):
        instrument("memory://")  # type: ignore[arg-type]


def test_columns_match_the_run_result_frame(ib: InstrumentedBroker) -> None:
    assert OP_COLUMNS == RESULT_OP_COLUMNS
    assert list(ib.ops_frame().columns) == OP_COLUMNS


def test_every_call_is_one_record(ib: InstrumentedBroker) -> None:
    before = time.time()
    env = Envelope(name="t", queue="q", priority=7)
    ib.publish(env)
    ib.publish_many([Envelope(name="u", queue="q"), Envelope(name="v", queue="q")])
    consumer = ib.consume("q", prefetch=3, consumer="c1")
    first = consumer.get(timeout=1)
    assert first is not None and first.envelope.id == env.id
    ib.extend_lease(first, 5.0)
    ib.ack(first)
    second = consumer.get(timeout=1)
    assert second is not None
    ib.nack(second)
    third = consumer.get(timeout=1)
    assert third is not None
    ib.dead_letter(third, reason="bad")
    ib.pending_count("q")
    ib.inflight_count("q")
    ib.delayed_count("q")
    ib.list_dead_letters("q")
    ib.get_dead_letter("q", third.envelope.id)
    ib.replay_dead_letters("q", dry_run=True)
    ib.purge_dead_letters("q")
    ib.purge("q")
    consumer.close()
    after = time.time()

    ops = ib.ops_frame()
    assert list(ops["op"]) == [
        "publish",
        "publish_many",
        "consume",
        "get",
        "extend_lease",
        "ack",
        "get",
        "nack",
        "get",
        "dead_letter",
        "pending_count",
        "inflight_count",
        "delayed_count",
        "list_dead_letters",
        "get_dead_letter",
        "replay_dead_letters",
        "purge_dead_letters",
        "purge",
    ]
    assert ops["ok"].all() and ops["error"].isna().all()
    assert ops["ts"].between(before - 0.01, after + 0.01).all()
    assert ops["ts"].is_monotonic_increasing
    assert (ops["duration_s"] >= 0).all() and (ops["duration_s"] < 1).all()
    assert (ops["queue"] == "q").all()
    row = ops.iloc[0]
    assert (row["task_id"], row["priority"]) == (env.id, 7)
    # settling calls name the consumer that received the delivery
    on_first = ops[ops["task_id"] == env.id]
    assert list(on_first["op"]) == ["publish", "get", "extend_lease", "ack"]
    assert list(on_first["consumer"])[1:] == ["c1", "c1", "c1"]
    assert list(on_first["delivery_count"])[1:] == [1, 1, 1]
    assert ops.loc[ops["op"] == "consume", "consumer"].item() == "c1"


def test_failed_calls_are_recorded_and_reraised(ib: InstrumentedBroker) -> None:
    ib.publish(Envelope(name="t", queue="q"))
    consumer = ib.consume("q")
    d = consumer.get(timeout=1)
    assert d is not None
    ib.ack(d)
    with pytest.raises(LeaseLost):
        ib.ack(d)
    with pytest.raises(ValueError):
        ib.pending_count("not a queue!")
    with pytest.raises(TypeError):
        ib.ack("receipt")  # type: ignore[arg-type]
    ops = ib.ops_frame()
    failed = ops[~ops["ok"]]
    assert list(failed["op"]) == ["ack", "pending_count", "ack"]
    assert list(failed["error"]) == ["LeaseLost", "ValueError", "TypeError"]
    assert failed.iloc[0]["task_id"] == d.envelope.id


def test_empty_gets_are_counted_not_recorded(ib: InstrumentedBroker) -> None:
    consumer = ib.consume("q")
    for _ in range(3):
        assert consumer.get(timeout=0) is None
    assert ib.empty_gets == 3
    consumer.close()
    assert ib.empty_gets == 3  # a closed consumer's count is kept
    assert "get" not in set(ib.ops_frame()["op"])


def test_publish_routing_is_recorded(ib: InstrumentedBroker) -> None:
    ib.publish(Envelope(name="t", queue="q"), queue="other", priority=4)
    row = ib.ops_frame().iloc[0]
    assert (row["queue"], row["priority"]) == ("other", 4)


def test_closed_follows_the_wrapped_broker(ib: InstrumentedBroker) -> None:
    assert not ib.closed
    ib.close()
    assert ib.closed and ib.inner.closed
    with pytest.raises(stemlab.StemlabError):
        ib.publish(Envelope(name="t", queue="q"))
    assert list(ib.ops_frame()["op"]) == ["close", "publish"]


def test_clear_records_and_origin(ib: InstrumentedBroker) -> None:
    ib.pending_count("q")
    assert len(ib.records()) == 1
    ib.clear()
    assert ib.ops_frame().empty
    t0 = time.time()
    ib.pending_count("q")
    assert 0 <= ib.ops_frame(origin=t0)["ts"].item() < 1.0


def test_op_stats(ib: InstrumentedBroker) -> None:
    for _ in range(5):
        ib.publish(Envelope(name="t", queue="q"))
    ib.pending_count("q")
    stats = op_stats(ib.ops_frame())
    assert stats.loc["publish", "calls"] == 5
    assert stats.loc["pending_count", "errors"] == 0
    assert (stats["p50_s"] <= stats["max_s"]).all()
    assert op_stats(pd.DataFrame(columns=OP_COLUMNS)).empty


def test_records_across_threads_are_all_kept(ib: InstrumentedBroker) -> None:
    import threading

    def publish_many() -> None:
        for _ in range(500):
            ib.publish(Envelope(name="t", queue="q"))

    threads = [threading.Thread(target=publish_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ib.ops_frame()) == 2000
    assert ib.pending_count("q") == 2000


def test_overhead_benchmark_runs() -> None:
    result = measure_overhead("memory://", messages=300, repeats=2, block=50, breakdown=True)
    assert list(result.runs) == ["bare", "instrumented", "forward", "timed"]
    assert all(len(rates) == 2 for rates in result.runs.values())
    assert result.bare.wall > 0 and result.instrumented.cpu > 0
    assert len(result.overheads("timed")) == 2
    table = result.table()
    assert "overhead" in table and "timed" in table and "load average" in table
    with pytest.raises(ValueError):
        measure_overhead("memory://", messages=0)


def test_raw_rows_keep_their_layout(ib: InstrumentedBroker) -> None:
    # calibration reads recorder.rows directly: (start ns, op, queue, task_id, priority,
    # duration ns, error, consumer, delivery_count, receipt), whatever the store holds
    ib.publish(Envelope(name="t", queue="q", priority=4))
    consumer = ib.consume("q", consumer="c1")
    delivery = consumer.get(timeout=1)
    assert delivery is not None
    ib.ack(delivery)
    rows = ib.recorder.rows
    assert len(rows) == len(ib.recorder) == 4
    assert list(rows) == rows[:] == [rows[i] for i in range(4)]
    assert rows[-1] == rows[3] and rows[1:3] == [rows[1], rows[2]]
    assert [r[1] for r in rows] == ["publish", "consume", "get", "ack"]
    get, ack = rows[2], rows[3]
    assert get[2:5] == ("q", delivery.envelope.id, 4) and get[7:] == ("c1", 1, delivery.receipt)
    assert ack[7] is None and ack[9] == delivery.receipt
    frame = ib.ops_frame()
    for row, duration in zip(rows, frame["duration_s"], strict=True):
        assert isinstance(row[5], int) and 0 <= row[5] < 10**9  # a duration, not a clock reading
        assert row[5] / 1e9 == pytest.approx(duration)
    assert rows[0][0] < rows[1][0] < rows[2][0] < rows[3][0]
    with pytest.raises(IndexError):
        rows[4]
