"""BrokerPlayground driven headlessly on every adapter: what the buttons do to the real broker,
and what the widget then shows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import stemlab
from stemlab.widgets import BrokerPlayground
from tests.widgets.conftest import Store, make_store

Make = Callable[..., BrokerPlayground]
Q = "playground"


def _publish(pg: BrokerPlayground, count: int = 1, **values: object) -> None:
    pg.count.value = count
    for name, value in values.items():
        getattr(pg, name).value = value
    pg.publish_button.click()
    assert pg.wait_idle()


def _consume(pg: BrokerPlayground, prefetch: int = 1) -> None:
    pg.prefetch.value = prefetch
    pg.consume_button.click()
    assert pg.wait_idle()


def _click(pg: BrokerPlayground, row: int, action: str) -> None:
    pg.held[row].buttons[action].click()
    assert pg.wait_idle()


def _text(out: object) -> str:
    outputs = out.outputs  # type: ignore[attr-defined]
    return "\n".join(o["data"]["text/plain"] for o in outputs)


def test_publish_consume_ack_moves_the_real_counts(make_playground: Make, store: Store) -> None:
    pg = make_playground()
    _publish(pg, 5, priority=3, args='{"to": "ada"}')
    assert pg.message.kind == "info" and "published 5" in pg.message.text
    other = store.connect()
    assert other.pending_count(Q) == 5
    assert pg.counts == {"pending": 5, "inflight": 0, "delayed": 0, "dead": 0}

    _consume(pg, prefetch=2)
    assert len(pg.held) == 2 and len(pg.deliveries_box.children) == 2
    assert pg.held[0].delivery.envelope.args == {"to": "ada"}
    assert pg.held[0].delivery.envelope.priority == 3
    assert "lease" in pg.held[0].label.value and "s left" in pg.held[0].label.value
    assert (other.pending_count(Q), other.inflight_count(Q)) == (3, 2)

    _click(pg, 0, "ack")
    assert "acked" in pg.message.text and len(pg.held) == 1
    assert (other.pending_count(Q), other.inflight_count(Q)) == (3, 1)
    assert "pending 3 · in flight 1 · delayed 0 · dead 0" in pg.counts_label.value

    log = _text(pg.log_out)
    for op in ("publish", "consume", "get", "ack"):
        assert op in log
    assert "pending_count" not in log  # the refresh counts through the unwrapped broker


def test_settle_buttons_and_the_dead_letter_table(make_playground: Make, store: Store) -> None:
    pg = make_playground()
    _publish(pg, 3)
    _consume(pg, prefetch=3)
    assert len(pg.held) == 3
    pg.reason.value = "boom"
    _click(pg, 0, "nack")
    _click(pg, 0, "dead-letter")
    assert "dead-lettered with reason 'boom'" in pg.message.text
    _click(pg, 0, "requeue")
    other = store.connect()
    assert (other.pending_count(Q), other.inflight_count(Q)) == (1, 0)
    reasons = sorted(e.reason or "" for e in other.list_dead_letters(Q).entries)
    assert reasons == ["boom", "nack"]
    table = _text(pg.dead_out)
    assert "boom" in table and "nack" in table and pg.counts["dead"] == 2

    pg.replay_button.click()
    assert pg.wait_idle()
    assert "replayed 2" in pg.message.text
    assert other.pending_count(Q) == 3 and not other.list_dead_letters(Q).entries
    assert "no dead letters" in _text(pg.dead_out)

    _consume(pg, prefetch=1)
    _click(pg, 0, "nack")
    pg.purge_dead_button.click()
    assert pg.wait_idle()
    assert "deleted 1 dead letters" in pg.message.text
    pg.purge_button.click()
    assert pg.wait_idle()
    assert other.pending_count(Q) == 0 and other.inflight_count(Q) == 0


def test_extend_and_a_lost_lease_are_shown(make_playground: Make, store: Store) -> None:
    pg = make_playground()
    _publish(pg, 1, visibility=30.0)
    _consume(pg)
    before = pg.held[0].expires
    assert before is not None
    pg.extend_by.value = 120.0
    _click(pg, 0, "extend")
    after = pg.held[0].expires
    assert after is not None and (after - before).total_seconds() > 60
    assert "extended" in pg.message.text
    _click(pg, 0, "ack")

    _publish(pg, 1, visibility=0.3)
    _consume(pg)
    time.sleep(0.6)
    assert pg.wait_idle()
    assert "EXPIRED" in pg.held[0].label.value
    _consume(pg, prefetch=2)  # the expired lease's message comes back: delivery #2
    assert len(pg.held) == 2 and pg.held[1].delivery.delivery_count == 2
    _click(pg, 0, "ack")  # the first receipt is stale
    assert pg.message.kind == "error" and pg.message.text.startswith("lease lost")
    assert "Traceback" not in pg.message.text
    assert len(pg.held) == 1
    _click(pg, 0, "ack")
    assert store.connect().inflight_count(Q) == 0


def test_delay_publishes_delayed_messages(make_playground: Make) -> None:
    pg = make_playground()
    _publish(pg, 2, delay=60.0)
    assert "due in 60 s" in pg.message.text
    assert pg.counts == {"pending": 0, "inflight": 0, "delayed": 2, "dead": 0}
    _consume(pg)
    assert not pg.held and "nothing ready" in pg.message.text


def test_bad_input_is_a_message_not_a_traceback(make_playground: Make, store: Store) -> None:
    pg = make_playground()
    pg.args.value = '{"n": '
    assert "not JSON" in pg.args_error.value
    _publish(pg, 1)
    assert pg.message.kind == "error" and "nothing published" in pg.message.text
    pg.args.value = "[1, 2]"
    assert "JSON object" in pg.args_error.value
    pg.args.value = "{}"
    assert pg.args_error.value == ""

    _publish(pg, 1, task_name="")
    assert pg.message.kind == "error" and "EnvelopeError" in pg.message.text
    _publish(pg, 1, task_name="ok", queue="no spaces!")
    assert pg.message.kind == "error" and "queue name must match" in pg.message.text
    assert "counts unavailable" in pg.counts_label.value
    _consume(pg)
    assert pg.message.kind == "error" and "queue name" in pg.message.text
    pg.queue.value = Q
    assert pg.wait_idle()
    assert store.connect().pending_count(Q) == 0 and pg.counts["pending"] == 0


def test_prefetch_caps_what_the_playground_holds(make_playground: Make) -> None:
    pg = make_playground()
    _publish(pg, 3)
    _consume(pg, prefetch=1)
    _consume(pg, prefetch=1)
    assert len(pg.held) == 1
    assert pg.message.kind == "error" and "prefetch=1" in pg.message.text


def test_a_stemlab_error_from_a_button_is_a_message() -> None:
    broker = stemlab.connect("memory://")
    pg = BrokerPlayground(broker, refresh_interval=0.2)
    try:
        _publish(pg, 1)
        broker.close()  # every call now raises StemlabError("this broker is closed")
        _publish(pg, 1)
        assert pg.message.kind == "error"
        assert pg.message.text == "StemlabError: this broker is closed"
        assert "counts unavailable" in pg.counts_label.value
    finally:
        pg.close()


def test_close_stops_the_thread_and_closes_only_what_it_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'own.db'}"
    owned = BrokerPlayground(url)
    lent_broker = stemlab.connect(url)
    lent = BrokerPlayground(lent_broker)
    names = {t.name for t in threading.enumerate()}
    assert "stemlab-playground-sqlite" in names
    _publish(owned, 1)
    _consume(owned)
    owned.close()
    lent.close()
    assert not owned._worker.alive and not lent._worker.alive
    assert owned.broker.closed and not lent_broker.closed
    assert "stemlab-playground-sqlite" not in {t.name for t in threading.enumerate()}
    assert lent_broker.inflight_count(Q) == 1  # closing never settles what was held
    lent_broker.close()


@pytest.mark.parametrize("adapter", ["sqlite", "redis"])
def test_two_playgrounds_on_one_url_share_the_queue(adapter: str, tmp_path: Path) -> None:
    for store in make_store(adapter, tmp_path):
        one = BrokerPlayground(store.url, refresh_interval=0.2, **store.options)
        two = BrokerPlayground(store.url, refresh_interval=0.2, **store.options)
        try:
            _publish(one, 3)
            assert two.wait_idle() and two.counts["pending"] == 3
            _consume(two)
            assert one.wait_idle() and one.counts["inflight"] == 1
            assert one.counts["pending"] == 2
            _click(two, 0, "dead-letter")
            assert one.wait_idle() and one.counts["dead"] == 1
            assert "manual" in _text(one.dead_out)
        finally:
            one.close()
            two.close()
