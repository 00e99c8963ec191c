"""SQS adapter: what the shared contract suite cannot see, against moto's server.

URL parsing and option errors before any connection, one `BrokerUnavailable` line for
an endpoint nobody listens on, the SQS queue layout (one queue per level plus a
dead-letter queue, namespace as prefix), fencing of stale receipts by the lease book,
long delays, undecodable bodies, and a consumer process SIGKILLed mid-lease whose
message comes back to another process. The server is started by tests/sqs_server.py
(or is `STEMLAB_SQS_URL`); every test deletes its namespace's SQS queues afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import stemlab
from stemlab import Broker, Envelope, LeaseLost
from stemlab.brokers.sqs.settings import lease_seconds, parse_url, queue_prefix
from stemlab.errors import BrokerUnavailable, ConfigError, StemlabError
from tests.contract.support import MARGIN, in_seconds, redelivery_wait
from tests.sqs_server import delete_namespace, sqs_url

pytest.importorskip("boto3")

WORKER = Path(__file__).with_name("_mp_worker.py")
MakeSQS = Callable[..., Broker]


@pytest.fixture
def make_sqs() -> Iterator[MakeSQS]:
    """make_sqs(namespace=None, **options): SQS brokers whose queues are deleted after."""
    opened: list[tuple[Broker, str]] = []

    def make(namespace: str | None = None, **options: Any) -> Broker:
        ns = namespace or "s" + uuid.uuid4().hex[:12]
        broker = stemlab.connect(sqs_url(), namespace=ns, **options)
        opened.append((broker, ns))
        return broker

    yield make
    for broker, _ns in opened:
        broker.close()
    for ns in sorted({ns for _, ns in opened}):
        delete_namespace(sqs_url(), ns)


def _get(broker: Broker, queue: str = "q", **kw: Any) -> Any:
    with broker.consume(queue, **kw) as consumer:
        return consumer.get(timeout=5.0)


# ------------------------------------------------------------------- URL / options
def test_url_forms() -> None:
    s = parse_url("sqs://k:s@127.0.0.1:9324?region=eu-west-1&poll_interval=0.2")
    assert (s.endpoint, s.region, s.poll_interval) == ("http://127.0.0.1:9324", "eu-west-1", 0.2)
    assert (s.access_key, s.secret_key) == ("k", "s")
    assert parse_url("SQSS://sqs.eu-west-1.amazonaws.com").endpoint.startswith("https://")


@pytest.mark.parametrize(
    "url",
    [
        "sqs://",
        "sqs://host:notaport",
        "sqs://host/path",
        "sqs://onlykey@host",
        "sqs://host?nosuch=1",
        "sqs://host?region=Not_A_Region",
        "sqs://host?poll_interval=0",
    ],
)
def test_bad_urls_are_one_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        stemlab.connect(url)
    assert "\n" not in str(info.value)


def test_unreachable_endpoint_is_one_broker_unavailable_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as info:
        stemlab.connect(f"sqs://k:s@127.0.0.1:{port}", connect_timeout=0.5, max_attempts=1)
    assert "\n" not in str(info.value) and time.monotonic() - started < 10
    assert info.value.__cause__ is not None  # translated with `from`


def test_leases_are_whole_seconds_rounded_up() -> None:
    assert [lease_seconds(x) for x in (0.1, 1.0, 1.01, 30.0)] == [1, 1, 2, 30]


# ------------------------------------------------------------------------ layout
def test_one_sqs_queue_per_level_and_a_dead_letter_queue(make_sqs: MakeSQS) -> None:
    broker = make_sqs()
    assert broker.capabilities.broadcast_scope is None
    assert broker.pending_count("odd.name:1") == 0  # an unknown queue creates nothing
    link = broker.link  # type: ignore[attr-defined]
    prefix = queue_prefix(broker.namespace, "odd.name:1")  # type: ignore[attr-defined]
    assert link.level_urls(broker.namespace, "odd.name:1", fresh=True) == {}  # type: ignore[attr-defined]
    broker.publish(Envelope(name="a", queue="odd.name:1", priority=7))
    broker.publish(Envelope(name="b", queue="odd.name:1", priority=2))
    names = sorted(
        u.rsplit("/", 1)[-1]
        for u in link.call("list_queues", QueueNamePrefix=prefix).get("QueueUrls", [])
    )
    assert names == [prefix + "g0p2", prefix + "g0p7"] and len(prefix) + 12 <= 80
    delivery = _get(broker, "odd.name:1")
    assert delivery.envelope.name == "a"
    broker.dead_letter(delivery, reason="r", meta={"k": 1})
    assert link.dlq_url(broker.namespace, "odd.name:1", create=False) is not None  # type: ignore[attr-defined]


def test_broadcast_is_refused(make_sqs: MakeSQS) -> None:
    broker = make_sqs()
    with pytest.raises(StemlabError):
        broker.broadcast("ch", Envelope(name="x"))
    with pytest.raises(StemlabError):
        broker.consume(channels="ch")


# ------------------------------------------------------------------------ fencing
def test_stale_receipts_are_fenced(make_sqs: MakeSQS) -> None:
    broker = make_sqs(default_visibility_timeout=1.0)
    broker.publish(Envelope(name="x", queue="q"))
    first = _get(broker)
    time.sleep(1.0 + 0.3)  # lease over: redelivered to another consumer
    second = _get(broker)
    assert second is not None and second.delivery_count == 2
    for settle in (broker.ack, broker.nack, lambda d: broker.extend_lease(d, 5)):
        with pytest.raises(LeaseLost):
            settle(first)
    other = make_sqs(namespace=broker.namespace)  # another client of the same namespace
    other.ack(second)
    with pytest.raises(LeaseLost):
        broker.ack(second)
    assert (broker.pending_count("q"), broker.inflight_count("q")) == (0, 0)


def test_late_ack_of_an_expired_lease_nobody_took(make_sqs: MakeSQS) -> None:
    broker = make_sqs(default_visibility_timeout=1.0)
    broker.publish(Envelope(name="x", queue="q"))
    delivery = _get(broker)
    time.sleep(1.3)
    expires = broker.extend_lease(delivery, timedelta(seconds=3))
    assert broker.inflight_count("q") == 1 and expires > in_seconds(2)
    broker.ack(delivery)
    assert broker.pending_count("q") + broker.inflight_count("q") == 0


def test_receipt_after_purge_is_lost(make_sqs: MakeSQS) -> None:
    broker = make_sqs()
    broker.publish(Envelope(name="x", queue="q"))
    delivery = _get(broker)
    assert broker.purge("q") == 1
    with pytest.raises(LeaseLost):
        broker.ack(delivery)


# ------------------------------------------------------------------------- delays
def test_delay_longer_than_sqs_allows_hops(make_sqs: MakeSQS) -> None:
    broker = make_sqs()
    broker.publish(Envelope(name="later", queue="q", not_before=in_seconds(3600)))
    assert (broker.pending_count("q"), broker.delayed_count("q")) == (0, 1)
    # As if 15 minutes had passed: a copy that SQS hands out while not_before is ahead.
    link = broker.link  # type: ignore[attr-defined]
    url = link.level_url(broker.namespace, "q", 0)  # type: ignore[attr-defined]
    consumer = broker.consume("q")
    claim = consumer._claim("q", 0, url, _fake_receive(broker, url), time.time(), 30)  # type: ignore[attr-defined]
    consumer.close()
    assert claim is None  # not handed out: sent again with the rest of the delay
    assert (broker.pending_count("q"), broker.inflight_count("q")) == (0, 0)
    assert broker.delayed_count("q") == 2


def _fake_receive(broker: Broker, url: str) -> dict[str, Any]:
    """Send a copy due now-ish from SQS's view, receive it (the hop path's input)."""
    link = broker.link  # type: ignore[attr-defined]
    body = Envelope(name="later2", queue="q", not_before=in_seconds(3600)).to_json()
    link.call("send_message", QueueUrl=url, MessageBody=body)
    reply = link.call(
        "receive_message",
        QueueUrl=url,
        MaxNumberOfMessages=1,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )
    return dict(reply["Messages"][0])


# -------------------------------------------------------------------- undecodable
def test_undecodable_body_is_dead_lettered(make_sqs: MakeSQS) -> None:
    broker = make_sqs()
    link = broker.link  # type: ignore[attr-defined]
    url = link.level_url(broker.namespace, "q", 0)  # type: ignore[attr-defined]
    link.call("send_message", QueueUrl=url, MessageBody="{not json")
    broker.publish(Envelope(name="good", queue="q"))
    delivery = _get(broker)
    assert delivery.envelope.name == "good"
    (entry,) = broker.list_dead_letters("q").entries
    assert entry.reason == "undecodable" and entry.envelope.args["raw"] == "{not json"


# ------------------------------------------------------------------- fault: SIGKILL
@pytest.mark.slow
def test_sigkilled_consumer_process_message_comes_back(make_sqs: MakeSQS, tmp_path: Path) -> None:
    broker = make_sqs()
    lease = 1.0
    broker.publish(Envelope(name="mp", id="doomed", queue="q", visibility_timeout=lease))
    held, acked, stop = tmp_path / "held.txt", tmp_path / "acked.txt", tmp_path / "stop"
    options = json.dumps({"namespace": broker.namespace})  # type: ignore[attr-defined]

    def spawn(role: str, *args: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, str(WORKER), role, sqs_url(), options, "q", *args]
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def lines(path: Path) -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    def wait_for(path: Path, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and not lines(path):
            time.sleep(0.05)
        return bool(lines(path))

    holder = spawn("hold", str(held))
    survivor = None
    try:
        assert wait_for(held, 30.0)
        assert lines(held) == ["doomed 1"]
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        assert broker.inflight_count("q") == 1
        survivor = spawn("consume", str(acked), str(stop), "1")
        assert wait_for(acked, redelivery_wait(broker, lease) + 10.0 + MARGIN)
        stop.touch()
        survivor.wait(timeout=10)
        assert lines(acked) == ["doomed 2"]
        assert (broker.pending_count("q"), broker.inflight_count("q")) == (0, 0)
    finally:
        for proc in (holder, survivor):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_purge_is_repeatable_within_a_minute_by_switching_generations(
    make_sqs: MakeSQS,
) -> None:
    # SQS allows one PurgeQueue per queue every 60 s, so purge never calls it: it
    # switches the queue to a new generation of SQS queues and deletes the old ones.
    broker = make_sqs()
    other = make_sqs(broker.namespace)  # type: ignore[attr-defined]  # own queue cache
    link = broker.link  # type: ignore[attr-defined]
    prefix = queue_prefix(broker.namespace, "q")  # type: ignore[attr-defined]
    other.publish(Envelope(name="x", queue="q", priority=3))
    assert other.pending_count("q") == 1
    assert broker.purge("q") == 1
    other.publish(Envelope(name="y", queue="q", priority=3))  # old queue gone: retried
    assert broker.purge("q") == 1
    other.publish(Envelope(name="z", queue="q", priority=5))
    names = sorted(
        u.rsplit("/", 1)[-1]
        for u in link.call("list_queues", QueueNamePrefix=prefix).get("QueueUrls", [])
    )
    assert names == [prefix + "g2p0", prefix + "g2p5"]
    assert broker.pending_count("q") == 1
    assert _get(broker).envelope.name == "z"
    assert broker.purge("q") == 1  # the in-flight one counts
