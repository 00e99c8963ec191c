"""`stemlab demo`: a narrated publish/consume/ack round trip on an embedded SQLite broker."""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import stemlab
from stemlab import Broker, Envelope
from stemlab.core.clock import utcnow

__all__ = ["register", "run"]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo", help="publish, consume and ack on an embedded SQLite broker (no service needed)"
    )
    parser.add_argument("--db", help="SQLite file to use (default: a temporary file)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "demo.db"
        url = f"sqlite:///{db.resolve()}"
        with stemlab.connect(url, namespace="demo", default_visibility_timeout=0.5) as broker:
            caps = broker.capabilities
            print(f"broker    {url}")
            print(
                f"          {caps.priority_levels} priority levels, broadcast scope "
                f"{caps.broadcast_scope!r}, poll interval {caps.poll_interval} s, "
                f"durable={caps.durable}"
            )
            _round_trip(broker)
    return 0


def _show(what: str, broker: Broker) -> None:
    print(
        f"{what:<44} pending={broker.pending_count('demo')} "
        f"inflight={broker.inflight_count('demo')} delayed={broker.delayed_count('demo')}"
    )


def _round_trip(broker: Broker) -> None:
    broker.purge("demo")
    broker.purge_dead_letters("demo")
    later = utcnow() + timedelta(seconds=0.3)
    broker.publish_many(
        [
            Envelope(name="email.send", queue="demo", priority=1, args={"to": "ada@example.org"}),
            Envelope(name="report.build", queue="demo", priority=8, args={"month": "2026-11"}),
            Envelope(name="cache.warm", queue="demo", args={}, not_before=later),
        ]
    )
    _show("published 3 (priorities 1 and 8, one delayed)", broker)
    with broker.consume("demo", prefetch=2, consumer="demo-worker") as consumer:
        urgent, normal = _get(consumer), _get(consumer)
        for d in (urgent, normal):
            print(f"  got {d.envelope.name:<13} priority={d.envelope.priority}")
        _show("holding 2 un-acked deliveries (prefetch=2)", broker)
        broker.ack(urgent)
        print(f"  acked {urgent.envelope.name}; left {normal.envelope.name} un-acked")
        time.sleep(0.6)
        again = _get(consumer)
        print(
            f"  its 0.5 s lease ran out -> {again.envelope.name} delivered again, "
            f"delivery_count={again.delivery_count}"
        )
        try:
            broker.ack(normal)
        except stemlab.LeaseLost:
            print("  the stale receipt of the first delivery is refused (LeaseLost)")
        broker.nack(again, requeue=False)
        print(f"  nack(requeue=False) -> dead letter with reason {_reason(broker)!r}")
        delayed = _get(consumer)
        print(f"  got {delayed.envelope.name} once its not_before had passed; acked")
        broker.ack(delayed)
    _show("done", broker)
    print(f"dead letters: {len(broker.list_dead_letters('demo').entries)}")


def _get(consumer: stemlab.Consumer) -> stemlab.Delivery:
    delivery = consumer.get(timeout=5.0)
    if delivery is None:
        raise stemlab.StemlabError("the demo broker delivered nothing within 5 s")
    return delivery


def _reason(broker: Broker) -> str | None:
    entries = broker.list_dead_letters("demo", limit=1).entries
    return entries[0].reason if entries else None
